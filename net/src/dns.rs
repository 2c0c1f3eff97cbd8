//! Cluster DNS names: the search path a pod's `resolv.conf` applies, and what a fully
//! qualified name under the cluster domain asks for.
//!
//! Kubernetes writes every pod a `resolv.conf` with
//! `search <ns>.svc.<domain> svc.<domain> <domain>` and `options ndots:5`, and CoreDNS's
//! `kubernetes` plugin serves these A records:
//! - `<svc>.<ns>.svc.<domain>`: the ClusterIP, or every ready endpoint of a headless service;
//! - `<endpoint>.<svc>.<ns>.svc.<domain>`: one endpoint, named by its `hostname`, or by its
//!   dashed IP (`10-244-1-5`) when it has none;
//! - `<a-b-c-d>.<ns>.pod.<domain>`: the pod IP spelled in the name (CoreDNS's `pods insecure`,
//!   the kubeadm default);
//!
//! a CNAME for `<svc>.<ns>.svc.<domain>` of an ExternalName service, SRV records
//! `_<port>._<proto>.<svc>.<ns>.svc.<domain>` for named ports, and empty answers (not
//! NXDOMAIN) for the names between the domain and a record (`svc.<domain>`,
//! `<ns>.svc.<domain>`, `_tcp.<svc>.<ns>.svc.<domain>`), which exist as DNS's empty
//! non-terminals do.

use std::net::{IpAddr, Ipv4Addr};

/// The `ndots` option Kubernetes puts in every pod's `resolv.conf`.
pub(crate) const NDOTS: usize = 5;

/// What a fully qualified name under the cluster domain asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// `<service>.<namespace>.svc.<domain>`.
    Service {
        namespace: &'a str,
        service: &'a str,
    },
    /// `<endpoint>.<service>.<namespace>.svc.<domain>`.
    Endpoint {
        namespace: &'a str,
        service: &'a str,
        endpoint: &'a str,
    },
    /// `<a-b-c-d>.<namespace>.pod.<domain>`.
    Pod { ip: Ipv4Addr },
    /// `svc.<domain>` or `pod.<domain>`: always there, holding nothing itself.
    Zone,
    /// `<namespace>.svc.<domain>` or `<namespace>.pod.<domain>`.
    Namespace { namespace: &'a str },
    /// `_<proto>.<service>.<namespace>.svc.<domain>`, above the SRV records.
    Protocol {
        namespace: &'a str,
        service: &'a str,
        protocol: &'a str,
    },
    /// `_<port>._<proto>.<service>.<namespace>.svc.<domain>`.
    Srv {
        namespace: &'a str,
        service: &'a str,
        port: &'a str,
        protocol: &'a str,
    },
}

/// One record cluster DNS serves at a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsRecord {
    /// An `A` (IPv4) or `AAAA` (IPv6) record.
    Address(IpAddr),
    /// A `CNAME` to this absolute name (no trailing dot): an ExternalName service.
    Cname(String),
    /// A `PTR` to this absolute name (no trailing dot): the Service or endpoint name of an
    /// address, at its `in-addr.arpa` name.
    Ptr(String),
    /// An `SRV` record for a named port.
    Srv {
        /// RFC 2782 priority.
        priority: u16,
        /// RFC 2782 weight.
        weight: u16,
        /// The port number.
        port: u16,
        /// The absolute name serving it (no trailing dot).
        target: String,
    },
}

/// The absolute names a resolver tries for `name` asked from a pod in `namespace`, in order,
/// lowercased and without the trailing dot.
///
/// A name ending in `.` is absolute and tried alone. A name with at least [`NDOTS`] dots is
/// tried as is before the search list, any other after it.
pub(crate) fn search_candidates(name: &str, namespace: &str, domain: &str) -> Vec<String> {
    let name = name.to_ascii_lowercase();
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![absolute.to_string()];
    }
    if name.is_empty() {
        return Vec::new();
    }
    let searched = [
        format!("{namespace}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.to_string(),
    ]
    .into_iter()
    .map(|suffix| format!("{name}.{}", suffix.to_ascii_lowercase()));
    if name.matches('.').count() >= NDOTS {
        std::iter::once(name.clone()).chain(searched).collect()
    } else {
        searched.chain(std::iter::once(name.clone())).collect()
    }
}

/// What the absolute name `fqdn` (lowercase, no trailing dot) asks for, if it is a cluster
/// record under `domain`.
pub(crate) fn parse_fqdn<'a>(fqdn: &'a str, domain: &str) -> Option<Record<'a>> {
    let domain = domain.trim_end_matches('.');
    let relative = fqdn.strip_suffix(domain)?.strip_suffix('.')?;
    let labels: Vec<&str> = relative.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    match labels[..] {
        ["svc" | "pod"] => Some(Record::Zone),
        [namespace, "svc" | "pod"] => Some(Record::Namespace { namespace }),
        [service, namespace, "svc"] => Some(Record::Service { namespace, service }),
        [protocol, service, namespace, "svc"] if protocol.starts_with('_') => {
            Some(Record::Protocol {
                namespace,
                service,
                protocol: &protocol[1..],
            })
        }
        [endpoint, service, namespace, "svc"] => Some(Record::Endpoint {
            namespace,
            service,
            endpoint,
        }),
        [port, protocol, service, namespace, "svc"]
            if port.starts_with('_') && protocol.starts_with('_') =>
        {
            Some(Record::Srv {
                namespace,
                service,
                port: &port[1..],
                protocol: &protocol[1..],
            })
        }
        [dashed, _namespace, "pod"] => parse_dashed_ip(dashed).map(|ip| Record::Pod { ip }),
        _ => None,
    }
}

/// The zone of IPv4 reverse names.
pub(crate) const REVERSE_ZONE: &str = "in-addr.arpa";

/// The address the reverse name `fqdn` (lowercase, no trailing dot) asks about:
/// `5.1.244.10.in-addr.arpa` → `10.244.1.5`. `None` for any other name, including the
/// shorter names above whole addresses (`244.10.in-addr.arpa`).
pub(crate) fn parse_reverse(fqdn: &str) -> Option<Ipv4Addr> {
    let relative = fqdn.strip_suffix(REVERSE_ZONE)?.strip_suffix('.')?;
    let mut octets = [0u8; 4];
    let mut labels = relative.split('.');
    for octet in octets.iter_mut().rev() {
        let label = labels.next()?;
        // Octets are written without leading zeros (`010` is not a label of 10.x).
        if label.len() > 1 && label.starts_with('0') {
            return None;
        }
        *octet = label.parse().ok()?;
    }
    labels.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// Whether `fqdn` (lowercase, no trailing dot) is `in-addr.arpa` or under it.
pub(crate) fn in_reverse_zone(fqdn: &str) -> bool {
    fqdn == REVERSE_ZONE
        || fqdn
            .strip_suffix(REVERSE_ZONE)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The DNS label CoreDNS gives an address with no hostname: `10.244.1.5` → `10-244-1-5`.
pub(crate) fn dashed_ip(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn parse_dashed_ip(label: &str) -> Option<Ipv4Addr> {
    label.replace('-', ".").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_parse_into_addresses() {
        assert_eq!(
            parse_reverse("5.1.244.10.in-addr.arpa"),
            Some(Ipv4Addr::new(10, 244, 1, 5))
        );
        for not_an_address in [
            "1.244.10.in-addr.arpa",
            "9.5.1.244.10.in-addr.arpa",
            "05.1.244.10.in-addr.arpa",
            "256.1.244.10.in-addr.arpa",
            "x.1.244.10.in-addr.arpa",
            "5.1.244.10.in-addr.arpa.example",
            "in-addr.arpa",
        ] {
            assert_eq!(parse_reverse(not_an_address), None, "{not_an_address}");
        }
        assert!(in_reverse_zone("in-addr.arpa"));
        assert!(in_reverse_zone("10.in-addr.arpa"));
        assert!(!in_reverse_zone("xin-addr.arpa"));
    }

    #[test]
    fn short_names_search_the_pod_namespace_first() {
        let c = search_candidates("web", "shop", "cluster.local");
        assert_eq!(
            c,
            [
                "web.shop.svc.cluster.local",
                "web.svc.cluster.local",
                "web.cluster.local",
                "web",
            ]
        );
    }

    #[test]
    fn names_with_five_dots_are_tried_as_is_first() {
        let c = search_candidates("pod-0.web.shop.svc.cluster.local", "x", "cluster.local");
        assert_eq!(c[0], "pod-0.web.shop.svc.cluster.local");
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn trailing_dot_makes_a_name_absolute() {
        assert_eq!(
            search_candidates("Web.Shop.svc.cluster.local.", "x", "cluster.local"),
            ["web.shop.svc.cluster.local"]
        );
        assert!(search_candidates("", "x", "cluster.local").is_empty());
    }

    #[test]
    fn fqdns_parse_into_records() {
        let d = "cluster.local";
        assert_eq!(
            parse_fqdn("web.shop.svc.cluster.local", d),
            Some(Record::Service {
                namespace: "shop",
                service: "web"
            })
        );
        assert_eq!(
            parse_fqdn("db-0.db.shop.svc.cluster.local", d),
            Some(Record::Endpoint {
                namespace: "shop",
                service: "db",
                endpoint: "db-0"
            })
        );
        assert_eq!(
            parse_fqdn("10-244-1-5.shop.pod.cluster.local", d),
            Some(Record::Pod {
                ip: Ipv4Addr::new(10, 244, 1, 5)
            })
        );
        assert_eq!(parse_fqdn("svc.cluster.local", d), Some(Record::Zone));
        assert_eq!(
            parse_fqdn("shop.svc.cluster.local", d),
            Some(Record::Namespace { namespace: "shop" })
        );
        assert_eq!(
            parse_fqdn("_http._tcp.web.shop.svc.cluster.local", d),
            Some(Record::Srv {
                namespace: "shop",
                service: "web",
                port: "http",
                protocol: "tcp"
            })
        );
        assert_eq!(
            parse_fqdn("_tcp.web.shop.svc.cluster.local", d),
            Some(Record::Protocol {
                namespace: "shop",
                service: "web",
                protocol: "tcp"
            })
        );
        for other in [
            "web.cluster.local",
            "http._tcp.web.shop.svc.cluster.local",
            "web.shop.svc.example.com",
            "x.web.shop.svc.cluster.local.extra",
            "a.b.c.d.shop.svc.cluster.local",
            "nope.shop.pod.cluster.local",
            "web..svc.cluster.local",
            "xcluster.local",
        ] {
            assert_eq!(parse_fqdn(other, d), None, "{other}");
        }
    }

    #[test]
    fn dashed_ip_spells_the_address_with_dashes() {
        assert_eq!(
            dashed_ip(&IpAddr::V4(Ipv4Addr::new(10, 244, 1, 5))),
            "10-244-1-5"
        );
    }
}
