//! Pod sandboxes: the environment (network namespace, hostname, log directory) a pod's
//! containers share, as CRI's `PodSandbox`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// Identifies the pod a sandbox belongs to (CRI `PodSandboxMetadata`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSandboxMetadata {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod UID.
    pub uid: String,
    /// How many sandboxes this pod had before this one.
    pub attempt: u32,
}

/// What the node agent asks for when it runs a sandbox (CRI `PodSandboxConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSandboxConfig {
    /// The pod this sandbox is for.
    pub metadata: PodSandboxMetadata,
    /// The hostname containers see (`spec.hostname` or the pod name).
    pub hostname: String,
    /// Directory where the containers' log files go
    /// (`/var/log/pods/<namespace>_<name>_<uid>` upstream).
    pub log_directory: PathBuf,
    /// The network namespace the `Network` prepared, for runtimes that join one.
    pub netns_path: Option<PathBuf>,
    /// The pod IP the `Network` gave the pod, reported back in the sandbox status.
    pub pod_ip: Option<IpAddr>,
    /// Labels (the pod's labels plus the `io.kubernetes.pod.*` labels, see [`crate::labels`]).
    pub labels: BTreeMap<String, String>,
    /// Annotations (the pod's annotations).
    pub annotations: BTreeMap<String, String>,
    /// The ports the pod's containers declare (CRI `port_mappings`). A runtime that shares
    /// the host network treats each as a host port and refuses a second pod claiming it.
    pub port_mappings: Vec<PortMapping>,
    /// The resolver configuration the node agent worked out from `dnsPolicy` and `dnsConfig`
    /// (CRI `dns_config`): a runtime that gives containers their own filesystem writes it as
    /// their `/etc/resolv.conf`. `None` leaves the image's file (hostNetwork pods and runtimes
    /// that share the host's filesystem).
    pub dns_config: Option<DnsConfig>,
}

/// A pod's resolver configuration (CRI `DNSConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// `nameserver` lines, in order.
    pub servers: Vec<String>,
    /// The `search` domains, in order.
    pub searches: Vec<String>,
    /// `options` (`ndots:5`, `edns0`).
    pub options: Vec<String>,
}

impl DnsConfig {
    /// The file's text, as the kubelet and containerd's CRI write it.
    ///
    /// ```
    /// use kybernetes_runtime::DnsConfig;
    /// let c = DnsConfig {
    ///     servers: vec!["10.96.0.10".into()],
    ///     searches: vec!["default.svc.cluster.local".into(), "svc.cluster.local".into()],
    ///     options: vec!["ndots:5".into()],
    /// };
    /// assert_eq!(
    ///     c.resolv_conf(),
    ///     "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    /// );
    /// ```
    pub fn resolv_conf(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for server in &self.servers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// A port a pod's container declares (`ports[]` of the pod spec; CRI `PortMapping`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortMapping {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// `containerPort`.
    pub container_port: u16,
    /// `hostPort`, if set.
    pub host_port: Option<u16>,
    /// `hostIP`, if set.
    pub host_ip: Option<String>,
}

/// Whether a sandbox can host containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PodSandboxState {
    /// Running; containers can be created in it.
    Ready,
    /// Stopped (or broken); it must be removed and a new one run.
    NotReady,
}

/// A sandbox as the runtime reports it (CRI `PodSandboxStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSandboxStatus {
    /// Runtime-assigned id.
    pub id: String,
    /// The pod it belongs to.
    pub metadata: PodSandboxMetadata,
    /// Ready or not.
    pub state: PodSandboxState,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The pod IP, if it has one.
    pub ip: Option<IpAddr>,
    /// The network namespace it runs in, if any.
    pub netns_path: Option<PathBuf>,
    /// Labels given at creation.
    pub labels: BTreeMap<String, String>,
    /// Annotations given at creation.
    pub annotations: BTreeMap<String, String>,
}

/// Selects sandboxes in [`Runtime::list_pod_sandboxes`](crate::Runtime::list_pod_sandboxes).
/// Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSandboxFilter {
    /// Only this sandbox.
    pub id: Option<String>,
    /// Only sandboxes in this state.
    pub state: Option<PodSandboxState>,
    /// Only sandboxes carrying all these labels.
    pub labels: BTreeMap<String, String>,
}

impl PodSandboxFilter {
    /// Sandboxes carrying `key=value`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The statuses of the sandboxes that pass the filter, from a runtime's table of
    /// sandboxes and its indexes by pod UID and by node name label: the node agent always
    /// names one of the two, so a listing costs that pod's or that node's sandboxes.
    pub(crate) fn select<S>(
        &self,
        sandboxes: &std::collections::BTreeMap<String, S>,
        by_pod: &crate::index::IdIndex,
        by_node: &crate::index::IdIndex,
        status: impl Fn(&S) -> &PodSandboxStatus,
    ) -> Vec<PodSandboxStatus> {
        let passing = |s: &S| self.matches(status(s)).then(|| status(s).clone());
        if let Some(id) = &self.id {
            return sandboxes.get(id).into_iter().filter_map(passing).collect();
        }
        let pod = self.labels.get(crate::labels::POD_UID);
        let node = self.labels.get(crate::labels::NODE_NAME);
        let ids: Box<dyn Iterator<Item = &String>> = match (pod, node) {
            (Some(uid), Some(node)) if by_node.count(node) < by_pod.count(uid) => {
                Box::new(by_node.get(node))
            }
            (Some(uid), _) => Box::new(by_pod.get(uid)),
            (None, Some(node)) => Box::new(by_node.get(node)),
            (None, None) => return sandboxes.values().filter_map(passing).collect(),
        };
        ids.filter_map(|id| sandboxes.get(id))
            .filter_map(passing)
            .collect()
    }

    /// Whether `s` passes the filter.
    pub fn matches(&self, s: &PodSandboxStatus) -> bool {
        self.id.as_ref().is_none_or(|id| *id == s.id)
            && self.state.is_none_or(|st| st == s.state)
            && self.labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
    }
}
