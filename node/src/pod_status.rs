//! The pod status, as upstream's `generateAPIPodStatus`: container statuses from the runtime
//! (with waiting reasons from the last sync), the phase (`getPhase`), and the conditions
//! PodReadyToStartContainers, Initialized, Ready, ContainersReady and PodScheduled.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kybernetes_runtime::{ContainerState, ContainerStatus};

use crate::convert::time;
use crate::pod_worker::{PodWorker, Waiting};
use crate::sync_pod::{History, is_terminal_phase, restart_policy};

fn terminated(c: &ContainerStatus, runtime: &str) -> Option<ApiState> {
    match &c.state {
        ContainerState::Exited {
            exit_code,
            reason,
            message,
            started_at,
            finished_at,
        } => Some(ApiState {
            terminated: Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(reason.clone()).filter(|r| !r.is_empty()),
                message: Some(message.clone()).filter(|m| !m.is_empty()),
                started_at: started_at.map(time),
                finished_at: Some(time(*finished_at)),
                container_id: Some(format!("{runtime}://{}", c.id)),
                signal: None,
            }),
            ..Default::default()
        }),
        _ => None,
    }
}

fn waiting(reason: &str, message: &str) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: Some(message.to_string()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    }
}

fn is_success(state: &Option<ApiState>) -> bool {
    state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0)
}

fn terminated_code(state: &Option<ApiState>) -> Option<i32> {
    state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code)
}

/// Whether a container that exited with `exit_code` is started again under `policy`.
fn restarts_after(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Counts for `getPhase`.
#[derive(Default)]
struct Tally {
    running: usize,
    waiting: usize,
    stopped: usize,
    succeeded: usize,
}

impl Tally {
    fn of(statuses: &[ApiStatus]) -> Tally {
        let mut t = Tally::default();
        for s in statuses {
            let state = s.state.as_ref();
            if state.and_then(|s| s.running.as_ref()).is_some() {
                t.running += 1;
            } else if let Some(code) = terminated_code(&s.state) {
                t.stopped += 1;
                t.succeeded += usize::from(code == 0);
            } else if let Some(code) = terminated_code(&s.last_state) {
                t.stopped += 1;
                t.succeeded += usize::from(code == 0);
            } else {
                t.waiting += 1;
            }
        }
        t
    }
}

/// Upstream's `getPhase`, plus the terminal phase of a pod being deleted.
fn phase(pod: &Pod, init: &[ApiStatus], app: &[ApiStatus], terminating: bool) -> &'static str {
    let mut pending_init = 0;
    let mut failed_init = 0;
    for s in init {
        if is_success(&s.state) {
            continue;
        }
        match terminated_code(&s.state).or_else(|| terminated_code(&s.last_state)) {
            Some(code)
                if code != 0
                    && s.state
                        .as_ref()
                        .and_then(|st| st.running.as_ref())
                        .is_none() =>
            {
                failed_init += 1
            }
            _ => pending_init += 1,
        }
    }
    let policy = restart_policy(pod);
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    let t = Tally::of(app);
    if terminating && t.running == 0 && t.waiting == 0 {
        return if t.stopped == t.succeeded && t.stopped > 0 {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    if pending_init > 0 || failed_init > 0 || t.waiting > 0 {
        return "Pending";
    }
    if t.running > 0 {
        return "Running";
    }
    if t.stopped > 0 {
        return match policy {
            "Always" => "Running",
            _ if t.stopped == t.succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.map(str::to_string),
        message,
        ..Default::default()
    }
}

impl PodWorker {
    /// The status of one container from its runtime history.
    fn container_status(
        &self,
        spec: &Container,
        history: &[ContainerStatus],
        waiting_reason: Option<&Waiting>,
        initialized: bool,
        is_init: bool,
    ) -> ApiStatus {
        let runtime = self.ctx.runtime_name.as_str();
        let latest = history.first();
        let previous = history.get(1);
        let mut state: Option<ApiState>;
        let mut last_state = previous
            .and_then(|p| terminated(p, runtime))
            .unwrap_or_default();
        let mut ready = false;
        let mut started = false;
        match latest.map(|c| &c.state) {
            None | Some(ContainerState::Created) | Some(ContainerState::Unknown) => {
                let reason = if is_init || initialized {
                    "ContainerCreating"
                } else {
                    "PodInitializing"
                };
                state = Some(waiting(reason, ""));
            }
            Some(ContainerState::Running { started_at }) => {
                state = Some(ApiState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(time(*started_at)),
                    }),
                    ..Default::default()
                });
                if let Some(c) = latest {
                    started = self.probes.started(spec, &c.id);
                    ready = self.probes.ready(spec, &c.id);
                }
            }
            Some(ContainerState::Exited { exit_code, .. }) => {
                state = latest.and_then(|c| terminated(c, runtime));
                ready = is_init && *exit_code == 0;
            }
        }
        // What the last sync failed at shows only on a container that starts again, as
        // upstream's `ShouldContainerBeRestarted` decides: one that will not (a StartError
        // under `restartPolicy: Never`) stays terminated.
        let restarts = terminated_code(&state)
            .is_none_or(|code| restarts_after(restart_policy(&self.pod), code));
        if let Some(w) = waiting_reason.filter(|_| restarts) {
            if let Some(t) = state.as_ref().filter(|s| s.terminated.is_some()) {
                last_state = t.clone();
            }
            state = Some(waiting(&w.reason, &w.message));
            ready = false;
            started = false;
        }
        ApiStatus {
            name: spec.name.clone(),
            image: spec.image.clone().unwrap_or_default(),
            image_id: latest.map(|c| c.image_ref.clone()).unwrap_or_default(),
            container_id: latest.map(|c| format!("{runtime}://{}", c.id)),
            restart_count: latest.map(|c| c.metadata.attempt as i32).unwrap_or(0),
            ready,
            started: Some(started),
            state,
            last_state: Some(last_state),
            ..Default::default()
        }
    }

    /// The pod's status from the runtime `history` and what the last sync found.
    pub(crate) fn generate_status(&self, history: &History, terminating: bool) -> PodStatus {
        let old = self.pod.status.clone().unwrap_or_default();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let empty = Vec::new();
        let hist = |name: &str| history.get(name).unwrap_or(&empty).as_slice();

        let mut init_statuses = Vec::new();
        let mut initialized = true;
        let mut incomplete_init = Vec::new();
        for c in spec.init_containers.iter().flatten() {
            let s = self.container_status(c, hist(&c.name), self.waiting.get(&c.name), false, true);
            if !is_success(&s.state) {
                initialized = false;
                incomplete_init.push(c.name.clone());
            }
            init_statuses.push(s);
        }
        let statuses: Vec<ApiStatus> = spec
            .containers
            .iter()
            .map(|c| {
                self.container_status(
                    c,
                    hist(&c.name),
                    self.waiting.get(&c.name),
                    initialized,
                    false,
                )
            })
            .collect();

        let old_phase = old.phase.as_deref();
        let phase = if is_terminal_phase(old_phase) {
            old_phase.unwrap_or("Failed").to_string()
        } else {
            phase(&self.pod, &init_statuses, &statuses, terminating).to_string()
        };
        let completed = phase == "Succeeded";
        let unready: Vec<String> = statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name.clone())
            .collect();
        let names = |v: &[String]| format!("[{}]", v.join(" "));

        let sandbox_ready = self.sandbox.is_some() && !terminating;
        let mut conditions = vec![
            condition("PodReadyToStartContainers", sandbox_ready, None, None),
            if initialized && completed && !init_statuses.is_empty() {
                condition("Initialized", true, Some("PodCompleted"), None)
            } else if initialized {
                condition("Initialized", true, None, None)
            } else {
                condition(
                    "Initialized",
                    false,
                    Some("ContainersNotInitialized"),
                    Some(format!(
                        "containers with incomplete status: {}",
                        names(&incomplete_init)
                    )),
                )
            },
        ];
        let containers_ready = if completed {
            condition("ContainersReady", false, Some("PodCompleted"), None)
        } else if !unready.is_empty() {
            condition(
                "ContainersReady",
                false,
                Some("ContainersNotReady"),
                Some(format!(
                    "containers with unready status: {}",
                    names(&unready)
                )),
            )
        } else {
            condition("ContainersReady", true, None, None)
        };
        let ready = match (
            containers_ready.status.as_str(),
            self.unmet_readiness_gates(&old),
        ) {
            ("True", Some(message)) => condition(
                "Ready",
                false,
                Some("ReadinessGatesNotReady"),
                Some(message),
            ),
            _ => PodCondition {
                type_: "Ready".into(),
                ..containers_ready.clone()
            },
        };
        conditions.push(ready);
        conditions.push(containers_ready);
        let managed = [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
        ];
        let mut others: Vec<PodCondition> = old
            .conditions
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !managed.contains(&c.type_.as_str()))
            .collect();
        if !others.iter().any(|c| c.type_ == "PodScheduled") {
            others.push(condition("PodScheduled", true, None, None));
        }
        conditions.extend(others);
        let now = time(self.ctx.now());
        for c in &mut conditions {
            let before = old.conditions.iter().flatten().find(|o| o.type_ == c.type_);
            c.last_transition_time = match before {
                Some(b) if b.status == c.status => b.last_transition_time.clone(),
                _ => c.last_transition_time.clone(),
            }
            .or_else(|| Some(now.clone()));
        }

        let pod_ip = self
            .sandbox
            .as_ref()
            .map(|s| s.ip.to_string())
            .or_else(|| old.pod_ip.clone());
        let host_ip = self.ctx.node_ip.to_string();
        let start_time: Option<Time> = old.start_time.clone().or_else(|| Some(now.clone()));
        PodStatus {
            phase: Some(phase),
            conditions: Some(conditions),
            host_ip: Some(host_ip.clone()),
            host_ips: Some(vec![HostIP { ip: host_ip }]),
            pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
            pod_ip,
            start_time,
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            container_statuses: Some(statuses),
            ..old
        }
    }

    /// If a readiness gate is unmet, why (upstream's message).
    fn unmet_readiness_gates(&self, old: &PodStatus) -> Option<String> {
        let gates = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.clone())
            .unwrap_or_default();
        let by_type: HashMap<&str, &PodCondition> = old
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c))
            .collect();
        let mut messages = Vec::new();
        for g in &gates {
            match by_type.get(g.condition_type.as_str()) {
                None => messages.push(format!(
                    "corresponding condition of pod readiness gate \"{}\" does not exist.",
                    g.condition_type
                )),
                Some(c) if c.status != "True" => messages.push(format!(
                    "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                    g.condition_type, c.status
                )),
                _ => {}
            }
        }
        (!messages.is_empty()).then(|| messages.join(", "))
    }
}
