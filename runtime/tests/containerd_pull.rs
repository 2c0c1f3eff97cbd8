//! `ContainerdRuntime` pulling from a real OCI distribution registry on loopback (Debian's
//! `docker-registry`, distribution 2.8, started per test under a temp dir), into a real
//! containerd daemon, then running a container of what it pulled. Tests fail, not skip, when
//! `docker-registry`, containerd or runc is missing.

use std::time::Instant;

use kybernetes_runtime::{Error, Image, PullAuth, RegistryCredential, Runtime};

#[path = "support/pods.rs"]
mod pods;
#[path = "support/registry.rs"]
mod registry;
#[path = "support/containerd.rs"]
mod support;

use pods::{run_in_pod, shell};
use registry::Registry;
use support::{Containerd, busybox_image};

/// The image and message of the `ImagePull` error that `pulled` must be.
fn image_pull_error(pulled: Result<Image, Error>) -> (String, String) {
    match pulled {
        Err(Error::ImagePull { image, message, .. }) => (image, message),
        other => panic!("expected ImagePull, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_busybox_from_a_registry_and_runs_it() {
    let registry = Registry::start().await;
    let config_digest = registry
        .push("tools/busybox:1.0", &busybox_image("unused"), None)
        .await;
    let daemon = Containerd::start().await;
    let runtime = daemon.runtime().await;
    let reference = format!("{}/tools/busybox:1.0", registry.host);

    let started = Instant::now();
    let image = runtime.pull_image(&reference).await.expect("pull");
    eprintln!(
        "pulled {reference} ({} bytes) in {:?}",
        image.size_bytes,
        started.elapsed()
    );
    assert_eq!(image.id, config_digest);
    assert_eq!(image.repo_tags, vec![reference.clone()]);
    let digest = image.repo_digests[0]
        .strip_prefix(&format!("{}/tools/busybox@", registry.host))
        .expect("repo digest names the repository")
        .to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(
        runtime.image_status(&reference).await.expect("status"),
        Some(image.clone())
    );
    assert!(daemon.ctr(&["images", "ls", "-q"]).contains(&reference));

    // A second pull finds everything there and gives the same image.
    assert_eq!(
        runtime.pull_image(&reference).await.expect("pull again"),
        image
    );

    // Pulled by digest, the same content answers.
    let by_digest = format!("{}/tools/busybox@{digest}", registry.host);
    let pinned = runtime
        .pull_image(&by_digest)
        .await
        .expect("pull by digest");
    assert_eq!(pinned.id, image.id);

    // A container of the pulled image runs.
    let mut config = shell("main", "echo pulled and running");
    config.image = reference.clone();
    let (state, lines) = run_in_pod(&runtime, "pulled", &config).await;
    assert_eq!(state.exit_code(), Some(0), "{state:?}");
    assert!(
        lines.iter().any(|l| l.line == "pulled and running"),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_pull_takes_this_platforms_manifest() {
    let registry = Registry::start().await;
    let amd64_config = registry
        .push("multi/busybox:2", &busybox_image("unused"), Some("arm64"))
        .await;
    let daemon = Containerd::start().await;
    let runtime = daemon.runtime().await;
    let reference = format!("{}/multi/busybox:2", registry.host);
    let image = runtime.pull_image(&reference).await.expect("pull index");
    // The image id is the linux/amd64 config, the record points at the index.
    assert_eq!(image.id, amd64_config);
    let listed = daemon.ctr(&["images", "ls"]);
    assert!(
        listed.contains("application/vnd.oci.image.index.v1+json"),
        "{listed}"
    );
    let mut config = shell("main", "true");
    config.image = reference;
    let (state, _) = run_in_pod(&runtime, "multi", &config).await;
    assert_eq!(state.exit_code(), Some(0), "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_or_unreachable_registry_is_an_image_pull_error() {
    let registry = Registry::start().await;
    registry
        .push("tools/busybox:1.0", &busybox_image("unused"), None)
        .await;
    let daemon = Containerd::start().await;
    let runtime = daemon.runtime().await;

    let missing = format!("{}/tools/busybox:nope", registry.host);
    let (image, message) = image_pull_error(runtime.pull_image(&missing).await);
    assert_eq!(image, missing);
    assert!(message.contains(&missing), "{message}");
    assert!(message.contains("not found"), "{message}");
    let missing_repo = format!("{}/nobody/here:1", registry.host);
    let (_, message) = image_pull_error(runtime.pull_image(&missing_repo).await);
    assert!(message.contains("not found"), "{message}");

    // Nothing listens on a port just released.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr").port()
    };
    let unreachable = format!("127.0.0.1:{closed}/tools/busybox:1.0");
    let (_, message) = image_pull_error(runtime.pull_image(&unreachable).await);
    assert!(message.contains("cannot reach registry"), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{closed}")),
        "{message}"
    );
    assert_eq!(runtime.list_images().await.expect("list"), Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_with_auth_refuses_anonymous_pulls_and_serves_the_pull_secret() {
    let registry = Registry::start_with_auth().await;
    registry
        .push("private/busybox:1", &busybox_image("unused"), None)
        .await;
    let daemon = Containerd::start().await;
    let runtime = daemon.runtime().await;
    let reference = format!("{}/private/busybox:1", registry.host);

    let (_, message) = image_pull_error(runtime.pull_image(&reference).await);
    assert!(message.contains("unauthorized"), "{message}");
    assert!(message.contains("imagePullSecret"), "{message}");

    let mut wrong = PullAuth::anonymous();
    wrong.insert(
        registry.host.clone(),
        RegistryCredential {
            username: registry::USER.into(),
            password: "wrong".into(),
        },
    );
    let (_, message) = image_pull_error(runtime.pull_image_with(&reference, &wrong).await);
    assert!(
        message.contains("check the username and password"),
        "{message}"
    );

    // What a kubernetes.io/dockerconfigjson secret holds, with the `auth` form.
    let mut auth = PullAuth::anonymous();
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            registry::USER,
            registry::PASSWORD
        ))
    };
    auth.add_docker_config_json(
        serde_json::json!({"auths": {registry.host.clone(): {"auth": basic}}})
            .to_string()
            .as_bytes(),
    )
    .expect("docker config");
    let image = runtime
        .pull_image_with(&reference, &auth)
        .await
        .expect("pull with credentials");
    assert_eq!(image.repo_tags, vec![reference]);
}
