//! Service account tokens over HTTPS with the real kubectl: `kubectl create token` issues a
//! signed JWT through `serviceaccounts/token` (TokenRequest), and the bearer-token
//! authenticator accepts it as the service account until the account is deleted.
//! kubectl missing fails these tests; it never skips them.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::served::{Served, kubectl, served, text};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, PostParams};
use kybernetes::runtime::FakeRuntime;
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(30);

/// kubectl reaching the served cluster with `token` only (no client certificate).
async fn with_token(s: &Served, ca: &Path, token: &str, args: &[&str]) -> std::process::Output {
    let server = format!("https://{}", s.cluster.serving_address().expect("served"));
    let empty = s.kubeconfig.with_file_name("empty-kubeconfig");
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\n").expect("write empty kubeconfig");
    let ca = ca.display().to_string();
    let mut all = vec![
        "--server",
        server.as_str(),
        "--certificate-authority",
        ca.as_str(),
        "--token",
        token,
    ];
    all.extend_from_slice(args);
    kubectl(&empty, &all).await
}

fn write_ca(s: &Served) -> PathBuf {
    let path = s.kubeconfig.with_file_name("ca.crt");
    let pki = s.cluster.pki().expect("served cluster has certificates");
    std::fs::write(&path, pki.ca_pem()).expect("write CA");
    path
}

async fn wait_for_account(s: &Served, name: &str) -> ServiceAccount {
    let accounts: Api<ServiceAccount> = Api::default_namespaced(s.cluster.client());
    common::until(&format!("service account {name}"), WITHIN, || {
        let accounts = accounts.clone();
        async move { accounts.get_opt(name).await.ok().flatten().is_some() }
    })
    .await;
    accounts.get(name).await.expect("get service account")
}

/// kubectl failed with the server's 401.
fn assert_unauthorized(out: &std::process::Output) {
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Unauthorized"), "{stderr}");
}

async fn create_token(s: &Served, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    let out = kubectl(&s.kubeconfig, &all).await;
    assert!(
        out.status.success(),
        "kubectl create token failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn kubectl_create_token_gives_a_token_that_authenticates_as_the_service_account() {
    let fake = FakeRuntime::default();
    let s = served(&fake).await;
    let ca = write_ca(&s);
    let default = wait_for_account(&s, "default").await;
    let token = create_token(&s, &["default"]).await;
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let out = with_token(&s, &ca, &token, &["auth", "whoami", "-o", "json"]).await;
    assert!(
        out.status.success(),
        "auth whoami failed: {}",
        text(&out.stderr)
    );
    let review: Value = serde_json::from_slice(&out.stdout).expect("SelfSubjectReview JSON");
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    assert_eq!(user["uid"].as_str(), default.metadata.uid.as_deref());
    let groups: Vec<&str> = user["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ] {
        assert!(groups.contains(&g), "{g} in {groups:?}");
    }
    let out = with_token(&s, &ca, &token, &["get", "pods"]).await;
    assert!(
        out.status.success(),
        "get pods with the token: {}",
        text(&out.stderr)
    );

    // A token for another audience is not for the API server.
    let other = create_token(&s, &["default", "--audience", "https://vault.example"]).await;
    let out = with_token(&s, &ca, &other, &["get", "pods"]).await;
    assert_unauthorized(&out);
    s.cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_token_stops_working_when_its_service_account_is_deleted() {
    let fake = FakeRuntime::default();
    let s = served(&fake).await;
    let ca = write_ca(&s);
    let accounts: Api<ServiceAccount> = Api::default_namespaced(s.cluster.client());
    let robot = serde_json::from_value(json!({"metadata": {"name": "robot"}})).expect("sa");
    accounts
        .create(&PostParams::default(), &robot)
        .await
        .expect("create robot");
    let token = create_token(&s, &["robot", "--duration", "20m"]).await;
    let out = with_token(&s, &ca, &token, &["auth", "whoami"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("system:serviceaccount:default:robot"),
        "{}",
        text(&out.stdout)
    );

    accounts
        .delete("robot", &DeleteParams::default())
        .await
        .expect("delete robot");
    let out = with_token(&s, &ca, &token, &["auth", "whoami"]).await;
    assert_unauthorized(&out);
    // A new account of the same name has a new UID: the old token stays refused.
    accounts
        .create(&PostParams::default(), &robot)
        .await
        .expect("create robot again");
    let out = with_token(&s, &ca, &token, &["auth", "whoami"]).await;
    assert_unauthorized(&out);
    s.cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn token_requests_are_checked_as_upstream_checks_them() {
    let fake = FakeRuntime::default();
    let s = served(&fake).await;
    wait_for_account(&s, "default").await;
    let out = kubectl(&s.kubeconfig, &["create", "token", "nope"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("serviceaccounts \"nope\" not found"),
        "{}",
        text(&out.stderr)
    );
    let out = kubectl(
        &s.kubeconfig,
        &["create", "token", "default", "--duration", "5m"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("may not specify a duration less than 10 minutes"),
        "{}",
        text(&out.stderr)
    );

    // Through kube-rs: the defaults, and the claims upstream puts in the token.
    let client = s.cluster.client();
    let request = http::Request::post("/api/v1/namespaces/default/serviceaccounts/default/token")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})).expect("body"))
        .expect("request");
    let response: Value = client.request(request).await.expect("TokenRequest");
    assert_eq!(response["kind"], "TokenRequest");
    assert_eq!(response["spec"]["expirationSeconds"], 3600);
    assert_eq!(
        response["spec"]["audiences"][0],
        "https://kubernetes.default.svc.cluster.local"
    );
    let token = response["status"]["token"].as_str().expect("token");
    let payload = token.split('.').nth(1).expect("claims part");
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("claims JSON");
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(claims["kubernetes.io"]["namespace"], "default");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "default");
    assert_eq!(
        claims["exp"]
            .as_i64()
            .zip(claims["iat"].as_i64())
            .map(|(e, i)| e - i),
        Some(3600)
    );
    s.cluster.shutdown().await.expect("shutdown");
}
