//! Exec, attach and port-forward: kube-rs in process against a pod on the FakeRuntime, then
//! (with `--serve`) the same cluster over HTTPS for kubectl.
//!
//! Run with `cargo run --example streaming`, or `cargo run --example streaming -- --serve`
//! and follow the printed kubectl commands; Ctrl-C stops it.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, PostParams};
use kybernetes::Cluster;
use kybernetes::runtime::FakeRuntime;
use kybernetes::runtime::fake::{ContainerScript, PortResponder};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let serve = std::env::args().any(|a| a == "--serve");
    // The container "web" echoes what an attach writes to it and answers HTTP on port 8080.
    let fake = FakeRuntime::default();
    fake.script_container(
        "web",
        ContainerScript::new()
            .echo_stdin()
            .serve_port(8080, PortResponder::http(200, "hello from the pod\n")),
    );
    let mut builder = Cluster::builder().runtime(fake.clone());
    if serve {
        builder = builder.serve("127.0.0.1:0".parse()?);
    }
    let cluster = builder.start().await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx", "stdin": true}]},
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    while pods
        .get("web")
        .await?
        .status
        .and_then(|s| s.phase)
        .as_deref()
        != Some("Running")
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // exec: output and exit code.
    let mut p = pods
        .exec(
            "web",
            ["sh", "-c", "echo hello; exit 3"],
            &AttachParams::default(),
        )
        .await?;
    let status = p.take_status().expect("status channel");
    let mut out = String::new();
    p.stdout().expect("stdout").read_to_string(&mut out).await?;
    let status = status.await.expect("a status");
    println!(
        "exec printed {out:?}; status {:?} ({:?})",
        status.status, status.reason
    );
    assert_eq!(out, "hello\n");

    // attach: the main process echoes a line.
    let mut a = pods
        .attach("web", &AttachParams::default().stdin(true).stderr(false))
        .await?;
    let mut stdin = a.stdin().expect("stdin");
    let mut stdout = BufReader::new(a.stdout().expect("stdout"));
    stdin.write_all(b"ping\n").await?;
    let mut line = String::new();
    stdout.read_line(&mut line).await?;
    println!("attach echoed {line:?}");
    drop(a);

    // port-forward: an HTTP request to port 8080 of the pod.
    let mut pf = pods.portforward("web", &[8080]).await?;
    let mut conn = pf.take_stream(8080).expect("port 8080");
    conn.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await?;
    let mut response = vec![0u8; 4096];
    let n = conn.read(&mut response).await?;
    println!(
        "port-forward answered {:?}",
        String::from_utf8_lossy(&response[..n]).lines().next()
    );
    drop(conn);

    if serve {
        let dir = std::env::temp_dir().join("kybernetes-streaming-example");
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("kubeconfig");
        cluster.kubeconfig().expect("serving").write(&kubeconfig)?;
        println!("\nServing on {:?}. Try:", cluster.serving_address());
        println!("  export KUBECONFIG={}", kubeconfig.display());
        println!("  kubectl exec web -- hostname");
        println!("  echo hi | kubectl exec -i web -- cat");
        println!("  kubectl attach -i web");
        println!("  kubectl port-forward pod/web 8080:8080 & curl localhost:8080");
        println!("  kubectl get --raw /api/v1/namespaces/default/pods/web:8080/proxy/");
        println!("  kubectl get --raw /api/v1/nodes/node-1/proxy/stats/summary");
        tokio::signal::ctrl_c().await?;
    }
    cluster.shutdown().await?;
    Ok(())
}
