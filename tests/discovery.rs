//! Discovery through kube's own discovery client: every group and resource of the registry,
//! with subresources, and /version reporting v1.33.

use kube::discovery::{Discovery, Scope};
use kybernetes::Cluster;

#[tokio::test]
async fn kube_discovery_finds_the_built_in_resources() {
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let version = c.client().apiserver_version().await.expect("/version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );

    let discovery = Discovery::new(c.client())
        .run()
        .await
        .expect("discovery runs");
    let mut found = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            found.push((
                ar.group.clone(),
                ar.plural.clone(),
                caps.scope == Scope::Namespaced,
            ));
        }
    }
    for (group, plural, namespaced) in [
        ("", "pods", true),
        ("", "nodes", false),
        ("", "namespaces", false),
        ("apps", "deployments", true),
        ("coordination.k8s.io", "leases", true),
    ] {
        assert!(
            found.contains(&(group.to_string(), plural.to_string(), namespaced)),
            "{group}/{plural} is discovered: {found:?}"
        );
    }
    let apps = discovery.get("apps").expect("apps group");
    let (_, caps) = apps.recommended_kind("Deployment").expect("Deployment");
    assert!(
        caps.subresources.iter().any(|(ar, _)| ar.plural == "scale"),
        "deployments/scale is advertised"
    );
    c.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_client_over_the_in_memory_http_connection_works_like_the_direct_one() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, PostParams};
    let c = Cluster::builder()
        .nodes(0)
        .without_control_plane()
        .start()
        .await
        .expect("start");
    let client = kube::Client::new(c.api_server().duplex_service(), "default");
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("over-duplex".into());
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create over duplex");
    assert_eq!(
        cms.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    let missing = cms.get("nope").await.expect_err("404");
    assert!(matches!(missing, kube::Error::Api(s) if s.code == 404));
    c.shutdown().await.expect("shutdown");
}
