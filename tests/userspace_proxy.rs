//! LocalNetwork's userspace proxy under a whole cluster of host-mode processes: busybox httpd
//! replicas behind a Service, reached through the proxy's loopback address from the test and,
//! from a client pod, by the Service environment variables and by the cluster DNS answer.
//! Needs `/bin/busybox` (scripts/test installs busybox-static); without it this fails.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, LogParams, PostParams};
use kybernetes::Cluster;
use kybernetes::net::USERSPACE_PROXY_CIDR;
use kybernetes::runtime::process::{ImageCommand, ProcessRuntime};
use serde_json::json;

use crate::processes::processes_example::http_get;

const BUSYBOX: &str = "/bin/busybox";
const REPLICAS: usize = 3;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// One replica of the `web` Service. Host-mode pods share the host's ports, so each replica
/// is its own Deployment with its own `containerPort`, named `http`: the Service's named
/// `targetPort` resolves per pod, as upstream's endpoints controller does it.
fn web(i: usize, port: u16) -> Deployment {
    let name = format!("web-{i}");
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web", "replica": name } },
            "template": {
                "metadata": { "labels": { "app": "web", "replica": name } },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "httpd",
                        "image": "busybox",
                        "command": ["sh", "-c",
                            "echo \"$POD_NAME\" > index.html; exec httpd -f -p \"127.0.0.1:$PORT\" -h ."],
                        "env": [
                            { "name": "PORT", "value": port.to_string() },
                            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }
                        ],
                        "ports": [{ "name": "http", "containerPort": port }],
                        "readinessProbe": { "tcpSocket": { "port": "http" }, "periodSeconds": 1 }
                    }]
                }
            }
        }
    }))
    .expect("deployment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_host_processes_is_reached_through_the_proxy_by_env_vars_and_dns() {
    assert!(
        std::path::Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install busybox-static (scripts/test does)"
    );
    let processes = ProcessRuntime::builder()
        .image("busybox", ImageCommand::prefix([BUSYBOX]))
        .build();
    // The userspace proxy is on by default with ProcessRuntime.
    let cluster = Cluster::builder()
        .runtime(processes)
        .dns("127.0.0.1:0".parse().expect("an address"))
        .start()
        .await
        .expect("cluster");
    let client = cluster.client();
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    for i in 0..REPLICAS {
        deployments
            .create(&PostParams::default(), &web(i, free_port()))
            .await
            .expect("deployment");
    }
    let service_port = free_port();
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let svc = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "selector": { "app": "web" },
            "ports": [{ "name": "http", "port": service_port, "targetPort": "http" }]
        }
    }))
    .expect("service");
    let svc = services
        .create(&PostParams::default(), &svc)
        .await
        .expect("service");
    let cluster_ip: IpAddr = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .and_then(|ip| ip.parse().ok())
        .expect("a ClusterIP");

    // DNS names the proxy's loopback address, not the ClusterIP.
    let network = cluster.network().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let address = loop {
        if let Some(ip) = network.resolve("web", "default").first() {
            break *ip;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Service never resolved"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        USERSPACE_PROXY_CIDR.contains(address),
        "{address} is a proxy address"
    );
    assert_ne!(address, cluster_ip);
    assert_eq!(network.service_host(cluster_ip), address);

    // Every ready replica answers through the proxy, in turn.
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < REPLICAS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {seen:?} answered through the proxy"
        );
        match http_get((address, service_port)).await {
            Ok(page) if page.starts_with("web-") => {
                seen.insert(page);
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }

    // A pod calls the Service by its environment variables and by the cluster DNS answer.
    let dns = cluster.dns_addr().expect("DNS is served");
    let script = format!(
        "echo \"host=$WEB_SERVICE_HOST port=$WEB_SERVICE_PORT link=$WEB_PORT\"
         for i in $(seq {n}); do wget -q -O - \"http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT_HTTP/\" || echo FAILED; done
         answer=$(nslookup web.default.svc.cluster.local {dns} | awk '/^Address/ {{ a = $NF }} END {{ print a }}')
         echo \"dns=$answer\"
         wget -q -O - \"http://$answer:$WEB_SERVICE_PORT/\" || echo FAILED",
        n = 2 * REPLICAS,
        dns = dns,
    );
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "caller" },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "caller", "image": "busybox", "command": ["sh", "-c", script] }]
        }
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    let done = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.phase.clone())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
    };
    cluster
        .wait_until(&pods, "caller", done, Duration::from_secs(60))
        .await
        .expect("the caller finishes");
    let log = pods
        .logs("caller", &LogParams::default())
        .await
        .expect("logs");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(
            format!("host={address} port={service_port} link=tcp://{address}:{service_port}")
                .as_str()
        ),
        "{log}"
    );
    assert!(!log.contains("FAILED"), "{log}");
    let by_env: BTreeSet<&str> = lines[1..=2 * REPLICAS].iter().copied().collect();
    assert_eq!(by_env.len(), REPLICAS, "spread over every replica: {log}");
    assert!(by_env.iter().all(|p| p.starts_with("web-")), "{log}");
    assert_eq!(
        lines.get(2 * REPLICAS + 1).copied(),
        Some(format!("dns={address}").as_str()),
        "{log}"
    );
    assert!(
        lines
            .get(2 * REPLICAS + 2)
            .is_some_and(|p| p.starts_with("web-")),
        "{log}"
    );

    cluster.shutdown().await.expect("shutdown");
    // The proxy's listeners went with the cluster.
    let refused = tokio::net::TcpStream::connect((address, service_port)).await;
    assert_eq!(
        refused.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
}
