//! The Endpoints and EndpointSlice controllers against the in-process API server. There is no
//! node agent: the tests write pod IPs and readiness into pod status themselves.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, clear_finalizers, eventually, labels};
use k8s_openapi::api::core::v1::{
    ContainerPort, EndpointAddress, EndpointSubset, Endpoints, Pod, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kybernetes_controllers::InformerFactory;
use kybernetes_controllers::endpoints::{EndpointsConfig, spawn_endpoints_controller};
use kybernetes_controllers::endpointslice::{EndpointSliceConfig, spawn_endpointslice_controller};
use kybernetes_controllers::garbage_collector::{GarbageCollectorConfig, spawn_garbage_collector};
use serde_json::json;

/// An API server with the Endpoints and EndpointSlice controllers and the garbage collector.
async fn start() -> Result<Cluster> {
    Cluster::start(|client, clock, shutdown| {
        let informers = InformerFactory::new(client.clone(), shutdown.clone());
        let mut tasks = vec![
            spawn_endpoints_controller(
                client.clone(),
                clock.clone(),
                EndpointsConfig::default(),
                &informers,
                shutdown.clone(),
            ),
            spawn_endpointslice_controller(
                client.clone(),
                clock.clone(),
                EndpointSliceConfig::default(),
                &informers,
                shutdown.clone(),
            ),
            spawn_garbage_collector(
                client.clone(),
                clock.clone(),
                GarbageCollectorConfig::default(),
                shutdown.clone(),
            ),
        ];
        tasks.extend(informers.take_tasks());
        tasks
    })
    .await
}

/// The service, pod and Endpoints APIs of the default namespace.
fn apis(c: &Cluster) -> (Api<Service>, Api<Pod>, Api<Endpoints>) {
    (
        Api::default_namespaced(c.client.clone()),
        Api::default_namespaced(c.client.clone()),
        Api::default_namespaced(c.client.clone()),
    )
}

fn service(name: &str, selector: Option<&str>, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: selector.map(labels),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_port(target: IntOrString) -> ServicePort {
    ServicePort {
        name: Some("http".into()),
        port: 80,
        target_port: Some(target),
        ..Default::default()
    }
}

fn pod(name: &str, app: &str) -> Pod {
    let mut pod = common::pod(name);
    pod.metadata.labels = Some(labels(app));
    if let Some(c) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        c.ports = Some(vec![ContainerPort {
            name: Some("web".into()),
            container_port: 9376,
            ..Default::default()
        }]);
    }
    pod
}

/// Creates `web-a` (ready, held by a finalizer) and `web-b` (not ready), both selected by `app=web`.
async fn create_held_and_not_ready_pods(pods: &Api<Pod>) -> Result<()> {
    let mut held = pod("web-a", "web");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    pods.create(&PostParams::default(), &held).await?;
    pods.create(&PostParams::default(), &pod("web-b", "web"))
        .await?;
    set_status(pods, "web-a", "10.244.0.1", true).await?;
    set_status(pods, "web-b", "10.244.0.2", false).await
}

/// Plays the node agent: gives the pod an IP and a readiness.
async fn set_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) -> Result<()> {
    let status = if ready { "True" } else { "False" };
    let patch = json!({ "status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{ "ip": ip }],
        "conditions": [{ "type": "Ready", "status": status }],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<String> {
    let mut v: Vec<String> = list.iter().flatten().map(|a| a.ip.clone()).collect();
    v.sort();
    v
}

/// (ready IPs, not-ready IPs, ports) of an Endpoints object.
fn summary(ep: &Endpoints) -> (Vec<String>, Vec<String>, Vec<i32>) {
    let subsets: &[EndpointSubset] = ep.subsets.as_deref().unwrap_or_default();
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    let mut ports = Vec::new();
    for s in subsets {
        ready.extend(ips(&s.addresses));
        not_ready.extend(ips(&s.not_ready_addresses));
        ports.extend(s.ports.iter().flatten().map(|p| p.port));
    }
    ready.sort();
    not_ready.sort();
    ports.sort();
    ports.dedup();
    (ready, not_ready, ports)
}

async fn endpoints_are(
    eps: &Api<Endpoints>,
    name: &str,
    ready: &[&str],
    not_ready: &[&str],
    ports: &[i32],
) -> Result<bool> {
    let Some(ep) = eps.get_opt(name).await? else {
        return Ok(false);
    };
    let want = (
        ready.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        not_ready.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ports.to_vec(),
    );
    Ok(summary(&ep) == want)
}

#[tokio::test]
async fn endpoints_track_pod_readiness_without_dropping_not_ready_pods() -> Result<()> {
    let c = start().await?;
    let (svcs, pods, eps) = apis(&c);
    svcs.create(
        &PostParams::default(),
        &service("web", Some("web"), vec![http_port(IntOrString::Int(8080))]),
    )
    .await?;
    for name in ["web-a", "web-b"] {
        pods.create(&PostParams::default(), &pod(name, "web"))
            .await?;
    }
    pods.create(&PostParams::default(), &pod("no-ip", "web"))
        .await?;
    pods.create(&PostParams::default(), &pod("other", "db"))
        .await?;
    set_status(&pods, "web-a", "10.244.0.1", true).await?;
    set_status(&pods, "web-b", "10.244.0.2", false).await?;
    set_status(&pods, "other", "10.244.0.9", true).await?;
    eventually("one ready and one not-ready address", || {
        endpoints_are(&eps, "web", &["10.244.0.1"], &["10.244.0.2"], &[8080])
    })
    .await?;

    let ep = eps.get("web").await?;
    let address = ep
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .next()
        .cloned()
        .unwrap_or_default();
    let target = address.target_ref.unwrap_or_default();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("web-a"))
    );
    assert!(target.uid.is_some());

    // Readiness flips move addresses between the lists; nothing is dropped.
    set_status(&pods, "web-a", "10.244.0.1", false).await?;
    eventually("both addresses are not ready", || {
        endpoints_are(&eps, "web", &[], &["10.244.0.1", "10.244.0.2"], &[8080])
    })
    .await?;
    set_status(&pods, "web-b", "10.244.0.2", true).await?;
    eventually("web-b is ready", || {
        endpoints_are(&eps, "web", &["10.244.0.2"], &["10.244.0.1"], &[8080])
    })
    .await?;
    c.stop().await
}

#[tokio::test]
async fn selector_and_label_changes_update_endpoints() -> Result<()> {
    let c = start().await?;
    let (svcs, pods, eps) = apis(&c);
    svcs.create(
        &PostParams::default(),
        &service(
            "web",
            Some("web"),
            vec![http_port(IntOrString::String("web".into()))],
        ),
    )
    .await?;
    pods.create(&PostParams::default(), &pod("web-a", "web"))
        .await?;
    pods.create(&PostParams::default(), &pod("api-a", "api"))
        .await?;
    set_status(&pods, "web-a", "10.244.0.1", true).await?;
    set_status(&pods, "api-a", "10.244.0.2", true).await?;
    // The named targetPort resolves to the container port called "web".
    eventually("web-a is listed", || {
        endpoints_are(&eps, "web", &["10.244.0.1"], &[], &[9376])
    })
    .await?;

    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "selector": { "app": "api" } } })),
    )
    .await?;
    eventually("the new selector's pod is listed", || {
        endpoints_are(&eps, "web", &["10.244.0.2"], &[], &[9376])
    })
    .await?;

    // A pod that stops matching leaves; one that starts matching joins.
    pods.patch(
        "api-a",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "app": "gone" } } })),
    )
    .await?;
    pods.patch(
        "web-a",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "app": "api" } } })),
    )
    .await?;
    eventually("only web-a is listed", || {
        endpoints_are(&eps, "web", &["10.244.0.1"], &[], &[9376])
    })
    .await?;
    c.stop().await
}

#[tokio::test]
async fn terminating_pods_leave_endpoints_unless_not_ready_addresses_are_published() -> Result<()> {
    let c = start().await?;
    let (svcs, pods, eps) = apis(&c);
    svcs.create(
        &PostParams::default(),
        &service("web", Some("web"), vec![http_port(IntOrString::Int(80))]),
    )
    .await?;
    let mut published = service(
        "published",
        Some("web"),
        vec![http_port(IntOrString::Int(80))],
    );
    if let Some(spec) = published.spec.as_mut() {
        spec.publish_not_ready_addresses = Some(true);
    }
    svcs.create(&PostParams::default(), &published).await?;
    create_held_and_not_ready_pods(&pods).await?;
    eventually("both pods are listed", || {
        endpoints_are(&eps, "web", &["10.244.0.1"], &["10.244.0.2"], &[80])
    })
    .await?;
    // publishNotReadyAddresses lists every pod as ready.
    eventually("published lists both as ready", || {
        endpoints_are(&eps, "published", &["10.244.0.1", "10.244.0.2"], &[], &[80])
    })
    .await?;

    pods.delete("web-a", &DeleteParams::default()).await?;
    eventually("the terminating pod leaves", || {
        endpoints_are(&eps, "web", &[], &["10.244.0.2"], &[80])
    })
    .await?;
    eventually("the published service keeps it", || {
        endpoints_are(&eps, "published", &["10.244.0.1", "10.244.0.2"], &[], &[80])
    })
    .await?;
    clear_finalizers(&pods, "web-a").await?;
    c.stop().await
}

#[tokio::test]
async fn headless_services_get_port_less_endpoints() -> Result<()> {
    let c = start().await?;
    let (svcs, pods, eps) = apis(&c);
    let mut headless = service("db", Some("db"), vec![]);
    if let Some(spec) = headless.spec.as_mut() {
        spec.cluster_ip = Some("None".into());
        spec.ports = None;
    }
    svcs.create(&PostParams::default(), &headless).await?;
    let mut p = pod("db-0", "db");
    if let Some(spec) = p.spec.as_mut() {
        spec.hostname = Some("db-0".into());
        spec.subdomain = Some("db".into());
    }
    pods.create(&PostParams::default(), &p).await?;
    set_status(&pods, "db-0", "10.244.0.7", true).await?;
    eventually("the pod is listed without ports", || {
        endpoints_are(&eps, "db", &["10.244.0.7"], &[], &[])
    })
    .await?;
    let ep = eps.get("db").await?;
    assert!(ep.labels().contains_key("service.kubernetes.io/headless"));
    let address = ep
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .next()
        .cloned()
        .unwrap_or_default();
    assert_eq!(address.hostname.as_deref(), Some("db-0"));
    c.stop().await
}

#[tokio::test]
async fn services_without_selectors_are_left_alone_and_deleted_services_lose_their_endpoints()
-> Result<()> {
    let c = start().await?;
    let svcs: Api<Service> = Api::default_namespaced(c.client.clone());
    let eps: Api<Endpoints> = Api::default_namespaced(c.client.clone());
    svcs.create(
        &PostParams::default(),
        &service("external", None, vec![http_port(IntOrString::Int(80))]),
    )
    .await?;
    let manual = Endpoints {
        metadata: ObjectMeta {
            name: Some("external".into()),
            ..Default::default()
        },
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: "192.0.2.10".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    };
    eps.create(&PostParams::default(), &manual).await?;
    svcs.create(
        &PostParams::default(),
        &service("web", Some("web"), vec![http_port(IntOrString::Int(80))]),
    )
    .await?;
    eventually("web gets (empty) Endpoints", || async {
        Ok(eps.get_opt("web").await?.is_some())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        summary(&eps.get("external").await?).0,
        vec!["192.0.2.10".to_string()]
    );

    svcs.delete("web", &DeleteParams::default()).await?;
    eventually("web's Endpoints are deleted", || async {
        Ok(eps.get_opt("web").await?.is_none())
    })
    .await?;
    c.stop().await
}

#[tokio::test]
async fn endpointslices_list_pods_with_conditions_and_are_owned_by_the_service() -> Result<()> {
    let c = start().await?;
    let svcs: Api<Service> = Api::default_namespaced(c.client.clone());
    let pods: Api<Pod> = Api::default_namespaced(c.client.clone());
    let slices: Api<EndpointSlice> = Api::default_namespaced(c.client.clone());
    let svc = svcs
        .create(
            &PostParams::default(),
            &service("web", Some("web"), vec![http_port(IntOrString::Int(8080))]),
        )
        .await?;
    let by_service = ListParams::default().labels("kubernetes.io/service-name=web");

    // Without pods, one empty placeholder slice exists.
    eventually("a placeholder slice exists", || async {
        let list = slices.list(&by_service).await?.items;
        Ok(list.len() == 1 && list[0].endpoints.is_empty())
    })
    .await?;

    create_held_and_not_ready_pods(&pods).await?;
    // (address, ready, serving, terminating) of every endpoint.
    let endpoints = || async {
        let mut out: Vec<(String, bool, bool, bool)> = Vec::new();
        for s in slices.list(&by_service).await?.items {
            for e in s.endpoints {
                let c = e.conditions.unwrap_or_default();
                out.push((
                    e.addresses[0].clone(),
                    c.ready.unwrap_or(false),
                    c.serving.unwrap_or(false),
                    c.terminating.unwrap_or(false),
                ));
            }
        }
        out.sort();
        anyhow::Ok(out)
    };
    eventually("both pods are endpoints", || async {
        Ok(endpoints().await?
            == vec![
                ("10.244.0.1".to_string(), true, true, false),
                ("10.244.0.2".to_string(), false, false, false),
            ])
    })
    .await?;
    let list = slices.list(&by_service).await?.items;
    assert_eq!(list.len(), 1, "the placeholder was reused");
    let slice = &list[0];
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice
            .labels()
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(
        slice.owner_references().first().map(|o| o.uid.clone()),
        svc.uid()
    );
    assert_eq!(
        slice
            .ports
            .iter()
            .flatten()
            .map(|p| p.port)
            .collect::<Vec<_>>(),
        vec![Some(8080)]
    );

    // A terminating pod stays, marked terminating and not ready but still serving.
    pods.delete("web-a", &DeleteParams::default()).await?;
    eventually("web-a is terminating", || async {
        Ok(endpoints().await?
            == vec![
                ("10.244.0.1".to_string(), false, true, true),
                ("10.244.0.2".to_string(), false, false, false),
            ])
    })
    .await?;
    clear_finalizers(&pods, "web-a").await?;
    eventually("web-a is gone", || async {
        Ok(endpoints().await? == vec![("10.244.0.2".to_string(), false, false, false)])
    })
    .await?;

    // The garbage collector removes the slices with their service.
    svcs.delete("web", &DeleteParams::default()).await?;
    eventually("the slices are deleted", || async {
        Ok(slices.list(&by_service).await?.items.is_empty())
    })
    .await?;
    c.stop().await
}
