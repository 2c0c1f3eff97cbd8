//! Whole clusters on real networking: three nodes on `LinuxNetwork` (a network namespace per
//! node and per pod, routes between the nodes, nftables service rules, cluster DNS on
//! `10.96.0.10` in every node) running busybox on a containerd daemon of their own.
//! Everything is checked from inside a client pod, as an application would see it: a pod
//! reaches a pod on another node with its own address (no NAT), a Service by DNS name (full
//! and short, through the search path of its `resolv.conf`), by ClusterIP and through
//! another node's NodePort, traffic spreads over every ready endpoint, and a rolling update
//! with `maxUnavailable: 0` loses no request.
//!
//! Needs root, containerd, runc, nft and busybox-static; without them these tests fail, not
//! skip.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kybernetes::Cluster;
use kybernetes::core::ClusterConfig;
use kybernetes::net::LinuxNetwork;
use serde_json::{Value, json};

use crate::common;
use crate::containerd::{BUSYBOX, CtrdCluster, WITHIN, exec, pod, running, try_exec, wait_pod};

/// busybox httpd on 0.0.0.0:8080 (an IPv4 socket, so `REMOTE_ADDR` is not `[::ffff:…]`) whose `/cgi-bin/who` answers `<pod name> <client address>`, with
/// `/` for the readiness probe. It stops on TERM; the drain before it (the time for the
/// endpoint removal to reach every node's rules) is the container's `preStop` sleep, as
/// upstream's applications do it (see [`who_container`]).
const WHO_SERVER: &str = r#"mkdir -p /www/cgi-bin; echo ok > /www/index.html
printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho %s $REMOTE_ADDR\n' "$HOSTNAME" > /www/cgi-bin/who
busybox chmod +x /www/cgi-bin/who
httpd -f -p 0.0.0.0:8080 -h /www & pid=$!
trap 'kill $pid; exit 0' TERM
wait"#;

/// A shell loop that exits promptly on TERM (see `tests/containerd.rs`).
const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

/// A three-node cluster on `LinuxNetwork` with the namespace prefix `kyc<pid><test>`.
async fn start(test: &str) -> (CtrdCluster, String) {
    let prefix = format!("kyc{}{test}", std::process::id());
    let network = LinuxNetwork::start(ClusterConfig::default(), &prefix)
        .await
        .expect("start the linux network (needs root)");
    let c = CtrdCluster::start_with(Cluster::builder().nodes(3).network(network)).await;
    (c, prefix)
}

async fn shut_down(c: CtrdCluster, prefix: &str) {
    c.shutdown().await;
    assert_eq!(
        LinuxNetwork::namespaces(prefix),
        Vec::<PathBuf>::new(),
        "the cluster left network namespaces behind"
    );
}

/// Creates the idle pod `client` on `node`, which the tests run their requests in.
async fn create_client(pods: &Api<Pod>, node: &str) {
    let spec = json!({"nodeName": node, "containers": [
        {"name": "client", "image": BUSYBOX, "command": ["sh", "-c", IDLE]}]});
    pods.create(&PostParams::default(), &pod("client", json!({}), spec))
        .await
        .expect("create client");
}

/// The who-server container, ready once httpd answers `/`. A deleted pod keeps serving for
/// its `preStop` sleep: its endpoint is removed when the deletion starts, but until every
/// node's rules have dropped it, new connections still go to it.
fn who_container() -> Value {
    json!({
        "name": "who", "image": BUSYBOX, "command": ["sh", "-c", WHO_SERVER],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        "lifecycle": {"preStop": {"sleep": {"seconds": 3}}},
    })
}

fn web_service(type_: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"type": type_, "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .expect("service")
}

fn pod_ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a pod IP")
}

/// `wget` of `url` from inside pod `client`: the body, or `None` if the request failed.
/// (`timeout` bounds it: `wget -T` crashes in Debian's busybox 1.35.)
async fn fetch(pods: &Api<Pod>, client: &str, url: &str) -> Option<String> {
    let (status, out) = try_exec(
        pods,
        client,
        &[
            "busybox", "timeout", "10", "busybox", "wget", "-q", "-O", "-", url,
        ],
    )
    .await;
    (status.status.as_deref() == Some("Success")).then(|| out.trim().to_string())
}

/// `n` requests to `url` from inside pod `client`, in one exec: every answer, one a line
/// (`FAIL` for a failed request).
async fn fetch_many(pods: &Api<Pod>, client: &str, url: &str, n: usize) -> Vec<String> {
    let script = format!(
        "for i in $(busybox seq {n}); do busybox timeout 10 busybox wget -q -O - {url} || echo FAIL; done"
    );
    exec(pods, client, &["sh", "-c", &script])
        .await
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until the Endpoints of `web` list `n` ready addresses.
async fn ready_endpoints(c: &CtrdCluster, n: usize) {
    let endpoints: Api<Endpoints> = Api::default_namespaced(c.cluster.client());
    common::until(&format!("{n} ready endpoints of web"), WITHIN, || {
        let endpoints = endpoints.clone();
        async move {
            endpoints.get("web").await.is_ok_and(|e| {
                e.subsets
                    .iter()
                    .flatten()
                    .flat_map(|s| s.addresses.iter().flatten())
                    .count()
                    == n
            })
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_pods_and_services_by_name_cluster_ip_and_node_port_across_three_nodes() {
    let (c, prefix) = start("a").await;
    let pods = c.pods();
    let services: Api<Service> = Api::default_namespaced(c.cluster.client());
    let service = services
        .create(&PostParams::default(), &web_service("NodePort"))
        .await
        .expect("create service");
    for i in 1..=3 {
        let spec = json!({"nodeName": format!("node-{i}"), "containers": [who_container()]});
        pods.create(
            &PostParams::default(),
            &pod(&format!("web-{i}"), json!({"app": "web"}), spec),
        )
        .await
        .expect("create server");
    }
    create_client(&pods, "node-1").await;
    let client_ip = pod_ip(&running(&pods, "client").await);
    let mut server_ips = Vec::new();
    for i in 1..=3 {
        let p = wait_pod(
            &pods,
            &format!("web-{i}"),
            "Ready",
            crate::containerd::is_ready,
        )
        .await;
        server_ips.push(pod_ip(&p));
    }

    // Pod to pod, on the client's node and across nodes: each server sees the client's own
    // pod address.
    for (i, ip) in server_ips.iter().enumerate() {
        let body =
            fetch_eventually(&pods, "client", &format!("http://{ip}:8080/cgi-bin/who")).await;
        assert_eq!(
            body,
            format!("web-{} {client_ip}", i + 1),
            "no NAT between pods"
        );
    }

    // The Service by ClusterIP: spread over all three ready endpoints, the client address kept.
    ready_endpoints(&c, 3).await;
    let cluster_ip = service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .expect("a ClusterIP");
    // Rounds of 30 until every endpoint answered: the last one may reach the rules a moment
    // after the Endpoints list it.
    let url = format!("http://{cluster_ip}/cgi-bin/who");
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut answers = Vec::new();
    loop {
        answers.extend(fetch_many(&pods, "client", &url, 30).await);
        let backends: BTreeSet<&str> = answers.iter().filter_map(|a| a.split(' ').next()).collect();
        if backends == BTreeSet::from(["web-1", "web-2", "web-3"]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} requests to {cluster_ip} reached only {backends:?}",
            answers.len()
        );
    }
    eprintln!("every endpoint answered within {} requests", answers.len());
    // Endpoints on other nodes see the client's own address. The one on the client's own
    // node sees the bridge gateway: `LinuxNetwork` masquerades DNATed connections between two
    // pods of one bridge, whose replies would otherwise skip the node's conntrack entry.
    let remote: Vec<&String> = answers
        .iter()
        .filter(|a| !a.starts_with("web-1 "))
        .collect();
    assert!(
        !remote.is_empty() && remote.iter().all(|a| a.ends_with(&format!(" {client_ip}"))),
        "a ClusterIP keeps the pod's source address across nodes: {answers:?}"
    );

    // By DNS name, through the pod's resolv.conf (cluster DNS at 10.96.0.10 on its node):
    // the full name, and the short one through the namespace's search domain.
    for url in [
        "http://web.default.svc.cluster.local/cgi-bin/who",
        "http://web/cgi-bin/who",
        "http://web.default/cgi-bin/who",
    ] {
        let body = fetch_eventually(&pods, "client", url).await;
        assert!(body.starts_with("web-"), "{url}: {body}");
    }
    let resolv = exec(&pods, "client", &["cat", "/etc/resolv.conf"]).await;
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");

    // Another node's address on the NodePort.
    let node_port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .and_then(|p| p.node_port)
        .expect("a nodePort");
    let nodes: Api<Node> = Api::all(c.cluster.client());
    let node2 = nodes.get("node-2").await.expect("node-2");
    let node2_ip = node2
        .status
        .and_then(|s| s.addresses)
        .into_iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address)
        .expect("node-2 InternalIP");
    let body = fetch_eventually(
        &pods,
        "client",
        &format!("http://{node2_ip}:{node_port}/cgi-bin/who"),
    )
    .await;
    assert!(body.starts_with("web-"), "NodePort answer: {body}");

    shut_down(c, &prefix).await;
}

/// The client loop of the rollout test: a request to `web` by its short name every 0.2 s,
/// the running counts `ok fail` in /tmp/count.
const CLIENT_LOOP: &str = r#"ok=0; fail=0
trap 'exit 0' TERM
while true; do
  if busybox timeout 10 busybox wget -q -O /dev/null http://web/cgi-bin/who; then ok=$((ok+1)); else fail=$((fail+1)); fi
  echo "$ok $fail" > /tmp/count
  sleep 0.2
done"#;

/// The client loop's `(ok, failed)` counts so far.
async fn counts(pods: &Api<Pod>) -> (u64, u64) {
    let (_, out) = try_exec(pods, "client", &["cat", "/tmp/count"]).await;
    let mut it = out
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// This test found the pod bridge's changing MAC (see `net/src/linux/node.rs`): before the
/// bridge had a fixed address, a pod whose veth left took the gateway's MAC with it, and
/// the client's requests failed until its neighbour entry expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_with_max_unavailable_zero_fails_no_request() {
    let (c, prefix) = start("b").await;
    let pods = c.pods();
    let services: Api<Service> = Api::default_namespaced(c.cluster.client());
    services
        .create(&PostParams::default(), &web_service("ClusterIP"))
        .await
        .expect("create service");
    let deployments: Api<Deployment> = Api::default_namespaced(c.cluster.client());
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [who_container()]}}},
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    common::wait_available(&deployments, "web", 3, WITHIN).await;
    ready_endpoints(&c, 3).await;

    let client_spec = json!({"containers": [
        {"name": "client", "image": BUSYBOX, "command": ["sh", "-c", CLIENT_LOOP]}]});
    pods.create(
        &PostParams::default(),
        &pod("client", json!({}), client_spec),
    )
    .await
    .expect("create client");
    running(&pods, "client").await;
    common::until("the client's first 10 answers", WITHIN, || {
        let pods = pods.clone();
        async move { counts(&pods).await.0 >= 10 }
    })
    .await;

    let started = tokio::time::Instant::now();
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"metadata": {"annotations": {"rollout": "2"}}}}}),
            ),
        )
        .await
        .expect("start the rollout");
    common::until("the rollout to finish", Duration::from_secs(300), || {
        let deployments = deployments.clone();
        async move {
            let Ok(d) = deployments.get("web").await else {
                return false;
            };
            let generation = d.metadata.generation;
            d.status.is_some_and(|s| {
                s.observed_generation == generation
                    && s.updated_replicas == Some(3)
                    && s.replicas == Some(3)
                    && s.available_replicas == Some(3)
            })
        }
    })
    .await;
    // Every old pod is gone, not just scaled out of the status.
    common::until("only the new pods left", WITHIN, || {
        let pods = pods.clone();
        async move {
            pods.list(&Default::default()).await.is_ok_and(|l| {
                l.items
                    .iter()
                    .filter(|p| {
                        p.metadata
                            .labels
                            .as_ref()
                            .is_some_and(|l| l.contains_key("app"))
                    })
                    .count()
                    == 3
            })
        }
    })
    .await;
    let rollout = started.elapsed();
    let (ok_then, _) = counts(&pods).await;
    common::until("10 more answers after the rollout", WITHIN, || {
        let pods = pods.clone();
        async move { counts(&pods).await.0 >= ok_then + 10 }
    })
    .await;
    let (ok, failed) = counts(&pods).await;
    eprintln!("rollout of 3 replicas took {rollout:?}; client requests: {ok} ok, {failed} failed");
    assert_eq!(
        failed, 0,
        "requests failed during the rollout ({ok} succeeded)"
    );
    shut_down(c, &prefix).await;
}

/// A Service of type `LoadBalancer` named `name` in front of `app=web`.
fn load_balancer(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .expect("service")
}

/// The ingress address of Service `name`, once it has one.
async fn ingress_ip(services: &Api<Service>, name: &str) -> String {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let ip = services
            .get(name)
            .await
            .ok()
            .and_then(|s| s.status?.load_balancer?.ingress?.into_iter().next()?.ip);
        if let Some(ip) = ip {
            return ip;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: no load-balancer address"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The body of `url` fetched from pod `client`, retried until the rules are in place.
async fn fetch_eventually(pods: &Api<Pod>, client: &str, url: &str) -> String {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        if let Some(body) = fetch(pods, client, url).await {
            return body;
        }
        if tokio::time::Instant::now() >= deadline {
            let script = format!(
                "busybox ip addr; busybox ip route; busybox timeout 10 busybox wget -O - {url} 2>&1"
            );
            let (_, why) = try_exec(pods, client, &["sh", "-c", &script]).await;
            panic!("{client} -> {url} never answered:\n{why}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_services_get_pool_addresses_that_pods_reach_and_wait_when_it_runs_out() {
    let prefix = format!("kyc{}c", std::process::id());
    let network = LinuxNetwork::start(ClusterConfig::default(), &prefix)
        .await
        .expect("start the linux network (needs root)");
    // A /30: two addresses to hand out.
    let builder = Cluster::builder()
        .nodes(2)
        .network(network)
        .load_balancer_pool("172.30.0.0/30");
    let c = CtrdCluster::start_with(builder).await;
    let pods = c.pods();
    let services: Api<Service> = Api::default_namespaced(c.cluster.client());
    let spec = json!({"nodeName": "node-2", "containers": [who_container()]});
    pods.create(
        &PostParams::default(),
        &pod("web-1", json!({"app": "web"}), spec),
    )
    .await
    .expect("create server");
    create_client(&pods, "node-1").await;

    let mut assigned = BTreeSet::new();
    for name in ["lb-1", "lb-2"] {
        services
            .create(&PostParams::default(), &load_balancer(name))
            .await
            .expect("create load balancer");
        assigned.insert(ingress_ip(&services, name).await);
    }
    assert_eq!(
        assigned,
        BTreeSet::from(["172.30.0.1".to_string(), "172.30.0.2".to_string()])
    );

    // The pool is empty: the third waits, with a warning event saying why.
    services
        .create(&PostParams::default(), &load_balancer("lb-3"))
        .await
        .expect("create load balancer");
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::default_namespaced(c.cluster.client());
    common::until("a SyncLoadBalancerFailed event for lb-3", WITHIN, || {
        let events = events.clone();
        async move {
            events.list(&Default::default()).await.is_ok_and(|l| {
                l.items.iter().any(|e| {
                    e.involved_object.name.as_deref() == Some("lb-3")
                        && e.reason.as_deref() == Some("SyncLoadBalancerFailed")
                })
            })
        }
    })
    .await;
    let pending = services.get("lb-3").await.expect("lb-3");
    assert!(
        pending
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .is_none_or(|i| i.is_empty()),
        "lb-3 stays pending"
    );

    // A pod on the other node reaches the service on its load-balancer address.
    wait_pod(&pods, "web-1", "Ready", crate::containerd::is_ready).await;
    running(&pods, "client").await;
    let lb1 = ingress_ip(&services, "lb-1").await;
    let body = fetch_eventually(&pods, "client", &format!("http://{lb1}/cgi-bin/who")).await;
    assert!(body.starts_with("web-1 "), "{body}");

    // Deleting a load balancer frees its address for the one waiting.
    let freed = ingress_ip(&services, "lb-2").await;
    services
        .delete("lb-2", &Default::default())
        .await
        .expect("delete lb-2");
    assert_eq!(ingress_ip(&services, "lb-3").await, freed);
    shut_down(c, &prefix).await;
}
