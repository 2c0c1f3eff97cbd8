//! The cluster DNS Service, `kube-system/kube-dns`, as every upstream cluster has it: the
//! Service whose ClusterIP (`10.96.0.10` by default) every pod's `resolv.conf` names, with
//! the ports `dns` (53/UDP) and `dns-tcp` (53/TCP).
//!
//! Upstream, the DNS addon (CoreDNS under kubeadm) creates it with a selector for its own
//! pods. Here the DNS server is part of the cluster ([`DnsServer`], one per node with
//! [`LinuxNetwork`]), not pods, so the Service has no selector and no endpoints: it names
//! the address and makes `kube-dns.kube-system.svc` resolve, and the network serves DNS on
//! it itself (see `service_rules.rs` for how the Service's rules leave that traffic alone).
//!
//! [`DnsServer`]: crate::DnsServer
//! [`LinuxNetwork`]: https://docs.rs/kybernetes-net

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;

/// The namespace of the cluster DNS Service.
pub const KUBE_DNS_NAMESPACE: &str = "kube-system";
/// The name of the cluster DNS Service.
pub const KUBE_DNS_SERVICE: &str = "kube-dns";

/// Creates the Service `kube-system/kube-dns` with ClusterIP `ip`, unless it exists.
///
/// The API server keeps `ip` (the configured cluster DNS address) out of dynamic
/// allocation, so only a Service asking for it by `spec.clusterIP` can hold it; if another
/// one already does (a store from before), the create fails with 422 Invalid and the
/// error says so.
pub async fn ensure_kube_dns_service(client: &kube::Client, ip: IpAddr) -> kube::Result<()> {
    let port = |name: &str, protocol: &str| ServicePort {
        name: Some(name.to_string()),
        port: 53,
        protocol: Some(protocol.to_string()),
        target_port: Some(IntOrString::Int(53)),
        ..Default::default()
    };
    // The labels of upstream's DNS addons, which tools select it by.
    let labels = [
        ("k8s-app", "kube-dns"),
        ("kubernetes.io/cluster-service", "true"),
        ("kubernetes.io/name", "KubeDNS"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect::<BTreeMap<_, _>>();
    let service = Service {
        metadata: ObjectMeta {
            name: Some(KUBE_DNS_SERVICE.to_string()),
            namespace: Some(KUBE_DNS_NAMESPACE.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.to_string()),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let api: Api<Service> = Api::namespaced(client.clone(), KUBE_DNS_NAMESPACE);
    // Made by an earlier start over the same store: left as it is. Looked up first, because a
    // create would fail on its ClusterIP (422, "already allocated") before its name.
    if api.get_opt(KUBE_DNS_SERVICE).await?.is_some() {
        return Ok(());
    }
    match api.create(&PostParams::default(), &service).await {
        Ok(_) => Ok(()),
        // Made meanwhile: left as it is, as an addon manager leaves a Service an
        // administrator changed.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
