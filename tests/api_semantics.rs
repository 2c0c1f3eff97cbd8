//! Write semantics: generation, the status subresource, scale, binding, graceful deletion,
//! finalizers, propagation policies, selectors and paging.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kybernetes::Cluster;
use serde_json::json;

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}
    }))
    .expect("deployment")
}

fn configmap(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}))
        .expect("configmap")
}

#[tokio::test]
async fn generation_moves_on_spec_changes_only_and_status_only_through_the_subresource() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    let mut d = deployment("web", "nginx:1");
    d.status = Some(serde_json::from_value(json!({"replicas": 99})).expect("status"));
    let created = api
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.status.as_ref().and_then(|s| s.replicas).is_none(),
        "POST ignores status"
    );

    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("label");
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes keep generation"
    );

    let with_status = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 5}})),
        )
        .await
        .expect("patch main resource");
    assert!(
        with_status
            .status
            .as_ref()
            .and_then(|s| s.replicas)
            .is_none(),
        "main resource ignores status"
    );

    let status = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 5}, "spec": {"replicas": 7}})),
        )
        .await
        .expect("patch status");
    assert_eq!(status.status.as_ref().and_then(|s| s.replicas), Some(5));
    assert_eq!(
        status.spec.as_ref().and_then(|s| s.replicas),
        Some(2),
        "status writes ignore spec"
    );
    assert_eq!(status.metadata.generation, Some(1));

    let image = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}})),
        )
        .await
        .expect("image change");
    assert_eq!(
        image.metadata.generation,
        Some(2),
        "spec change bumps generation"
    );
    assert_eq!(
        image.status.as_ref().and_then(|s| s.replicas),
        Some(5),
        "status survives spec writes"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    api.create(&PostParams::default(), &deployment("web", "nginx"))
        .await
        .expect("create");
    let scale = api.get_scale("web").await.expect("get scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 10}})),
    )
    .await
    .expect("patch scale");
    assert_eq!(
        api.get("web")
            .await
            .expect("get")
            .spec
            .and_then(|s| s.replicas),
        Some(10)
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn binding_sets_node_name_once() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let pod: Pod = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .expect("pod");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create");
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        "p",
        &PostParams::default(),
        &binding,
    )
    .await
    .expect("bind");
    let bound = pods.get("p").await.expect("get");
    assert_eq!(
        bound.spec.and_then(|s| s.node_name).as_deref(),
        Some("node-1")
    );
    let scheduled = bound.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        scheduled
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );
    let again = pods
        .create_subresource::<_, serde_json::Value>(
            "binding",
            "p",
            &PostParams::default(),
            &binding,
        )
        .await;
    assert!(
        matches!(again, Err(kube::Error::Api(s)) if s.code == 409),
        "a bound pod cannot be bound again"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully_and_unbound_pods_at_once() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let spec = |name: &str, node: Option<&str>| -> Pod {
        let mut v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        serde_json::from_value(v).expect("pod")
    };
    pods.create(&PostParams::default(), &spec("free", None))
        .await
        .expect("create");
    pods.create(&PostParams::default(), &spec("bound", Some("n1")))
        .await
        .expect("create");
    pods.delete("free", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(
        pods.get_opt("free").await.expect("get").is_none(),
        "unbound pod is gone at once"
    );

    pods.delete("bound", &DeleteParams::default())
        .await
        .expect("delete");
    let terminating = pods
        .get("bound")
        .await
        .expect("bound pod stays while terminating");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete(
        "bound",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .expect("force");
    assert!(
        pods.get_opt("bound").await.expect("get").is_none(),
        "grace 0 removes it"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    let mut cm = configmap("held", json!({}));
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    cms.delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    let held = cms.get("held").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    let add = cms
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "new"]}})),
        )
        .await;
    assert!(
        matches!(add, Err(kube::Error::Api(s)) if s.code == 422),
        "no new finalizers during deletion"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizer");
    assert!(
        cms.get_opt("held").await.expect("get").is_none(),
        "gone once the finalizer is removed"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn propagation_policies_are_recorded_as_finalizers() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    for name in ["orphan", "fg", "bg"] {
        cms.create(&PostParams::default(), &configmap(name, json!({})))
            .await
            .expect("create");
    }
    cms.delete(
        "orphan",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .expect("orphan");
    cms.delete("fg", &DeleteParams::foreground())
        .await
        .expect("foreground");
    cms.delete("bg", &DeleteParams::background())
        .await
        .expect("background");
    let orphan = cms.get("orphan").await.expect("held by orphan finalizer");
    assert_eq!(orphan.metadata.finalizers, Some(vec!["orphan".to_string()]));
    let fg = cms.get("fg").await.expect("held by foreground finalizer");
    assert_eq!(
        fg.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    assert!(
        cms.get_opt("bg").await.expect("get").is_none(),
        "background deletes at once"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    cms.create(
        &PostParams::default(),
        &configmap("a", json!({"tier": "web", "env": "prod"})),
    )
    .await
    .expect("a");
    cms.create(
        &PostParams::default(),
        &configmap("b", json!({"tier": "db", "env": "prod"})),
    )
    .await
    .expect("b");
    cms.create(
        &PostParams::default(),
        &configmap("c", json!({"tier": "web"})),
    )
    .await
    .expect("c");
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect()
    };
    let eq = cms
        .list(&ListParams::default().labels("tier=web"))
        .await
        .expect("eq");
    assert_eq!(names(eq), ["a", "c"]);
    let set = cms
        .list(&ListParams::default().labels("tier in (db,cache),env"))
        .await
        .expect("set");
    assert_eq!(names(set), ["b"]);
    let not = cms
        .list(&ListParams::default().labels("!env"))
        .await
        .expect("not exists");
    assert_eq!(names(not), ["c"]);
    let notin = cms
        .list(&ListParams::default().labels("tier notin (web)"))
        .await
        .expect("notin");
    assert_eq!(names(notin), ["b"]);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .expect("field");
    assert_eq!(names(by_name), ["b"]);
    let bad = cms
        .list(&ListParams::default().fields("spec.nodeName=x"))
        .await;
    assert!(
        matches!(bad, Err(kube::Error::Api(s)) if s.code == 400),
        "unsupported field label is a 400"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn pods_field_selectors_cover_node_name_and_phase() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    for (name, node) in [("p1", Some("n1")), ("p2", None)] {
        let mut v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(v).expect("pod"),
        )
        .await
        .expect("create");
    }
    let on_n1 = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .expect("list");
    assert_eq!(on_n1.items.len(), 1);
    let unscheduled = pods
        .list(&ListParams::default().fields("spec.nodeName="))
        .await
        .expect("list");
    assert_eq!(unscheduled.items[0].metadata.name.as_deref(), Some("p2"));
    let pending = pods
        .list(&ListParams::default().fields("status.phase=Pending,metadata.namespace=default"))
        .await
        .expect("list");
    assert_eq!(pending.items.len(), 2);
    let all: Api<Pod> = Api::all(c.client());
    assert_eq!(
        all.list(&ListParams::default().fields("status.phase!=Running"))
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn lists_page_with_limit_and_continue_at_one_revision() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    for i in 0..25 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("cm-{i:02}"), json!({})),
        )
        .await
        .expect("create");
    }
    let first = cms
        .list(&ListParams::default().limit(10))
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 10);
    let token = first.metadata.continue_.clone().expect("continue token");
    let rv = first.metadata.resource_version.clone();
    // A write between pages is not visible: pages come from the first page's revision.
    cms.create(&PostParams::default(), &configmap("cm-99", json!({})))
        .await
        .expect("create later");
    let second = cms
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .expect("page 2");
    assert_eq!(second.items.len(), 10);
    assert_eq!(second.metadata.resource_version, rv);
    let third = cms
        .list(
            &ListParams::default()
                .limit(10)
                .continue_token(second.metadata.continue_.as_deref().expect("token")),
        )
        .await
        .expect("page 3");
    assert_eq!(third.items.len(), 5);
    assert!(
        third
            .metadata
            .continue_
            .as_deref()
            .is_none_or(str::is_empty),
        "last page has no token"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn deleting_a_namespace_marks_it_terminating_and_blocks_new_content() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let nss: Api<Namespace> = Api::all(c.client());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "doomed"}})).expect("ns");
    nss.create(&PostParams::default(), &ns)
        .await
        .expect("create");
    nss.delete("doomed", &DeleteParams::default())
        .await
        .expect("delete");
    let doomed = nss
        .get("doomed")
        .await
        .expect("still there until finalized");
    assert_eq!(
        doomed.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    let cms: Api<ConfigMap> = Api::namespaced(c.client(), "doomed");
    let err = cms
        .create(&PostParams::default(), &configmap("late", json!({})))
        .await
        .expect_err("refused");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 403));
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn secret_string_data_is_stored_as_base64_data() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::default_namespaced(c.client());
    let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}),
    )
    .expect("secret");
    let created = secrets
        .create(&PostParams::default(), &s)
        .await
        .expect("create");
    assert!(created.string_data.is_none(), "stringData is not stored");
    let data = created.data.expect("data");
    assert_eq!(data["password"].0, b"hunter2".to_vec());
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_write_naming_another_uid_is_a_conflict() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    cms.create(&PostParams::default(), &configmap("u", json!({})))
        .await
        .expect("create");
    let res = cms
        .patch(
            "u",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"uid": "not-the-uid", "labels": {"a": "b"}}})),
        )
        .await;
    assert!(matches!(res, Err(kube::Error::Api(s)) if s.code == 409));
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn deployment_rolling_update_bounds_are_validated() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let api: Api<Deployment> = Api::default_namespaced(c.client());
    let mut d = deployment("bad", "nginx");
    if let Some(spec) = d.spec.as_mut() {
        spec.strategy = Some(serde_json::from_value(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})).expect("s"));
    }
    let res = api.create(&PostParams::default(), &d).await;
    assert!(
        matches!(res, Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("may not be 0"))
    );
    c.shutdown().await.expect("shutdown");
}
