//! StatefulSets through the whole cluster on the fake runtime: ordered start, stable names,
//! hostnames and claims, reverse-order scale-down, and a partitioned rolling update.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kybernetes::Cluster;
use serde_json::json;

use crate::common;
use common::{PodView, until};

fn web(replicas: i32) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                                                  "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .expect("statefulset")
}

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.containers.first()?.image.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_starts_web_0_before_web_1_and_scales_down_in_reverse() {
    let c = Cluster::builder().nodes(2).start().await.expect("start");
    let sets: Api<StatefulSet> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let mut view = PodView::start(&pods, "nginx").await;
    sets.create(&PostParams::default(), &web(3))
        .await
        .expect("create");
    loop {
        view.next().await;
        if view.pods.contains_key("web-1") {
            assert!(
                view.pods.get("web-0").is_some_and(ready),
                "web-1 starts only after web-0 is ready"
            );
        }
        if view.pods.contains_key("web-2") {
            assert!(
                view.pods.get("web-1").is_some_and(ready),
                "web-2 starts only after web-1 is ready"
            );
        }
        if ["web-0", "web-1", "web-2"]
            .iter()
            .all(|n| view.pods.get(*n).is_some_and(ready))
        {
            break;
        }
    }
    let web1 = pods.get("web-1").await.expect("web-1");
    let spec = web1.spec.expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("web-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let claim = spec
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "www")
        .and_then(|v| v.persistent_volume_claim)
        .map(|c| c.claim_name);
    assert_eq!(claim.as_deref(), Some("www-web-1"));
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client());
    for n in ["www-web-0", "www-web-1", "www-web-2"] {
        assert!(claims.get_opt(n).await.expect("get").is_some(), "claim {n}");
    }

    let mut gone = Vec::new();
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("scale down");
    while gone.len() < 2 {
        view.next().await;
        for n in ["web-2", "web-1"] {
            if !gone.contains(&n)
                && view
                    .pods
                    .get(n)
                    .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
            {
                gone.push(n);
            }
        }
    }
    assert_eq!(
        gone,
        ["web-2", "web-1"],
        "scale-down goes from the highest ordinal"
    );
    for n in ["www-web-1", "www-web-2"] {
        assert!(
            claims.get_opt(n).await.expect("get").is_some(),
            "claim {n} stays after scale-down"
        );
    }
    until("status of one replica", Duration::from_secs(60), || {
        let sets = sets.clone();
        async move {
            sets.get("web")
                .await
                .ok()
                .and_then(|s| s.status)
                .is_some_and(|s| s.replicas == 1 && s.ready_replicas == Some(1))
        }
    })
    .await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_with_a_partition_updates_only_ordinals_at_or_above_it() {
    let c = Cluster::builder().nodes(2).start().await.expect("start");
    let sets: Api<StatefulSet> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let mut set = web(3);
    if let Some(spec) = set.spec.as_mut() {
        spec.pod_management_policy = Some("Parallel".into());
        spec.update_strategy = serde_json::from_value(
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}),
        )
        .ok();
    }
    sets.create(&PostParams::default(), &set)
        .await
        .expect("create");
    until("three ready pods", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels("app=nginx"))
                .await
                .is_ok_and(|l| l.items.iter().filter(|p| ready(p)).count() == 3)
        }
    })
    .await;
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.28"}]}}}})),
    )
    .await
    .expect("update");
    until(
        "web-1 and web-2 on the new image",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            async move {
                let Ok(list) = pods.list(&ListParams::default().labels("app=nginx")).await else {
                    return false;
                };
                let img = |n: &str| {
                    list.items
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(n) && ready(p))
                        .and_then(image)
                };
                img("web-2").as_deref() == Some("nginx:1.28")
                    && img("web-1").as_deref() == Some("nginx:1.28")
                    && img("web-0").as_deref() == Some("nginx:1.27")
            }
        },
    )
    .await;
    let st = sets.get("web").await.expect("web").status.expect("status");
    assert_ne!(
        st.current_revision, st.update_revision,
        "web-0 still runs the current revision"
    );
    assert_eq!(st.updated_replicas, Some(2));
    c.shutdown().await.expect("shutdown");
}
