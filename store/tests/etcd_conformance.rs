//! The shared conformance suite against [`EtcdStore`] on a real etcd, plus what only etcd has:
//! the key prefix, compaction shared between stores, compaction done behind the store's back,
//! background compaction, connection errors and TLS.
//!
//! See `etcd_common` for where the etcd comes from (`KYB_ETCD_ENDPOINTS` or one started here).

mod etcd_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_common::{EtcdCluster, EtcdSource, etcd_binary, etcd_for, temp_dir};
use futures::StreamExt;
use kybernetes_store::{
    Error, EtcdOptions, EtcdStore, EtcdTlsOptions, ListOptions, Store, WatchEvent, conformance,
};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Tests here compact etcd, which is etcd-wide: on a shared etcd (`KYB_ETCD_ENDPOINTS`) they take
/// turns, across test processes too. (A test that starts its own etcd runs freely.)
async fn take_turn(etcd: &EtcdSource) -> Option<std::fs::File> {
    match etcd {
        EtcdSource::External(endpoints) => {
            let endpoints = endpoints.clone();
            Some(
                tokio::task::spawn_blocking(move || etcd_common::lock_shared_etcd(&endpoints))
                    .await
                    .expect("lock task"),
            )
        }
        EtcdSource::Owned(_) => None,
    }
}

fn options(prefix: &str) -> EtcdOptions {
    EtcdOptions {
        prefix: prefix.to_owned(),
        compaction_interval: None,
        ..Default::default()
    }
}

async fn connect(etcd: &EtcdSource, prefix: &str) -> EtcdStore {
    let endpoints = etcd.endpoints();
    match EtcdStore::connect_with(&endpoints, options(prefix)).await {
        Ok(store) => store,
        Err(e) => panic!("cannot reach etcd at {endpoints:?}: {e} ({e:?})"),
    }
}

/// A key prefix no other test run uses.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("/kyb-test/{name}-{}-{nanos:x}", std::process::id())
}

async fn raw_client(etcd: &EtcdSource) -> etcd_client::Client {
    etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .expect("raw etcd client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_conforms() {
    let Some(etcd) = etcd_for("etcd_store_conforms") else {
        return;
    };
    let _turn = take_turn(&etcd).await;
    let store = connect(&etcd, "").await;
    tokio::time::timeout(
        Duration::from_secs(300),
        conformance::run_all_arc(Arc::new(store)),
    )
    .await
    .expect("conformance suite finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_conforms_under_a_prefix() {
    let Some(etcd) = etcd_for("etcd_store_conforms_under_a_prefix") else {
        return;
    };
    let _turn = take_turn(&etcd).await;
    let store = connect(&etcd, &unique("conformance-prefix")).await;
    tokio::time::timeout(Duration::from_secs(300), conformance::run_all(&store))
        .await
        .expect("conformance suite finished in time");
}

#[tokio::test]
async fn prefix_namespaces_every_key() {
    let Some(etcd) = etcd_for("prefix_namespaces_every_key") else {
        return;
    };
    let _turn = take_turn(&etcd).await;
    let base = unique("prefix");
    let a = connect(&etcd, &format!("{base}/a")).await;
    let b = connect(&etcd, &format!("{base}/b")).await;
    let start = a.current_revision().await.expect("revision");
    let mut watch_a = a.watch("/registry/", start).await.expect("watch a");

    let in_a = a
        .create("/registry/pods/default/web", Bytes::from_static(b"a"))
        .await
        .expect("create in a");
    let in_b = b
        .create("/registry/pods/default/web", Bytes::from_static(b"b"))
        .await
        .expect("create in b");
    assert!(
        in_b.mod_revision > in_a.mod_revision,
        "both stores share etcd's revision"
    );
    assert_eq!(
        a.get("/registry/pods/default/web")
            .await
            .expect("get")
            .map(|kv| kv.value),
        Some(Bytes::from_static(b"a"))
    );
    let listed = b
        .list("/registry/", ListOptions::default())
        .await
        .expect("list b");
    assert_eq!(
        listed.items,
        std::slice::from_ref(&in_b),
        "a store lists only its own namespace, with the prefix stripped"
    );

    let mut raw = raw_client(&etcd).await;
    let raw_keys: Vec<String> = raw
        .get(
            format!("{base}/"),
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .expect("raw get")
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    assert_eq!(
        raw_keys,
        [
            format!("{base}/a/registry/pods/default/web"),
            format!("{base}/b/registry/pods/default/web")
        ]
    );

    match tokio::time::timeout(TIMEOUT, watch_a.events.next()).await {
        Ok(Some(Ok(WatchEvent::Put { kv, prev: None }))) => {
            assert_eq!(kv, in_a, "watch sees the store key")
        }
        other => panic!("expected the put in a, got {other:?}"),
    }
    // b's write is outside a's namespace: the next thing a's watch sees is a's own delete.
    let (_, del) = a
        .delete("/registry/pods/default/web", None)
        .await
        .expect("delete");
    match tokio::time::timeout(TIMEOUT, watch_a.events.next()).await {
        Ok(Some(Ok(WatchEvent::Delete { prev, revision }))) => {
            assert_eq!((prev, revision), (in_a, del));
        }
        other => panic!("expected the delete in a, got {other:?}"),
    }
}

#[tokio::test]
async fn compaction_is_shared_by_every_store_on_the_etcd() {
    let Some(etcd) = etcd_for("compaction_is_shared_by_every_store_on_the_etcd") else {
        return;
    };
    let _turn = take_turn(&etcd).await;
    let base = unique("shared-compaction");
    let a = connect(&etcd, "").await;
    let kv1 = a
        .create(&format!("{base}/k"), Bytes::from_static(b"1"))
        .await
        .expect("create");
    let kv2 = a
        .update(&kv1.key, Bytes::from_static(b"2"), kv1.mod_revision)
        .await
        .expect("update");
    a.compact(kv2.mod_revision).await.expect("compact");

    // A store connected later (another API server) agrees on the compacted revision.
    let b = connect(&etcd, "/elsewhere").await;
    assert!(b.compacted_revision().await.expect("compacted") >= kv2.mod_revision);
    assert!(matches!(
        b.watch("/x/", kv1.mod_revision - 1).await,
        Err(Error::Gone { .. })
    ));
    let mut raw = raw_client(&etcd).await;
    let recorded = raw.get("compact_rev_key", None).await.expect("raw get");
    let recorded: i64 = recorded
        .kvs()
        .first()
        .and_then(|kv| kv.value_str().ok()?.parse().ok())
        .expect("compact_rev_key");
    assert!(
        recorded >= kv2.mod_revision,
        "compact_rev_key holds {recorded}"
    );
}

#[tokio::test]
async fn compaction_behind_the_stores_back_is_still_gone() {
    let Some(etcd) = etcd_for("compaction_behind_the_stores_back_is_still_gone") else {
        return;
    };
    let _turn = take_turn(&etcd).await;
    let base = unique("raw-compaction");
    let store = connect(&etcd, "").await;
    let kv1 = store
        .create(&format!("{base}/k"), Bytes::from_static(b"1"))
        .await
        .expect("create");
    let kv2 = store
        .update(&kv1.key, Bytes::from_static(b"2"), kv1.mod_revision)
        .await
        .expect("update");
    let kv3 = store
        .update(&kv1.key, Bytes::from_static(b"3"), kv2.mod_revision)
        .await
        .expect("update");
    // Compact with a plain etcd client: the store's compaction record does not know.
    let mut raw = raw_client(&etcd).await;
    raw.compact(kv3.mod_revision, None)
        .await
        .expect("raw compact");

    match store
        .list(
            &base,
            ListOptions {
                revision: Some(kv1.mod_revision),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::Gone {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, kv1.mod_revision);
            assert!(
                compacted > requested,
                "compacted {compacted} must be above the request"
            );
        }
        other => panic!("list at a compacted revision: expected Gone, got {other:?}"),
    }
    // The watch learns it from etcd's cancellation.
    match store.watch(&base, kv1.mod_revision).await {
        Err(Error::Gone { .. }) => {}
        Ok(mut w) => match tokio::time::timeout(TIMEOUT, w.events.next()).await {
            Ok(Some(Err(Error::Gone { compacted, .. }))) => assert_eq!(compacted, kv3.mod_revision),
            other => panic!("watch from a compacted revision: expected Gone, got {other:?}"),
        },
        Err(e) => panic!("watch from a compacted revision: expected Gone, got {e:?}"),
    }
    assert!(
        store.compacted_revision().await.expect("compacted") >= kv3.mod_revision,
        "the store learned the compaction"
    );
    let mut w = store
        .watch(&base, kv3.mod_revision)
        .await
        .expect("watch from the compaction");
    let kv4 = store
        .update(&kv1.key, Bytes::from_static(b"4"), kv3.mod_revision)
        .await
        .expect("update");
    match tokio::time::timeout(TIMEOUT, w.events.next()).await {
        Ok(Some(Ok(WatchEvent::Put { kv, prev }))) => assert_eq!((kv, prev), (kv4, Some(kv3))),
        other => panic!("expected the put, got {other:?}"),
    }
}

#[tokio::test]
async fn background_compaction_keeps_one_interval_of_history() {
    let Some(etcd) = etcd_for("background_compaction_keeps_one_interval_of_history") else {
        return;
    };
    let _turn = take_turn(&etcd).await;
    let base = unique("background");
    let opts = EtcdOptions {
        compaction_interval: Some(Duration::from_millis(200)),
        ..options("")
    };
    let store = EtcdStore::connect_with(&etcd.endpoints(), opts)
        .await
        .expect("connect");
    let first = store
        .create(&format!("{base}/k"), Bytes::from_static(b"0"))
        .await
        .expect("create");
    let deadline = Instant::now() + TIMEOUT;
    let mut kv = first.clone();
    loop {
        kv = store
            .update(&kv.key, Bytes::from_static(b"x"), kv.mod_revision)
            .await
            .expect("update");
        if store.compacted_revision().await.expect("compacted") >= first.mod_revision {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "background compaction never reached revision {}",
            first.mod_revision
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let compacted = store.compacted_revision().await.expect("compacted");
    assert!(
        compacted < store.current_revision().await.expect("current"),
        "compaction kept no history"
    );
    assert_eq!(store.get(&kv.key).await.expect("get"), Some(kv));
}

#[tokio::test]
async fn unreachable_etcd_is_a_backend_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let opts = EtcdOptions {
        request_timeout: Duration::from_secs(3),
        ..options("")
    };
    let started = Instant::now();
    match EtcdStore::connect_with(&[format!("http://127.0.0.1:{port}")], opts).await {
        Err(Error::Backend { context, .. }) => {
            assert!(
                context.contains("127.0.0.1"),
                "context names the endpoint: {context}"
            )
        }
        other => panic!("expected a Backend error, got {other:?}"),
    }
    assert!(
        started.elapsed() < TIMEOUT,
        "connecting to nothing took {:?}",
        started.elapsed()
    );
    let none: [&str; 0] = [];
    assert!(matches!(
        EtcdStore::connect(&none).await,
        Err(Error::Backend { .. })
    ));
}

/// Makes a CA and certificates for 127.0.0.1 with the `openssl` CLI.
fn make_certificates(dir: &std::path::Path) -> bool {
    let script = r#"
set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kyb-test-ca -keyout ca.key -out ca.crt
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > ext.cnf
for n in server client; do
  openssl req -newkey rsa:2048 -nodes -subj /CN=$n -keyout $n.key -out $n.csr
  openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out $n.crt
done
"#;
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn tls_with_client_certificates() {
    let Some(binary) = etcd_binary("tls_with_client_certificates") else {
        return;
    };
    let certs = temp_dir("certs");
    if !make_certificates(&certs) {
        eprintln!(
            "SKIPPED tls_with_client_certificates: could not make certificates with `openssl`"
        );
        return;
    }
    let path = |name: &str| certs.join(name);
    let extra = vec![
        format!("--cert-file={}", path("server.crt").display()),
        format!("--key-file={}", path("server.key").display()),
        format!("--trusted-ca-file={}", path("ca.crt").display()),
        "--client-cert-auth".to_owned(),
    ];
    let cluster = EtcdCluster::start(&binary, "tls", 1, &extra);
    let tls = EtcdTlsOptions {
        ca: path("ca.crt"),
        cert: Some(path("client.crt")),
        key: Some(path("client.key")),
        domain: None,
    };
    let opts = EtcdOptions {
        tls: Some(tls.clone()),
        ..options("")
    };
    let store = EtcdStore::connect_with(&cluster.endpoints(), opts)
        .await
        .expect("connect over TLS");
    let kv = store
        .create("/registry/tls/a", Bytes::from_static(b"secret"))
        .await
        .expect("create over TLS");
    assert_eq!(store.get("/registry/tls/a").await.expect("get"), Some(kv));

    // Without the client certificate etcd refuses us.
    let anonymous = EtcdTlsOptions {
        cert: None,
        key: None,
        ..tls.clone()
    };
    let opts = EtcdOptions {
        tls: Some(anonymous),
        request_timeout: Duration::from_secs(5),
        ..options("")
    };
    assert!(matches!(
        EtcdStore::connect_with(&cluster.endpoints(), opts).await,
        Err(Error::Backend { .. })
    ));
    // A certificate without its key is a configuration error.
    let half = EtcdTlsOptions { key: None, ..tls };
    let opts = EtcdOptions {
        tls: Some(half),
        ..options("")
    };
    assert!(matches!(
        EtcdStore::connect_with(&cluster.endpoints(), opts).await,
        Err(Error::Backend { .. })
    ));
    drop(cluster);
    let _ = std::fs::remove_dir_all(&certs);
}
