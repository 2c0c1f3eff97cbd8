//! A cluster served over HTTPS with its kubeconfig written, and the real kubectl run against
//! it (a missing kubectl fails the test, it never skips it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kybernetes::runtime::FakeRuntime;
use kybernetes::{Cluster, ClusterBuilder};
use serde_json::json;

/// A served cluster on a fake runtime and the kubeconfig to reach it.
pub struct Served {
    /// The cluster.
    pub cluster: Cluster,
    _dir: tempfile::TempDir,
    /// The kubeconfig kubectl uses.
    pub kubeconfig: PathBuf,
}

/// Starts a cluster on `fake` served at a free loopback port, and writes its kubeconfig.
pub async fn served(fake: &FakeRuntime) -> Served {
    served_from(Cluster::builder().runtime(fake.clone())).await
}

/// Starts the cluster `builder` describes, served at a free loopback port, and writes its
/// kubeconfig.
pub async fn served_from(builder: ClusterBuilder) -> Served {
    let cluster = builder
        .serve("127.0.0.1:0".parse().expect("address"))
        .start()
        .await
        .expect("cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .kubeconfig()
        .expect("kubeconfig")
        .write(&kubeconfig)
        .expect("write kubeconfig");
    Served {
        cluster,
        _dir: dir,
        kubeconfig,
    }
}

/// Creates pod `name` in `default` with `containers` and waits until it runs.
pub async fn running_pod(cluster: &Cluster, name: &str, spec: serde_json::Value) -> Pod {
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": spec,
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    super::until(
        &format!("pod {name} running"),
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            async move {
                let p = pods.get(name).await.expect("get pod");
                p.status.and_then(|s| s.phase).as_deref() == Some("Running")
            }
        },
    )
    .await;
    pods.get(name).await.expect("get pod")
}

/// kubectl with `kubeconfig` and a fresh discovery cache beside it (discovery from another
/// test's server must not leak in).
pub fn kubectl_command(kubeconfig: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("kubectl");
    c.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(kubeconfig.with_file_name("cache"))
        .args(args)
        .stdin(Stdio::null());
    c
}

/// Runs kubectl to its end, off the async runtime.
pub async fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    let mut command = kubectl_command(kubeconfig, args);
    tokio::task::spawn_blocking(move || {
        command
            .output()
            .expect("kubectl must be installed (it is at /usr/bin/kubectl on the machine image)")
    })
    .await
    .expect("kubectl task")
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
