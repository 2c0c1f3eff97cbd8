//! Whole clusters on a real containerd daemon: `ContainerdRuntime` on the nodes, the busybox
//! image imported, everything checked through `kube::Api` as a user would (logs, exec,
//! status, Endpoints). Each test starts its own containerd under a temp dir (see
//! `runtime/tests/support/containerd.rs`) and fails, not skips, without containerd and runc.
//!
//! Pods here get the network namespace `ContainerdRuntime` makes (loopback only, as
//! `LocalNetwork` prepares no namespace): their IP is the one `LocalNetwork` assigned, which
//! nothing on the host routes to, so readiness is checked through the pod's `Ready` condition
//! and the Endpoints addresses rather than by connecting.

use crate::common;

use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerStatus, Endpoints, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::api::{Api, AttachParams, DeleteParams, LogParams, Patch, PatchParams, PostParams};
use kybernetes::Cluster;
use kybernetes::node::NodeAgentConfig;
use kybernetes::runtime::Runtime;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

#[path = "../runtime/tests/support/containerd.rs"]
pub(crate) mod support;

use support::{Containerd, busybox_image};

/// How long a test waits for anything: containers start for real on a loaded machine.
pub(crate) const WITHIN: Duration = Duration::from_secs(120);

/// The image every pod runs, imported into containerd before the cluster starts.
pub(crate) const BUSYBOX: &str = "busybox:test";

/// A shell loop that exits promptly on TERM, so that deleting a pod does not wait out its
/// grace period (PID 1 of a container ignores TERM unless it traps it).
pub(crate) const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

/// A cluster whose nodes run containers on a containerd daemon of its own.
pub(crate) struct CtrdCluster {
    pub(crate) cluster: Cluster,
    pub(crate) daemon: Containerd,
}

impl CtrdCluster {
    pub(crate) async fn start(nodes: usize) -> CtrdCluster {
        Self::start_with(Cluster::builder().nodes(nodes)).await
    }

    pub(crate) async fn start_with(builder: kybernetes::ClusterBuilder) -> CtrdCluster {
        let daemon = Containerd::start().await;
        let runtime = daemon.runtime().await;
        runtime
            .import_image(busybox_image(BUSYBOX))
            .await
            .expect("import busybox");
        let cluster = builder.runtime(runtime).start().await.expect("cluster");
        CtrdCluster { cluster, daemon }
    }

    pub(crate) fn pods(&self) -> Api<Pod> {
        Api::default_namespaced(self.cluster.client())
    }

    pub(crate) async fn shutdown(self) {
        let CtrdCluster { cluster, daemon } = self;
        cluster.shutdown().await.expect("shutdown");
        // The runtime removed what it started; containerd goes after it.
        drop(daemon);
    }
}

pub(crate) fn pod(name: &str, labels: Value, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .expect("pod")
}

pub(crate) fn shell(name: &str, script: &str) -> Value {
    json!({"name": name, "image": BUSYBOX, "command": ["sh", "-c", script]})
}

/// The status of the (only) container of `p`.
pub(crate) fn container_status(p: &Pod) -> Option<&ContainerStatus> {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
}

pub(crate) fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until pod `name` satisfies `check`, and returns it.
pub(crate) async fn wait_pod(
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Ok(p) = pods.get(name).await
            && check(&p)
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name}: timed out waiting for {what}: {:?}",
            pods.get(name).await.ok().and_then(|p| p.status)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn running(pods: &Api<Pod>, name: &str) -> Pod {
    wait_pod(pods, name, "Running", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await
}

/// Runs `command` in pod `name` through `pods/exec` and returns its stdout (asserting success).
pub(crate) async fn exec(pods: &Api<Pod>, name: &str, command: &[&str]) -> String {
    let (status, out) = try_exec(pods, name, command).await;
    assert_eq!(
        status.status.as_deref(),
        Some("Success"),
        "{command:?} in {name}: {status:?}"
    );
    out
}

/// Runs `command` in pod `name` through `pods/exec`: its exit status and stdout.
pub(crate) async fn try_exec(
    pods: &Api<Pod>,
    name: &str,
    command: &[&str],
) -> (
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
    String,
) {
    let mut p = pods
        .exec(
            name,
            command.to_vec(),
            &AttachParams::default().stderr(false),
        )
        .await
        .expect("exec");
    let status = p.take_status().expect("status");
    let mut out = String::new();
    p.stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .await
        .expect("read stdout");
    let status = status.await.expect("a status");
    p.join().await.expect("join");
    (status, out)
}

pub(crate) async fn logs(pods: &Api<Pod>, name: &str) -> String {
    pods.logs(name, &LogParams::default())
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_prints_env_from_a_configmap_and_a_secret_and_a_mounted_file() {
    let c = CtrdCluster::start(1).await;
    let client = c.cluster.client();
    let config: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "app-config"},
        "data": {"greeting": "hello from the configmap", "app.conf": "mode=mounted"},
    }))
    .expect("configmap");
    Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .expect("create configmap");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "app-secret"},
        "stringData": {"password": "s3cret"},
    }))
    .expect("secret");
    Api::<Secret>::default_namespaced(client.clone())
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let script = format!(
        "echo \"greeting=$GREETING\"; echo \"password=$PASSWORD\"; \
         echo \"file=$(cat /etc/config/app.conf)\"; {IDLE}"
    );
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "printer"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "printer"}},
            "template": {
                "metadata": {"labels": {"app": "printer"}},
                "spec": {
                    "containers": [{
                        "name": "main", "image": BUSYBOX, "command": ["sh", "-c", script],
                        "env": [
                            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "greeting"}}},
                            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}},
                        ],
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}],
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "app-config"}}],
                },
            },
        },
    }))
    .expect("deployment");
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    common::wait_available(&deployments, "printer", 3, WITHIN).await;

    let pods = c.pods();
    let list = pods
        .list(&kube::api::ListParams::default().labels("app=printer"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 3, "three replicas");
    // containerd itself runs them, one task each.
    let tasks = c.daemon.ctr(&["tasks", "ls", "-q"]);
    assert_eq!(tasks.lines().count(), 3, "{tasks}");
    let want = [
        "greeting=hello from the configmap",
        "password=s3cret",
        "file=mode=mounted",
    ];
    for p in &list.items {
        let name = p.metadata.name.clone().expect("name");
        common::until(&format!("the three lines in {name}'s log"), WITHIN, || {
            let (pods, name) = (pods.clone(), name.clone());
            async move {
                let log = logs(&pods, &name).await;
                want.iter().all(|w| log.lines().any(|l| l == *w))
            }
        })
        .await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reads_a_mounted_configmap_file_which_follows_updates() {
    let mut template = NodeAgentConfig::new("template");
    // Upstream refreshes configMap volumes every syncFrequency (1 min); a short one here.
    template.volume_resync_interval = Duration::from_secs(1);
    let c = CtrdCluster::start_with(Cluster::builder().node_template(template)).await;
    let configs: Api<ConfigMap> = Api::default_namespaced(c.cluster.client());
    let config: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings"},
        "data": {"color": "blue"},
    }))
    .expect("configmap");
    configs
        .create(&PostParams::default(), &config)
        .await
        .expect("create configmap");
    let pods = c.pods();
    let mut container = shell("main", IDLE);
    container["volumeMounts"] = json!([{"name": "settings", "mountPath": "/etc/config"}]);
    pods.create(
        &PostParams::default(),
        &pod(
            "reader",
            json!({}),
            json!({"containers": [container],
                   "volumes": [{"name": "settings", "configMap": {"name": "settings"}}]}),
        ),
    )
    .await
    .expect("create pod");
    running(&pods, "reader").await;
    assert_eq!(
        exec(&pods, "reader", &["cat", "/etc/config/color"]).await,
        "blue"
    );

    configs
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"color": "green"}})),
        )
        .await
        .expect("update configmap");
    common::until("the mounted file shows the update", WITHIN, || {
        let pods = pods.clone();
        async move { exec(&pods, "reader", &["cat", "/etc/config/color"]).await == "green" }
    })
    .await;
    c.shutdown().await;
}

/// The lines of pod `name`'s log, followed.
async fn follow(
    pods: &Api<Pod>,
    name: &str,
) -> impl futures::Stream<Item = std::io::Result<String>> + Unpin + Send + use<> {
    let params = LogParams {
        follow: true,
        ..LogParams::default()
    };
    pods.log_stream(name, &params)
        .await
        .expect("follow logs")
        .lines()
}

/// Reads followed log `lines` of pod `name` until one equal to `want` arrives.
async fn read_until(
    mut lines: impl futures::Stream<Item = std::io::Result<String>> + Unpin,
    name: &str,
    want: &str,
) {
    let found = tokio::time::timeout(WITHIN, async {
        while let Some(line) = lines.try_next().await.expect("log line") {
            if line == want {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or_else(|_| panic!("{name}: no {want:?} in its log within {WITHIN:?}"));
    assert!(found, "{name}: the log ended without {want:?}");
}

/// Deletes pod `name` with `grace` and follows it until it is gone; returns the last state
/// its container was reported in (the node agent reports the exit before the pod goes).
async fn delete_and_follow(
    pods: &Api<Pod>,
    name: &str,
    grace: u32,
) -> Option<k8s_openapi::api::core::v1::ContainerStateTerminated> {
    use kube::api::{WatchEvent, WatchParams};
    let rv = pods
        .get(name)
        .await
        .expect("get pod")
        .metadata
        .resource_version
        .expect("revision");
    let params = WatchParams::default().fields(&format!("metadata.name={name}"));
    let mut events = pods.watch(&params, &rv).await.expect("watch").boxed();
    pods.delete(name, &DeleteParams::default().grace_period(grace))
        .await
        .expect("delete");
    let mut terminated = None;
    tokio::time::timeout(WITHIN, async {
        while let Some(ev) = events.try_next().await.expect("watch event") {
            match ev {
                WatchEvent::Modified(p) => {
                    if let Some(t) = container_status(&p)
                        .and_then(|s| s.state.as_ref())
                        .and_then(|s| s.terminated.clone())
                    {
                        terminated = Some(t);
                    }
                }
                WatchEvent::Deleted(_) => return,
                _ => {}
            }
        }
        panic!("the watch of {name} ended before it was deleted");
    })
    .await
    .unwrap_or_else(|_| panic!("pod {name} not gone within {WITHIN:?}"));
    terminated
}

/// Waits until pod `name` is gone from the API.
async fn gone(pods: &Api<Pod>, name: &str) {
    common::until(&format!("pod {name} gone"), WITHIN, || {
        let pods = pods.clone();
        async move { matches!(pods.get(name).await, Err(kube::Error::Api(e)) if e.code == 404) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_sends_term_and_kills_a_container_that_ignores_it_when_the_grace_period_ends() {
    let c = CtrdCluster::start(1).await;
    let pods = c.pods();
    let graceful =
        "trap 'echo terminating; exit 0' TERM; echo started; while true; do sleep 1; done";
    // PID 1 of a container ignores signals it has no handler for, so this one does not
    // even need a trap; the explicit one says what is tested.
    let stubborn = "trap '' TERM; echo started; while true; do sleep 1; done";
    for (name, script) in [("graceful", graceful), ("stubborn", stubborn)] {
        pods.create(
            &PostParams::default(),
            &pod(
                name,
                json!({}),
                json!({"containers": [shell("main", script)]}),
            ),
        )
        .await
        .expect("create pod");
    }
    for name in ["graceful", "stubborn"] {
        running(&pods, name).await;
        read_until(follow(&pods, name).await, name, "started").await;
    }

    // The log is followed from before the delete: the pod leaves the API once its
    // container has exited.
    let lines = follow(&pods, "graceful").await;
    let following = tokio::spawn(async move { read_until(lines, "graceful", "terminating").await });
    let graceful_end = delete_and_follow(&pods, "graceful", 30).await;
    following.await.expect("the follower");
    let graceful_end = graceful_end.expect("graceful's exit was reported");
    assert_eq!(graceful_end.exit_code, 0, "{graceful_end:?}");

    let grace = Duration::from_secs(3);
    let deleted_at = Instant::now();
    let stubborn_end = delete_and_follow(&pods, "stubborn", grace.as_secs() as u32).await;
    assert!(
        deleted_at.elapsed() >= grace,
        "a container that ignores TERM runs until its grace period ends ({:?})",
        deleted_at.elapsed()
    );
    let stubborn_end = stubborn_end.expect("stubborn's exit was reported");
    assert_eq!(stubborn_end.exit_code, 137, "killed: {stubborn_end:?}");
    // Killed, not left running in containerd.
    let runtime = c.cluster.runtime().clone();
    common::until("no stubborn container left running", WITHIN, || {
        let runtime = runtime.clone();
        async move {
            runtime
                .list_containers(&Default::default())
                .await
                .expect("list containers")
                .iter()
                .all(|s| !s.state.is_running())
        }
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_exec_liveness_probe_restarts_the_container() {
    let c = CtrdCluster::start(1).await;
    let pods = c.pods();
    let mut container = shell(
        "main",
        &format!("echo ok > /tmp/health; sleep 2; echo broken > /tmp/health; {IDLE}"),
    );
    container["livenessProbe"] = json!({
        "exec": {"command": ["sh", "-c", "[ \"$(cat /tmp/health)\" = ok ]"]},
        "periodSeconds": 1, "failureThreshold": 1,
    });
    pods.create(
        &PostParams::default(),
        &pod("unhealthy", json!({}), json!({"containers": [container]})),
    )
    .await
    .expect("create pod");
    // Killed (TERM, which the trap answers with exit 0) and started again.
    let p = wait_pod(&pods, "unhealthy", "a restart, running again", |p| {
        container_status(p).is_some_and(|s| {
            s.restart_count >= 1 && s.state.as_ref().is_some_and(|st| st.running.is_some())
        })
    })
    .await;
    let status = container_status(&p).expect("status");
    assert!(
        status
            .last_state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some()),
        "the killed container's last state: {status:?}"
    );
    // It keeps failing, so it keeps being restarted.
    let restarts = status.restart_count;
    wait_pod(&pods, "unhealthy", "another restart", |p| {
        container_status(p).is_some_and(|s| s.restart_count > restarts)
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_readiness_probe_on_busybox_httpd_gates_the_endpoints() {
    let c = CtrdCluster::start(1).await;
    let pods = c.pods();
    let services: Api<Service> = Api::default_namespaced(c.cluster.client());
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");
    let mut container = shell("httpd", "exec httpd -f -p 8080 -h /tmp");
    container["ports"] = json!([{"containerPort": 8080}]);
    container["readinessProbe"] = json!({
        "httpGet": {"path": "/ready", "port": 8080},
        "periodSeconds": 1, "failureThreshold": 1,
    });
    pods.create(
        &PostParams::default(),
        &pod(
            "web",
            json!({"app": "web"}),
            json!({"containers": [container]}),
        ),
    )
    .await
    .expect("create pod");
    let p = running(&pods, "web").await;
    let ip = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a pod IP");
    let endpoints: Api<Endpoints> = Api::default_namespaced(c.cluster.client());
    let addresses = |ready: bool| {
        let (endpoints, ip) = (endpoints.clone(), ip.clone());
        async move {
            let Ok(e) = endpoints.get("web").await else {
                return false;
            };
            e.subsets.iter().flatten().any(|s| {
                let list = if ready {
                    &s.addresses
                } else {
                    &s.not_ready_addresses
                };
                list.iter().flatten().any(|a| a.ip == ip)
            })
        }
    };
    // httpd answers 404 for /ready until the file exists: not ready.
    common::until("the pod among the not-ready addresses", WITHIN, || {
        addresses(false)
    })
    .await;
    assert!(!is_ready(&pods.get("web").await.expect("web")));

    exec(&pods, "web", &["sh", "-c", "echo ok > /tmp/ready"]).await;
    wait_pod(&pods, "web", "Ready", is_ready).await;
    common::until("the pod among the ready addresses", WITHIN, || {
        addresses(true)
    })
    .await;

    // The probe fails again once the file goes: the pod leaves the ready addresses, and it
    // is not restarted (readiness never restarts), then it comes back.
    exec(&pods, "web", &["rm", "/tmp/ready"]).await;
    wait_pod(&pods, "web", "not Ready", |p| !is_ready(p)).await;
    common::until("the pod back among the not-ready addresses", WITHIN, || {
        addresses(false)
    })
    .await;
    assert!(!addresses(true).await, "still among the ready addresses");
    exec(&pods, "web", &["sh", "-c", "echo ok > /tmp/ready"]).await;
    wait_pod(&pods, "web", "Ready again", is_ready).await;
    common::until("the pod back among the ready addresses", WITHIN, || {
        addresses(true)
    })
    .await;
    let p = pods.get("web").await.expect("web");
    assert_eq!(container_status(&p).map(|s| s.restart_count), Some(0));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let c = CtrdCluster::start(1).await;
    let pods = c.pods();
    let mut container = shell("grow", "a=x; while true; do a=\"$a$a\"; done");
    container["resources"] = json!({"limits": {"memory": "16Mi"}});
    pods.create(
        &PostParams::default(),
        &pod(
            "hungry",
            json!({}),
            json!({"restartPolicy": "Never", "containers": [container]}),
        ),
    )
    .await
    .expect("create pod");
    let p = wait_pod(&pods, "hungry", "Failed", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
    })
    .await;
    let terminated = container_status(&p)
        .and_then(|s| s.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .expect("terminated");
    assert_eq!(
        (terminated.reason.as_deref(), terminated.exit_code),
        (Some("OOMKilled"), 137),
        "{terminated:?}"
    );
    c.shutdown().await;
}

fn web(replicas: i32) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}},
                         "spec": {"containers": [{
                             "name": "nginx", "image": BUSYBOX, "command": ["sh", "-c", IDLE],
                             "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .expect("statefulset")
}

/// Waits until the StatefulSet controller reports `replicas` ready replicas of `web` (and
/// no others), for its current generation.
async fn web_ready(sets: &Api<StatefulSet>, replicas: i32) {
    common::until(&format!("web: {replicas} ready"), WITHIN, || {
        let sets = sets.clone();
        async move {
            let Ok(s) = sets.get("web").await else {
                return false;
            };
            let generation = s.metadata.generation;
            s.status.is_some_and(|st| {
                st.observed_generation == generation
                    && st.replicas == replicas
                    && st.ready_replicas.unwrap_or(0) == replicas
            })
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_pod_reads_back_its_volume_after_scale_to_zero_and_back() {
    let c = CtrdCluster::start(2).await;
    let client = c.cluster.client();
    let headless: Service = serde_json::from_value(json!({
        "metadata": {"name": "nginx"},
        "spec": {"clusterIP": "None", "selector": {"app": "nginx"}, "ports": [{"port": 80, "name": "web"}]},
    }))
    .expect("service");
    Api::<Service>::default_namespaced(client.clone())
        .create(&PostParams::default(), &headless)
        .await
        .expect("service");
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    sets.create(&PostParams::default(), &web(2))
        .await
        .expect("create");
    web_ready(&sets, 2).await;
    let pods = c.pods();
    let old_uid = pods.get("web-0").await.expect("web-0").metadata.uid;
    exec(
        &pods,
        "web-0",
        &[
            "sh",
            "-c",
            "echo written by the first web-0 > /usr/share/nginx/html/index.html",
        ],
    )
    .await;

    let scale = |replicas: i32| {
        let sets = sets.clone();
        async move {
            sets.patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"replicas": replicas}})),
            )
            .await
            .expect("scale");
        }
    };
    scale(0).await;
    web_ready(&sets, 0).await;
    gone(&pods, "web-0").await;
    scale(2).await;
    web_ready(&sets, 2).await;

    let new_web0 = pods.get("web-0").await.expect("web-0");
    assert_ne!(new_web0.metadata.uid, old_uid, "a new web-0");
    let claim = new_web0
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "www"))
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone());
    assert_eq!(claim.as_deref(), Some("www-web-0"));
    let bound = Api::<PersistentVolumeClaim>::default_namespaced(client)
        .get("www-web-0")
        .await
        .expect("claim");
    assert_eq!(bound.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
    assert_eq!(
        exec(&pods, "web-0", &["cat", "/usr/share/nginx/html/index.html"]).await,
        "written by the first web-0\n"
    );
    c.shutdown().await;
}
