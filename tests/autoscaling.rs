//! HorizontalPodAutoscalers end to end on the fake runtime: the API served at autoscaling/v2
//! and autoscaling/v1 with upstream's conversion, defaults and 422s; the controller scaling a
//! Deployment whose scripted CPU is at 200% of its request up by its policy and back down
//! only after the 300 s stabilization window (paused clock); and the real kubectl's
//! `autoscale` and `get hpa`.

use crate::common;

use std::time::Duration;

use common::{until, wait_available};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kybernetes::Cluster;
use kybernetes::core::Clock;
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::ContainerScript;
use serde_json::{Value, json};

/// A Deployment of one pod running `image` that requests 100m CPU.
fn web(image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "main", "image": image,
                                  "resources": {"requests": {"cpu": "100m"}}}]}}}
    }))
    .expect("deployment")
}

/// An autoscaling/v2 autoscaler of Deployment `web` at 50% CPU.
fn hpa(min: i32, max: i32, behavior: Value) -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": min, "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
            "behavior": behavior,
        }
    }))
    .expect("hpa")
}

fn v1_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("autoscaling", "v1", "HorizontalPodAutoscaler"),
        "horizontalpodautoscalers",
    )
}

async fn spec_replicas(deploys: &Api<Deployment>) -> i32 {
    deploys
        .get("web")
        .await
        .ok()
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas)
        .unwrap_or(-1)
}

/// The messages of the autoscaler's `SuccessfulRescale` events.
async fn rescales(c: &Cluster) -> Vec<String> {
    let events: Api<Event> = Api::default_namespaced(c.client());
    let mut list: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("SuccessfulRescale"))
        .collect();
    list.sort_by_key(|e| {
        e.metadata
            .resource_version
            .as_ref()
            .and_then(|rv| rv.parse::<u64>().ok())
    });
    list.into_iter().filter_map(|e| e.message).collect()
}

fn condition<'a>(h: &'a HorizontalPodAutoscaler, type_: &str) -> Option<(&'a str, &'a str)> {
    let c = h
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.as_str(), c.reason.as_deref().unwrap_or("")))
}

#[tokio::test(start_paused = true)]
async fn cpu_at_200_percent_scales_up_by_the_policy_and_down_after_the_stabilization_window() {
    let clock = Clock::new();
    let fake = FakeRuntime::new(clock.clone());
    let drop_at = clock.now() + chrono::Duration::minutes(10);
    fake.script_image(
        "busy:1",
        ContainerScript::new()
            .cpu_millicores(200)
            .cpu_millicores_from(drop_at, 10),
    );
    let c = Cluster::builder()
        .clock(clock.clone())
        .nodes(2)
        .runtime(fake.clone())
        .start()
        .await
        .expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &web("busy:1"))
        .await
        .expect("web");
    wait_available(&deploys, "web", 1, Duration::from_secs(60)).await;
    // Past one metrics window after the pod became ready, its CPU counts.
    tokio::time::sleep(Duration::from_secs(30)).await;

    // At most 2 more pods per 15 s; scale-down keeps the controller's 300 s window.
    let behavior =
        json!({"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}]}});
    let hpas: Api<HorizontalPodAutoscaler> = Api::default_namespaced(c.client());
    let created = hpas
        .create(&PostParams::default(), &hpa(1, 10, behavior))
        .await
        .expect("hpa");
    let scale_up = created
        .spec
        .as_ref()
        .and_then(|s| s.behavior.as_ref())
        .and_then(|b| b.scale_up.as_ref())
        .expect("scaleUp");
    assert_eq!(scale_up.select_policy.as_deref(), Some("Max"), "defaulted");
    assert_eq!(scale_up.stabilization_window_seconds, Some(0));

    // Follow the count second by second until it reaches maxReplicas.
    let start = clock.now();
    let mut steps = vec![(start, 1)];
    while steps.last().map(|s| s.1) != Some(10) {
        assert!(
            clock.now() - start < chrono::Duration::minutes(5),
            "scale-up stalled at {steps:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = spec_replicas(&deploys).await;
        if steps.last().map(|s| s.1) != Some(n) {
            steps.push((clock.now(), n));
        }
    }
    assert!(
        clock.now() < drop_at,
        "reached 10 before the CPU drop: {steps:?}"
    );
    for pair in steps.windows(2) {
        let ((t0, n0), (t1, n1)) = (pair[0], pair[1]);
        assert!(
            n1 > n0 && n1 - n0 <= 2,
            "each step adds at most 2 pods: {steps:?}"
        );
        if pair[0].1 != 1 {
            assert!(
                (t1 - t0).num_seconds() >= 14,
                "one step per 15 s period: {steps:?}"
            );
        }
    }
    assert!(steps.len() >= 6, "1 → 10 in steps of at most 2: {steps:?}");
    let messages = rescales(&c).await;
    assert_eq!(
        messages.first().map(String::as_str),
        Some("New size: 3; reason: cpu resource utilization (percentage of request) above target"),
        "{messages:?}"
    );
    // The sync that wrote 10 reported the 9 it found; the next one sees the 10.
    until(
        "status reports 10 replicas",
        Duration::from_secs(60),
        || {
            let hpas = hpas.clone();
            async move {
                let h = hpas.get("web").await.expect("hpa");
                h.status.and_then(|s| s.current_replicas) == Some(10)
            }
        },
    )
    .await;
    let h = hpas.get("web").await.expect("hpa");
    let status = h.status.clone().expect("status");
    let current = status
        .current_metrics
        .as_ref()
        .and_then(|m| m.first())
        .and_then(|m| m.resource.as_ref())
        .expect("cpu");
    assert_eq!(current.current.average_utilization, Some(200), "{status:?}");
    assert_eq!(
        condition(&h, "ScalingActive"),
        Some(("True", "ValidMetricFound"))
    );
    assert_eq!(condition(&h, "AbleToScale").map(|c| c.0), Some("True"));
    assert!(status.last_scale_time.is_some());
    assert_eq!(status.observed_generation, h.metadata.generation);
    until(
        "the maximum is reported as the limit",
        Duration::from_secs(60),
        || {
            let hpas = hpas.clone();
            async move {
                let h = hpas.get("web").await.expect("hpa");
                condition(&h, "ScalingLimited") == Some(("True", "TooManyReplicas"))
            }
        },
    )
    .await;

    // The CPU drops to 10% of the request; the count falls only once the 300 s of high
    // recommendations have left the window.
    let wait = (drop_at - clock.now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    while spec_replicas(&deploys).await == 10 {
        assert!(
            clock.now() - drop_at < chrono::Duration::minutes(8),
            "never scaled down"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let waited = (clock.now() - drop_at).num_seconds();
    assert!(
        (285..=330).contains(&waited),
        "scaled down {waited} s after the drop"
    );
    until("back at minReplicas", Duration::from_secs(600), || {
        let deploys = deploys.clone();
        async move { spec_replicas(&deploys).await == 1 }
    })
    .await;
    let messages = rescales(&c).await;
    assert!(
        messages
            .iter()
            .any(|m| m.ends_with("reason: All metrics below target")),
        "{messages:?}"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_versions_are_served_by_conversion_and_bad_bounds_get_422() {
    let c = Cluster::builder().nodes(1).start().await.expect("start");
    let hpas: Api<HorizontalPodAutoscaler> = Api::default_namespaced(c.client());
    let v1: Api<DynamicObject> = Api::default_namespaced_with(c.client(), &v1_resource());

    // Written at v2 with a memory metric too, read at v1.
    let mut h = hpa(2, 5, Value::Null);
    if let Some(m) = h.spec.as_mut().and_then(|s| s.metrics.as_mut()) {
        m.push(serde_json::from_value(json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}})).expect("metric"));
    }
    hpas.create(&PostParams::default(), &h)
        .await
        .expect("create v2");
    let as_v1 = v1.get("web").await.expect("get v1");
    assert_eq!(as_v1.data["spec"]["targetCPUUtilizationPercentage"], 50);
    assert_eq!(as_v1.data["spec"]["minReplicas"], 2);
    let others = as_v1
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("autoscaling.alpha.kubernetes.io/metrics"))
        .expect("other metrics annotation");
    assert!(others.contains("100Mi"), "{others}");

    // Written at v1, read at v2: the CPU target becomes a metric, minReplicas defaults to 1.
    let mut obj = DynamicObject::new("legacy", &v1_resource());
    obj.data = json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "db"}, "maxReplicas": 4, "targetCPUUtilizationPercentage": 70}});
    v1.create(&PostParams::default(), &obj)
        .await
        .expect("create v1");
    let legacy = hpas.get("legacy").await.expect("get v2");
    let spec = legacy.spec.expect("spec");
    assert_eq!(spec.min_replicas, Some(1));
    let metric = spec
        .metrics
        .as_ref()
        .and_then(|m| m.first())
        .and_then(|m| m.resource.as_ref())
        .expect("cpu");
    assert_eq!(
        (metric.name.as_str(), metric.target.average_utilization),
        ("cpu", Some(70))
    );
    // A v1 update keeps the v2-only fields that travel in the annotation.
    let mut round = v1.get("web").await.expect("get v1");
    round.data["spec"]["maxReplicas"] = json!(6);
    // The controller writes this autoscaler's status meanwhile (its target is missing), so
    // the update does not carry the resourceVersion it read.
    round.metadata.resource_version = None;
    v1.replace("web", &PostParams::default(), &round)
        .await
        .expect("replace v1");
    let back = hpas.get("web").await.expect("get v2").spec.expect("spec");
    assert_eq!(back.max_replicas, 6);
    assert_eq!(
        back.metrics.map(|m| m.len()),
        Some(2),
        "the memory metric survived"
    );

    // minReplicas above maxReplicas: upstream's 422 on spec.maxReplicas.
    let mut bad = hpa(5, 2, Value::Null);
    bad.metadata.name = Some("bad".into());
    match hpas.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            let causes = s.details.expect("details").causes;
            assert_eq!(causes.len(), 1, "{causes:?}");
            assert_eq!(causes[0].field, "spec.maxReplicas");
            assert_eq!(
                causes[0].message,
                "Invalid value: 2: must be greater than or equal to `minReplicas`"
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    let mut no_target = hpa(1, 2, Value::Null);
    no_target.metadata.name = Some("bad".into());
    if let Some(s) = no_target.spec.as_mut() {
        s.scale_target_ref.name = String::new();
        if let Some(r) = s.metrics.as_mut().and_then(|m| m[0].resource.as_mut()) {
            r.target.average_utilization = Some(0);
        }
    }
    match hpas.create(&PostParams::default(), &no_target).await {
        Err(kube::Error::Api(s)) => {
            let fields: Vec<String> = s
                .details
                .expect("details")
                .causes
                .into_iter()
                .map(|c| c.field)
                .collect();
            assert_eq!(
                fields,
                [
                    "spec.scaleTargetRef.name",
                    "spec.metrics[0].resource.target.averageUtilization"
                ]
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    assert!(
        matches!(hpas.get("bad").await, Err(kube::Error::Api(s)) if s.code == 404),
        "nothing stored"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserved_metric_types_leave_scaling_inactive_with_upstreams_reason() {
    let c = Cluster::builder().nodes(1).start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &web("nginx:1"))
        .await
        .expect("web");
    wait_available(&deploys, "web", 1, Duration::from_secs(60)).await;
    let mut h = hpa(1, 3, Value::Null);
    if let Some(s) = h.spec.as_mut() {
        s.metrics = Some(vec![serde_json::from_value(json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}})).expect("metric")]);
    }
    let hpas: Api<HorizontalPodAutoscaler> = Api::default_namespaced(c.client());
    hpas.create(&PostParams::default(), &h).await.expect("hpa");
    until("ScalingActive False", Duration::from_secs(30), || {
        let hpas = hpas.clone();
        async move {
            let h = hpas.get("web").await.expect("hpa");
            condition(&h, "ScalingActive") == Some(("False", "FailedGetPodsMetric"))
                && condition(&h, "AbleToScale") == Some(("True", "SucceededGetScale"))
        }
    })
    .await;
    assert_eq!(spec_replicas(&deploys).await, 1);
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
async fn kubectl_autoscale_creates_an_autoscaler_that_get_hpa_prints() {
    let c = Cluster::builder()
        .nodes(1)
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
        .create(&PostParams::default(), &web("nginx:1"))
        .await
        .expect("web");

    let out = kubectl(
        &kubeconfig,
        &[
            "autoscale",
            "deployment",
            "web",
            "--cpu-percent=50",
            "--min=1",
            "--max=10",
        ],
    )
    .await;
    assert_eq!(
        out.trim(),
        "horizontalpodautoscaler.autoscaling/web autoscaled"
    );
    let hpas: Api<HorizontalPodAutoscaler> = Api::default_namespaced(c.client());
    let h = hpas.get("web").await.expect("created");
    let spec = h.spec.clone().expect("spec");
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(1), 10));
    assert_eq!(spec.scale_target_ref.kind, "Deployment");
    let manager = h
        .metadata
        .managed_fields
        .as_ref()
        .and_then(|m| m.first())
        .expect("managed fields");
    assert_eq!(
        manager.api_version.as_deref(),
        Some("autoscaling/v2"),
        "kubectl 1.32 posts v2"
    );

    until("the first sync's status", Duration::from_secs(30), || {
        let hpas = hpas.clone();
        async move {
            let h = hpas.get("web").await.expect("hpa");
            h.status.and_then(|s| s.current_replicas) == Some(1)
        }
    })
    .await;
    let table = kubectl(&kubeconfig, &["get", "hpa"]).await;
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ],
        "{table}"
    );
    assert!(
        lines[1].starts_with("web ") && lines[1].contains("Deployment/web"),
        "{table}"
    );
    assert!(
        lines[1].contains("cpu: ") && lines[1].contains("/50%"),
        "{table}"
    );
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    let n = cols.len();
    assert_eq!(&cols[n - 4..n - 1], ["1", "10", "1"], "{table}");
    let v1 = kubectl(
        &kubeconfig,
        &[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "web",
            "-o",
            "jsonpath={.spec.targetCPUUtilizationPercentage}",
        ],
    )
    .await;
    assert_eq!(v1, "50");
    c.shutdown().await.expect("shutdown");
}

/// Two autoscalers whose targets select the same pods would fight over them: upstream stops
/// both, with `ScalingActive=False` reason `AmbiguousSelector`, and the deployment keeps its
/// replicas.
#[tokio::test(start_paused = true)]
async fn two_autoscalers_of_the_same_pods_both_stop_with_ambiguous_selector() {
    let c = Cluster::builder().nodes(1).start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &web("nginx:1"))
        .await
        .expect("web");
    wait_available(&deploys, "web", 1, Duration::from_secs(60)).await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::default_namespaced(c.client());
    hpas.create(&PostParams::default(), &hpa(1, 3, Value::Null))
        .await
        .expect("hpa web");
    let mut twin = hpa(1, 3, Value::Null);
    twin.metadata.name = Some("web-twin".into());
    hpas.create(&PostParams::default(), &twin)
        .await
        .expect("hpa web-twin");
    for name in ["web", "web-twin"] {
        until(
            &format!("{name}: ScalingActive False AmbiguousSelector"),
            Duration::from_secs(300),
            || {
                let hpas = hpas.clone();
                async move {
                    let h = hpas.get(name).await.expect("hpa");
                    condition(&h, "ScalingActive") == Some(("False", "AmbiguousSelector"))
                }
            },
        )
        .await;
    }
    let h = hpas.get("web-twin").await.expect("hpa");
    let message = h
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "ScalingActive"))
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert_eq!(
        message,
        "pods by selector app=web are controlled by multiple HPAs: [default/web-twin default/web]"
    );
    assert_eq!(spec_replicas(&deploys).await, 1);
    c.shutdown().await.expect("shutdown");
}
