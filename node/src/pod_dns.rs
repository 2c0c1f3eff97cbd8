//! A pod's resolver configuration and its managed `/etc/hosts`, as upstream's kubelet works
//! them out (`pkg/kubelet/network/dns` and `managedHostsFileContent`): `dnsPolicy` picks the
//! cluster's DNS, the node's resolver file, or nothing; `spec.dnsConfig` is merged on top;
//! the result is cut to the resolver's limits.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};
use kybernetes_runtime::DnsConfig;

use std::path::Path;

use kybernetes_runtime::Mount;

use crate::config::NodeAgentConfig;
use crate::events::EventType;
use crate::pod_worker::{PodWorker, Sandbox};
use crate::volumes::pod_dir;

/// Where the managed hosts file is mounted.
const ETC_HOSTS: &str = "/etc/hosts";

/// The resolver's limits the kubelet enforces (glibc's).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

/// What ClusterFirst pods get as options.
const CLUSTER_OPTIONS: [&str; 1] = ["ndots:5"];

/// Something the kubelet reports as a pod event while working out its DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DnsWarning {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// The resolver configuration of `pod`, with the warnings to record.
pub(crate) fn dns_config(pod: &Pod, config: &NodeAgentConfig) -> (DnsConfig, Vec<DnsWarning>) {
    let mut warnings = Vec::new();
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let mut dns = match policy {
        "None" => DnsConfig::default(),
        "ClusterFirstWithHostNet" => cluster_first(pod, config, &mut warnings),
        "ClusterFirst" if !host_network => cluster_first(pod, config, &mut warnings),
        // ClusterFirst on the host network falls back to Default, as upstream's does.
        _ => host_dns(config, &mut warnings),
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        append(&mut dns, extra);
    }
    fit_limits(&mut dns, &mut warnings);
    (dns, warnings)
}

fn cluster_first(pod: &Pod, config: &NodeAgentConfig, warnings: &mut Vec<DnsWarning>) -> DnsConfig {
    if config.cluster_dns.is_empty() {
        warnings.push(DnsWarning {
            reason: "MissingClusterDNS",
            message: format!(
                "pod: \"{}_{}({})\". kubelet does not have ClusterDNS IP configured and cannot \
                 create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
                pod.metadata.name.as_deref().unwrap_or_default(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.uid.as_deref().unwrap_or_default(),
            ),
        });
        return host_dns(config, warnings);
    }
    let host = host_dns(config, warnings);
    let mut searches = Vec::new();
    if !config.cluster_domain.is_empty() {
        let domain = &config.cluster_domain;
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        searches = vec![
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.clone(),
        ];
    }
    searches.extend(host.searches);
    DnsConfig {
        servers: config.cluster_dns.iter().map(IpAddr::to_string).collect(),
        searches: without_duplicates(searches),
        options: CLUSTER_OPTIONS.iter().map(|o| o.to_string()).collect(),
    }
}

/// The node's resolver file (`dnsPolicy: Default`).
fn host_dns(config: &NodeAgentConfig, warnings: &mut Vec<DnsWarning>) -> DnsConfig {
    let Some(path) = &config.resolv_conf else {
        return DnsConfig::default();
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_resolv_conf(&text),
        Err(e) => {
            warnings.push(DnsWarning {
                reason: "DNSConfigForming",
                message: format!(
                    "could not read the node's resolver file {}: {e}",
                    path.display()
                ),
            });
            DnsConfig::default()
        }
    }
}

/// `nameserver`, `search` (or `domain`) and `options` lines of a resolv.conf.
pub(crate) fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut dns = DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => dns.servers.extend(fields.next().map(str::to_string)),
            // The last search or domain line wins, as in the resolver.
            Some("search") | Some("domain") => {
                dns.searches = fields.map(str::to_string).collect();
            }
            Some("options") => dns.options.extend(fields.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// Upstream's `appendDNSConfig`: the pod's servers and searches after the policy's, its
/// options replacing same-named ones.
fn append(dns: &mut DnsConfig, extra: &PodDNSConfig) {
    dns.servers
        .extend(extra.nameservers.iter().flatten().cloned());
    dns.servers = without_duplicates(std::mem::take(&mut dns.servers));
    dns.searches
        .extend(extra.searches.iter().flatten().cloned());
    dns.searches = without_duplicates(std::mem::take(&mut dns.searches));
    let mut options: BTreeMap<String, Option<String>> = BTreeMap::new();
    for o in &dns.options {
        match o.split_once(':') {
            Some((name, value)) => options.insert(name.to_string(), Some(value.to_string())),
            None => options.insert(o.clone(), None),
        };
    }
    for o in extra.options.iter().flatten() {
        options.insert(o.name.clone().unwrap_or_default(), o.value.clone());
    }
    dns.options = options
        .into_iter()
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, value)| match value {
            Some(v) if !v.is_empty() => format!("{name}:{v}"),
            _ => name,
        })
        .collect();
}

/// Upstream's `formDNSConfigFitsLimits`: at most 3 nameservers and 32 search domains of at
/// most 2048 characters in all, with an event when something is left out.
fn fit_limits(dns: &mut DnsConfig, warnings: &mut Vec<DnsWarning>) {
    if dns.servers.len() > MAX_NAMESERVERS {
        dns.servers.truncate(MAX_NAMESERVERS);
        warnings.push(DnsWarning {
            reason: "DNSConfigForming",
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the \
                 applied nameserver line is: {}",
                dns.servers.join(" ")
            ),
        });
    }
    let mut kept = Vec::new();
    let mut chars = 0;
    for s in &dns.searches {
        let with_space = s.len() + usize::from(!kept.is_empty());
        if kept.len() == MAX_SEARCH_PATHS || chars + with_space > MAX_SEARCH_CHARS {
            break;
        }
        chars += with_space;
        kept.push(s.clone());
    }
    if kept.len() < dns.searches.len() {
        dns.searches = kept;
        warnings.push(DnsWarning {
            reason: "DNSConfigForming",
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the \
                 applied search line is: {}",
                dns.searches.join(" ")
            ),
        });
    }
}

fn without_duplicates(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect()
}

/// The kubelet-managed `/etc/hosts` of a pod with its own network: localhost, the pod's IP
/// under its hostname (and FQDN with a `subdomain`), and `spec.hostAliases`.
pub(crate) fn hosts_file(pod: &Pod, pod_ip: IpAddr, cluster_domain: &str) -> String {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let hostname = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
        .unwrap_or(name);
    // Upstream truncates a pod name used as the hostname to 63 characters.
    let hostname: String = hostname.chars().take(63).collect();
    let hostname = hostname.trim_end_matches(['-', '.']);
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    match spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        Some(sub) => {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            out.push_str(&format!(
                "{pod_ip}\t{hostname}.{sub}.{namespace}.svc.{cluster_domain}\t{hostname}\n"
            ));
        }
        None => out.push_str(&format!("{pod_ip}\t{hostname}\n")),
    }
    let aliases = spec
        .and_then(|s| s.host_aliases.as_deref())
        .unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.as_deref().unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    out
}

impl PodWorker {
    /// The pod's resolver configuration for its sandbox; records the warnings as pod events
    /// when `record` (a new sandbox, not an adopted one).
    pub(crate) fn sandbox_dns(&self, record: bool) -> DnsConfig {
        let (dns, warnings) = dns_config(&self.pod, &self.ctx.config);
        if record {
            for w in warnings {
                self.ctx
                    .recorder
                    .pod(&self.pod, None, EventType::Warning, w.reason, w.message);
            }
        }
        dns
    }

    /// The managed `/etc/hosts` mount of a container, written under the pod's directory, as
    /// upstream's kubelet adds it: for pods with their own network (not hostNetwork, and a
    /// network namespace of their own) whose container mounts nothing at `/etc/hosts`.
    pub(crate) fn etc_hosts_mount(
        &self,
        mounts: &[Mount],
        sandbox: &Sandbox,
    ) -> Result<Option<Mount>, String> {
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        if host_network
            || sandbox.config.netns_path.is_none()
            || mounts
                .iter()
                .any(|m| m.container_path == Path::new(ETC_HOSTS))
        {
            return Ok(None);
        }
        let dir = pod_dir(&self.ctx.root_dir, &self.uid);
        let path = dir.join("etc-hosts");
        let text = hosts_file(&self.pod, sandbox.ip, &self.ctx.config.cluster_domain);
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| format!("writing the pod's hosts file {}: {e}", path.display()))?;
        Ok(Some(Mount {
            container_path: ETC_HOSTS.into(),
            host_path: path,
            readonly: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "shop", "uid": "u1"},
            "spec": spec,
        }))
        .expect("pod")
    }

    fn node(dir: &tempfile::TempDir) -> NodeAgentConfig {
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "# host\nnameserver 192.168.1.1\nsearch lan\noptions edns0\n",
        )
        .expect("write resolv.conf");
        let mut config = NodeAgentConfig::new("n1");
        config.cluster_dns = vec!["10.96.0.10".parse().expect("ip")];
        config.resolv_conf = Some(resolv);
        config
    }

    #[test]
    fn cluster_first_searches_the_namespace_then_the_host() {
        let dir = tempfile::tempdir().expect("dir");
        let (dns, warnings) = dns_config(&pod(json!({})), &node(&dir));
        assert!(warnings.is_empty());
        assert_eq!(dns.servers, ["10.96.0.10"]);
        assert_eq!(
            dns.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "lan"
            ]
        );
        assert_eq!(dns.options, ["ndots:5"]);
    }

    #[test]
    fn host_network_and_default_use_the_node_file_and_none_uses_only_dns_config() {
        let dir = tempfile::tempdir().expect("dir");
        let config = node(&dir);
        for spec in [
            json!({"hostNetwork": true}),
            json!({"dnsPolicy": "Default"}),
        ] {
            let (dns, _) = dns_config(&pod(spec), &config);
            assert_eq!(dns.servers, ["192.168.1.1"]);
            assert_eq!(dns.searches, ["lan"]);
        }
        let (dns, _) = dns_config(
            &pod(json!({"dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.1.1.1"], "searches": ["a.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            }})),
            &config,
        );
        assert_eq!(dns.servers, ["1.1.1.1"]);
        assert_eq!(dns.searches, ["a.example"]);
        assert_eq!(dns.options, ["edns0", "ndots:2"]);
    }

    #[test]
    fn without_cluster_dns_cluster_first_falls_back_with_a_warning() {
        let dir = tempfile::tempdir().expect("dir");
        let mut config = node(&dir);
        config.cluster_dns.clear();
        let (dns, warnings) = dns_config(&pod(json!({})), &config);
        assert_eq!(dns.servers, ["192.168.1.1"]);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].reason, "MissingClusterDNS");
    }

    #[test]
    fn too_many_nameservers_are_cut_to_three_with_an_event() {
        let dir = tempfile::tempdir().expect("dir");
        let (dns, warnings) = dns_config(
            &pod(json!({"dnsConfig": {"nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9"]}})),
            &node(&dir),
        );
        assert_eq!(dns.servers, ["10.96.0.10", "1.1.1.1", "8.8.8.8"]);
        assert_eq!(warnings[0].reason, "DNSConfigForming");
        assert!(warnings[0].message.ends_with("10.96.0.10 1.1.1.1 8.8.8.8"));
    }

    #[test]
    fn the_hosts_file_names_the_pod_and_its_aliases() {
        let p = pod(json!({"hostname": "web-0", "subdomain": "nginx",
                           "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo", "bar"]}]}));
        let hosts = hosts_file(&p, "10.244.1.5".parse().expect("ip"), "cluster.local");
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("10.244.1.5\tweb-0.nginx.shop.svc.cluster.local\tweb-0\n"));
        assert!(hosts.ends_with("\n# Entries added by HostAliases.\n10.1.2.3\tfoo\tbar\n"));
    }
}
