//! Priority and preemption, and host ports, through the whole cluster: PriorityClasses resolved
//! by the Priority admission plugin, DefaultPreemption evicting lower-priority pods (sparing
//! budget-protected ones), `preemptionPolicy: Never`, and the NodePorts filter.

use crate::common;

use std::time::Duration;

use common::until;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, PostParams};
use kybernetes::Cluster;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn class(c: &Cluster, name: &str, value: i32, extra: Value) {
    let mut v = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                       "metadata": {"name": name}, "value": value});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let pc: PriorityClass = serde_json::from_value(v).expect("class");
    Api::<PriorityClass>::all(c.client())
        .create(&PostParams::default(), &pc)
        .await
        .expect("create class");
}

fn pod(name: &str, class: Option<&str>, cpu: &str, extra: Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": cpu}}}]});
    if let Some(class) = class {
        spec["priorityClassName"] = json!(class);
    }
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": name}}, "spec": spec}),
    )
    .expect("pod")
}

async fn running(pods: &Api<Pod>, name: &str) -> bool {
    pods.get_opt(name)
        .await
        .ok()
        .flatten()
        .is_some_and(|p| p.status.and_then(|s| s.phase).as_deref() == Some("Running"))
}

async fn wait_running(pods: &Api<Pod>, name: &str) {
    until(&format!("{name} running"), WAIT, || running(pods, name)).await;
}

async fn gone(pods: &Api<Pod>, name: &str) -> bool {
    matches!(pods.get_opt(name).await, Ok(None))
}

/// The message of the pod's `PodScheduled=False` condition, if any.
async fn unschedulable_message(pods: &Api<Pod>, name: &str) -> String {
    pods.get(name)
        .await
        .ok()
        .and_then(|p| p.status?.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .and_then(|c| c.message)
        .unwrap_or_default()
}

/// The message of the pod's `PodScheduled=False` condition, once it contains `part`.
async fn wait_unschedulable(pods: &Api<Pod>, name: &str, part: &str) -> String {
    until(
        &format!("{name} unschedulable with {part:?}"),
        WAIT,
        || async { unschedulable_message(pods, name).await.contains(part) },
    )
    .await;
    unschedulable_message(pods, name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_priority_classes_exist_and_pods_get_their_class_priority() {
    let c = Cluster::builder().nodes(1).start().await.expect("start");
    let classes: Api<PriorityClass> = Api::all(c.client());
    let critical = classes.get("system-node-critical").await.expect("built-in");
    assert_eq!(critical.value, 2_000_001_000);
    assert_eq!(
        classes
            .get("system-cluster-critical")
            .await
            .expect("built-in")
            .value,
        2_000_000_000
    );
    class(&c, "batch", 100, json!({"preemptionPolicy": "Never"})).await;
    class(&c, "everyday", 7, json!({"globalDefault": true})).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let created = pods
        .create(
            &PostParams::default(),
            &pod("job", Some("batch"), "10m", json!({})),
        )
        .await
        .expect("create");
    let spec = created.spec.expect("spec");
    assert_eq!(spec.priority, Some(100));
    assert_eq!(spec.preemption_policy.as_deref(), Some("Never"));
    let plain = pods
        .create(
            &PostParams::default(),
            &pod("plain", None, "10m", json!({})),
        )
        .await
        .expect("create")
        .spec
        .expect("spec");
    assert_eq!(
        (plain.priority, plain.priority_class_name.as_deref()),
        (Some(7), Some("everyday"))
    );

    // A second default, a reserved name and a priority that disagrees are refused.
    let second: PriorityClass = serde_json::from_value(
        json!({"metadata": {"name": "other"}, "value": 1, "globalDefault": true}),
    )
    .expect("class");
    let err = classes
        .create(&PostParams::default(), &second)
        .await
        .expect_err("second default");
    assert!(
        err.to_string()
            .contains("PriorityClass everyday is marked as default. Only one default can exist"),
        "{err}"
    );
    let reserved: PriorityClass =
        serde_json::from_value(json!({"metadata": {"name": "system-mine"}, "value": 1}))
            .expect("class");
    let err = classes
        .create(&PostParams::default(), &reserved)
        .await
        .expect_err("reserved");
    assert!(
        err.to_string().contains("reserved for system use only"),
        "{err}"
    );
    let err = pods
        .create(
            &PostParams::default(),
            &pod("liar", Some("batch"), "10m", json!({"priority": 5})),
        )
        .await
        .expect_err("priority disagrees");
    assert!(
        err.to_string().contains("the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 100 from the given PriorityClass name"),
        "{err}"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_priority_class_is_refused() {
    let c = Cluster::builder().nodes(1).start().await.expect("start");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let err = pods
        .create(
            &PostParams::default(),
            &pod("p", Some("nope"), "10m", json!({})),
        )
        .await
        .expect_err("unknown class");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                "pods \"p\" is forbidden: no PriorityClass with name nope was found"
            );
        }
        other => panic!("expected a Status, got {other}"),
    }
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_a_lower_one_and_runs_on_its_node() {
    let c = Cluster::builder().nodes(1).start().await.expect("start");
    class(&c, "low", 10, json!({})).await;
    class(&c, "high", 1000, json!({})).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    for name in ["low-a", "low-b"] {
        pods.create(
            &PostParams::default(),
            &pod(name, Some("low"), "1500m", json!({})),
        )
        .await
        .expect("create");
        wait_running(&pods, name).await;
    }
    // 4 CPUs, 3 requested: the 2-CPU pod fits only once one low pod is gone.
    pods.create(
        &PostParams::default(),
        &pod("urgent", Some("high"), "2", json!({})),
    )
    .await
    .expect("create");
    until("urgent nominated to node-0", WAIT, || {
        let pods = pods.clone();
        async move {
            pods.get("urgent")
                .await
                .ok()
                .and_then(|p| p.status?.nominated_node_name)
                .is_some()
        }
    })
    .await;
    wait_running(&pods, "urgent").await;
    let a_gone = gone(&pods, "low-a").await;
    let b_gone = gone(&pods, "low-b").await;
    assert!(
        a_gone ^ b_gone,
        "exactly one victim (a gone: {a_gone}, b gone: {b_gone})"
    );
    let node = pods
        .get("urgent")
        .await
        .expect("urgent")
        .spec
        .and_then(|s| s.node_name);
    assert!(node.is_some());
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_protected_pod_is_not_preempted_while_another_victim_will_do() {
    let c = Cluster::builder().nodes(2).start().await.expect("start");
    class(&c, "lowest", 1, json!({})).await;
    class(&c, "low", 10, json!({})).await;
    class(&c, "high", 1000, json!({})).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let nodes: Vec<String> = c.node_names();
    // `guarded` has the lowest priority, so without its budget it would be the victim.
    pods.create(
        &PostParams::default(),
        &pod(
            "guarded",
            Some("lowest"),
            "3",
            json!({"nodeName": nodes[0]}),
        ),
    )
    .await
    .expect("create");
    pods.create(
        &PostParams::default(),
        &pod("free", Some("low"), "3", json!({"nodeName": nodes[1]})),
    )
    .await
    .expect("create");
    wait_running(&pods, "guarded").await;
    wait_running(&pods, "free").await;
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "guard"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
    }))
    .expect("pdb");
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(c.client());
    pdbs.create(&PostParams::default(), &pdb)
        .await
        .expect("pdb");
    // Wait for the disruption controller itself to count the guarded pod.
    until("the budget counts the guarded pod", WAIT, || {
        let pdbs = pdbs.clone();
        async move {
            pdbs.get("guard")
                .await
                .ok()
                .and_then(|p| p.status)
                .is_some_and(|s| s.current_healthy == 1 && s.disruptions_allowed == 0)
        }
    })
    .await;
    pods.create(
        &PostParams::default(),
        &pod("urgent", Some("high"), "2", json!({})),
    )
    .await
    .expect("create");
    wait_running(&pods, "urgent").await;
    let urgent = pods.get("urgent").await.expect("urgent");
    assert_eq!(
        urgent.spec.and_then(|s| s.node_name).as_deref(),
        Some(nodes[1].as_str())
    );
    assert!(
        gone(&pods, "free").await,
        "the unprotected pod was the victim"
    );
    assert!(running(&pods, "guarded").await, "the protected pod stays");
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_may_not_preempt_stays_pending() {
    let c = Cluster::builder().nodes(1).start().await.expect("start");
    class(&c, "low", 10, json!({})).await;
    class(&c, "polite", 1000, json!({"preemptionPolicy": "Never"})).await;
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    pods.create(
        &PostParams::default(),
        &pod("low", Some("low"), "3", json!({})),
    )
    .await
    .expect("create");
    wait_running(&pods, "low").await;
    pods.create(
        &PostParams::default(),
        &pod("polite", Some("polite"), "2", json!({})),
    )
    .await
    .expect("create");
    let message = wait_unschedulable(&pods, "polite", "preemption").await;
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.."
    );
    assert!(running(&pods, "low").await);
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_host_port_keeps_a_second_pod_off_the_node() {
    let c = Cluster::builder().nodes(1).start().await.expect("start");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let ports = json!({"containers": [{"name": "c", "image": "busybox",
        "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    pods.create(
        &PostParams::default(),
        &pod("first", None, "10m", ports.clone()),
    )
    .await
    .expect("create");
    wait_running(&pods, "first").await;
    pods.create(&PostParams::default(), &pod("second", None, "10m", ports))
        .await
        .expect("create");
    let message = wait_unschedulable(&pods, "second", "free ports").await;
    assert!(
        message.starts_with(
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
        ),
        "{message}"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_tables_list_priority_classes() {
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    let req = http::Request::get("/apis/scheduling.k8s.io/v1/priorityclasses")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .expect("request");
    let resp = c
        .client()
        .send(req.map(kube::client::Body::from))
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let table: Value = serde_json::from_slice(&body).expect("table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
    );
    let rows: Vec<(String, i64)> = table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["cells"][0].as_str().unwrap_or_default().to_string(),
                r["cells"][1].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert!(rows.contains(&("system-node-critical".to_string(), 2_000_001_000)));
    assert!(rows.contains(&("system-cluster-critical".to_string(), 2_000_000_000)));
    c.shutdown().await.expect("shutdown");
}
