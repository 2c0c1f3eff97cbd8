//! The resource metrics API, `metrics.k8s.io/v1beta1`, over the whole cluster on the fake
//! runtime: PodMetrics and NodeMetrics from what the node agents report, get and list with
//! label selectors, discovery, 404s and 405s, and scripted usage that changes over time.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kybernetes::Cluster;
use kybernetes::core::Clock;
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::ContainerScript;
use serde_json::{Value, json};

use crate::common;
use common::{deployment, wait_available};

fn pod_metrics_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"),
        "pods",
    )
}

fn node_metrics_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "NodeMetrics"),
        "nodes",
    )
}

/// `(container name, cpu, memory)` of each container of a PodMetrics.
fn usage(m: &DynamicObject) -> Vec<(String, String, String)> {
    m.data["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |p: &str| {
                c.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            (s("/name"), s("/usage/cpu"), s("/usage/memory"))
        })
        .collect()
}

async fn start(fake: &FakeRuntime, clock: Clock, nodes: usize) -> Cluster {
    Cluster::builder()
        .clock(clock)
        .nodes(nodes)
        .runtime(fake.clone())
        .start()
        .await
        .expect("start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_and_node_metrics_report_scripted_usage_and_select_by_label() {
    let clock = Clock::new();
    let fake = FakeRuntime::new(clock.clone());
    fake.script_image(
        "busy:1",
        ContainerScript::new()
            .cpu_millicores(250)
            .memory_bytes(64 << 20),
    );
    let c = start(&fake, clock, 2).await;
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &deployment("web", 2, "busy:1"))
        .await
        .expect("web");
    deploys
        .create(&PostParams::default(), &deployment("other", 1, "nginx:1"))
        .await
        .expect("other");
    wait_available(&deploys, "web", 2, Duration::from_secs(60)).await;
    wait_available(&deploys, "other", 1, Duration::from_secs(60)).await;

    let pod_metrics: Api<DynamicObject> =
        Api::default_namespaced_with(c.client(), &pod_metrics_resource());
    let web = pod_metrics
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list web pod metrics");
    assert_eq!(web.items.len(), 2, "one PodMetrics per web pod");
    for m in &web.items {
        assert_eq!(usage(m), [("main".into(), "250m".into(), "64Mi".into())]);
        assert_eq!(m.metadata.labels.as_ref().expect("labels")["app"], "web");
        assert_eq!(m.data["window"], "15s");
        assert!(
            m.data["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }
    let all = pod_metrics
        .list(&ListParams::default())
        .await
        .expect("list");
    assert_eq!(all.items.len(), 3);
    let other = pod_metrics
        .list(&ListParams::default().labels("app in (other)"))
        .await
        .expect("set-based selector");
    assert_eq!(other.items.len(), 1);
    assert_eq!(usage(&other.items[0])[0].1, "10m", "the default fake usage");

    let name = web.items[0].metadata.name.clone().expect("name");
    let one = pod_metrics.get(&name).await.expect("get pod metrics");
    assert_eq!(
        one.types.as_ref().map(|t| t.kind.as_str()),
        Some("PodMetrics")
    );
    assert_eq!(usage(&one), usage(&web.items[0]));
    match pod_metrics.get("nope").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 404);
            assert_eq!(
                s.message,
                "podmetrics.metrics.k8s.io \"default/nope\" not found"
            );
        }
        other => panic!("expected 404, got {other:?}"),
    }
    let elsewhere: Api<DynamicObject> =
        Api::namespaced_with(c.client(), "kube-system", &pod_metrics_resource());
    assert!(
        elsewhere
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );

    let node_metrics: Api<DynamicObject> = Api::all_with(c.client(), &node_metrics_resource());
    let nodes = node_metrics
        .list(&ListParams::default())
        .await
        .expect("nodes");
    assert_eq!(nodes.items.len(), 2);
    let total_milli: i64 = nodes
        .items
        .iter()
        .map(|n| {
            let cpu = n.data["usage"]["cpu"].as_str().expect("cpu");
            kybernetes::core::quantity::parse_milli(cpu).expect("quantity") as i64
        })
        .sum();
    assert_eq!(total_milli, 250 + 250 + 10, "node usage sums its pods");
    let node1 = node_metrics.get("node-1").await.expect("node-1");
    assert_eq!(
        node1.types.as_ref().map(|t| t.kind.as_str()),
        Some("NodeMetrics")
    );
    let labelled = node_metrics
        .list(&ListParams::default().labels("kubernetes.io/hostname=node-2"))
        .await
        .expect("selected node");
    assert_eq!(labelled.items.len(), 1);
    assert_eq!(labelled.items[0].metadata.name.as_deref(), Some("node-2"));
    match node_metrics.get("node-9").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_discoverable_and_read_only() {
    let c = Cluster::builder().nodes(1).start().await.expect("start");
    let client = c.client();
    let groups: Value = client
        .request(
            http::Request::get("/apis")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("/apis");
    let metrics = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "metrics.k8s.io")
        .expect("metrics.k8s.io is served");
    assert_eq!(metrics["preferredVersion"]["version"], "v1beta1");
    let list: Value = client
        .request(
            http::Request::get("/apis/metrics.k8s.io/v1beta1")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("resource list");
    let resources = list["resources"].as_array().expect("resources");
    for (name, kind, namespaced) in [
        ("pods", "PodMetrics", true),
        ("nodes", "NodeMetrics", false),
    ] {
        let r = resources
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed"));
        assert_eq!(r["kind"], kind);
        assert_eq!(r["namespaced"], namespaced);
        assert_eq!(r["verbs"], json!(["get", "list"]));
    }

    let pod_metrics: Api<DynamicObject> =
        Api::default_namespaced_with(client.clone(), &pod_metrics_resource());
    let mut obj = DynamicObject::new("x", &pod_metrics_resource());
    obj.data = json!({"containers": []});
    match pod_metrics.create(&PostParams::default(), &obj).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (405, "MethodNotAllowed"))
        }
        other => panic!("expected 405, got {other:?}"),
    }
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn scripted_usage_follows_the_cluster_clock() {
    let clock = Clock::new();
    let fake = FakeRuntime::new(clock.clone());
    let drop_at = clock.now() + chrono::Duration::minutes(10);
    fake.script_image(
        "busy:1",
        ContainerScript::new()
            .cpu_millicores(800)
            .cpu_millicores_from(drop_at, 50)
            .usage_after(Duration::from_secs(120), 800, 128 << 20),
    );
    let c = start(&fake, clock.clone(), 1).await;
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &deployment("web", 1, "busy:1"))
        .await
        .expect("web");
    wait_available(&deploys, "web", 1, Duration::from_secs(60)).await;
    let pod_metrics: Api<DynamicObject> =
        Api::default_namespaced_with(c.client(), &pod_metrics_resource());
    let first = |items: Vec<DynamicObject>| usage(&items[0])[0].clone();
    let now = first(
        pod_metrics
            .list(&ListParams::default())
            .await
            .expect("list")
            .items,
    );
    assert_eq!((now.1.as_str(), now.2.as_str()), ("800m", "16Mi"));

    // Two minutes after its start the memory grows; at the drop time the CPU falls.
    tokio::time::sleep(Duration::from_secs(180)).await;
    let later = first(
        pod_metrics
            .list(&ListParams::default())
            .await
            .expect("list")
            .items,
    );
    assert_eq!((later.1.as_str(), later.2.as_str()), ("800m", "128Mi"));
    tokio::time::sleep(Duration::from_secs(8 * 60)).await;
    assert!(clock.now() >= drop_at);
    let dropped = first(
        pod_metrics
            .list(&ListParams::default())
            .await
            .expect("list")
            .items,
    );
    assert_eq!((dropped.1.as_str(), dropped.2.as_str()), ("50m", "128Mi"));
    c.shutdown().await.expect("shutdown");
}

/// Runs the real kubectl with `kubeconfig`, off the async runtime; fails if kubectl is missing
/// or the command fails.
async fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let (path, args): (std::path::PathBuf, Vec<String>) = (
        kubeconfig.into(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&path)
            .args(&args)
            .output()
            .expect("kubectl must be installed (it is at /usr/bin/kubectl on the machine image)");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .expect("kubectl task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_top_shows_pod_and_node_usage() {
    let clock = Clock::new();
    let fake = FakeRuntime::new(clock.clone());
    fake.script_image(
        "busy:1",
        ContainerScript::new()
            .cpu_millicores(250)
            .memory_bytes(64 << 20),
    );
    let c = Cluster::builder()
        .clock(clock)
        .nodes(2)
        .runtime(fake.clone())
        .serve("127.0.0.1:0".parse().expect("address"))
        .start()
        .await
        .expect("start");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    c.kubeconfig()
        .expect("serving")
        .write(&kubeconfig)
        .expect("write kubeconfig");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &deployment("web", 2, "busy:1"))
        .await
        .expect("web");
    wait_available(&deploys, "web", 2, Duration::from_secs(60)).await;

    let pods = kubectl(&kubeconfig, &["top", "pods", "-l", "app=web"]).await;
    let lines: Vec<&str> = pods.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("CPU(cores)"),
        "{pods}"
    );
    assert_eq!(lines.len(), 3, "{pods}");
    for line in &lines[1..] {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(cols[0].starts_with("web-"), "{pods}");
        assert_eq!(&cols[1..], ["250m", "64Mi"], "{pods}");
    }
    let containers = kubectl(&kubeconfig, &["top", "pods", "--containers"]).await;
    assert!(containers.contains("main"), "{containers}");

    let nodes = kubectl(&kubeconfig, &["top", "nodes"]).await;
    let lines: Vec<&str> = nodes.lines().collect();
    assert!(
        lines[0].contains("CPU(cores)") && lines[0].contains("MEMORY(%)"),
        "{nodes}"
    );
    assert_eq!(lines.len(), 3, "{nodes}");
    assert!(
        lines[1].starts_with("node-1") && lines[2].starts_with("node-2"),
        "{nodes}"
    );
    let total: u32 = lines[1..]
        .iter()
        .map(|l| {
            let cpu = l.split_whitespace().nth(1).expect("cpu column");
            cpu.trim_end_matches('m')
                .parse::<u32>()
                .expect("millicores")
        })
        .sum();
    assert_eq!(total, 500, "{nodes}");
    c.shutdown().await.expect("shutdown");
}
