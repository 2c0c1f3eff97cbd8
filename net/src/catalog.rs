//! The service catalog: the latest [`ServiceEntry`] of every service, answering DNS questions
//! and picking endpoints round-robin for a service proxy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::ServiceEntry;
use crate::dns::{self, Record};

/// Every known service, keyed by `(namespace, name)`.
#[derive(Debug)]
pub(crate) struct ServiceCatalog {
    domain: String,
    services: HashMap<(String, String), ServiceRecord>,
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
        self.services
            .remove(&(namespace.to_string(), name.to_string()))
            .is_some()
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
        let target = record
            .entry
            .ports
            .iter()
            .find(|p| p.port == port)?
            .target_port;
        let endpoints = &record.entry.endpoints;
        if endpoints.is_empty() {
            return None;
        }
        let i = record.next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        Some((endpoints[i].0, target))
    }

    fn record(&self, namespace: &str, name: &str) -> Option<&ServiceRecord> {
        // Lookups come with borrowed strings; building the owned key is cheap next to DNS.
        self.services
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// The A records of one absolute name.
    fn answer(&self, fqdn: &str) -> Vec<IpAddr> {
        match dns::parse_fqdn(fqdn, &self.domain) {
            Some(Record::Service { namespace, service }) => match self.get(namespace, service) {
                Some(ServiceEntry {
                    cluster_ip: Some(ip),
                    ..
                }) => vec![*ip],
                Some(entry) => entry.endpoints.iter().map(|(ip, _)| *ip).collect(),
                None => Vec::new(),
            },
            Some(Record::Endpoint {
                namespace,
                service,
                endpoint,
            }) => self
                .get(namespace, service)
                .map(|entry| {
                    entry
                        .endpoints
                        .iter()
                        .filter(|(ip, hostname)| match hostname {
                            Some(h) => h.eq_ignore_ascii_case(endpoint),
                            None => dns::dashed_ip(ip) == endpoint,
                        })
                        .map(|(ip, _)| *ip)
                        .collect()
                })
                .unwrap_or_default(),
            Some(Record::Pod { ip }) => vec![IpAddr::V4(ip)],
            None => Vec::new(),
        }
    }
}
