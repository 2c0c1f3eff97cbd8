//! Pods: NAME READY STATUS RESTARTS AGE, wide IP NODE NOMINATED NODE READINESS GATES, with
//! upstream's `printPod` rules for the STATUS reason (init containers, waiting and terminated
//! reasons, `Completed` with a running sidecar, `Terminating`) and the RESTARTS cell with the
//! time of the last restart.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Printer, TableColumn, age, condition_true, human_duration, items, name, text};

static COLUMNS: &[TableColumn] = &[
    TableColumn::NAME,
    TableColumn::new(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    TableColumn::new(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    TableColumn::new(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    TableColumn::AGE,
    TableColumn::wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    TableColumn::wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for preemption by the scheduler.",
    ),
    TableColumn::wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
    ),
    TableColumn::wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness.",
    ),
];

/// The pod printer.
pub static PODS: Printer = Printer::new(COLUMNS, cells).with_conditions(conditions);

/// A finished pod's row is `Completed`, as upstream's `podSuccessConditions` and
/// `podFailedConditions`.
fn conditions(pod: &Value) -> Vec<Value> {
    let (reason, message) = match text(pod, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![json!({"type": "Completed", "status": "True", "reason": reason, "message": message})]
}

/// The latest `lastState.terminated.finishedAt` seen.
#[derive(Default)]
struct LastRestart(Option<DateTime<Utc>>);

impl LastRestart {
    fn observe(&mut self, status: &Value) {
        let finished = status
            .pointer("/lastState/terminated/finishedAt")
            .and_then(Value::as_str)
            .and_then(kybernetes_core::clock::parse_time);
        if let Some(t) = finished
            && self.0.is_none_or(|last| last < t)
        {
            self.0 = Some(t);
        }
    }
}

fn restart_count(status: &Value) -> i64 {
    status
        .get("restartCount")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// What the init containers say: the reason while initializing, ready sidecars, and
/// restarts of all init containers and of the restartable (sidecar) ones.
struct InitState {
    reason: Option<String>,
    ready: i64,
    restarts: i64,
    last_restart: LastRestart,
    sidecar_restarts: i64,
    sidecar_last_restart: LastRestart,
}

fn init_state(pod: &Value) -> InitState {
    let specs = items(pod, "/spec/initContainers");
    let restartable: HashMap<&str, bool> = specs
        .iter()
        .map(|c| {
            (
                c.get("name").and_then(Value::as_str).unwrap_or(""),
                c.get("restartPolicy").and_then(Value::as_str) == Some("Always"),
            )
        })
        .collect();
    let mut s = InitState {
        reason: None,
        ready: 0,
        restarts: 0,
        last_restart: LastRestart::default(),
        sidecar_restarts: 0,
        sidecar_last_restart: LastRestart::default(),
    };
    for (i, c) in items(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let sidecar = restartable.get(text(c, "/name")).copied().unwrap_or(false);
        s.restarts += restart_count(c);
        s.last_restart.observe(c);
        if sidecar {
            s.sidecar_restarts += restart_count(c);
            s.sidecar_last_restart.observe(c);
        }
        let terminated = c.pointer("/state/terminated");
        let waiting_reason = text(c, "/state/waiting/reason");
        if terminated.is_some_and(|t| t.get("exitCode").and_then(Value::as_i64).unwrap_or(0) == 0) {
            continue;
        }
        if sidecar && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                s.ready += 1;
            }
            continue;
        }
        s.reason = Some(match terminated {
            Some(t) => match text(t, "/reason") {
                "" => match t.get("signal").and_then(Value::as_i64).unwrap_or(0) {
                    0 => format!(
                        "Init:ExitCode:{}",
                        t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                    ),
                    signal => format!("Init:Signal:{signal}"),
                },
                reason => format!("Init:{reason}"),
            },
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                format!("Init:{waiting_reason}")
            }
            None => format!("Init:{i}/{}", specs.len()),
        });
        break;
    }
    s
}

/// The STATUS a container's state gives (upstream's loop over container statuses), or `None`
/// for a running or unknown one.
fn container_reason(c: &Value) -> Option<String> {
    let waiting = text(c, "/state/waiting/reason");
    if !waiting.is_empty() {
        return Some(waiting.to_string());
    }
    let t = c.pointer("/state/terminated")?;
    Some(match text(t, "/reason") {
        "" => match t.get("signal").and_then(Value::as_i64).unwrap_or(0) {
            0 => format!(
                "ExitCode:{}",
                t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
            ),
            signal => format!("Signal:{signal}"),
        },
        reason => reason.to_string(),
    })
}

fn cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = text(pod, "/status/phase");
    let mut reason = match text(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    let gated = items(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated");
    if gated {
        reason = "SchedulingGated".into();
    }
    let sidecars = items(pod, "/spec/initContainers")
        .iter()
        .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
        .count();
    let total = items(pod, "/spec/containers").len() + sidecars;

    let init = init_state(pod);
    let mut ready = init.ready;
    let mut restarts = init.restarts;
    let mut last_restart = init.last_restart;
    let initializing = init.reason.is_some();
    if let Some(r) = init.reason {
        reason = r;
    }
    if !initializing || condition_true(pod, "/status/conditions", "Initialized") {
        restarts = init.sidecar_restarts;
        last_restart = init.sidecar_last_restart;
        let mut has_running = false;
        for c in items(pod, "/status/containerStatuses").iter().rev() {
            restarts += restart_count(c);
            last_restart.observe(c);
            match container_reason(c) {
                Some(r) => reason = r,
                None => {
                    let running = c.pointer("/state/running").is_some();
                    if running && c.get("ready").and_then(Value::as_bool) == Some(true) {
                        has_running = true;
                        ready += 1;
                    }
                }
            }
        }
        // A finished main container next to a running one is not "Completed".
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "/status/conditions", "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    if deleting && text(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_cell = match last_restart.0 {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration(now.signed_duration_since(t))
        ),
        _ => restarts.to_string(),
    };

    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let ip = items(pod, "/status/podIPs")
        .first()
        .map(|ip| text(ip, "/ip"))
        .unwrap_or("");
    let gates = items(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = items(pod, "/status/conditions");
        let true_gates = gates
            .iter()
            .filter(|g| {
                let type_ = text(g, "/conditionType");
                conditions
                    .iter()
                    .find(|c| text(c, "/type") == type_)
                    .is_some_and(|c| text(c, "/status") == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    vec![
        json!(name(pod)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(age(pod, now)),
        json!(or_none(ip)),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::table::TableConvertor;

    fn now() -> DateTime<Utc> {
        kybernetes_core::clock::parse_time("2024-05-01T12:00:00Z").expect("time")
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "p", "creationTimestamp": "2024-05-01T11:58:58Z"},
            "spec": spec,
            "status": status,
        })
    }

    fn status_of(p: &Value) -> (String, String, String) {
        let row = PODS.row(p, now());
        let s = |i: usize| row.cells[i].as_str().expect("string cell").to_string();
        (s(1), s(2), s(3))
    }

    #[test]
    fn a_pending_pod_without_statuses_is_pending() {
        let p = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Pending"}),
        );
        let row = PODS.row(&p, now());
        assert_eq!(
            row.cells,
            vec![
                json!("p"),
                json!("0/1"),
                json!("Pending"),
                json!("0"),
                json!("62s"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
        assert!(row.conditions.is_empty());
    }

    #[test]
    fn waiting_and_crashing_containers_show_their_reason_and_last_restart() {
        let p = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Running", "containerStatuses": [{
                "name": "c", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:55:00Z"}},
            }]}),
        );
        assert_eq!(
            status_of(&p),
            ("0/1".into(), "CrashLoopBackOff".into(), "5 (5m ago)".into())
        );
        let creating = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Pending", "containerStatuses": [{
                "name": "c", "state": {"waiting": {"reason": "ContainerCreating"}},
            }]}),
        );
        assert_eq!(status_of(&creating).1, "ContainerCreating");
    }

    #[test]
    fn init_containers_show_progress_and_failures() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "c"}]});
        let first_done = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "state": {"running": {}}},
            ]}),
        );
        assert_eq!(status_of(&first_done).1, "Init:1/2");
        let failed = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 2}}},
            ]}),
        );
        assert_eq!(status_of(&failed).1, "Init:ExitCode:2");
        let backoff = pod(
            spec,
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            ]}),
        );
        assert_eq!(status_of(&backoff).1, "Init:CrashLoopBackOff");
        assert_eq!(status_of(&backoff).2, "3");
    }

    #[test]
    fn finished_pods_are_completed_and_deleted_ones_terminating() {
        let done = pod(
            json!({"containers": [{"name": "c"}]}),
            json!({"phase": "Succeeded", "containerStatuses": [{
                "name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }]}),
        );
        assert_eq!(status_of(&done).1, "Completed");
        assert_eq!(PODS.row(&done, now()).conditions[0]["reason"], "Succeeded");
        let mut running = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"}),
            json!({"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "containerStatuses": [
                {"name": "a", "ready": true, "state": {"running": {}}},
                {"name": "b", "ready": true, "state": {"running": {}}},
            ]}),
        );
        let row = PODS.row(&running, now());
        assert_eq!(row.cells[1], "2/2");
        assert_eq!(row.cells[2], "Running");
        assert_eq!(row.cells[5], "10.0.0.5");
        assert_eq!(row.cells[6], "n1");
        running["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
        assert_eq!(status_of(&running).1, "Terminating");
    }

    #[test]
    fn a_completed_container_beside_a_running_one_is_running_or_not_ready() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [
                {"name": "a", "ready": true, "state": {"running": {}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            ]}),
        );
        assert_eq!(status_of(&p), ("1/2".into(), "NotReady".into(), "0".into()));
    }

    #[test]
    fn readiness_gates_count_true_conditions() {
        let p = pod(
            json!({"containers": [], "readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}]}),
            json!({"conditions": [{"type": "a", "status": "True"}, {"type": "b", "status": "False"}]}),
        );
        assert_eq!(PODS.row(&p, now()).cells[8], "1/2");
    }
}
