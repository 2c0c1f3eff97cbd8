//! [`EtcdStore`]: a [`Store`] on an etcd v3 cluster, mapped the way kube-apiserver's `etcd3`
//! storage maps it.
//!
//! | `Store`                     | etcd                                                                  |
//! |-----------------------------|-----------------------------------------------------------------------|
//! | revision / resourceVersion  | the key's `mod_revision`, the header revision of a write              |
//! | `create`                    | `Txn` if `create_revision(key) == 0` then `put`                       |
//! | `update`, `delete(Some(r))` | `Txn` if `mod_revision(key) == r` then the write, else `get` the key  |
//! | `list`                      | `range` over the prefix, at `revision`, with `limit`                  |
//! | `watch(prefix, from)`       | `watch` with prefix, `start_revision = from + 1` and `prev_kv`        |
//! | `compact(r)`                | record `r` under `compact_rev_key`, then etcd `compact(r)`            |
//! | `current_revision`          | the header revision of a (linearizable) range                        |
//!
//! The submodules hold the watch stream (`watch`), the compaction bookkeeping (`compact`) and
//! the member health checks and retries (`members`).

mod compact;
mod members;
mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};
use tokio::sync::watch as signal;
use tracing::Instrument;

use crate::{Error, KeyValue, ListOptions, ListResult, Result, Store, WatchStream};

/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 keep-alive pings find dead connections (interval, timeout).
const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(5));

/// Options for [`EtcdStore::connect_with`].
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// An extra namespace put in front of every key, empty by default.
    ///
    /// Keys coming from the API server already start with `/registry/...`, so with the default
    /// the etcd keys are exactly the ones kube-apiserver writes (`/registry/pods/default/web`).
    /// With `prefix: "/tenant-a".into()` the same object lives at
    /// `/tenant-a/registry/pods/default/web`, which lets several clusters share one etcd. The
    /// prefix is stripped again from every key the store returns. It is not a separator-aware
    /// path: add the `/` yourself.
    pub prefix: String,
    /// How often to compact etcd's history, like kube-apiserver's `--etcd-compaction-interval`:
    /// every interval, the store compacts up to the revision it saw one interval before, so at
    /// least one interval of history is kept. Default 5 minutes; `None` never compacts (use it
    /// when something else, such as etcd's own `--auto-compaction-*`, compacts).
    pub compaction_interval: Option<Duration>,
    /// TLS for `https://` endpoints; `None` for plain `http://`.
    pub tls: Option<EtcdTlsOptions>,
    /// How long one etcd request may take before it fails with [`Error::Backend`]. Default 30 s.
    /// For a watch this bounds only its creation, not its lifetime.
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            prefix: String::new(),
            compaction_interval: Some(Duration::from_secs(300)),
            tls: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// TLS settings for talking to etcd over `https://` endpoints (PEM files, like kube-apiserver's
/// `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile`).
#[derive(Debug, Clone)]
pub struct EtcdTlsOptions {
    /// The CA certificate(s) that signed etcd's serving certificate.
    pub ca: PathBuf,
    /// The client certificate, for etcd's `--client-cert-auth`; needs `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key; needs `cert`.
    pub key: Option<PathBuf>,
    /// The name to check etcd's certificate against; by default the endpoint's host.
    pub domain: Option<String>,
}

/// A [`Store`] on etcd v3 (tested against etcd 3.4), through `etcd-client`.
///
/// - Every key is stored at [`EtcdOptions::prefix`] + key; revisions are etcd's, so several
///   API servers (or kube-apiserver itself) can share one etcd and agree on resourceVersions.
/// - Several endpoints (the members of one etcd cluster) may be given: requests are balanced over
///   the healthy members. A member that fails its health check is taken out until it answers
///   again, and requests etcd certainly never acted on (connection refused, member without a
///   leader) are retried for a few seconds. Any other failure is returned: for a write whose
///   answer was lost that means "unknown outcome", exactly as with kube-apiserver.
/// - Reads are linearizable (they go through the etcd leader).
/// - Compaction is shared by everything on the etcd: the compacted revision is recorded under the
///   key `compact_rev_key` (not prefixed, the key kube-apiserver uses) so every store on it
///   agrees.
/// - The store must be used inside a tokio runtime; connecting, and the background compaction,
///   need one.
///
/// Cloning is cheap: clones share the connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), kybernetes_store::Error> {
/// use kybernetes_store::{EtcdStore, Store};
/// let store = EtcdStore::connect(&["http://127.0.0.1:2379"]).await?;
/// let kv = store.create("/registry/demo/a", bytes::Bytes::from_static(b"{}")).await?;
/// assert!(kv.mod_revision > 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    client: Client,
    endpoints: Vec<String>,
    prefix: String,
    /// The highest compaction revision this store has seen.
    compacted: AtomicI64,
    /// Member health, for the balancer.
    members: members::Members,
    /// `create_revision`s of recently seen key versions.
    create_revisions: CreateRevisions,
    /// Dropping it stops the background tasks (compaction, member health).
    stop: signal::Sender<()>,
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port`, several for a cluster) with the
    /// default [`EtcdOptions`]. Fails with [`Error::Backend`] if no endpoint answers.
    pub async fn connect(endpoints: &[impl AsRef<str>]) -> Result<EtcdStore> {
        EtcdStore::connect_with(endpoints, EtcdOptions::default()).await
    }

    /// Connects to etcd at `endpoints` with `options`. It reads etcd once before returning, so
    /// an unreachable etcd (or bad TLS settings) is reported here as [`Error::Backend`].
    pub async fn connect_with(
        endpoints: &[impl AsRef<str>],
        options: EtcdOptions,
    ) -> Result<EtcdStore> {
        let scheme = if options.tls.is_some() {
            "https://"
        } else {
            "http://"
        };
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.as_ref().trim())
            .map(|e| {
                if e.contains("://") {
                    e.to_owned()
                } else {
                    format!("{scheme}{e}")
                }
            })
            .collect();
        let span = tracing::info_span!("etcd_connect", ?endpoints, prefix = %options.prefix);
        EtcdStore::connect_inner(endpoints, options)
            .instrument(span)
            .await
    }

    async fn connect_inner(endpoints: Vec<String>, options: EtcdOptions) -> Result<EtcdStore> {
        if endpoints.is_empty() {
            return Err(Error::Backend {
                context: "connecting to etcd: no endpoints given".into(),
                source: None,
            });
        }
        if options.compaction_interval.is_some_and(|i| i.is_zero()) {
            return Err(Error::Backend {
                context: "etcd compaction interval must be above zero".into(),
                source: None,
            });
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(options.request_timeout)
            .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
            .with_keep_alive_while_idle(true)
            // Like kube-apiserver: a member cut off from the leader fails requests (and watches)
            // instead of serving stale data.
            .with_require_leader(true);
        if let Some(tls) = &options.tls {
            connect = connect.with_tls(tls_config(tls)?);
        }
        let what = || format!("connecting to etcd at {}", endpoints.join(","));
        let client = Client::connect(&endpoints, Some(connect.clone()))
            .await
            .map_err(|e| Error::backend(what(), e))?;
        let members = members::Members::new(&endpoints, &connect)
            .await
            .map_err(|e| Error::backend(what(), e))?;
        let inner = Arc::new(Inner {
            client,
            endpoints: endpoints.clone(),
            prefix: options.prefix,
            compacted: AtomicI64::new(0),
            members,
            create_revisions: CreateRevisions::default(),
            stop: signal::channel(()).0,
        });
        // The first read proves the connection and learns the compacted revision.
        let probe = tokio::time::timeout(options.request_timeout, inner.probe())
            .await
            .map_err(|_| Error::Backend {
                context: format!("{}: no answer within {:?}", what(), options.request_timeout),
                source: None,
            })?
            .map_err(|e| Error::backend(what(), e))?;
        tracing::info!(
            revision = probe.current,
            compacted = probe.compacted,
            "connected to etcd"
        );
        tokio::spawn(members::run_monitor(
            Arc::downgrade(&inner),
            inner.stop.subscribe(),
        ));
        if let Some(interval) = options.compaction_interval {
            tokio::spawn(compact::run_compactor(
                Arc::downgrade(&inner),
                interval,
                inner.stop.subscribe(),
            ));
        }
        Ok(EtcdStore { inner })
    }

    /// The endpoints this store was connected to.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The underlying `etcd-client` client (for example to read the cluster's status).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }
}

/// How many key versions [`CreateRevisions`] remembers before it starts over.
const CREATE_REVISION_CACHE: usize = 10_000;

/// The `create_revision` of recently seen versions of keys (from `get`, `create` and `update`), so
/// that `update` need not read it back from etcd, the common case being an update right after a
/// read. This is exact, not a guess: `update` writes only if the key's `mod_revision` equals the
/// expected one, and a key version with that `mod_revision` belongs to one incarnation of the
/// key, whose `create_revision` is the remembered one.
#[derive(Default)]
struct CreateRevisions {
    /// key -> (mod_revision, create_revision)
    seen: Mutex<HashMap<String, (i64, i64)>>,
}

impl CreateRevisions {
    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, i64)>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, kv: &KeyValue) {
        let mut seen = self.seen();
        if seen.len() >= CREATE_REVISION_CACHE && !seen.contains_key(&kv.key) {
            seen.clear();
        }
        seen.insert(kv.key.clone(), (kv.mod_revision, kv.create_revision));
    }

    fn lookup(&self, key: &str, mod_revision: i64) -> Option<i64> {
        self.seen()
            .get(key)
            .filter(|(m, _)| *m == mod_revision)
            .map(|(_, c)| *c)
    }

    fn forget(&self, key: &str) {
        self.seen().remove(key);
    }
}

fn tls_config(tls: &EtcdTlsOptions) -> Result<etcd_client::TlsOptions> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path)
            .map_err(|e| Error::backend(format!("reading the etcd {what} {}", path.display()), e))
    };
    let mut config = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca, "CA")?));
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            config = config.identity(etcd_client::Identity::from_pem(
                read(cert, "client certificate")?,
                read(key, "client key")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(Error::Backend {
                context: "etcd TLS: a client certificate needs its key, and a key its certificate"
                    .into(),
                source: None,
            });
        }
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    Ok(config)
}

/// The smallest key above every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`);
/// `[0]` (meaning "to the end") when there is none.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// What etcd says when a read asks for a compacted revision.
fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("required revision has been compacted"))
}

/// What etcd says when a read or a compaction asks for a revision it has not reached.
fn is_future(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("required revision is a future revision"))
}

fn header_revision(resp: &TxnResponse, what: &str) -> Result<i64> {
    resp.header()
        .map(|h| h.revision())
        .ok_or_else(|| Error::Backend {
            context: format!("{what}: etcd answered without a header"),
            source: None,
        })
}

impl Inner {
    pub(crate) fn kv(&self) -> KvClient {
        self.client.kv_client()
    }

    /// The etcd key for a store key.
    pub(crate) fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(self.prefix.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The store key for an etcd key.
    pub(crate) fn store_key(&self, full: &[u8]) -> Result<String> {
        let key = full
            .strip_prefix(self.prefix.as_bytes())
            .ok_or_else(|| Error::Backend {
                context: format!(
                    "etcd returned key {:?} outside the prefix {:?}",
                    String::from_utf8_lossy(full),
                    self.prefix
                ),
                source: None,
            })?;
        String::from_utf8(key.to_vec()).map_err(|e| {
            Error::backend(
                format!("etcd key {:?} is not UTF-8", String::from_utf8_lossy(full)),
                e,
            )
        })
    }

    /// Converts an etcd key/value, taking its value without copying.
    pub(crate) fn convert(&self, kv: etcd_client::KeyValue) -> Result<KeyValue> {
        let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
        let (key, value) = kv.into_key_value();
        Ok(KeyValue {
            key: self.store_key(&key)?,
            value: Bytes::from(value),
            create_revision,
            mod_revision,
        })
    }

    /// Converts an etcd key/value seen by reference (watch events).
    pub(crate) fn convert_ref(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.store_key(kv.key())?,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    pub(crate) fn note_compacted(&self, revision: i64) {
        self.compacted.fetch_max(revision, Ordering::AcqRel);
    }

    pub(crate) fn known_compacted(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }

    /// The key's current `mod_revision` (without its value), if it exists.
    async fn mod_revision_of(&self, full: &[u8], key: &str) -> Result<Option<i64>> {
        let resp = self
            .call(|mut kv| {
                let full = full.to_vec();
                async move { kv.get(full, Some(GetOptions::new().with_keys_only())).await }
            })
            .await
            .map_err(|e| Error::backend(format!("etcd get {key}"), e))?;
        Ok(resp.kvs().first().map(|kv| kv.mod_revision()))
    }

    /// The error for a conditional write whose condition failed: `NotFound` or `Conflict`.
    fn mismatch(key: &str, expected: i64, actual: Option<i64>) -> Error {
        match actual {
            None => Error::NotFound {
                key: key.to_owned(),
            },
            Some(actual) => Error::Conflict {
                key: key.to_owned(),
                expected,
                actual,
            },
        }
    }

    /// The `mod_revision` a failed txn's `or_else(get)` found.
    fn else_revision(resp: &TxnResponse) -> Option<i64> {
        resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision()),
            _ => None,
        })
    }
}

#[async_trait]
impl Store for EtcdStore {
    #[tracing::instrument(level = "trace", skip(self))]
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let inner = &self.inner;
        let full = inner.full_key(key);
        let mut resp = inner
            .call(|mut kv| {
                let full = full.clone();
                async move { kv.get(full, None).await }
            })
            .await
            .map_err(|e| Error::backend(format!("etcd get {key}"), e))?;
        let kv = resp
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| inner.convert(kv))
            .transpose()?;
        if let Some(kv) = &kv {
            inner.create_revisions.remember(kv);
        }
        Ok(kv)
    }

    #[tracing::instrument(level = "trace", skip(self))]
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let inner = &self.inner;
        let full_prefix = inner.full_key(prefix);
        let start = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => {
                let mut start = inner.full_key(after);
                start.push(0);
                start
            }
            _ if full_prefix.is_empty() => vec![0],
            _ => full_prefix.clone(),
        };
        let mut get = GetOptions::new().with_range(prefix_end(&full_prefix));
        let at = opts.revision.filter(|r| *r > 0);
        if let Some(r) = at {
            get = get.with_revision(r);
        }
        if let Some(limit) = opts.limit.filter(|l| *l > 0) {
            get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let mut resp = match inner
            .call(|mut kv| {
                let (start, get) = (start.clone(), get.clone());
                async move { kv.get(start, Some(get)).await }
            })
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                let requested = at.unwrap_or(0);
                if is_compacted(&e) {
                    let compacted = inner
                        .compacted_revision()
                        .await
                        .unwrap_or(0)
                        .max(requested + 1);
                    return Err(Error::Gone {
                        requested,
                        compacted,
                    });
                }
                if is_future(&e) {
                    let current = inner.probe().await?.current;
                    return Err(Error::FutureRevision { requested, current });
                }
                return Err(Error::backend(format!("etcd list {prefix}"), e));
            }
        };
        let revision = match at {
            Some(r) => r,
            None => resp.header().map(|h| h.revision()).unwrap_or(0),
        };
        let more = resp.more();
        let items = resp
            .take_kvs()
            .into_iter()
            .map(|kv| inner.convert(kv))
            .collect::<Result<Vec<_>>>()?;
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    #[tracing::instrument(level = "trace", skip(self, value), fields(len = value.len()))]
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let inner = &self.inner;
        let full = inner.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.to_vec(), None)]);
        let what = || format!("etcd create {key}");
        let resp = inner
            .call(|mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await
            .map_err(|e| Error::backend(what(), e))?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = header_revision(&resp, &what())?;
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        };
        inner.create_revisions.remember(&kv);
        Ok(kv)
    }

    #[tracing::instrument(level = "trace", skip(self, value), fields(len = value.len()))]
    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<KeyValue> {
        let inner = &self.inner;
        let full = inner.full_key(key);
        let what = || format!("etcd update {key}");
        if expected_revision <= 0 {
            // No stored key has such a mod_revision (and `mod_revision == 0` would match a
            // missing key): report what is there.
            let actual = inner.mod_revision_of(&full, key).await?;
            return Err(Inner::mismatch(key, expected_revision, actual));
        }
        let keys_only = || Some(GetOptions::new().with_keys_only());
        let known_create_revision = inner.create_revisions.lookup(key, expected_revision);
        let mut then = vec![TxnOp::put(full.clone(), value.to_vec(), None)];
        if known_create_revision.is_none() {
            // Read the key's create_revision back in the same transaction.
            then.push(TxnOp::get(full.clone(), keys_only()));
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected_revision,
            )])
            .and_then(then)
            .or_else([TxnOp::get(full, keys_only())]);
        let resp = inner
            .call(|mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await
            .map_err(|e| Error::backend(what(), e))?;
        if !resp.succeeded() {
            return Err(Inner::mismatch(
                key,
                expected_revision,
                Inner::else_revision(&resp),
            ));
        }
        let revision = header_revision(&resp, &what())?;
        let create_revision = match known_create_revision {
            Some(c) => c,
            None => resp
                .op_responses()
                .into_iter()
                .find_map(|op| match op {
                    TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.create_revision()),
                    _ => None,
                })
                .ok_or_else(|| Error::Backend {
                    context: format!("{}: the written key was not read back", what()),
                    source: None,
                })?,
        };
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        };
        inner.create_revisions.remember(&kv);
        Ok(kv)
    }

    #[tracing::instrument(level = "trace", skip(self))]
    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        let inner = &self.inner;
        let full = inner.full_key(key);
        let what = || format!("etcd delete {key}");
        let (revision, mut prev) = match expected_revision {
            Some(expected) if expected <= 0 => {
                let actual = inner.mod_revision_of(&full, key).await?;
                return Err(Inner::mismatch(key, expected, actual));
            }
            Some(expected) => {
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        full.clone(),
                        CompareOp::Equal,
                        expected,
                    )])
                    .and_then([TxnOp::delete(
                        full.clone(),
                        Some(DeleteOptions::new().with_prev_key()),
                    )])
                    .or_else([TxnOp::get(full, Some(GetOptions::new().with_keys_only()))]);
                let resp = inner
                    .call(|mut kv| {
                        let txn = txn.clone();
                        async move { kv.txn(txn).await }
                    })
                    .await
                    .map_err(|e| Error::backend(what(), e))?;
                if !resp.succeeded() {
                    return Err(Inner::mismatch(key, expected, Inner::else_revision(&resp)));
                }
                let revision = header_revision(&resp, &what())?;
                let prev = resp.op_responses().into_iter().find_map(|op| match op {
                    TxnOpResponse::Delete(mut del) => del.take_prev_kvs().into_iter().next(),
                    _ => None,
                });
                (revision, prev)
            }
            None => {
                let mut resp = inner
                    .call(|mut kv| {
                        let full = full.clone();
                        async move {
                            kv.delete(full, Some(DeleteOptions::new().with_prev_key()))
                                .await
                        }
                    })
                    .await
                    .map_err(|e| Error::backend(what(), e))?;
                let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
                (revision, resp.take_prev_kvs().into_iter().next())
            }
        };
        inner.create_revisions.forget(key);
        match prev.take() {
            Some(prev) => Ok((inner.convert(prev)?, revision)),
            None => Err(Error::NotFound {
                key: key.to_owned(),
            }),
        }
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        watch::watch(Arc::clone(&self.inner), prefix, from_revision).await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn compact(&self, revision: i64) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.inner.probe().await?.current)
    }

    async fn compacted_revision(&self) -> Result<i64> {
        self.inner.compacted_revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte_below_0xff() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }
}
