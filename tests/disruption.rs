//! PodDisruptionBudgets through the whole cluster on the fake runtime: the status the
//! disruption controller computes, `pods/eviction` spending and refusing the budget, a drain
//! loop (evict, retry on 429), and upstream's 422s for bad budgets.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kybernetes::Cluster;
use serde_json::{Value, json};

use crate::common;
use common::{deployment, until, wait_available};

fn budget(name: &str, app: &str, spec: Value) -> PodDisruptionBudget {
    let mut s = json!({"selector": {"matchLabels": {"app": app}}});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": s})).expect("pdb")
}

/// Waits until the budget's status satisfies `check`; returns it.
async fn status_where(
    pdbs: &Api<PodDisruptionBudget>,
    name: &str,
    what: &str,
    check: impl Fn(&PodDisruptionBudget) -> bool + Clone,
) -> PodDisruptionBudget {
    until(what, Duration::from_secs(60), || {
        let (pdbs, check) = (pdbs.clone(), check.clone());
        async move { pdbs.get(name).await.is_ok_and(|p| check(&p)) }
    })
    .await;
    pdbs.get(name).await.expect("pdb")
}

fn allowed(p: &PodDisruptionBudget) -> i32 {
    p.status.as_ref().map_or(-1, |s| s.disruptions_allowed)
}

fn condition(p: &PodDisruptionBudget) -> Option<(String, String)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "DisruptionAllowed")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn running_pods(pods: &Api<Pod>, app: &str) -> Vec<String> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect()
}

fn is_budget_violation(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 429
        && s.message == "Cannot evict pod as it would violate the pod's disruption budget.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_status_counts_a_deployment_with_min_available_and_max_unavailable() {
    let c = Cluster::builder().nodes(2).start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &deployment("web", 3, "nginx:1"))
        .await
        .expect("deployment");
    wait_available(&deploys, "web", 3, Duration::from_secs(60)).await;

    let created = pdbs
        .create(
            &PostParams::default(),
            &budget("web-min", "web", json!({"minAvailable": 2})),
        )
        .await
        .expect("create");
    assert_eq!(allowed(&created), 0, "a new budget allows nothing yet");
    let p = status_where(&pdbs, "web-min", "minAvailable 2 to allow 1", |p| {
        allowed(p) == 1
    })
    .await;
    let s = p.status.clone().expect("status");
    assert_eq!(
        (s.current_healthy, s.desired_healthy, s.expected_pods),
        (3, 2, 3)
    );
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(
        condition(&p),
        Some(("True".into(), "SufficientPods".into()))
    );

    pdbs.create(
        &PostParams::default(),
        &budget("web-half", "web", json!({"maxUnavailable": "50%"})),
    )
    .await
    .expect("create");
    // 50% of 3 rounds up to 2 unavailable: 1 desired healthy, 2 disruptions allowed.
    let p = status_where(&pdbs, "web-half", "maxUnavailable 50% to allow 2", |p| {
        allowed(p) == 2
    })
    .await;
    let s = p.status.expect("status");
    assert_eq!(
        (s.current_healthy, s.desired_healthy, s.expected_pods),
        (3, 1, 3)
    );

    // A spec change bumps the generation; the controller catches up with it.
    let mut p = pdbs.get("web-min").await.expect("get");
    p.spec.as_mut().expect("spec").min_available =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(3));
    let replaced = pdbs
        .replace("web-min", &PostParams::default(), &p)
        .await
        .expect("replace");
    assert_eq!(replaced.metadata.generation, Some(2));
    let p = status_where(&pdbs, "web-min", "generation 2 observed", |p| {
        p.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    assert_eq!(allowed(&p), 0);
    assert_eq!(
        condition(&p),
        Some(("False".into(), "InsufficientPods".into()))
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_is_allowed_once_then_refused_until_a_replacement_is_ready() {
    let c = Cluster::builder().nodes(2).start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(c.client());
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    deploys
        .create(&PostParams::default(), &deployment("api", 3, "nginx:1"))
        .await
        .expect("deployment");
    wait_available(&deploys, "api", 3, Duration::from_secs(60)).await;
    pdbs.create(
        &PostParams::default(),
        &budget("api", "api", json!({"minAvailable": 2})),
    )
    .await
    .expect("create");
    status_where(&pdbs, "api", "one disruption allowed", |p| allowed(p) == 1).await;

    let names = running_pods(&pods, "api").await;
    assert_eq!(names.len(), 3);
    let (first, second) = (&names[0], &names[1]);

    // A dry run (`?dryRun=All`; kube-rs sends its delete options under a key the API ignores,
    // as upstream's does) spends nothing.
    let dry = EvictParams {
        post_options: PostParams {
            dry_run: true,
            ..Default::default()
        },
        ..Default::default()
    };
    pods.evict(first, &dry).await.expect("dry-run eviction");
    assert_eq!(allowed(&pdbs.get("api").await.expect("get")), 1);
    assert!(
        pods.get(first)
            .await
            .expect("pod")
            .metadata
            .deletion_timestamp
            .is_none()
    );

    pods.evict(first, &EvictParams::default())
        .await
        .expect("the first eviction fits the budget");
    let terminating = pods
        .get_opt(first)
        .await
        .expect("get")
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
    assert!(terminating, "the evicted pod is being deleted");
    let err = pods
        .evict(second, &EvictParams::default())
        .await
        .expect_err("the budget is spent");
    assert!(is_budget_violation(&err), "{err:?}");
    let kube::Error::Api(status) = &err else {
        unreachable!()
    };
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.clone())
        .unwrap_or_default();
    assert!(
        // currentHealthy is 3 until the controller has seen the eviction, 2 after.
        causes.iter().any(|c| c.reason == "DisruptionBudget"
            && c.message
                .starts_with("The disruption budget api needs 2 healthy pods and has ")),
        "{causes:?}"
    );

    // drain's loop: retry on 429 until the replacement is Ready and the budget allows again.
    until("the second eviction", Duration::from_secs(60), || {
        let (pods, second) = (pods.clone(), second.clone());
        async move {
            match pods.evict(&second, &EvictParams::default()).await {
                Ok(_) => true,
                Err(e) if is_budget_violation(&e) => false,
                Err(e) => panic!("unexpected eviction error: {e:?}"),
            }
        }
    })
    .await;
    // The third pod is still protected: at most one disruption at a time.
    let third = &names[2];
    let err = pods
        .evict(third, &EvictParams::default())
        .await
        .expect_err("the budget is spent again");
    assert!(is_budget_violation(&err), "{err:?}");

    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_budgets_on_one_pod_make_eviction_fail_and_unready_pods_follow_the_policy() {
    let c = Cluster::builder().nodes(1).start().await.expect("start");
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "solo", "labels": {"app": "solo"}},
        "spec": {"containers": [{"name": "main", "image": "nginx:1"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    pdbs.create(
        &PostParams::default(),
        &budget("one", "solo", json!({"minAvailable": 1})),
    )
    .await
    .expect("create");
    pdbs.create(
        &PostParams::default(),
        &budget("two", "solo", json!({"maxUnavailable": 0})),
    )
    .await
    .expect("create");
    until("solo running", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            pods.get("solo")
                .await
                .ok()
                .and_then(|p| p.status)
                .and_then(|s| s.phase)
                .as_deref()
                == Some("Running")
        }
    })
    .await;
    let err = pods
        .evict("solo", &EvictParams::default())
        .await
        .expect_err("two budgets");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 500
            && s.message == "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."),
        "{err:?}"
    );
    pdbs.delete("two", &DeleteParams::default())
        .await
        .expect("delete");
    // The unmanaged pod with an integer minAvailable of 1 leaves no disruption: refused.
    status_where(&pdbs, "one", "one pod healthy", |p| {
        p.status.as_ref().is_some_and(|s| s.current_healthy == 1)
    })
    .await;
    let err = pods
        .evict("solo", &EvictParams::default())
        .await
        .expect_err("budget of one");
    assert!(is_budget_violation(&err), "{err:?}");

    // With AlwaysAllow, an unready pod may go; this one is Ready, so it still may not.
    let mut p = pdbs.get("one").await.expect("get");
    p.spec.as_mut().expect("spec").unhealthy_pod_eviction_policy = Some("AlwaysAllow".into());
    pdbs.replace("one", &PostParams::default(), &p)
        .await
        .expect("replace");
    status_where(&pdbs, "one", "generation 2 observed", |p| {
        p.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    let err = pods
        .evict("solo", &EvictParams::default())
        .await
        .expect_err("ready pods spend the budget");
    assert!(is_budget_violation(&err), "{err:?}");

    // A terminating pod (held by a finalizer) is evicted without touching the budget.
    let hold = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    pods.patch("solo", &PatchParams::default(), &Patch::Merge(&hold))
        .await
        .expect("finalizer");
    pods.delete("solo", &DeleteParams::default())
        .await
        .expect("delete");
    pods.evict("solo", &EvictParams::default())
        .await
        .expect("a terminating pod evicts as a success");
    let after = pdbs.get("one").await.expect("get");
    let disrupted = after
        .status
        .and_then(|s| s.disrupted_pods)
        .unwrap_or_default();
    assert!(!disrupted.contains_key("solo"), "{disrupted:?}");
    let release = json!({"metadata": {"finalizers": null}});
    pods.patch("solo", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .expect("release");
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_budgets_get_upstreams_422_with_causes() {
    let c = Cluster::builder().nodes(1).start().await.expect("start");
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(c.client());
    let cases = [
        (json!({"minAvailable": 1, "maxUnavailable": 1}), "spec"),
        (json!({"minAvailable": -1}), "spec.minAvailable"),
        (json!({"maxUnavailable": "120%"}), "spec.maxUnavailable"),
        (
            json!({"minAvailable": 1, "unhealthyPodEvictionPolicy": "Never"}),
            "spec.unhealthyPodEvictionPolicy",
        ),
        (
            json!({"minAvailable": 1, "selector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}}),
            "spec.selector",
        ),
    ];
    for (spec, field) in cases {
        let body = budget("bad", "x", spec.clone());
        let err = pdbs
            .create(&PostParams::default(), &body)
            .await
            .expect_err("invalid");
        let kube::Error::Api(s) = &err else {
            panic!("{err:?}")
        };
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{spec}");
        let fields: Vec<String> = s
            .details
            .as_ref()
            .map(|d| d.causes.iter().map(|c| c.field.clone()).collect())
            .unwrap_or_default();
        assert!(fields.iter().any(|f| f == field), "{spec}: {fields:?}");
    }
    c.shutdown().await.expect("shutdown");
}
