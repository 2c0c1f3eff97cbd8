//! The real kubectl's `create` commands against a served cluster. kubectl sends these bodies
//! as Kubernetes protobuf, so this proves the API server's protobuf decoding on what kubectl
//! really writes. Needs `kubectl` on PATH (it is at /usr/bin/kubectl on the machine image):
//! without it the tests fail, they do not skip.

use std::path::{Path, PathBuf};
use std::process::Output;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Api;
use kybernetes::Cluster;

/// A served cluster and a kubeconfig for it.
struct Served {
    cluster: Cluster,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

async fn served() -> Served {
    let cluster = Cluster::builder()
        .serve("127.0.0.1:0".parse().expect("loopback address"))
        .start()
        .await
        .expect("cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .kubeconfig()
        .expect("serving")
        .write(&kubeconfig)
        .expect("write kubeconfig");
    Served {
        cluster,
        kubeconfig,
        _dir: dir,
    }
}

fn run_kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl must be installed (it is at /usr/bin/kubectl on the machine image)")
}

/// Runs kubectl off the async runtime; returns stdout and stderr, failing the test if
/// kubectl fails.
async fn kubectl(kubeconfig: &Path, args: &[&str]) -> (String, String) {
    let path = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (run_kubectl(&path, &args), args.join(" "))
    })
    .await
    .expect("kubectl task");
    let (out, args) = out;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "kubectl {args} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[tokio::test]
async fn kubectl_creates_configmaps_secrets_deployments_and_namespaces_in_protobuf() {
    let s = served().await;
    let k = &s.kubeconfig;
    let (out, _) = kubectl(k, &["create", "namespace", "team"]).await;
    assert_eq!(out.trim(), "namespace/team created");

    // -v=8 logs the request headers: this is the protobuf path, not JSON.
    let (out, log) = kubectl(
        k,
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "team",
            "--from-literal=a=b",
            "--from-literal=c=d",
            "-v=8",
        ],
    )
    .await;
    assert_eq!(out.trim(), "configmap/settings created");
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl did not send protobuf: {log}"
    );
    kubectl(
        k,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "-n",
            "team",
            "--from-literal=pw=s3cr3t",
        ],
    )
    .await;
    kubectl(
        k,
        &[
            "create",
            "deployment",
            "web",
            "-n",
            "team",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
        ],
    )
    .await;

    let client = s.cluster.client();
    let ns = Api::<Namespace>::all(client.clone())
        .get("team")
        .await
        .expect("namespace");
    assert_eq!(ns.metadata.name.as_deref(), Some("team"));
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "team")
        .get("settings")
        .await
        .expect("configmap");
    let data = cm.data.expect("data");
    assert_eq!(data.get("a").map(String::as_str), Some("b"));
    assert_eq!(data.get("c").map(String::as_str), Some("d"));
    let secret = Api::<Secret>::namespaced(client.clone(), "team")
        .get("creds")
        .await
        .expect("secret");
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let pw = secret.data.expect("data").remove("pw").expect("pw");
    assert_eq!(pw.0, b"s3cr3t");
    let d = Api::<Deployment>::namespaced(client.clone(), "team")
        .get("web")
        .await
        .expect("deployment");
    let spec = d.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.containers[0].image.as_deref(), Some("nginx:1.27"));
    assert_eq!(
        pod.containers[0]
            .ports
            .as_ref()
            .map(|p| p[0].container_port),
        Some(80)
    );
    assert_eq!(
        spec.selector
            .match_labels
            .and_then(|l| l.get("app").cloned())
            .as_deref(),
        Some("web")
    );

    // kubectl reads them back (as JSON: it accepts both).
    let (out, _) = kubectl(
        k,
        &[
            "get",
            "configmap",
            "settings",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.a}",
        ],
    )
    .await;
    assert_eq!(out, "b");
    s.cluster.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn kubectl_creates_the_other_served_kinds_in_protobuf() {
    let s = served().await;
    let k = &s.kubeconfig;
    kubectl(k, &["create", "serviceaccount", "robot"]).await;
    kubectl(
        k,
        &["create", "service", "clusterip", "api", "--tcp=80:8080"],
    )
    .await;
    kubectl(
        k,
        &["create", "job", "once", "--image=busybox", "--", "true"],
    )
    .await;
    kubectl(
        k,
        &[
            "create",
            "cronjob",
            "nightly",
            "--image=busybox",
            "--schedule=0 3 * * *",
            "--",
            "true",
        ],
    )
    .await;
    kubectl(
        k,
        &["create", "quota", "small", "--hard=pods=4,requests.cpu=2"],
    )
    .await;
    kubectl(
        k,
        &[
            "create",
            "poddisruptionbudget",
            "keep",
            "--selector=app=web",
            "--min-available=50%",
        ],
    )
    .await;
    kubectl(
        k,
        &[
            "create",
            "priorityclass",
            "batch",
            "--value=0",
            "--preemption-policy=Never",
            "--description=overnight work",
        ],
    )
    .await;

    let client = s.cluster.client();
    let ns = "default";
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get("robot")
        .await
        .expect("serviceaccount");
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get("api")
        .await
        .expect("service");
    let port = &svc.spec.expect("spec").ports.expect("ports")[0];
    assert_eq!(port.port, 80);
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
    );
    let job = Api::<Job>::namespaced(client.clone(), ns)
        .get("once")
        .await
        .expect("job");
    let job_pod = job.spec.expect("spec").template.spec.expect("pod spec");
    assert_eq!(
        job_pod.containers[0].command.as_deref(),
        Some(&["true".to_string()][..])
    );
    let cj = Api::<CronJob>::namespaced(client.clone(), ns)
        .get("nightly")
        .await
        .expect("cronjob");
    assert_eq!(cj.spec.expect("spec").schedule, "0 3 * * *");
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), ns)
        .get("small")
        .await
        .expect("quota");
    let hard = quota.spec.expect("spec").hard.expect("hard");
    assert_eq!(hard.get("requests.cpu").map(|q| q.0.as_str()), Some("2"));
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .get("keep")
        .await
        .expect("pdb");
    assert_eq!(
        pdb.spec.expect("spec").min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("50%".into()))
    );
    // `value: 0` survives the protobuf body (upstream writes the field even when zero).
    let pc = Api::<PriorityClass>::all(client.clone())
        .get("batch")
        .await
        .expect("priorityclass");
    assert_eq!(
        (
            pc.value,
            pc.preemption_policy.as_deref(),
            pc.description.as_deref()
        ),
        (0, Some("Never"), Some("overnight work"))
    );
    s.cluster.shutdown().await.expect("shutdown");
}
