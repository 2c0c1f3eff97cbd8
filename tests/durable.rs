//! A cluster on a data directory (SQLite) keeps its objects across a restart, and a second
//! process-level open of the same directory is refused while the first runs.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kybernetes::Cluster;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kyb-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn objects_survive_a_restart_on_the_same_data_dir() {
    let dir = temp_dir("restart");
    let (uid, rv) = {
        let c = Cluster::builder()
            .nodes(0)
            .without_control_plane()
            .data_dir(&dir)
            .expect("data dir")
            .start()
            .await
            .expect("start");
        let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("kept".into());
        cm.data = Some([("k".to_string(), "v".to_string())].into());
        let created = cms
            .create(&PostParams::default(), &cm)
            .await
            .expect("create");
        c.shutdown().await.expect("shutdown");
        (created.metadata.uid, created.metadata.resource_version)
    };
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .data_dir(&dir)
        .expect("reopen")
        .start()
        .await
        .expect("restart");
    let cms: Api<ConfigMap> = Api::default_namespaced(c.client());
    let kept = cms.get("kept").await.expect("object is back");
    assert_eq!(kept.metadata.uid, uid, "same object, same uid");
    assert_eq!(kept.metadata.resource_version, rv, "same revision");
    assert_eq!(
        kept.data.and_then(|d| d.get("k").cloned()).as_deref(),
        Some("v")
    );
    let mut next = ConfigMap::default();
    next.metadata.name = Some("after".into());
    let after = cms
        .create(&PostParams::default(), &next)
        .await
        .expect("create after restart");
    let rv_after: i64 = after
        .metadata
        .resource_version
        .expect("rv")
        .parse()
        .expect("decimal");
    assert!(
        rv_after > rv.expect("rv").parse::<i64>().expect("decimal"),
        "revisions never go backwards"
    );
    c.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_data_dir_in_use_is_refused_with_a_clear_error() {
    let dir = temp_dir("locked");
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .data_dir(&dir)
        .expect("data dir")
        .start()
        .await
        .expect("start");
    let second = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .data_dir(&dir);
    let msg = match second {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a second open of the same data dir must fail"),
    };
    assert!(msg.contains("in use"), "message says why: {msg}");
    c.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
