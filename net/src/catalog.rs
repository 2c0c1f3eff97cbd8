//! The service catalog: the latest [`ServiceEntry`] of every service, answering DNS questions
//! and picking endpoints round-robin for a service proxy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::ServiceEntry;
use crate::dns::{self, DnsRecord, Record};

/// Every known service, keyed by `(namespace, name)`.
#[derive(Debug)]
pub(crate) struct ServiceCatalog {
    domain: String,
    services: HashMap<(String, String), ServiceRecord>,
    /// How many services each namespace has: `<ns>.svc.<domain>` exists while it has one.
    namespaces: HashMap<String, usize>,
}

#[derive(Debug)]
struct ServiceRecord {
    entry: ServiceEntry,
    /// Round-robin cursor for [`ServiceCatalog::pick_endpoint`]; atomic so that picking
    /// needs only a shared borrow of the catalog.
    next: AtomicUsize,
}

impl ServiceCatalog {
    /// An empty catalog answering for `domain` (`cluster.local`).
    pub(crate) fn new(domain: &str) -> Self {
        ServiceCatalog {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            services: HashMap::new(),
            namespaces: HashMap::new(),
        }
    }

    /// The cluster domain this catalog answers for.
    pub(crate) fn domain(&self) -> &str {
        &self.domain
    }

    /// Replaces what is known about one service. The round-robin cursor carries over.
    pub(crate) fn sync(&mut self, entry: ServiceEntry) {
        let key = (entry.namespace.clone(), entry.name.clone());
        match self.services.get_mut(&key) {
            Some(record) => record.entry = entry,
            None => {
                *self.namespaces.entry(entry.namespace.clone()).or_default() += 1;
                self.services.insert(
                    key,
                    ServiceRecord {
                        entry,
                        next: AtomicUsize::new(0),
                    },
                );
            }
        }
    }

    /// Forgets a service; returns whether it was known.
    pub(crate) fn remove(&mut self, namespace: &str, name: &str) -> bool {
        let removed = self
            .services
            .remove(&(namespace.to_string(), name.to_string()))
            .is_some();
        if removed && let Some(count) = self.namespaces.get_mut(namespace) {
            *count -= 1;
            if *count == 0 {
                self.namespaces.remove(namespace);
            }
        }
        removed
    }

    /// The latest entry for a service.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.record(namespace, name).map(|r| &r.entry)
    }

    /// Every entry, in no particular order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &ServiceEntry> {
        self.services.values().map(|r| &r.entry)
    }

    /// Answers an A question as a pod in `from_namespace` would ask it: the first name of the
    /// search list that has an answer wins.
    pub(crate) fn resolve(&self, name: &str, from_namespace: &str) -> Vec<IpAddr> {
        dns::search_candidates(name, from_namespace, &self.domain)
            .iter()
            .map(|fqdn| self.answer(fqdn))
            .find(|ips| !ips.is_empty())
            .unwrap_or_default()
    }

    /// The next endpoint of `service` for the service port `port`, round-robin, with the
    /// target port to connect to.
    pub(crate) fn pick_endpoint(
        &self,
        namespace: &str,
        service: &str,
        port: u16,
    ) -> Option<(IpAddr, u16)> {
        let record = self.record(namespace, service)?;
        let port = record.entry.ports.iter().find(|p| p.port == port)?;
        let count = record.entry.endpoints_for(port).count();
        if count == 0 {
            return None;
        }
        let i = record.next.fetch_add(1, Ordering::Relaxed) % count;
        record
            .entry
            .endpoints_for(port)
            .nth(i)
            .map(|(e, target)| (e.ip, target))
    }

    fn record(&self, namespace: &str, name: &str) -> Option<&ServiceRecord> {
        // Lookups come with borrowed strings; building the owned key is cheap next to DNS.
        self.services
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// The A/AAAA records of one absolute name.
    fn answer(&self, fqdn: &str) -> Vec<IpAddr> {
        self.lookup(fqdn)
            .into_iter()
            .flatten()
            .filter_map(|r| match r {
                DnsRecord::Address(ip) => Some(ip),
                _ => None,
            })
            .collect()
    }

    /// Every record at the absolute name `fqdn` (lowercase, no trailing dot), or `None` if
    /// the name does not exist (NXDOMAIN). A name that exists with no records (a headless
    /// service with no ready endpoint, `<ns>.svc.<domain>`) gets `Some(vec![])`.
    ///
    /// Reverse names (`<d.c.b.a>.in-addr.arpa`) get PTR records, as CoreDNS's `kubernetes`
    /// plugin serves them: a Service's ClusterIP names the Service
    /// (`<svc>.<ns>.svc.<domain>`), an endpoint's address the endpoint
    /// (`<hostname or dashed IP>.<svc>.<ns>.svc.<domain>`, so a StatefulSet pod gets its
    /// `hostname.subdomain` name); an address that is neither does not exist.
    pub(crate) fn lookup(&self, fqdn: &str) -> Option<Vec<DnsRecord>> {
        if dns::in_reverse_zone(fqdn) {
            return self.reverse(IpAddr::V4(dns::parse_reverse(fqdn)?));
        }
        match dns::parse_fqdn(fqdn, &self.domain)? {
            Record::Zone => Some(Vec::new()),
            Record::Namespace { namespace } => {
                self.namespaces.contains_key(namespace).then(Vec::new)
            }
            Record::Service { namespace, service } => {
                let entry = self.get(namespace, service)?;
                Some(match (&entry.external_name, entry.cluster_ip) {
                    (Some(external), _) => vec![DnsRecord::Cname(external.clone())],
                    (None, Some(ip)) => vec![DnsRecord::Address(ip)],
                    (None, None) => entry
                        .endpoints
                        .iter()
                        .map(|e| DnsRecord::Address(e.ip))
                        .collect(),
                })
            }
            Record::Endpoint {
                namespace,
                service,
                endpoint,
            } => {
                let ips: Vec<DnsRecord> = self
                    .get(namespace, service)?
                    .endpoints
                    .iter()
                    .filter(|e| endpoint_label(e).eq_ignore_ascii_case(endpoint))
                    .map(|e| DnsRecord::Address(e.ip))
                    .collect();
                (!ips.is_empty()).then_some(ips)
            }
            Record::Protocol {
                namespace,
                service,
                protocol,
            } => {
                let entry = self.get(namespace, service)?;
                entry
                    .ports
                    .iter()
                    .any(|p| !p.name.is_empty() && p.protocol.eq_ignore_ascii_case(protocol))
                    .then(Vec::new)
            }
            Record::Srv {
                namespace,
                service,
                port,
                protocol,
            } => {
                let entry = self.get(namespace, service)?;
                let port = entry.ports.iter().find(|p| {
                    !p.name.is_empty()
                        && p.name.eq_ignore_ascii_case(port)
                        && p.protocol.eq_ignore_ascii_case(protocol)
                })?;
                let service_name = format!("{service}.{namespace}.svc.{}", self.domain);
                Some(match (&entry.external_name, entry.cluster_ip) {
                    (Some(external), _) => vec![srv(port.port, external.clone(), 1)],
                    (None, Some(_)) => vec![srv(port.port, service_name, 1)],
                    // Headless: one record per ready endpoint, on the endpoint's port.
                    (None, None) => {
                        let n = entry.endpoints_for(port).count();
                        entry
                            .endpoints_for(port)
                            .map(|(e, target)| {
                                srv(target, format!("{}.{service_name}", endpoint_label(e)), n)
                            })
                            .collect()
                    }
                })
            }
            Record::Pod { ip } => Some(vec![DnsRecord::Address(IpAddr::V4(ip))]),
        }
    }
}

impl ServiceCatalog {
    /// The PTR records of `ip` (see [`ServiceCatalog::lookup`]), sorted so answers are
    /// stable; `None` when no Service or endpoint has it.
    fn reverse(&self, ip: IpAddr) -> Option<Vec<DnsRecord>> {
        let domain = &self.domain;
        let services: Vec<&ServiceEntry> = self.entries().collect();
        let mut names: Vec<String> = services
            .iter()
            .filter(|e| e.external_name.is_none() && e.cluster_ip == Some(ip))
            .map(|e| format!("{}.{}.svc.{domain}", e.name, e.namespace))
            .collect();
        if names.is_empty() {
            names = services
                .iter()
                .filter(|e| e.external_name.is_none())
                .flat_map(|e| {
                    e.endpoints.iter().filter(|ep| ep.ip == ip).map(move |ep| {
                        format!(
                            "{}.{}.{}.svc.{domain}",
                            endpoint_label(ep),
                            e.name,
                            e.namespace
                        )
                    })
                })
                .collect();
        }
        names.sort();
        names.dedup();
        (!names.is_empty()).then(|| names.into_iter().map(DnsRecord::Ptr).collect())
    }
}

/// An endpoint's DNS label: its hostname, else its dashed address (CoreDNS's choice).
fn endpoint_label(endpoint: &crate::Endpoint) -> String {
    match &endpoint.hostname {
        Some(h) => h.clone(),
        None => dns::dashed_ip(&endpoint.ip),
    }
}

/// An SRV record, one of `of` at its name: weights share 100 as CoreDNS shares them.
fn srv(port: u16, target: String, of: usize) -> DnsRecord {
    let weight = u16::try_from(100 / of.max(1)).unwrap_or(1).max(1);
    DnsRecord::Srv {
        priority: 0,
        weight,
        port,
        target,
    }
}
