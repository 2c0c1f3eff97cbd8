//! Pod volumes on the node: the files the runtime's bind mounts point at (content, modes),
//! in-place updates of configMap volumes, FailedMount for bad input, and teardown.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kybernetes_runtime::Mount;
use serde_json::json;

fn mount<'a>(mounts: &'a [Mount], container_path: &str) -> &'a Mount {
    mounts
        .iter()
        .find(|m| m.container_path == Path::new(container_path))
        .unwrap_or_else(|| panic!("no mount at {container_path} in {mounts:#?}"))
}

fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn mode(p: impl AsRef<Path>) -> u32 {
    std::fs::metadata(p.as_ref())
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

/// Waits (tokio time) until `f` holds.
async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn agent_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kybernetes-node-test-")
        .tempdir()
        .expect("tempdir")
}

#[tokio::test(start_paused = true)]
async fn api_data_volumes_have_their_files_modes_and_follow_updates() {
    let mut h = harness().await;
    let root = agent_root();
    config_map(&h, "settings", &[("mode", "fast"), ("level", "3")]).await;
    secret(&h, "creds", &[("password", "s3cret")]).await;
    h.start_agent(
        h.config("node-1")
            .root_dir(root.path())
            .volume_resync_interval(Duration::from_secs(2)),
    );
    let mut p = pod("vols", "node-1", &[("app", "busybox:1.36")]);
    p["metadata"]["labels"] = json!({ "app": "vols", "tier": "web" });
    p["spec"]["containers"][0]["resources"] = json!({ "limits": { "memory": "64Mi" } });
    p["spec"]["volumes"] = json!([
        { "name": "all", "configMap": { "name": "settings", "defaultMode": 0o640 } },
        { "name": "some", "configMap": { "name": "settings",
            "items": [{ "key": "mode", "path": "nested/the-mode", "mode": 0o600 }] } },
        { "name": "maybe", "configMap": { "name": "absent", "optional": true } },
        { "name": "creds", "secret": { "secretName": "creds", "defaultMode": 0o400 } },
        { "name": "scratch", "emptyDir": {} },
        { "name": "info", "downwardAPI": { "items": [
            { "path": "name", "fieldRef": { "fieldPath": "metadata.name" } },
            { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } },
            { "path": "mem", "resourceFieldRef": { "containerName": "app",
                "resource": "limits.memory", "divisor": "1Mi" } }
        ] } },
        { "name": "bundle", "projected": { "sources": [
            { "configMap": { "name": "settings", "items": [{ "key": "level", "path": "level" }] } },
            { "secret": { "name": "creds" } },
            { "downwardAPI": { "items": [{ "path": "ns", "fieldRef": { "fieldPath": "metadata.namespace" } }] } }
        ] } }
    ]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([
        { "name": "all", "mountPath": "/etc/all" },
        { "name": "some", "mountPath": "/etc/some" },
        { "name": "maybe", "mountPath": "/etc/maybe" },
        { "name": "creds", "mountPath": "/etc/creds" },
        { "name": "scratch", "mountPath": "/scratch" },
        { "name": "scratch", "mountPath": "/cache", "subPath": "cache" },
        { "name": "info", "mountPath": "/etc/info" },
        { "name": "bundle", "mountPath": "/etc/bundle" },
        { "name": "all", "mountPath": "/etc/level-frozen", "subPath": "level" }
    ]);
    let created = h.create_pod(p).await;
    let uid = created.metadata.uid.clone().expect("uid");
    h.wait_pod("vols", 30, is_phase("Running")).await;
    let configs = h.fake.created_containers();
    let mounts = configs[0].mounts.clone();

    let pod_dir = root.path().join("pods").join(&uid);
    let all = mount(&mounts, "/etc/all");
    assert_eq!(
        all.host_path,
        pod_dir.join("volumes/kubernetes.io~configmap/all")
    );
    assert!(all.readonly, "configMap volumes are read-only");
    assert_eq!(read(all.host_path.join("mode")), "fast");
    assert_eq!(read(all.host_path.join("level")), "3");
    assert_eq!(mode(all.host_path.join("mode")), 0o640);
    let data = std::fs::read_link(all.host_path.join("..data")).expect("..data link");
    assert!(data.to_string_lossy().starts_with("..20"), "{data:?}");
    assert_eq!(
        std::fs::read_link(all.host_path.join("mode")).expect("key link"),
        PathBuf::from("..data/mode")
    );

    let some = mount(&mounts, "/etc/some");
    assert_eq!(read(some.host_path.join("nested/the-mode")), "fast");
    assert_eq!(mode(some.host_path.join("nested/the-mode")), 0o600);
    assert!(!some.host_path.join("level").exists());

    let maybe = mount(&mounts, "/etc/maybe");
    assert!(
        maybe.host_path.is_dir(),
        "an optional missing configMap is empty"
    );

    let creds = mount(&mounts, "/etc/creds");
    assert_eq!(
        creds.host_path,
        pod_dir.join("volumes/kubernetes.io~secret/creds")
    );
    assert_eq!(read(creds.host_path.join("password")), "s3cret");
    assert_eq!(mode(creds.host_path.join("password")), 0o400);

    let scratch = mount(&mounts, "/scratch");
    assert!(!scratch.readonly);
    assert_eq!(mode(&scratch.host_path), 0o777);
    let cache = mount(&mounts, "/cache");
    assert_eq!(cache.host_path, scratch.host_path.join("cache"));
    assert!(
        cache.host_path.is_dir(),
        "a subPath of an emptyDir is created"
    );

    let info = mount(&mounts, "/etc/info");
    assert_eq!(read(info.host_path.join("name")), "vols");
    assert_eq!(
        read(info.host_path.join("labels")),
        "app=\"vols\"\ntier=\"web\""
    );
    assert_eq!(read(info.host_path.join("mem")), "64");

    let bundle = mount(&mounts, "/etc/bundle");
    assert_eq!(read(bundle.host_path.join("level")), "3");
    assert_eq!(read(bundle.host_path.join("password")), "s3cret");
    assert_eq!(read(bundle.host_path.join("ns")), "default");

    let frozen = mount(&mounts, "/etc/level-frozen").host_path.clone();
    assert_eq!(read(&frozen), "3");

    // An update reaches the mounted files in place; the subPath mount does not follow.
    Api::<ConfigMap>::namespaced(h.client.clone(), "default")
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "mode": "slow", "level": "4" } })),
        )
        .await
        .expect("update configmap");
    let file = all.host_path.join("mode");
    eventually(120, "the configMap update reaches the volume", || {
        std::fs::read_to_string(&file).is_ok_and(|s| s == "slow")
    })
    .await;
    let nested = some.host_path.join("nested/the-mode");
    eventually(60, "the items volume follows too", || {
        std::fs::read_to_string(&nested).is_ok_and(|s| s == "slow")
    })
    .await;
    let projected = bundle.host_path.join("level");
    eventually(60, "the projected volume follows too", || {
        std::fs::read_to_string(&projected).is_ok_and(|s| s == "4")
    })
    .await;
    assert_ne!(
        std::fs::read_to_string(&frozen).ok().as_deref(),
        Some("4"),
        "a subPath mount keeps what it was started with"
    );
    assert_eq!(
        h.fake.created_containers().len(),
        1,
        "no restart for an update"
    );

    // Teardown: the pod directory goes with the pod.
    h.pods()
        .delete("vols", &DeleteParams::default())
        .await
        .expect("delete");
    h.wait_pod_gone("vols", 60).await;
    assert!(!pod_dir.exists(), "{} was left behind", pod_dir.display());
}

async fn failed_mount_message(h: &Harness, pod: &str) -> String {
    h.wait_event(pod, "FailedMount", 30)
        .await
        .message
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_missing_config_map_holds_the_pod_in_container_creating_until_it_exists() {
    let mut h = harness().await;
    let root = agent_root();
    h.start_agent(h.config("node-1").root_dir(root.path()));
    let mut p = pod("needs-cm", "node-1", &[("app", "busybox:1.36")]);
    p["spec"]["volumes"] = json!([
        { "name": "scratch", "emptyDir": {} },
        { "name": "config", "configMap": { "name": "later" } }
    ]);
    p["spec"]["containers"][0]["volumeMounts"] =
        json!([{ "name": "config", "mountPath": "/etc/config" }]);
    let created = h.create_pod(p).await;
    let uid = created.metadata.uid.clone().expect("uid");
    assert_eq!(
        failed_mount_message(&h, "needs-cm").await,
        "MountVolume.SetUp failed for volume \"config\" : configmap \"later\" not found"
    );
    let waiting = h
        .wait_pod("needs-cm", 30, |p: Option<&Pod>| {
            p.is_some_and(|p| waiting_reason(p, "app").as_deref() == Some("ContainerCreating"))
        })
        .await;
    assert_eq!(phase(&waiting), "Pending");
    assert!(h.fake.created_containers().is_empty());
    assert!(h.fake.sandboxes().is_empty(), "no sandbox before volumes");
    let cm_dir = root
        .path()
        .join("pods")
        .join(&uid)
        .join("volumes/kubernetes.io~configmap/config");
    assert!(!cm_dir.exists(), "nothing half-made: {}", cm_dir.display());

    config_map(&h, "later", &[("k", "v")]).await;
    h.wait_pod("needs-cm", 120, is_phase("Running")).await;
    assert_eq!(read(cm_dir.join("k")), "v");
}

#[tokio::test(start_paused = true)]
async fn host_path_types_are_checked_and_created() {
    let mut h = harness().await;
    let root = agent_root();
    let host = tempfile::tempdir().expect("tempdir");
    h.start_agent(h.config("node-1").root_dir(root.path()));
    let missing = host.path().join("missing");
    let mut p = pod("hp-bad", "node-1", &[("app", "busybox:1.36")]);
    p["spec"]["volumes"] = json!([
        { "name": "data", "hostPath": { "path": missing, "type": "Directory" } }
    ]);
    h.create_pod(p).await;
    assert_eq!(
        failed_mount_message(&h, "hp-bad").await,
        format!(
            "MountVolume.SetUp failed for volume \"data\" : hostPath type check failed: {} is not a directory",
            missing.display()
        )
    );
    assert!(!missing.exists());

    let made = host.path().join("made");
    let file = host.path().join("file.txt");
    let mut p = pod("hp-ok", "node-1", &[("app", "busybox:1.36")]);
    p["spec"]["volumes"] = json!([
        { "name": "dir", "hostPath": { "path": made, "type": "DirectoryOrCreate" } },
        { "name": "file", "hostPath": { "path": file, "type": "FileOrCreate" } }
    ]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([
        { "name": "dir", "mountPath": "/data", "readOnly": true },
        { "name": "file", "mountPath": "/etc/file.txt" }
    ]);
    h.create_pod(p).await;
    h.wait_pod("hp-ok", 30, is_phase("Running")).await;
    assert!(made.is_dir());
    assert!(file.is_file());
    let c = h
        .fake
        .created_containers()
        .into_iter()
        .find(|c| c.labels.get("io.kubernetes.pod.name").map(String::as_str) == Some("hp-ok"))
        .expect("hp-ok container");
    let data = mount(&c.mounts, "/data");
    assert_eq!(data.host_path, made);
    assert!(data.readonly);
    assert!(!mount(&c.mounts, "/etc/file.txt").readonly);

    h.pods()
        .delete("hp-ok", &DeleteParams::default())
        .await
        .expect("delete");
    h.wait_pod_gone("hp-ok", 60).await;
    assert!(made.is_dir(), "a hostPath outlives the pod");
}

#[tokio::test(start_paused = true)]
async fn a_claim_bound_to_a_host_path_volume_mounts_its_directory() {
    let mut h = harness().await;
    let root = agent_root();
    let host = tempfile::tempdir().expect("tempdir");
    h.start_agent(h.config("node-1").root_dir(root.path()));
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": { "name": "pv-1" },
        "spec": {
            "capacity": { "storage": "1Gi" },
            "accessModes": ["ReadWriteOnce"],
            "hostPath": { "path": host.path() },
            "claimRef": { "namespace": "default", "name": "claim" }
        }
    }))
    .expect("pv");
    Api::<PersistentVolume>::all(h.client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .expect("create pv");
    let claims = Api::<PersistentVolumeClaim>::namespaced(h.client.clone(), "default");
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": { "name": "claim" },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": "1Gi" } },
            "volumeName": "pv-1"
        }
    }))
    .expect("pvc");
    claims
        .create(&PostParams::default(), &pvc)
        .await
        .expect("create pvc");
    claims
        .patch_status(
            "claim",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "Bound" } })),
        )
        .await
        .expect("bind pvc");
    let mut p = pod("with-claim", "node-1", &[("app", "busybox:1.36")]);
    p["spec"]["volumes"] = json!([
        { "name": "data", "persistentVolumeClaim": { "claimName": "claim" } }
    ]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
    h.create_pod(p).await;
    h.wait_pod("with-claim", 30, is_phase("Running")).await;
    let c = &h.fake.created_containers()[0];
    assert_eq!(mount(&c.mounts, "/data").host_path, host.path());
}
