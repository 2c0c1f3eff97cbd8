//! Storage through the whole cluster on the fake runtime: StorageClasses, the PV controller's
//! binding and reclaiming, the built-in local-path provisioner behind the default class,
//! WaitForFirstConsumer with the scheduler's VolumeBinding filter, PVC protection, and
//! `kubectl get pvc,pv,sc`.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::until;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::FakeRuntime;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn claim(name: &str, size: &str, extra: Value) -> PersistentVolumeClaim {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).expect("claim")
}

fn volume(name: &str, size: &str, extra: Value) -> PersistentVolume {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": format!("/tmp/kybernetes-test-{name}")}},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).expect("volume")
}

fn pod_using(name: &str, claim: &str, extra: Value) -> Pod {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).expect("pod")
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> Option<&str> {
    c.status.as_ref()?.phase.as_deref()
}

fn phase_of_volume(v: &PersistentVolume) -> Option<&str> {
    v.status.as_ref()?.phase.as_deref()
}

fn volume_name(c: &PersistentVolumeClaim) -> Option<String> {
    c.spec
        .as_ref()?
        .volume_name
        .clone()
        .filter(|n| !n.is_empty())
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Waits until the claim is `Bound` and returns it.
async fn bound(claims: &Api<PersistentVolumeClaim>, name: &str) -> PersistentVolumeClaim {
    until(&format!("claim {name} bound"), WAIT, || async {
        claims
            .get(name)
            .await
            .is_ok_and(|c| phase_of_claim(&c) == Some("Bound"))
    })
    .await;
    claims.get(name).await.expect("claim")
}

/// Waits until the pod runs and returns its node.
async fn running_on(pods: &Api<Pod>, name: &str) -> String {
    until(&format!("pod {name} running"), WAIT, || async {
        pods.get(name)
            .await
            .is_ok_and(|p| p.status.and_then(|s| s.phase).as_deref() == Some("Running"))
    })
    .await;
    let pod = pods.get(name).await.expect("pod");
    pod.spec.and_then(|s| s.node_name).expect("bound to a node")
}

async fn gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    until(&format!("{name} gone"), WAIT, || async {
        matches!(api.get(name).await, Err(kube::Error::Api(s)) if s.code == 404)
    })
    .await;
}

fn host_path(v: &PersistentVolume) -> String {
    v.spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| h.path.clone())
        .expect("a hostPath volume")
}

fn affinity_node(v: &PersistentVolume) -> Option<String> {
    let terms = &v
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    terms
        .first()?
        .match_expressions
        .as_ref()?
        .first()?
        .values
        .as_ref()?
        .first()
        .cloned()
}

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

/// The host directory the node agent mounted at `/usr/share/nginx/html` in the newest
/// `nginx` container of `pod`, once its container exists.
async fn mounted_www(fake: &FakeRuntime, pod: &str) -> std::path::PathBuf {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mount = fake
            .latest_container("default", pod, "nginx")
            .and_then(|c| fake.container_config(&c.id))
            .and_then(|config| {
                config
                    .mounts
                    .into_iter()
                    .find(|m| m.container_path == Path::new("/usr/share/nginx/html"))
            });
        if let Some(m) = mount {
            return m.host_path;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pod} never got a container with the www volume mounted"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statefulset_claims_bind_through_the_local_provisioner_and_are_reused_after_scale_to_zero()
 {
    let data = tempfile::tempdir().expect("data dir");
    let fake = FakeRuntime::default();
    let c = Cluster::builder()
        .nodes(2)
        .runtime(fake.clone())
        .data_dir(data.path())
        .expect("data dir")
        .start()
        .await
        .expect("start");
    let services: Api<Service> = Api::default_namespaced(c.client());
    let headless: Service = serde_json::from_value(json!({
        "metadata": {"name": "nginx"},
        "spec": {"clusterIP": "None", "selector": {"app": "nginx"}, "ports": [{"port": 80, "name": "web"}]},
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &headless)
        .await
        .expect("service");
    let sets: Api<StatefulSet> = Api::default_namespaced(c.client());
    sets.create(&PostParams::default(), &web(2))
        .await
        .expect("create");
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client());
    let volumes: Api<PersistentVolume> = Api::all(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());

    let mut first = Vec::new();
    for (claim_name, pod) in [("www-web-0", "web-0"), ("www-web-1", "web-1")] {
        let claim = bound(&claims, claim_name).await;
        assert_eq!(
            claim
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref()),
            Some("local-path")
        );
        let node = running_on(&pods, pod).await;
        assert_eq!(
            annotation(&claim.metadata, "volume.kubernetes.io/selected-node"),
            Some(node.as_str())
        );
        assert_eq!(
            annotation(&claim.metadata, "pv.kubernetes.io/bind-completed"),
            Some("yes")
        );
        let pv = volumes
            .get(&volume_name(&claim).expect("volume name"))
            .await
            .expect("volume");
        assert_eq!(
            annotation(&pv.metadata, "pv.kubernetes.io/provisioned-by"),
            Some("kybernetes.io/local-path")
        );
        assert_eq!(
            affinity_node(&pv),
            Some(node),
            "the volume is pinned to the pod's node"
        );
        assert_eq!(phase_of_volume(&pv), Some("Bound"));
        let dir = host_path(&pv);
        assert!(
            Path::new(&dir).starts_with(data.path().join("storage")),
            "{dir}"
        );
        assert!(Path::new(&dir).is_dir(), "{dir} exists");
        first.push((claim_name, pv.metadata.name.clone().expect("name"), dir));
    }

    // What web-0 writes to its volume, as the node agent mounted it into the container.
    let old_uid = pods.get("web-0").await.expect("web-0").metadata.uid;
    let www = mounted_www(&fake, "web-0").await;
    std::fs::write(www.join("index.html"), "written by the first web-0").expect("write");

    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 0}})),
    )
    .await
    .expect("scale to 0");
    gone(&pods, "web-0").await;
    gone(&pods, "web-1").await;
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 2}})),
    )
    .await
    .expect("scale to 2");
    running_on(&pods, "web-0").await;
    running_on(&pods, "web-1").await;
    let new_web0 = pods.get("web-0").await.expect("web-0");
    assert_ne!(new_web0.metadata.uid, old_uid, "a new web-0");
    let www = mounted_www(&fake, "web-0").await;
    assert_eq!(
        std::fs::read_to_string(www.join("index.html")).expect("the new web-0 reads the file"),
        "written by the first web-0"
    );
    for (claim_name, pv, dir) in first {
        let claim = bound(&claims, claim_name).await;
        assert_eq!(
            volume_name(&claim).as_deref(),
            Some(pv.as_str()),
            "the same volume"
        );
        assert!(Path::new(&dir).is_dir());
    }
    assert_eq!(
        volumes
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len(),
        2,
        "nothing new provisioned"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_volume_binds_the_claim_it_fits_and_not_a_larger_one() {
    let c = Cluster::builder().start().await.expect("start");
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client());
    let volumes: Api<PersistentVolume> = Api::all(c.client());
    let manual = json!({"spec": {"storageClassName": "manual"}});
    volumes
        .create(
            &PostParams::default(),
            &volume("pv-1g", "1Gi", manual.clone()),
        )
        .await
        .expect("pv");
    claims
        .create(
            &PostParams::default(),
            &claim("too-big", "2Gi", manual.clone()),
        )
        .await
        .expect("claim");
    claims
        .create(&PostParams::default(), &claim("fits", "500Mi", manual))
        .await
        .expect("claim");
    let fits = bound(&claims, "fits").await;
    assert_eq!(volume_name(&fits).as_deref(), Some("pv-1g"));
    assert_eq!(
        fits.status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.as_str()),
        Some("1Gi")
    );
    until("volume bound", WAIT, || async {
        volumes
            .get("pv-1g")
            .await
            .is_ok_and(|v| phase_of_volume(&v) == Some("Bound"))
    })
    .await;
    let pv = volumes.get("pv-1g").await.expect("pv");
    assert_eq!(
        pv.spec
            .and_then(|s| s.claim_ref)
            .and_then(|r| r.name)
            .as_deref(),
        Some("fits")
    );
    let big = claims.get("too-big").await.expect("claim");
    assert_eq!(phase_of_claim(&big), Some("Pending"));
    assert_eq!(volume_name(&big), None);
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_volume_is_released_when_its_claim_goes() {
    let c = Cluster::builder().start().await.expect("start");
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client());
    let volumes: Api<PersistentVolume> = Api::all(c.client());
    let class = json!({"spec": {"storageClassName": "manual"}});
    volumes
        .create(
            &PostParams::default(),
            &volume("kept", "1Gi", class.clone()),
        )
        .await
        .expect("pv");
    claims
        .create(&PostParams::default(), &claim("data", "1Gi", class))
        .await
        .expect("claim");
    bound(&claims, "data").await;
    claims
        .delete("data", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&claims, "data").await;
    until("volume released", WAIT, || async {
        volumes
            .get("kept")
            .await
            .is_ok_and(|v| phase_of_volume(&v) == Some("Released"))
    })
    .await;
    let pv = volumes.get("kept").await.expect("pv");
    assert_eq!(
        pv.spec
            .and_then(|s| s.persistent_volume_reclaim_policy)
            .as_deref(),
        Some("Retain")
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_class_provisions_at_once_and_delete_removes_the_volume_and_its_directory() {
    let data = tempfile::tempdir().expect("data dir");
    let c = Cluster::builder()
        .data_dir(data.path())
        .expect("dir")
        .start()
        .await
        .expect("start");
    let classes: Api<StorageClass> = Api::all(c.client());
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "local-now"}, "provisioner": "kybernetes.io/local-path",
    }))
    .expect("class");
    let created = classes
        .create(&PostParams::default(), &class)
        .await
        .expect("class");
    assert_eq!(created.reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(created.volume_binding_mode.as_deref(), Some("Immediate"));
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client());
    let volumes: Api<PersistentVolume> = Api::all(c.client());
    claims
        .create(
            &PostParams::default(),
            &claim(
                "scratch",
                "1Gi",
                json!({"spec": {"storageClassName": "local-now"}}),
            ),
        )
        .await
        .expect("claim");
    let claim = bound(&claims, "scratch").await;
    let pv_name = volume_name(&claim).expect("volume");
    let pv = volumes.get(&pv_name).await.expect("pv");
    assert_eq!(affinity_node(&pv), None, "no node was selected");
    let dir = host_path(&pv);
    assert!(Path::new(&dir).is_dir());
    claims
        .delete("scratch", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&volumes, &pv_name).await;
    assert!(!Path::new(&dir).exists(), "{dir} removed");
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_in_use_is_not_deleted_until_its_pod_is_gone() {
    let c = Cluster::builder().start().await.expect("start");
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    let created = claims
        .create(&PostParams::default(), &claim("data", "1Gi", json!({})))
        .await
        .expect("claim");
    assert_eq!(
        created.metadata.finalizers.as_deref(),
        Some(&["kubernetes.io/pvc-protection".to_string()][..])
    );
    assert_eq!(
        created
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        Some("local-path"),
        "the default class"
    );
    pods.create(&PostParams::default(), &pod_using("app", "data", json!({})))
        .await
        .expect("pod");
    running_on(&pods, "app").await;
    bound(&claims, "data").await;
    claims
        .delete("data", &DeleteParams::default())
        .await
        .expect("delete");
    let held = claims.get("data").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    // The protection controller has seen the deletion and kept the finalizer while the pod runs.
    assert!(pods.get("app").await.is_ok());
    assert!(
        held.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "kubernetes.io/pvc-protection")
    );
    pods.delete("app", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    gone(&pods, "app").await;
    gone(&claims, "data").await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_annotation_names_the_class_of_claims_and_volumes() {
    let c = Cluster::builder().start().await.expect("start");
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client());
    let volumes: Api<PersistentVolume> = Api::all(c.client());
    let slow =
        json!({"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "slow"}}});
    volumes
        .create(
            &PostParams::default(),
            &volume("old-style", "5Gi", slow.clone()),
        )
        .await
        .expect("pv");
    let created = claims
        .create(&PostParams::default(), &claim("legacy", "1Gi", slow))
        .await
        .expect("claim");
    assert_eq!(
        created
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        None,
        "no default class for an annotated claim"
    );
    let claim = bound(&claims, "legacy").await;
    assert_eq!(volume_name(&claim).as_deref(), Some("old-style"));
    c.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_first_consumer_provisions_on_the_pods_node_and_local_volumes_pin_pods() {
    let c = Cluster::builder().nodes(3).start().await.expect("start");
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client());
    let volumes: Api<PersistentVolume> = Api::all(c.client());
    let pods: Api<Pod> = Api::default_namespaced(c.client());
    claims
        .create(&PostParams::default(), &claim("late", "1Gi", json!({})))
        .await
        .expect("claim");
    until("WaitForFirstConsumer event", WAIT, || async {
        let events: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(c.client());
        events.list(&Default::default()).await.is_ok_and(|l| {
            l.items.iter().any(|e| {
                e.reason.as_deref() == Some("WaitForFirstConsumer")
                    && e.involved_object.name.as_deref() == Some("late")
            })
        })
    })
    .await;
    assert_eq!(
        phase_of_claim(&claims.get("late").await.expect("claim")),
        Some("Pending")
    );
    let on_node_2 = json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "node-2"}}});
    pods.create(
        &PostParams::default(),
        &pod_using("first", "late", on_node_2),
    )
    .await
    .expect("pod");
    assert_eq!(running_on(&pods, "first").await, "node-2");
    let late = bound(&claims, "late").await;
    assert_eq!(
        annotation(&late.metadata, "volume.kubernetes.io/selected-node"),
        Some("node-2")
    );
    let pv = volumes
        .get(&volume_name(&late).expect("volume"))
        .await
        .expect("pv");
    assert_eq!(affinity_node(&pv).as_deref(), Some("node-2"));
    // A second pod of the claim follows the volume's node affinity.
    pods.create(
        &PostParams::default(),
        &pod_using("second", "late", json!({})),
    )
    .await
    .expect("pod");
    assert_eq!(running_on(&pods, "second").await, "node-2");

    // A static local volume on node-3, in a class with no provisioner.
    let classes: Api<StorageClass> = Api::all(c.client());
    let local: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "local-storage"}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
    }))
    .expect("class");
    classes
        .create(&PostParams::default(), &local)
        .await
        .expect("class");
    // The node agent mounts the volume, so its directory must exist, as on a real node.
    let disk_dir = tempfile::tempdir().expect("tempdir");
    let disk_path = disk_dir.path().display().to_string();
    let disk = json!({"spec": {"storageClassName": "local-storage", "hostPath": null, "local": {"path": disk_path},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-3"]}]}]}}}});
    volumes
        .create(&PostParams::default(), &volume("disk-3", "10Gi", disk))
        .await
        .expect("pv");
    claims
        .create(
            &PostParams::default(),
            &claim(
                "disk",
                "1Gi",
                json!({"spec": {"storageClassName": "local-storage"}}),
            ),
        )
        .await
        .expect("claim");
    pods.create(&PostParams::default(), &pod_using("db", "disk", json!({})))
        .await
        .expect("pod");
    assert_eq!(running_on(&pods, "db").await, "node-3");
    assert_eq!(
        volume_name(&bound(&claims, "disk").await).as_deref(),
        Some("disk-3")
    );

    // With no volume left there, the pod stays Pending with upstream's reason.
    claims
        .create(
            &PostParams::default(),
            &claim(
                "disk-2",
                "1Gi",
                json!({"spec": {"storageClassName": "local-storage"}}),
            ),
        )
        .await
        .expect("claim");
    pods.create(
        &PostParams::default(),
        &pod_using("db-2", "disk-2", json!({})),
    )
    .await
    .expect("pod");
    until("db-2 unschedulable", WAIT, || async {
        pods.get("db-2").await.is_ok_and(|p| {
            p.status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.message.as_deref().is_some_and(|m| {
                            m.contains("node(s) didn't find available persistent volumes to bind")
                        })
                })
        })
    })
    .await;
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_claim_without_access_modes_is_refused_with_422() {
    let c = Cluster::builder().nodes(0).start().await.expect("start");
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client());
    let bad: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "bad"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}},
    }))
    .expect("claim");
    match claims.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert_eq!(s.reason, "Invalid");
            assert!(
                s.message.contains(
                    "spec.accessModes: Required value: at least 1 access mode is required"
                ),
                "{}",
                s.message
            );
        }
        other => panic!("expected 422, got {other:?}"),
    }
    assert!(
        matches!(claims.get("bad").await, Err(kube::Error::Api(s)) if s.code == 404),
        "nothing stored"
    );
    let volumes: Api<PersistentVolume> = Api::all(c.client());
    let no_capacity: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "bad"}, "spec": {"accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/x"}},
    }))
    .expect("pv");
    assert!(
        matches!(volumes.create(&PostParams::default(), &no_capacity).await, Err(kube::Error::Api(s)) if s.code == 422)
    );
    let classes: Api<StorageClass> = Api::all(c.client());
    let mut sc = classes
        .get("local-path")
        .await
        .expect("the default class exists");
    sc.provisioner = "example.com/other".into();
    assert!(
        matches!(classes.replace("local-path", &PostParams::default(), &sc).await, Err(kube::Error::Api(s)) if s.code == 422)
    );
    c.shutdown().await.expect("shutdown");
}

/// Runs `/usr/bin/kubectl` with the kubeconfig; fails if kubectl is missing or fails.
fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl must be installed at /usr/bin/kubectl (it is on the machine image)");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_pvc_pv_sc_prints_upstreams_columns() {
    let c = Cluster::builder()
        .serve("127.0.0.1:0".parse().expect("address"))
        .start()
        .await
        .expect("start");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    c.kubeconfig()
        .expect("kubeconfig")
        .write(&kubeconfig)
        .expect("write");
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(c.client());
    let volumes: Api<PersistentVolume> = Api::all(c.client());
    let manual = json!({"spec": {"storageClassName": "manual"}});
    volumes
        .create(
            &PostParams::default(),
            &volume("pv-1", "1Gi", manual.clone()),
        )
        .await
        .expect("pv");
    claims
        .create(&PostParams::default(), &claim("data", "1Gi", manual))
        .await
        .expect("claim");
    bound(&claims, "data").await;
    let out = tokio::task::spawn_blocking(move || kubectl(&kubeconfig, &["get", "pvc,pv,sc"]))
        .await
        .expect("kubectl");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let find = |first: &str| {
        lines
            .iter()
            .find(|l| l.first() == Some(&first))
            .unwrap_or_else(|| panic!("no {first} line in\n{out}"))
    };
    let header = |second: &str| {
        lines
            .iter()
            .find(|l| l.first() == Some(&"NAME") && l.get(1) == Some(&second))
            .unwrap_or_else(|| panic!("no header with {second} in\n{out}"))
    };
    assert_eq!(
        header("STATUS")[..],
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ],
        "{out}"
    );
    assert_eq!(
        find("persistentvolumeclaim/data")[..7],
        [
            "persistentvolumeclaim/data",
            "Bound",
            "pv-1",
            "1Gi",
            "RWO",
            "manual",
            "<unset>"
        ],
        "{out}"
    );
    assert_eq!(
        header("CAPACITY")[..],
        [
            "NAME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "RECLAIM",
            "POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ],
        "{out}"
    );
    assert_eq!(
        find("persistentvolume/pv-1")[..7],
        [
            "persistentvolume/pv-1",
            "1Gi",
            "RWO",
            "Retain",
            "Bound",
            "default/data",
            "manual"
        ],
        "{out}"
    );
    assert_eq!(
        header("PROVISIONER")[..],
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ],
        "{out}"
    );
    assert_eq!(
        find("storageclass.storage.k8s.io/local-path")[..6],
        [
            "storageclass.storage.k8s.io/local-path",
            "(default)",
            "kybernetes.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ],
        "{out}"
    );
    c.shutdown().await.expect("shutdown");
}
