//! Container environments: values with `$(VAR)` expansion, ConfigMap and Secret keys, pod
//! fields, resource fields and `envFrom`.

mod common;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::Api;
use kybernetes_node::ServiceLister;
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn env_from_config_maps_secrets_and_pod_fields_reaches_the_runtime() {
    let mut h = harness().await;
    config_map(&h, "settings", &[("mode", "fast"), ("level", "3")]).await;
    secret(&h, "creds", &[("password", "s3cret")]).await;
    h.start_agent(h.config("node-1"));
    let mut p = pod("envy", "node-1", &[("app", "busybox:1.36")]);
    p["spec"]["serviceAccountName"] = json!("robot");
    p["spec"]["containers"][0]["command"] = json!(["echo", "$(GREETING)", "$(UNDEFINED)"]);
    p["spec"]["containers"][0]["resources"] = json!({ "limits": { "memory": "64Mi" } });
    p["spec"]["containers"][0]["envFrom"] =
        json!([{ "configMapRef": { "name": "settings" }, "prefix": "CFG_" }]);
    p["spec"]["containers"][0]["env"] = json!([
        { "name": "NAME", "value": "world" },
        { "name": "GREETING", "value": "hello $(NAME) $$(NAME)" },
        { "name": "MODE", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "mode" } } },
        { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } },
        { "name": "MAYBE", "valueFrom": { "configMapKeyRef": { "name": "absent", "key": "x", "optional": true } } },
        { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
        { "name": "POD_NS", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
        { "name": "POD_UID", "valueFrom": { "fieldRef": { "fieldPath": "metadata.uid" } } },
        { "name": "APP", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app']" } } },
        { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
        { "name": "SA", "valueFrom": { "fieldRef": { "fieldPath": "spec.serviceAccountName" } } },
        { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
        { "name": "HOST_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.hostIP" } } },
        { "name": "MEM_MI", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Mi" } } },
        { "name": "CPUS", "valueFrom": { "resourceFieldRef": { "resource": "limits.cpu" } } }
    ]);
    let created = h.create_pod(p).await;
    let running = h.wait_pod("envy", 30, is_phase("Running")).await;
    let configs = h.fake.created_containers();
    assert_eq!(configs.len(), 1);
    let c = &configs[0];
    let status = running.status.unwrap();
    let expect = [
        ("CFG_mode", "fast"),
        ("CFG_level", "3"),
        ("NAME", "world"),
        ("GREETING", "hello world $(NAME)"),
        ("MODE", "fast"),
        ("PASSWORD", "s3cret"),
        ("POD_NAME", "envy"),
        ("POD_NS", "default"),
        ("POD_UID", created.metadata.uid.as_deref().unwrap()),
        ("APP", "envy"),
        ("NODE", "node-1"),
        ("SA", "robot"),
        ("POD_IP", status.pod_ip.as_deref().unwrap()),
        ("HOST_IP", status.host_ip.as_deref().unwrap()),
        ("MEM_MI", "64"),
        ("CPUS", "4"),
    ];
    for (k, v) in expect {
        assert_eq!(c.env_value(k), Some(v), "{k}");
    }
    assert_eq!(
        c.env_value("MAYBE"),
        None,
        "optional reference to a missing ConfigMap is skipped"
    );
    assert_eq!(c.command, ["echo", "hello world $(NAME)", "$(UNDEFINED)"]);
    assert_eq!(c.resources.memory_limit_bytes, Some(64 * 1024 * 1024));
}

#[tokio::test(start_paused = true)]
async fn missing_config_map_key_is_a_create_container_config_error_until_it_appears() {
    let mut h = harness().await;
    config_map(&h, "partial", &[("other", "x")]).await;
    h.start_agent(h.config("node-1"));
    let mut p = pod("needs-key", "node-1", &[("app", "busybox:1.36")]);
    p["spec"]["containers"][0]["env"] = json!([
        { "name": "MODE", "valueFrom": { "configMapKeyRef": { "name": "partial", "key": "mode" } } }
    ]);
    h.create_pod(p).await;
    let p = h
        .wait_pod("needs-key", 30, |p: Option<&Pod>| {
            p.is_some_and(|p| {
                waiting_reason(p, "app").as_deref() == Some("CreateContainerConfigError")
            })
        })
        .await;
    assert_eq!(phase(&p), "Pending");
    let message = container_status(&p, "app")
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .waiting
        .as_ref()
        .unwrap()
        .message
        .clone();
    assert_eq!(
        message.as_deref(),
        Some("couldn't find key mode in ConfigMap default/partial")
    );
    assert!(h.fake.created_containers().is_empty());
    // Once the key exists, a retry starts the container.
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    let patch = json!({ "data": { "mode": "slow" } });
    cms.patch(
        "partial",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    h.wait_pod("needs-key", 60, is_phase("Running")).await;
    assert_eq!(
        h.fake.created_containers()[0].env_value("MODE"),
        Some("slow")
    );
}

/// The pod's resolver configuration reaches the runtime: ClusterFirst searches the pod's
/// namespace with the cluster DNS servers; without cluster DNS the pod falls back to the node's
/// file and gets upstream's `MissingClusterDNS` warning.
#[tokio::test(start_paused = true)]
async fn the_pods_dns_config_follows_its_dns_policy() {
    let mut h = harness().await;
    let resolv = tempfile::NamedTempFile::new().expect("resolv.conf");
    std::fs::write(resolv.path(), "nameserver 192.168.1.1\nsearch lan\n").expect("write");
    let config = h
        .config("node-1")
        .cluster_dns(vec!["10.96.0.10".parse().expect("ip")])
        .resolv_conf(Some(resolv.path().to_path_buf()));
    h.start_agent(config);
    h.create_pod(pod("resolver", "node-1", &[("app", "busybox:1.36")]))
        .await;
    h.wait_pod("resolver", 30, is_phase("Running")).await;
    let sandboxes = h.fake.sandbox_configs();
    let dns = sandboxes
        .iter()
        .find(|(_, c)| c.metadata.name == "resolver")
        .and_then(|(_, c)| c.dns_config.clone())
        .expect("a DNS config");
    assert_eq!(dns.servers, ["10.96.0.10"]);
    assert_eq!(
        dns.searches,
        [
            "default.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "lan"
        ]
    );
    assert_eq!(dns.options, ["ndots:5"]);
}

#[tokio::test(start_paused = true)]
async fn without_cluster_dns_a_cluster_first_pod_falls_back_with_a_warning() {
    let mut h = harness().await;
    let resolv = tempfile::NamedTempFile::new().expect("resolv.conf");
    std::fs::write(resolv.path(), "nameserver 192.168.1.1\n").expect("write");
    let config = h
        .config("node-1")
        .resolv_conf(Some(resolv.path().to_path_buf()));
    h.start_agent(config);
    h.create_pod(pod("fallback", "node-1", &[("app", "busybox:1.36")]))
        .await;
    h.wait_pod("fallback", 30, is_phase("Running")).await;
    let dns = h
        .fake
        .sandbox_configs()
        .into_iter()
        .find_map(|(_, c)| c.dns_config)
        .expect("a DNS config");
    assert_eq!(dns.servers, ["192.168.1.1"]);
    let event = h.wait_event("fallback", "MissingClusterDNS", 30).await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
}

async fn service(h: &Harness, namespace: &str, name: &str, ports: serde_json::Value) -> String {
    let api: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(h.client.clone(), namespace);
    let svc = serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "ports": ports, "selector": { "app": name } },
    }))
    .unwrap();
    let created = api.create(&Default::default(), &svc).await.unwrap();
    created.spec.unwrap().cluster_ip.unwrap()
}

#[tokio::test(start_paused = true)]
async fn service_links_name_the_namespace_services_and_the_master_service() {
    let mut h = harness().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(h.client.clone());
    namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "shop" } })).unwrap(),
        )
        .await
        .unwrap();
    // The API server made the master Service.
    let master: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(h.client.clone(), "default");
    let master = master
        .get("kubernetes")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let web = service(
        &h,
        "default",
        "my-web",
        json!([{ "name": "http", "port": 8080 }, { "name": "metrics", "port": 9100, "protocol": "TCP" }]),
    )
    .await;
    service(&h, "shop", "elsewhere", json!([{ "port": 80 }])).await;
    h.start_agent(h.config("node-1"));

    let mut p = pod("linked", "node-1", &[("app", "busybox:1.36")]);
    p["spec"]["containers"][0]["env"] = json!([
        { "name": "MY_WEB_SERVICE_PORT", "value": "explicit" },
        { "name": "URL", "value": "http://$(MY_WEB_SERVICE_HOST):$(MY_WEB_SERVICE_PORT_HTTP)/" }
    ]);
    let mut unlinked = pod("unlinked", "node-1", &[("app", "busybox:1.36")]);
    unlinked["spec"]["enableServiceLinks"] = json!(false);
    h.create_pod(p).await;
    h.create_pod(unlinked).await;
    for name in ["linked", "unlinked"] {
        h.wait_pod(name, 30, is_phase("Running")).await;
    }
    let configs = h.fake.created_containers();
    let linked = configs
        .iter()
        .find(|c| c.labels.values().any(|v| v == "linked"))
        .expect("linked container");
    for (k, v) in [
        ("MY_WEB_SERVICE_HOST", web.as_str()),
        ("MY_WEB_SERVICE_PORT", "explicit"),
        ("MY_WEB_SERVICE_PORT_HTTP", "8080"),
        ("MY_WEB_SERVICE_PORT_METRICS", "9100"),
        ("MY_WEB_PORT", &format!("tcp://{web}:8080")),
        ("MY_WEB_PORT_9100_TCP", &format!("tcp://{web}:9100")),
        ("MY_WEB_PORT_9100_TCP_PROTO", "tcp"),
        ("MY_WEB_PORT_9100_TCP_PORT", "9100"),
        ("MY_WEB_PORT_9100_TCP_ADDR", web.as_str()),
        ("URL", &format!("http://{web}:8080/")),
        ("KUBERNETES_SERVICE_HOST", master.as_str()),
        ("KUBERNETES_SERVICE_PORT", "443"),
        ("KUBERNETES_PORT_443_TCP", &format!("tcp://{master}:443")),
    ] {
        assert_eq!(linked.env_value(k), Some(v), "{k}");
    }
    assert_eq!(
        linked.env_value("ELSEWHERE_SERVICE_HOST"),
        None,
        "other namespace"
    );
    let unlinked = configs
        .iter()
        .find(|c| c.labels.values().any(|v| v == "unlinked"))
        .expect("unlinked container");
    assert_eq!(
        unlinked.env_value("KUBERNETES_SERVICE_HOST"),
        Some(master.as_str())
    );
    assert_eq!(unlinked.env_value("MY_WEB_SERVICE_HOST"), None);
}

/// The `apiserver_request_total` and `apiserver_longrunning_requests` lines of core
/// Services, from `/metrics`.
async fn service_request_metrics(h: &Harness) -> Vec<String> {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = h.client.request_text(req).await.unwrap();
    text.lines()
        .filter(|l| l.contains(r#"group="",version="v1",resource="services","#))
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                || l.starts_with("apiserver_longrunning_requests{")
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn agents_share_one_service_watch_and_list_nothing_per_container_start() {
    let mut h = harness().await;
    // Before any agent, so only a synced cache shows it.
    let early = service(&h, "default", "early", json!([{ "port": 80 }])).await;
    let services = ServiceLister::new(h.client.clone());
    h.start_agent_sharing(h.config("node-1"), &services);
    h.start_agent_sharing(h.config("node-2"), &services);
    let names = ["a", "b", "c", "d"];
    for (i, name) in names.iter().enumerate() {
        let node = format!("node-{}", i % 2 + 1);
        h.create_pod(pod(name, &node, &[("app", "busybox:1.36")]))
            .await;
    }
    for name in names {
        h.wait_pod(name, 30, is_phase("Running")).await;
    }
    let configs = h.fake.created_containers();
    for name in names {
        let c = configs
            .iter()
            .find(|c| c.labels.values().any(|v| v == name))
            .expect("container");
        assert_eq!(
            c.env_value("EARLY_SERVICE_HOST"),
            Some(early.as_str()),
            "{name}"
        );
        assert!(c.env_value("KUBERNETES_SERVICE_HOST").is_some(), "{name}");
    }
    // The lister's watch is open once it has listed; wait for it, then count.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let metrics = loop {
        let metrics = service_request_metrics(&h).await;
        if metrics
            .iter()
            .any(|l| l.contains(r#"verb="WATCH""#) && !l.ends_with(" 0"))
        {
            break metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Service watch: {metrics:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let open_watches: u64 = metrics
        .iter()
        .filter(|l| {
            l.starts_with("apiserver_longrunning_requests{") && l.contains(r#"verb="WATCH""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(open_watches, 1, "one watch for both agents: {metrics:?}");
    // Four container starts, and no Service read but the lister's cluster-wide list.
    for line in metrics
        .iter()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        assert!(
            line.contains(r#"verb="LIST""#) && line.contains(r#"scope="cluster""#)
                || line.contains(r#"verb="WATCH""#)
                || line.contains(r#"verb="POST""#),
            "a Service read per container start: {line}"
        );
    }
    for i in 0..2 {
        h.stop_agent(i).await;
    }
    services.stop().await;
}
