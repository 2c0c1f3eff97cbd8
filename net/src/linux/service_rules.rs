//! Services in the kernel datapath: one nftables table, `ip kybernetes`, in every node
//! namespace, laid out as kube-proxy's nftables mode lays out its own.
//!
//! `services` matches `daddr . proto . dport` in the verdict map `service-ips` (and the node
//! address's `proto . dport` in `service-nodeports`) and jumps to a chain per service port,
//! which picks one ready endpoint at random (`numgen random`) and jumps to that endpoint's
//! chain, which DNATs to it. NodePort traffic and hairpin traffic are marked for masquerade,
//! as are connections between two pods of the node's own bridge (their replies would
//! otherwise bypass the node and its conntrack entry).
//!
//! Rules are written by the Debian `nft` binary from a script on stdin (`nft -f -`): a script
//! is one kernel transaction, so a service's rules change atomically, and conntrack keeps
//! established connections on the endpoint they were given.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use kybernetes_core::ipam::Cidr;

use super::netns;
use crate::{Error, Result, ServiceEntry};

/// The table every rule lives in.
pub(crate) const TABLE: &str = "ip kybernetes";

/// The chains, sets and map elements of one service, as nft statements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServiceRules {
    /// Chain name → its rules, endpoint chains first (service chains jump to them).
    chains: Vec<(String, Vec<String>)>,
    /// `map-name { key : verdict }` elements.
    elements: Vec<(String, String, String)>,
}

/// The base table for a node with address `node_ip` and pod subnet `subnet`; replaces any
/// table left from before.
pub(crate) fn base_script(node_ip: std::net::Ipv4Addr, subnet: Cidr) -> String {
    format!(
        "table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{
  map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map service-nodeports {{ type inet_proto . inet_service : verdict; }}
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

/// The rules for `service` (IPv4 ClusterIP services only; others have none).
pub(crate) fn rules_for(service: &ServiceEntry) -> ServiceRules {
    let mut out = ServiceRules::default();
    let Some(IpAddr::V4(cluster_ip)) = service.cluster_ip else {
        return out;
    };
    let endpoints: Vec<_> = service
        .endpoints
        .iter()
        .filter_map(|(ip, _)| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
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
        let svc_chain = format!("svc_{base}");
        let mut verdicts = Vec::new();
        for (i, ep) in endpoints.iter().enumerate() {
            let ep_chain = format!("ep_{base}_{}", ep.to_string().replace('.', "-"));
            out.chains.push((
                ep_chain.clone(),
                vec![
                    format!("ip saddr {ep} jump mark-for-masquerade"),
                    format!("meta l4proto {proto} dnat to {ep}:{}", port.target_port),
                ],
            ));
            verdicts.push(format!("{i} : goto {ep_chain}"));
        }
        // No ready endpoint: no DNAT, so the ClusterIP answers nothing (unroutable).
        let svc_rules = if verdicts.is_empty() {
            vec![]
        } else {
            vec![format!(
                "numgen random mod {} vmap {{ {} }}",
                verdicts.len(),
                verdicts.join(", ")
            )]
        };
        out.chains.push((svc_chain.clone(), svc_rules));
        out.elements.push((
            "service-ips".into(),
            format!("{cluster_ip} . {proto} . {}", port.port),
            format!("goto {svc_chain}"),
        ));
        if let Some(node_port) = port.node_port {
            let ext_chain = format!("ext_{base}");
            out.chains.push((
                ext_chain.clone(),
                vec![
                    "jump mark-for-masquerade".into(),
                    format!("goto {svc_chain}"),
                ],
            ));
            out.elements.push((
                "service-nodeports".into(),
                format!("{proto} . {node_port}"),
                format!("goto {ext_chain}"),
            ));
        }
    }
    out
}

/// The script that turns `old` into `new` in one transaction: new chains filled, map
/// elements added, then what only `old` had unhooked, emptied and deleted.
pub(crate) fn update_script(old: &ServiceRules, new: &ServiceRules) -> String {
    let mut s = String::new();
    for (chain, rules) in &new.chains {
        s.push_str(&format!(
            "add chain {TABLE} {chain}\nflush chain {TABLE} {chain}\n"
        ));
        for rule in rules {
            s.push_str(&format!("add rule {TABLE} {chain} {rule}\n"));
        }
    }
    let new_keys: BTreeSet<_> = new.elements.iter().map(|(m, k, _)| (m, k)).collect();
    for (map, key, verdict) in &new.elements {
        s.push_str(&format!(
            "add element {TABLE} {map} {{ {key} : {verdict} }}\n"
        ));
    }
    for (map, key, _) in &old.elements {
        if !new_keys.contains(&(map, key)) {
            s.push_str(&format!("delete element {TABLE} {map} {{ {key} }}\n"));
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
