//! Real workloads on a cluster whose node runs containerd: pulls from a private registry with
//! the pod's `imagePullSecrets`, and `securityContext` (user, groups, fsGroup, read-only
//! root, capabilities, no_new_privs, `runAsNonRoot`, user names from the image's
//! `/etc/passwd`) checked from inside the containers through `pods/exec`.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kybernetes::runtime::Runtime;
use serde_json::json;

use crate::common;
use crate::containerd::support;
use crate::containerd::{
    BUSYBOX, CtrdCluster, IDLE, WITHIN, container_status, exec, pod, running, shell, wait_pod,
};

#[path = "../runtime/tests/support/registry.rs"]
mod registry;

use registry::Registry;

/// The reason and message a pod's (only) container waits with.
fn waiting(p: &Pod) -> Option<(String, String)> {
    let w = container_status(p)?.state.as_ref()?.waiting.as_ref()?;
    Some((
        w.reason.clone().unwrap_or_default(),
        w.message.clone().unwrap_or_default(),
    ))
}

/// A `kubernetes.io/dockerconfigjson` Secret for `host` with `user` and `password`.
fn docker_config_secret(name: &str, host: &str, user: &str, password: &str) -> Secret {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = json!({"auths": {host: {"auth": auth}}}).to_string();
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)},
    }))
    .expect("secret")
}

async fn events_of(c: &CtrdCluster, pod: &str) -> Vec<Event> {
    let events: Api<Event> = Api::default_namespaced(c.cluster.client());
    events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_image_pulls_with_the_pods_image_pull_secret_and_fails_actionably_without() {
    let registry = Registry::start_with_auth().await;
    registry
        .push("private/busybox:1", &support::busybox_image("unused"), None)
        .await;
    let c = CtrdCluster::start(1).await;
    let pods = c.pods();
    let secrets: Api<Secret> = Api::default_namespaced(c.cluster.client());
    secrets
        .create(
            &PostParams::default(),
            &docker_config_secret(
                "regcred",
                &registry.host,
                registry::USER,
                registry::PASSWORD,
            ),
        )
        .await
        .expect("create secret");
    secrets
        .create(
            &PostParams::default(),
            &docker_config_secret("wrongcred", &registry.host, registry::USER, "wrong"),
        )
        .await
        .expect("create secret");
    let image = format!("{}/private/busybox:1", registry.host);
    let private = |name: &str, secrets: &[&str]| {
        let mut container = shell("main", IDLE);
        container["image"] = json!(image);
        container["imagePullPolicy"] = json!("Always");
        let refs: Vec<_> = secrets.iter().map(|s| json!({"name": s})).collect();
        pod(
            name,
            json!({}),
            json!({"containers": [container], "imagePullSecrets": refs}),
        )
    };

    pods.create(
        &PostParams::default(),
        &private("with-secret", &["regcred"]),
    )
    .await
    .expect("create pod");
    running(&pods, "with-secret").await;
    assert_eq!(
        exec(&pods, "with-secret", &["echo", "pulled"]).await,
        "pulled\n"
    );

    // Anonymous: ErrImagePull, then ImagePullBackOff carrying the registry's refusal.
    pods.create(&PostParams::default(), &private("anonymous", &[]))
        .await
        .expect("create pod");
    let p = wait_pod(&pods, "anonymous", "ImagePullBackOff", |p| {
        waiting(p).is_some_and(|(r, _)| r == "ImagePullBackOff")
    })
    .await;
    let (_, message) = waiting(&p).expect("waiting");
    assert!(
        message.starts_with(&format!("Back-off pulling image \"{image}\"")),
        "{message}"
    );
    assert!(message.contains("unauthorized"), "{message}");
    assert!(message.contains("imagePullSecret"), "{message}");

    // A wrong password says so.
    pods.create(&PostParams::default(), &private("wrong", &["wrongcred"]))
        .await
        .expect("create pod");
    let p = wait_pod(&pods, "wrong", "a pull error", |p| {
        waiting(p).is_some_and(|(r, m)| {
            (r == "ErrImagePull" || r == "ImagePullBackOff")
                && m.contains("check the username and password")
        })
    })
    .await;
    assert_eq!(p.status.and_then(|s| s.phase).as_deref(), Some("Pending"));

    // A missing secret is no error of its own: an event, then the pull goes on with the rest.
    pods.create(
        &PostParams::default(),
        &private("missing-one", &["nosuch", "regcred"]),
    )
    .await
    .expect("create pod");
    running(&pods, "missing-one").await;
    let events = events_of(&c, "missing-one").await;
    let warned = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedToRetrieveImagePullSecret"));
    let message = warned.and_then(|e| e.message.clone()).unwrap_or_default();
    assert_eq!(
        message,
        "Unable to retrieve some image pull secrets (nosuch); attempting to pull the image may not succeed.",
        "{events:?}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_context_sets_users_groups_fs_group_read_only_root_and_capabilities() {
    let c = CtrdCluster::start(1).await;
    let pods = c.pods();
    let mut user = shell("user", IDLE);
    user["securityContext"] = json!({"readOnlyRootFilesystem": true});
    user["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    let mut caps = shell("caps", IDLE);
    caps["securityContext"] = json!({
        "runAsUser": 0,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "KILL"]},
    });
    let spec = json!({
        "securityContext": {
            "runAsUser": 1000, "runAsGroup": 3000,
            "supplementalGroups": [4000], "fsGroup": 2000,
        },
        "containers": [user],
        "volumes": [{"name": "data", "emptyDir": {}}],
    });
    pods.create(&PostParams::default(), &pod("secure", json!({}), spec))
        .await
        .expect("create pod");
    running(&pods, "secure").await;
    let id = |cmd: &str| {
        let pods = pods.clone();
        let cmd = cmd.to_string();
        async move { exec(&pods, "secure", &["sh", "-c", &cmd]).await }
    };
    assert_eq!(id("id -u").await.trim(), "1000");
    assert_eq!(id("id -g").await.trim(), "3000");
    let groups: BTreeSet<String> = id("id -G")
        .await
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let want: BTreeSet<String> = ["2000", "3000", "4000"].map(String::from).into();
    assert_eq!(groups, want);
    // The root filesystem refuses writes; the fsGroup volume takes them, in group 2000.
    let root = id("touch /rootfile 2>&1; echo $?").await;
    assert!(root.contains("Read-only file system"), "{root}");
    assert_eq!(
        id("touch /data/f && stat -c %g /data/f && stat -c %g /data").await,
        "2000\n2000\n"
    );

    pods.create(
        &PostParams::default(),
        &pod("caps", json!({}), json!({"containers": [caps]})),
    )
    .await
    .expect("create pod");
    running(&pods, "caps").await;
    let status = exec(&pods, "caps", &["cat", "/proc/self/status"]).await;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    // CAP_KILL is bit 5, CAP_NET_BIND_SERVICE bit 10.
    assert_eq!(field("CapEff:"), "0000000000000420", "{status}");
    assert_eq!(field("CapBnd:"), "0000000000000420", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_user_name_resolves_from_its_passwd_and_run_as_non_root_refuses_root() {
    let c = CtrdCluster::start(1).await;
    c.daemon
        .runtime()
        .await
        .import_image(support::busybox_image_as("busybox:app", "app"))
        .await
        .expect("import the app image");
    let pods = c.pods();
    let mut app = shell("app", IDLE);
    app["image"] = json!("busybox:app");
    app["imagePullPolicy"] = json!("Never");
    pods.create(
        &PostParams::default(),
        &pod("named", json!({}), json!({"containers": [app]})),
    )
    .await
    .expect("create pod");
    running(&pods, "named").await;
    assert_eq!(exec(&pods, "named", &["id", "-u"]).await.trim(), "1234");
    assert_eq!(exec(&pods, "named", &["id", "-g"]).await.trim(), "1234");
    let groups = exec(&pods, "named", &["id", "-G"]).await;
    let groups: BTreeSet<&str> = groups.split_whitespace().collect();
    assert_eq!(groups, BTreeSet::from(["50", "1234"]));

    // busybox:test names no user, so it runs as root: runAsNonRoot refuses it.
    let mut root = shell("main", IDLE);
    root["image"] = json!(BUSYBOX);
    pods.create(
        &PostParams::default(),
        &pod(
            "rooted",
            json!({}),
            json!({"securityContext": {"runAsNonRoot": true}, "containers": [root]}),
        ),
    )
    .await
    .expect("create pod");
    let p = wait_pod(&pods, "rooted", "CreateContainerConfigError", |p| {
        waiting(p).is_some_and(|(r, _)| r == "CreateContainerConfigError")
    })
    .await;
    let (_, message) = waiting(&p).expect("waiting");
    assert!(
        message.starts_with(
            "container has runAsNonRoot and image will run as root (pod: \"rooted_default("
        ),
        "{message}"
    );
    common::until("the Failed event", WITHIN, || async {
        events_of(&c, "rooted").await.iter().any(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("Error: container has runAsNonRoot"))
        })
    })
    .await;
    c.shutdown().await;
}
