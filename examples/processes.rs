//! Processes: a replicated local HTTP service supervised by a Deployment, with no daemon
//! anywhere. Each replica is a real `busybox httpd` process on its own loopback port
//! ([`ProcessRuntime`] in host mode shares the host network, so replicas take distinct
//! ports). The example kills one replica's process and watches the node agent restart it,
//! rolls the Deployment to a new version, then has a client Deployment call a Service by
//! name: through the Service environment variables (`HELLO_SERVICE_HOST`) and through the
//! cluster DNS, both of which name the userspace proxy's loopback address. It checks that
//! shutdown leaves no process behind. Everything runs unprivileged.
//!
//! Needs `/bin/busybox` (Debian's `busybox-static`). Run with
//! `cargo run --example processes`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kybernetes::Cluster;
use kybernetes::runtime::process::{ImageCommand, ProcessRuntime};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUSYBOX: &str = "/bin/busybox";

/// Each replica writes its page, then serves it on the first free port from `PORT_BASE`
/// (`httpd -f` exits at once if the port is taken, so the loop moves on).
const SERVER: &str = r#"
echo "$VERSION from $POD_NAME" > index.html
port=$PORT_BASE
while [ "$port" -lt $((PORT_BASE + 50)) ]; do
  echo "$port" > port
  echo "serving $VERSION on 127.0.0.1:$port"
  httpd -f -p "127.0.0.1:$port" -h .
  port=$((port + 1))
done
exit 1
"#;

fn manifest(port_base: u16) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "httpd",
                        // Mapped to /bin/busybox below: `sh -c` is busybox's own shell,
                        // where `httpd` is an applet.
                        "image": "busybox",
                        "command": ["sh", "-c", SERVER],
                        "env": [
                            { "name": "VERSION", "value": "v1" },
                            { "name": "PORT_BASE", "value": port_base.to_string() },
                            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }
                        ],
                        "readinessProbe": {
                            "exec": { "command": ["/bin/sh", "-c",
                                "/bin/busybox wget -q -O /dev/null http://127.0.0.1:$(cat port)/"] },
                            "periodSeconds": 1
                        }
                    }]
                }
            }
        }
    })
}

/// The Service port of `hello` (the userspace proxy listens on it at the Service's loopback
/// address; below 1024 it would need privilege).
const HELLO_SERVICE_PORT: u16 = 8080;

/// The client: it calls the `hello` Service by the variables the node agent sets, then by
/// asking the cluster DNS (`$DNS`, a loopback port) and dialling the answer.
const CALLER: &str = r#"
echo "HELLO_SERVICE_HOST=$HELLO_SERVICE_HOST HELLO_SERVICE_PORT=$HELLO_SERVICE_PORT"
while true; do
  echo "by env: $(wget -q -O - "http://$HELLO_SERVICE_HOST:$HELLO_SERVICE_PORT/" 2>&1)"
  ip=$(nslookup hello.default.svc.cluster.local "$DNS" | awk '/^Address/ { a = $NF } END { print a }')
  echo "by DNS: hello.default.svc.cluster.local is $ip: $(wget -q -O - "http://$ip:$HELLO_SERVICE_PORT/" 2>&1)"
  sleep 1
done
"#;

/// The `hello` backend and its Service (named `targetPort`), and the `caller` client.
fn hello_manifests(
    port: u16,
    dns: std::net::SocketAddr,
) -> anyhow::Result<(Deployment, Service, Deployment)> {
    let deployment = |name: &str, spec: serde_json::Value| {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": name, "namespace": "default" },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": name } },
                "template": {
                    "metadata": { "labels": { "app": name } },
                    "spec": { "terminationGracePeriodSeconds": 1, "containers": [spec] }
                }
            }
        })
    };
    let hello = deployment(
        "hello",
        json!({
            "name": "httpd",
            "image": "busybox",
            "command": ["sh", "-c",
                "echo \"hello from $POD_NAME\" > index.html; exec httpd -f -p \"127.0.0.1:$PORT\" -h ."],
            "env": [
                { "name": "PORT", "value": port.to_string() },
                { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }
            ],
            "ports": [{ "name": "http", "containerPort": port }],
            "readinessProbe": { "tcpSocket": { "port": "http" }, "periodSeconds": 1 }
        }),
    );
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": "hello", "namespace": "default" },
        "spec": {
            "selector": { "app": "hello" },
            "ports": [{ "name": "http", "port": HELLO_SERVICE_PORT, "targetPort": "http" }]
        }
    });
    let caller = deployment(
        "caller",
        json!({
            "name": "caller",
            "image": "busybox",
            "command": ["sh", "-c", CALLER],
            "env": [{ "name": "DNS", "value": dns.to_string() }]
        }),
    );
    Ok((
        serde_json::from_value(hello)?,
        serde_json::from_value(service)?,
        serde_json::from_value(caller)?,
    ))
}

/// Creates `hello`, its Service and `caller`, and waits until the caller reached `hello`
/// both ways; returns the caller's first lines that show it.
async fn call_by_service_name(cluster: &Cluster, port: u16) -> anyhow::Result<Vec<String>> {
    let dns = cluster.dns_addr().context("the cluster serves DNS")?;
    let (hello, service, caller) = hello_manifests(port, dns)?;
    let deployments: Api<Deployment> = Api::default_namespaced(cluster.client());
    let services: Api<Service> = Api::default_namespaced(cluster.client());
    deployments.create(&Default::default(), &hello).await?;
    services.create(&Default::default(), &service).await?;
    // The Service variables are set when a container starts: start the caller once the
    // proxy serves `hello`.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while cluster.network().resolve("hello", "default").is_empty() {
        if tokio::time::Instant::now() > deadline {
            bail!("the hello Service never resolved");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    deployments.create(&Default::default(), &caller).await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    loop {
        if tokio::time::Instant::now() > deadline {
            bail!("the caller never reached hello both ways");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(pod) = pods
            .list(&ListParams::default().labels("app=caller"))
            .await?
            .items
            .into_iter()
            .find(is_running)
        else {
            continue;
        };
        let name = pod.metadata.name.unwrap_or_default();
        let Ok(log) = pods.logs(&name, &LogParams::default()).await else {
            continue;
        };
        let lines: Vec<String> = log.lines().map(str::to_string).collect();
        let by_env = lines
            .iter()
            .position(|l| l.starts_with("by env: hello from"));
        let by_dns = lines
            .iter()
            .position(|l| l.starts_with("by DNS:") && l.contains(": hello from"));
        if let (Some(env), Some(dns)) = (by_env, by_dns) {
            let mut shown = vec![lines[0].clone(), lines[env].clone(), lines[dns].clone()];
            shown.dedup();
            return Ok(shown);
        }
    }
}

fn is_running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// One replica as the example sees it.
struct Replica {
    pod: String,
    node: String,
    container_id: String,
    restarts: i32,
    port: u16,
    page: String,
}

/// The body of `GET /` from `addr` (`tests/userspace_proxy.rs` uses it too).
pub async fn http_get(addr: impl tokio::net::ToSocketAddrs) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string())
}

fn is_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The ready replicas, with the port each serves on and its page.
async fn replicas(cluster: &Cluster) -> anyhow::Result<Vec<Replica>> {
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    let mut out = Vec::new();
    for p in pods.list(&ListParams::default().labels("app=web")).await? {
        if !is_ready(&p) {
            continue;
        }
        let status = p.status.clone().unwrap_or_default();
        let Some(cs) = status
            .container_statuses
            .unwrap_or_default()
            .into_iter()
            .next()
        else {
            continue;
        };
        let Some(container_id) = cs.container_id.clone() else {
            continue;
        };
        let id = container_id.trim_start_matches("process://").to_string();
        // The status may lag a container that just exited: such a replica is not counted.
        let cat = cluster
            .runtime()
            .exec_sync(&id, &["cat".into(), "port".into()], Duration::from_secs(5))
            .await;
        let Some(port) = cat.ok().and_then(|c| {
            String::from_utf8_lossy(&c.stdout)
                .trim()
                .parse::<u16>()
                .ok()
        }) else {
            continue;
        };
        out.push(Replica {
            pod: p.metadata.name.clone().unwrap_or_default(),
            node: p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            container_id: id,
            restarts: cs.restart_count,
            port,
            page: http_get(("127.0.0.1", port))
                .await
                .unwrap_or_else(|e| format!("({e})")),
        });
    }
    out.sort_by(|a, b| a.pod.cmp(&b.pod));
    Ok(out)
}

fn show(title: &str, replicas: &[Replica], t0: Instant) {
    println!("\n== {title}  (t={:.2}s)", t0.elapsed().as_secs_f64());
    println!(
        "{:<24} {:<8} {:<9} {:<6} PAGE",
        "POD", "NODE", "RESTARTS", "PORT"
    );
    for r in replicas {
        println!(
            "{:<24} {:<8} {:<9} {:<6} {}",
            r.pod, r.node, r.restarts, r.port, r.page
        );
    }
}

/// Waits until `check` accepts the ready replicas.
async fn wait_for(
    cluster: &Cluster,
    what: &str,
    check: impl Fn(&[Replica]) -> bool,
) -> anyhow::Result<Vec<Replica>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = replicas(cluster).await?;
        if check(&now) {
            return Ok(now);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The whole example; `tests/processes.rs` runs it too.
pub async fn run(port_base: u16) -> anyhow::Result<()> {
    if !std::path::Path::new(BUSYBOX).exists() {
        bail!("{BUSYBOX} is missing: install busybox-static");
    }
    let t0 = Instant::now();
    let processes = ProcessRuntime::builder()
        .image("busybox", ImageCommand::prefix([BUSYBOX]))
        .build();
    // With ProcessRuntime the userspace proxy is on: Services get loopback addresses.
    let cluster = Cluster::builder()
        .runtime(processes.clone())
        .nodes(2)
        .dns("127.0.0.1:0".parse()?)
        .start()
        .await?;
    let deployments: Api<Deployment> = Api::default_namespaced(cluster.client());
    let deployment: Deployment = serde_json::from_value(manifest(port_base))?;
    deployments.create(&Default::default(), &deployment).await?;

    let up = wait_for(&cluster, "3 replicas serve v1", |r| {
        r.len() == 3 && r.iter().all(|r| r.page.starts_with("v1 from"))
    })
    .await?;
    show("3 replicas, each a busybox httpd process", &up, t0);

    let victim = &up[0];
    let pid = processes
        .container_pid(&victim.container_id)
        .context("the replica's pid")?;
    println!("\nkill -KILL {pid}  (the main process of {})", victim.pod);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    if !killed.success() {
        bail!("kill {pid} failed");
    }
    let name = victim.pod.clone();
    let back = wait_for(&cluster, "the killed replica is back", |r| {
        r.len() == 3 && r.iter().any(|r| r.pod == name && r.restarts >= 1)
    })
    .await?;
    show("the node agent restarted it (restartCount grew)", &back, t0);

    let v2 = json!({"spec": {"template": {"spec": {"containers": [{
        "name": "httpd",
        "env": [
            { "name": "VERSION", "value": "v2" },
            { "name": "PORT_BASE", "value": port_base.to_string() },
            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }
        ]
    }]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(v2))
        .await?;
    let rolled = wait_for(&cluster, "3 replicas serve v2", |r| {
        r.len() == 3 && r.iter().all(|r| r.page.starts_with("v2 from"))
    })
    .await?;
    show("rolled to v2", &rolled, t0);

    let calls = call_by_service_name(&cluster, port_base + 60).await?;
    println!(
        "\n== a caller Deployment reaches the hello Service by name  (t={:.2}s)",
        t0.elapsed().as_secs_f64()
    );
    for line in calls {
        println!("{line}");
    }

    let pids = processes.running_pids();
    cluster.shutdown().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) {
        if tokio::time::Instant::now() > deadline {
            bail!("processes left after shutdown: {pids:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "\nshut down: {} processes stopped, none left  (t={:.2}s)",
        pids.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(18080).await
}
