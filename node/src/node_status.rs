//! Node registration and status (upstream's `registerWithAPIServer` and
//! `updateNodeStatus`): the Node object with its labels, pod CIDR and taints; its status
//! with capacity, addresses, node info and the Ready/MemoryPressure/DiskPressure/PIDPressure
//! conditions. The status is recomputed every `status_update_interval` and written when it
//! changed, or every `status_report_interval` regardless.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kybernetes_net::{Network, NodeNetwork, PreviousNodeNetwork};
use kybernetes_runtime::{Runtime, RuntimeVersion};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::NodeAgentConfig;
use crate::context::AgentContext;
use crate::convert::time;
use crate::{Error, Result};

/// The kubelet version the node reports.
pub const KUBELET_VERSION: &str = "v1.33.0";

/// `kubernetes.io/arch` for this build (`amd64`, `arm64`, …).
pub(crate) fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn fnv(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The node's labels: the well-known ones plus the configured ones.
fn node_labels(config: &NodeAgentConfig) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), config.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch().to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch().to_string()),
    ]);
    labels.extend(config.labels.clone());
    labels
}

/// The Node object the agent registers.
pub(crate) fn node_object(config: &NodeAgentConfig, net: &NodeNetwork) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(node_labels(config)),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: net.pod_cidr.clone(),
            pod_cidrs: net.pod_cidr.clone().map(|c| vec![c]),
            taints: registration_taints(config, net),
            ..Default::default()
        }),
        status: None,
    }
}

/// The taint upstream's node lifecycle controller puts on a node whose `NetworkUnavailable`
/// condition is True.
pub(crate) const NETWORK_UNAVAILABLE_TAINT: &str = "node.kubernetes.io/network-unavailable";

/// The configured taints, plus the network-unavailable one for a node without a pod CIDR: the
/// node lifecycle controller would add it as soon as it sees the condition, and registering
/// with it closes the window in which the scheduler could place pods that cannot get an
/// address.
fn registration_taints(config: &NodeAgentConfig, net: &NodeNetwork) -> Option<Vec<Taint>> {
    let mut taints = config.taints.clone();
    if net.pod_cidr.is_none() && !taints.iter().any(|t| t.key == NETWORK_UNAVAILABLE_TAINT) {
        taints.push(Taint {
            key: NETWORK_UNAVAILABLE_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    (!taints.is_empty()).then_some(taints)
}

/// Upstream's `NetworkUnavailable` condition for a node left without a pod CIDR (reason as
/// the kubelet's and route controller's for a node without a route).
fn network_unavailable(net: &NodeNetwork) -> Option<NodeCondition> {
    net.pod_cidr.is_none().then(|| {
        node_condition(
            "NetworkUnavailable",
            true,
            "NoRouteCreated",
            "Node created without a pod CIDR: the cluster CIDR has no subnet left for it \
             (widen --cluster-cidr or lengthen --node-cidr-mask-size)",
        )
    })
}

fn node_condition(type_: &str, ok: bool, reason: &str, message: &str) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

/// The node status. Condition transition times carry over from `old` while a condition
/// keeps its status; heartbeat times are `now`.
pub(crate) fn node_status(
    config: &NodeAgentConfig,
    net: &NodeNetwork,
    runtime: &std::result::Result<RuntimeVersion, String>,
    old: Option<&NodeStatus>,
) -> NodeStatus {
    let now = time(config.clock.now());
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(config.capacity.cpu.clone())),
        (
            "memory".to_string(),
            Quantity(config.capacity.memory.clone()),
        ),
        ("pods".to_string(), Quantity(config.capacity.pods.clone())),
        (
            "ephemeral-storage".to_string(),
            Quantity(config.capacity.ephemeral_storage.clone()),
        ),
    ]);
    let ready = match runtime {
        Ok(_) => node_condition(
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status",
        ),
        Err(e) => node_condition(
            "Ready",
            false,
            "KubeletNotReady",
            &format!("container runtime is down: {e}"),
        ),
    };
    let mut conditions = vec![
        node_condition(
            "MemoryPressure",
            false,
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        node_condition(
            "DiskPressure",
            false,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        node_condition(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        ready,
    ];
    conditions.extend(network_unavailable(net));
    for c in &mut conditions {
        let before = old
            .and_then(|o| o.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|b| b.type_ == c.type_));
        c.last_transition_time = match before {
            Some(b) if b.status == c.status => b.last_transition_time.clone(),
            _ => None,
        }
        .or_else(|| Some(now.clone()));
        c.last_heartbeat_time = Some(now.clone());
    }
    let (runtime_version, boot) = match runtime {
        Ok(v) => (
            format!("{}://{}", v.runtime_name, v.runtime_version),
            v.runtime_name.clone(),
        ),
        Err(_) => ("unknown://unknown".to_string(), String::new()),
    };
    let machine = format!(
        "{:016x}{:016x}",
        fnv(&config.name),
        fnv(&format!("machine/{}", config.name))
    );
    NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: net.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: arch().into(),
            boot_id: format!("{:016x}", fnv(&format!("boot/{}/{boot}", config.name))),
            container_runtime_version: runtime_version,
            kernel_version: "kybernetes".into(),
            kube_proxy_version: KUBELET_VERSION.into(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: machine.clone(),
            operating_system: "linux".into(),
            os_image: "Kybernetes".into(),
            system_uuid: machine,
            ..Default::default()
        }),
        ..old.cloned().unwrap_or_default()
    }
}

/// Whether two statuses differ in more than heartbeat times.
fn changed(old: Option<&NodeStatus>, new: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    old.is_none_or(|o| strip(o) != strip(new))
}

/// Everything registration produced.
pub(crate) struct Registration {
    pub(crate) node: Node,
    pub(crate) net: NodeNetwork,
    pub(crate) runtime: RuntimeVersion,
}

/// Registers the node (or adopts the existing Node object) and writes its first status.
pub(crate) async fn register(
    client: &kube::Client,
    config: &NodeAgentConfig,
    runtime: &Arc<dyn Runtime>,
    network: &Arc<dyn Network>,
) -> Result<Registration> {
    let nodes: Api<Node> = Api::all(client.clone());
    // A node that was here before (a restart on a durable store) asks for its pod CIDR and
    // address back: `spec.podCIDR` cannot change, and its pods' addresses must stay inside it.
    let previous = nodes
        .get_opt(&config.name)
        .await
        .map_err(Error::api("reading the existing node"))?
        .map(|node| previous_network(&node))
        .unwrap_or_default();
    let net = network
        .rejoin_node(&config.name, &previous)
        .await
        .map_err(|source| Error::Network {
            context: "registering the node".into(),
            source,
        })?;
    let version = runtime.version().await.map_err(|source| Error::Runtime {
        context: "reading the runtime version".into(),
        source,
    })?;
    let desired = node_object(config, &net);
    let node = match nodes.create(&PostParams::default(), &desired).await {
        Ok(n) => {
            info!("node registered");
            n
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = nodes
                .get(&config.name)
                .await
                .map_err(Error::api("reading the existing node"))?;
            let mut patch = json!({ "metadata": { "labels": node_labels(config) } });
            if let Some(cidr) = &net.pod_cidr
                && existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_ref())
                    .is_none()
            {
                patch["spec"] = json!({ "podCIDR": cidr, "podCIDRs": [cidr] });
            }
            info!("adopting the existing node object");
            nodes
                .patch(&config.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::api("updating the existing node"))?
        }
        Err(e) => {
            return Err(Error::Api {
                context: "creating the node".into(),
                source: e,
            });
        }
    };
    let status = node_status(config, &net, &Ok(version.clone()), node.status.as_ref());
    let node = nodes
        .patch_status(
            &config.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await
        .map_err(Error::api("writing the node status"))?;
    Ok(Registration {
        node,
        net,
        runtime: version,
    })
}

/// The pod CIDR and InternalIP a Node object records.
fn previous_network(node: &Node) -> PreviousNodeNetwork {
    PreviousNodeNetwork {
        pod_cidr: node.spec.as_ref().and_then(|s| s.pod_cidr.clone()),
        node_ip: node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|addrs| addrs.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse().ok()),
    }
}

/// Recomputes the node status every `status_update_interval` until `shutdown`.
pub(crate) async fn run_status_updates(
    ctx: Arc<AgentContext>,
    net: NodeNetwork,
    shutdown: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let every = ctx.config.status_update_interval;
    let mut last_report = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let runtime = ctx.runtime.version().await.map_err(|e| e.to_string());
        let current = match nodes.get_opt(ctx.name()).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                warn!("node object is gone; registering again");
                if let Err(e) = register(&ctx.client, &ctx.config, &ctx.runtime, &ctx.network).await
                {
                    warn!(error = %e, "registering again failed");
                }
                continue;
            }
            Err(e) => {
                warn!(error = %e, "reading the node failed");
                continue;
            }
        };
        let status = node_status(&ctx.config, &net, &runtime, current.status.as_ref());
        if !changed(current.status.as_ref(), &status)
            && last_report.elapsed() < ctx.config.status_report_interval
        {
            continue;
        }
        match nodes
            .patch_status(
                ctx.name(),
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
        {
            Ok(_) => {
                debug!("node status written");
                last_report = Instant::now();
            }
            Err(e) => warn!(error = %e, "writing the node status failed"),
        }
    }
}
