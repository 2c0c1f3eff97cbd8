//! Services in the kernel datapath: one nftables table, `ip kybernetes`, in every node
//! namespace, laid out as kube-proxy's nftables mode lays out its own.
//!
//! `services` matches `daddr . proto . dport` in the verdict map `service-ips` (and the node
//! address's `proto . dport` in `service-nodeports`) and jumps to a chain per service port,
//! which picks one ready endpoint at random (`numgen random`), or the one a client is pinned
//! to by `sessionAffinity: ClientIP` (a set per endpoint whose entries time out), and jumps
//! to that endpoint's chain, which DNATs to it. Rules differ per node only under a `Local`
//! traffic policy (see [`rules_for`]); a service port with no ready endpoint is rejected. NodePort traffic and hairpin traffic are marked for masquerade,
//! as are connections between two pods of the node's own bridge (their replies would
//! otherwise bypass the node and its conntrack entry).
//!
//! DNS to the node's own cluster DNS address (`kube-system/kube-dns`'s ClusterIP, which the
//! node serves itself, see `node_dns.rs`) is not tracked, so none of this applies to it, as
//! NodeLocal DNSCache exempts its address: the Service has no endpoints, and its reject
//! would otherwise refuse every query before it reached the local server.
//!
//! Rules are written by the Debian `nft` binary from a script on stdin (`nft -f -`): a script
//! is one kernel transaction, so a service's rules change atomically, and conntrack keeps
//! established connections on the endpoint they were given.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};

use kybernetes_core::ipam::Cidr;

use super::netns;
use super::node_dns::DNS_PORT;
use crate::{Error, Result, ServiceEntry};

/// The table every rule lives in.
pub(crate) const TABLE: &str = "ip kybernetes";

/// The chains, sets and map elements of one service on one node, as nft statements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServiceRules {
    /// Set name → its definition (`{ type …; }`): session affinity, per endpoint.
    sets: Vec<(String, String)>,
    /// Chain name → its rules, endpoint chains first (service chains jump to them).
    chains: Vec<(String, Vec<String>)>,
    /// `map-name { key : verdict }` elements.
    elements: Vec<(String, String, String)>,
}

/// The base table for a node with address `node_ip` and pod subnet `subnet` that serves
/// cluster DNS on `local_dns`:53; replaces any table left from before.
///
/// `raw-prerouting` and `raw-output` run before conntrack and mark DNS to and from the
/// local DNS address untracked: an untracked packet skips the NAT chains and the
/// endpoints check (which only sees `ct state new`), so the node delivers it to its own
/// server whatever the Service's rules say.
///
/// Besides the NAT chains, two filter chains run before DNAT on every new connection and
/// reject one to a service port with no ready endpoint (ICMP port unreachable, which a TCP
/// client sees as "connection refused"), as kube-proxy's `service-endpoints-check` does.
pub(crate) fn base_script(node_ip: Ipv4Addr, subnet: Cidr, local_dns: Option<Ipv4Addr>) -> String {
    let dns = DNS_PORT;
    let notrack = local_dns.map_or_else(String::new, |ip| {
        format!(
            "  chain raw-prerouting {{ type filter hook prerouting priority raw; policy accept; ip daddr {ip} meta l4proto {{ tcp, udp }} th dport {dns} notrack; }}
  chain raw-output {{ type filter hook output priority raw; policy accept; ip daddr {ip} meta l4proto {{ tcp, udp }} th dport {dns} notrack; ip saddr {ip} meta l4proto {{ tcp, udp }} th sport {dns} notrack; }}\n"
        )
    });
    format!(
        "table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{
  map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map service-nodeports {{ type inet_proto . inet_service : verdict; }}
  map no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map no-endpoint-nodeports {{ type inet_proto . inet_service : verdict; }}
{notrack}  chain reject-chain {{ reject; }}
  chain service-endpoints-check {{
    ip daddr . meta l4proto . th dport vmap @no-endpoint-services
    ip daddr {node_ip} meta l4proto . th dport vmap @no-endpoint-nodeports
  }}
  chain filter-prerouting {{ type filter hook prerouting priority -110; policy accept; ct state new jump service-endpoints-check; }}
  chain filter-output {{ type filter hook output priority -110; policy accept; ct state new jump service-endpoints-check; }}
  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}
  chain output {{ type nat hook output priority -100; policy accept; jump services; }}
  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept; jump masquerading; }}
  chain mark-for-masquerade {{ meta mark set meta mark | 0x4000; }}
  chain masquerading {{
    ct status dnat ip saddr {subnet} ip daddr {subnet} masquerade
    meta mark & 0x4000 == 0 return
    meta mark set meta mark ^ 0x4000
    masquerade fully-random
  }}
  chain services {{
    ip daddr . meta l4proto . th dport vmap @service-ips
    ip daddr {node_ip} meta l4proto . th dport vmap @service-nodeports
  }}
}}\n"
    )
}

/// The node a service's rules are written for.
pub(crate) struct RulesNode<'a> {
    /// The node name, as endpoints' `nodeName` spells it.
    pub(crate) name: &'a str,
    /// The cluster's pod CIDR: NodePort traffic from a pod counts as internal.
    pub(crate) cluster_cidr: Cidr,
}

/// The rules for `service` on `node` (IPv4 ClusterIP services only; others have none).
///
/// Per service port, as kube-proxy's nftables mode lays them out:
/// - an endpoint chain per endpoint, which DNATs to it (and, with session affinity, adds the
///   client to the endpoint's affinity set, whose entries time out);
/// - `svc_…`, every ready endpoint (affinity first, then `numgen random`), and, when a
///   traffic policy is `Local`, `svl_…` with only this node's endpoints (`drop` if none);
/// - the ClusterIP goes to `svl_…` under `internalTrafficPolicy: Local`, else to `svc_…`;
/// - the NodePort and every load-balancer ingress address go through `ext_…`: masquerade and `svc_…`, or under
///   `externalTrafficPolicy: Local` pods masqueraded to the ClusterIP's chain, the node itself
///   masqueraded to `svc_…`, and everyone else to `svl_…` with the client address kept;
/// - a port with no ready endpoint at all gets only `no-endpoint-*` elements: rejected.
pub(crate) fn rules_for(service: &ServiceEntry, node: &RulesNode<'_>) -> ServiceRules {
    let mut out = ServiceRules::default();
    let Some(IpAddr::V4(cluster_ip)) = service.cluster_ip else {
        return out;
    };
    for port in &service.ports {
        let proto = match port.protocol.as_str() {
            "TCP" => "tcp",
            "UDP" => "udp",
            "SCTP" => "sctp",
            other => {
                tracing::warn!(namespace = %service.namespace, service = %service.name, protocol = other, "unknown protocol; port not served");
                continue;
            }
        };
        let base = format!(
            "{}_{}_{proto}_{}",
            service.namespace, service.name, port.port
        );
        let cluster_key = format!("{cluster_ip} . {proto} . {}", port.port);
        let node_key = port.node_port.map(|n| format!("{proto} . {n}"));
        let load_balancer_keys: Vec<String> = service
            .load_balancer_ips
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(v4) => Some(format!("{v4} . {proto} . {}", port.port)),
                IpAddr::V6(_) => None,
            })
            .collect();
        // (endpoint, its chain, on this node)
        let mut endpoints = Vec::new();
        for (ep, target) in service.endpoints_for(port) {
            let IpAddr::V4(ip) = ep.ip else { continue };
            let ep_chain = format!("ep_{base}_{}", ip.to_string().replace('.', "-"));
            let mut rules = vec![format!("ip saddr {ip} jump mark-for-masquerade")];
            let affinity = service.session_affinity.map(|timeout| {
                let set = format!(
                    "aff_{base}_{}_{}",
                    ip.to_string().replace('.', "-"),
                    timeout.as_secs()
                );
                out.sets.push((
                    set.clone(),
                    format!(
                        "{{ type ipv4_addr; flags dynamic,timeout; timeout {}s; }}",
                        timeout.as_secs()
                    ),
                ));
                rules.push(format!("update @{set} {{ ip saddr }}"));
                set
            });
            rules.push(format!("meta l4proto {proto} dnat to {ip}:{target}"));
            out.chains.push((ep_chain.clone(), rules));
            let local = ep.node_name.as_deref() == Some(node.name);
            endpoints.push((ep_chain, affinity, local));
        }
        if endpoints.is_empty() {
            // kube-proxy rejects a service with no endpoints rather than letting it time out.
            for key in std::iter::once(cluster_key).chain(load_balancer_keys) {
                out.elements.push((
                    "no-endpoint-services".into(),
                    key,
                    "goto reject-chain".into(),
                ));
            }
            if let Some(key) = node_key {
                out.elements.push((
                    "no-endpoint-nodeports".into(),
                    key,
                    "goto reject-chain".into(),
                ));
            }
            continue;
        }
        let svc_chain = format!("svc_{base}");
        out.chains.push((svc_chain.clone(), pick(endpoints.iter())));
        let local_chain =
            (service.internal_traffic_local || service.external_traffic_local).then(|| {
                let chain = format!("svl_{base}");
                let mut rules = pick(endpoints.iter().filter(|(_, _, local)| *local));
                if rules.is_empty() {
                    rules.push("drop".into());
                }
                out.chains.push((chain.clone(), rules));
                chain
            });
        let internal_chain = match (&local_chain, service.internal_traffic_local) {
            (Some(local), true) => local.clone(),
            _ => svc_chain.clone(),
        };
        out.elements.push((
            "service-ips".into(),
            cluster_key,
            format!("goto {internal_chain}"),
        ));
        if node_key.is_some() || !load_balancer_keys.is_empty() {
            let ext_chain = format!("ext_{base}");
            let rules = match (&local_chain, service.external_traffic_local) {
                // Pods are masqueraded too: the endpoint may be on the client pod's own
                // node, whose reply would otherwise skip this node's conntrack entry.
                (Some(local), true) => vec![
                    format!("ip saddr {} jump mark-for-masquerade", node.cluster_cidr),
                    format!("ip saddr {} goto {internal_chain}", node.cluster_cidr),
                    "fib saddr type local jump mark-for-masquerade".into(),
                    format!("fib saddr type local goto {svc_chain}"),
                    format!("goto {local}"),
                ],
                _ => vec![
                    "jump mark-for-masquerade".into(),
                    format!("goto {svc_chain}"),
                ],
            };
            out.chains.push((ext_chain.clone(), rules));
            if let Some(key) = node_key {
                out.elements
                    .push(("service-nodeports".into(), key, format!("goto {ext_chain}")));
            }
            for key in load_balancer_keys {
                out.elements
                    .push(("service-ips".into(), key, format!("goto {ext_chain}")));
            }
        }
    }
    out
}

/// The rules of a chain that sends a connection to one of `endpoints`: a client with an
/// affinity entry back to its endpoint, any other to one at random. Empty for none.
fn pick<'a>(
    endpoints: impl Iterator<Item = &'a (String, Option<String>, bool)> + Clone,
) -> Vec<String> {
    let mut rules: Vec<String> = endpoints
        .clone()
        .filter_map(|(chain, affinity, _)| {
            affinity
                .as_ref()
                .map(|set| format!("ip saddr @{set} goto {chain}"))
        })
        .collect();
    let verdicts: Vec<String> = endpoints
        .enumerate()
        .map(|(i, (chain, _, _))| format!("{i} : goto {chain}"))
        .collect();
    if !verdicts.is_empty() {
        rules.push(format!(
            "numgen random mod {} vmap {{ {} }}",
            verdicts.len(),
            verdicts.join(", ")
        ));
    }
    rules
}

/// The script that turns `old` into `new` in one transaction: new sets made, new chains
/// filled, map elements added, then what only `old` had unhooked, emptied and deleted.
pub(crate) fn update_script(old: &ServiceRules, new: &ServiceRules) -> String {
    let mut s = String::new();
    for (set, definition) in &new.sets {
        s.push_str(&format!("add set {TABLE} {set} {definition}\n"));
    }
    for (chain, rules) in &new.chains {
        s.push_str(&format!(
            "add chain {TABLE} {chain}\nflush chain {TABLE} {chain}\n"
        ));
        for rule in rules {
            s.push_str(&format!("add rule {TABLE} {chain} {rule}\n"));
        }
    }
    let new_elements: BTreeSet<_> = new.elements.iter().collect();
    for element @ (map, key, _) in &old.elements {
        // The kernel does not change an element's verdict in place: one whose verdict
        // changes (a traffic policy flipped) goes and comes back in the same transaction.
        if !new_elements.contains(element) {
            s.push_str(&format!("delete element {TABLE} {map} {{ {key} }}\n"));
        }
    }
    let old_elements: BTreeSet<_> = old.elements.iter().collect();
    for element @ (map, key, verdict) in &new.elements {
        if !old_elements.contains(element) {
            s.push_str(&format!(
                "add element {TABLE} {map} {{ {key} : {verdict} }}\n"
            ));
        }
    }
    let new_chains: BTreeSet<_> = new.chains.iter().map(|(c, _)| c).collect();
    let gone: Vec<_> = old
        .chains
        .iter()
        .map(|(c, _)| c)
        .filter(|c| !new_chains.contains(c))
        .collect();
    for chain in &gone {
        s.push_str(&format!("flush chain {TABLE} {chain}\n"));
    }
    for chain in &gone {
        s.push_str(&format!("delete chain {TABLE} {chain}\n"));
    }
    let new_sets: BTreeSet<_> = new.sets.iter().map(|(n, _)| n).collect();
    for (set, _) in &old.sets {
        if !new_sets.contains(set) {
            s.push_str(&format!("delete set {TABLE} {set}\n"));
        }
    }
    s
}

/// Runs `script` through `nft -f -` inside the namespace at `netns`.
pub(crate) async fn apply(netns_path: &Path, script: String) -> Result<()> {
    if script.is_empty() {
        return Ok(());
    }
    let path = netns_path.to_owned();
    netns::in_namespace(
        format!("writing nftables rules in {}", netns_path.display()),
        path,
        move || {
            let failed = |context: String, e: std::io::Error| Error::Backend {
                context,
                source: Some(Box::new(e)),
            };
            let mut child = Command::new("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| failed("running nft (Debian package nftables)".into(), e))?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(script.as_bytes())
                    .map_err(|e| failed("writing the nft script".into(), e))?;
            }
            let out = child
                .wait_with_output()
                .map_err(|e| failed("waiting for nft".into(), e))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(Error::Backend {
                    context: format!(
                        "nft rejected the rules ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                    source: None,
                })
            }
        },
    )
    .await
}

/// The teardown of the base table (mirrors [`base_script`]).
pub(crate) fn delete_script() -> String {
    format!("table {TABLE}\ndelete table {TABLE}\n")
}
