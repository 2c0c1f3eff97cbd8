//! Ingress: two Services behind one Ingress, told apart by the Host header, as the
//! Kubernetes documentation's `helloworld-v1` / `helloworld-v2` example.
//!
//! The "pods" are two small HTTP servers in this process, on 127.0.0.2 and 127.0.0.3; each
//! Service has no selector and hand-written Endpoints pointing at its server. The cluster's
//! Ingress controller listens on a free loopback port and proxies each host to its Service.
//!
//! Run with `cargo run --example ingress`.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use kybernetes::Cluster;
use tokio::net::{TcpListener, TcpStream};

const MANIFEST: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: helloworld, namespace: default}
spec:
  rules:
  - host: helloworld-v1.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: helloworld-v1, port: {number: 80}}}}
  - host: helloworld-v2.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: helloworld-v2, port: {number: 80}}}}
"#;

/// Serves `greeting` on `ip` and returns the address.
async fn server(ip: &str, greeting: &'static str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((ip, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |_req| async move {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                    greeting,
                ))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

/// A Service without a selector, and its Endpoints at `backend`.
fn service(name: &str, backend: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{ports: [{{port: 80, targetPort: {port}}}]}}\n---\n\
         apiVersion: v1\nkind: Endpoints\nmetadata: {{name: {name}, namespace: default}}\n\
         subsets: [{{addresses: [{{ip: \"{ip}\"}}], ports: [{{port: {port}}}]}}]\n",
        ip = backend.ip(),
        port = backend.port()
    )
}

async fn get(ingress: SocketAddr, host: &str) -> anyhow::Result<(u16, String)> {
    let stream = TcpStream::connect(ingress).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = http::Request::get("/")
        .header("host", host)
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let cluster = Cluster::builder().ingress(any, any).start().await?;
    let v1 = server("127.0.0.2", "Hello from v1\n").await?;
    let v2 = server("127.0.0.3", "Hello from v2\n").await?;
    let manifest = format!(
        "{}---\n{}---\n{MANIFEST}",
        service("helloworld-v1", v1),
        service("helloworld-v2", v2)
    );
    cluster.apply_yaml(&manifest).await?;
    let ingress = cluster
        .ingress_http_addr()
        .context("ingress was asked for")?;
    println!("ingress controller on http://{ingress}");
    for host in [
        "helloworld-v1.example.com",
        "helloworld-v2.example.com",
        "other.example.com",
    ] {
        // The controller follows the watch: give it a moment to see the new objects.
        let mut answer = get(ingress, host).await?;
        for _ in 0..100 {
            if answer.0 != 404 || host.starts_with("other") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            answer = get(ingress, host).await?;
        }
        println!("Host: {host} -> {} {}", answer.0, answer.1.trim_end());
    }
    cluster.shutdown().await?;
    Ok(())
}
