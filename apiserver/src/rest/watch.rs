//! watch: a streamed body of newline-delimited JSON `WatchEvent`s, fed from the watch cache.
//!
//! - no resourceVersion: synthetic ADDED events for the current state, then changes;
//! - `"0"`: the same, from whatever state the cache has;
//! - `N`: every change after `N` (410 Gone if `N` is compacted);
//! - `sendInitialEvents=true`: the initial ADDED events end with a bookmark annotated
//!   `k8s.io/initial-events-end` (the streaming-list protocol);
//! - bookmarks every `bookmark_interval` when `allowWatchBookmarks=true`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use kybernetes_core::{ApiError, Clock, ResourceInfo};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::output::Form;
use super::read::{FRESHNESS_TIMEOUT, Filter};
use super::store_err;
use crate::Inner;
use crate::cacher::{Broadcast, CacheEvent, EventType, Subscription, WatchStart, encode_event};
use crate::object;
use crate::registry::{RequestScope, Strategy};
use crate::request::ListQuery;
use crate::response::ApiResponse;

struct Watcher {
    resource: Arc<ResourceInfo>,
    prefix: String,
    filter: Filter,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    last_rv: i64,
    /// The objects, their `PartialObjectMetadata`, or one-row `Table`s.
    form: Form,
    /// True once a `Table` with `columnDefinitions` went out: later ones have none, as
    /// upstream's watch encoder.
    headers_sent: bool,
    /// For the ages in `Table` rows.
    clock: Clock,
    /// The kind's strategy: custom resources are served at the watched version.
    strategy: Arc<dyn Strategy>,
}

impl Watcher {
    async fn send(&mut self, bytes: Bytes) -> bool {
        self.tx.send(Ok(bytes)).await.is_ok()
    }

    /// Sends one cache event as this watcher sees it through its selectors.
    async fn send_event(&mut self, ev: &CacheEvent) -> bool {
        if !ev.object.key.starts_with(&self.prefix) {
            return true;
        }
        self.last_rv = ev.revision;
        let object = ev.object.value();
        let now = self.filter.matches(&object);
        let before = ev
            .prev
            .as_ref()
            .is_some_and(|p| self.filter.matches(&p.value()));
        let kind = match (ev.kind, before, now) {
            (EventType::Deleted, true, _) => EventType::Deleted,
            (EventType::Deleted, false, _) => return true,
            (_, true, true) => ev.kind,
            (EventType::Added, false, true) => EventType::Added,
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (_, _, false) => return true,
        };
        let same = kind == ev.kind;
        let bytes = match &self.form {
            Form::Metadata if same => ev.encoded_metadata(),
            Form::Metadata => encode_event(kind, &object::partial_metadata(&object)),
            Form::Object => match self.strategy.served_form(&self.resource, &object) {
                Some(served) => encode_event(kind, &served),
                None if same => ev.encoded(),
                None => encode_event(kind, &object),
            },
            Form::Table(_) => self.encode_table(kind, &object),
        };
        self.send(bytes).await
    }

    /// The ADDED event of an object of the initial state.
    fn added(&mut self, obj: &Value) -> Bytes {
        match &self.form {
            Form::Metadata => encode_event(EventType::Added, &object::partial_metadata(obj)),
            Form::Object => match self.strategy.served_form(&self.resource, obj) {
                Some(served) => encode_event(EventType::Added, &served),
                None => encode_event(EventType::Added, obj),
            },
            Form::Table(_) => self.encode_table(EventType::Added, obj),
        }
    }

    /// An event carrying the one-row `Table` of a stored object, served at the watched
    /// version; the first such event has the column definitions.
    fn encode_table(&mut self, kind: EventType, stored: &Value) -> Bytes {
        let served = self.strategy.served_form(&self.resource, stored);
        encode_event_of(
            kind.as_str(),
            &self.table(served.as_ref().unwrap_or(stored)),
        )
    }

    /// The one-row `Table` of an object, with column definitions only the first time.
    fn table(&mut self, obj: &Value) -> Value {
        let Form::Table(t) = &self.form else {
            return obj.clone();
        };
        let table = t.object_table(obj, self.clock.now(), !self.headers_sent);
        self.headers_sent = true;
        table
    }

    async fn bookmark(&mut self, initial_events_end: bool) -> bool {
        let mut meta = json!({ "resourceVersion": self.last_rv.to_string() });
        if initial_events_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let obj = json!({ "kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": meta });
        // As upstream, a Table watch gets its bookmarks as Tables too.
        let obj = self.table(&obj);
        self.send(encode_event_of("BOOKMARK", &obj)).await
    }
}

/// Encodes `{"type":..,"object":..}\n` for any event type.
fn encode_event_of(type_: &str, obj: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({ "type": type_, "object": obj })).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Starts a watch and returns the streaming response.
pub async fn watch(
    inner: &Arc<Inner>,
    scope: &RequestScope,
    q: ListQuery,
) -> Result<ApiResponse, ApiError> {
    let r = &*scope.resource;
    let form = Form::of(scope)?;
    let filter = Filter::new(scope, &q)?;
    let rv = q.rv()?;
    let prefix = r.namespace_prefix(scope.ns());
    let send_initial = q.send_initial_events.unwrap_or(false);
    if q.send_initial_events.is_some() && !q.allow_bookmarks {
        return Err(ApiError::invalid_field(
            "meta.k8s.io",
            "ListOptions",
            "",
            "allowWatchBookmarks",
            "Required value: allowWatchBookmarks required when sendInitialEvents is set",
        ));
    }
    let cacher = inner.cacher(r).await?;
    // With no resourceVersion (or sendInitialEvents), the initial state must be at least as new
    // as the store: a consistent read.
    let trigger = filter.trigger().map(String::from);
    let start = match watch_start(
        inner,
        r,
        &cacher,
        &prefix,
        rv,
        q.send_initial_events,
        trigger.as_deref(),
    )
    .await
    {
        Ok(s) => s,
        // As upstream's cacher: a too-old resourceVersion is an ERROR event in a 200 stream.
        Err(e) if e.code == 410 => return Ok(error_stream(&e)),
        Err(e) => return Err(e),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let mut watcher = Watcher {
        resource: Arc::new(r.clone()),
        prefix: prefix.clone(),
        filter,
        tx,
        last_rv: rv.unwrap_or(0),
        form,
        headers_sent: false,
        clock: inner.clock.clone(),
        strategy: scope.strategy.clone(),
    };
    let timeout = q
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(inner.config.default_watch_timeout);
    let bookmarks = q.allow_bookmarks;
    let bookmark_interval = inner.config.bookmark_interval;
    let mut shutdown = inner.shutdown_signal();
    let store = inner.store.clone();
    let resource = r.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let run = async {
            let mut live = match start {
                WatchStart::Snapshot(snap, live) => {
                    watcher.last_rv = snap.revision;
                    for obj in &snap.objects {
                        let value = obj.value();
                        if !watcher.filter.matches(&value) {
                            continue;
                        }
                        let line = watcher.added(&value);
                        if !watcher.send(line).await {
                            return;
                        }
                    }
                    if send_initial && !watcher.bookmark(true).await {
                        return;
                    }
                    live
                }
                WatchStart::Replay(backlog, live, _) => {
                    for ev in &backlog {
                        if !watcher.send_event(ev).await {
                            return;
                        }
                    }
                    live
                }
                WatchStart::TooOld => {
                    store_watch(&store, &resource, &mut watcher, rv.unwrap_or(0)).await;
                    return;
                }
            };
            follow(&mut watcher, &mut live, bookmarks, bookmark_interval).await;
        };
        tokio::select! {
            _ = run => {}
            _ = &mut deadline => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
    });
    Ok(streaming_response(Body::from_stream(ReceiverStream::new(
        rx,
    ))))
}

async fn follow(w: &mut Watcher, live: &mut Subscription, bookmarks: bool, every: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            msg = live.rx.recv() => match msg {
                Some(Broadcast::Event(ev)) => {
                    if ev.revision <= w.last_rv {
                        continue;
                    }
                    if !w.send_event(&ev).await {
                        return;
                    }
                }
                // A reset or a watcher too slow to keep up ends the watch; the client resumes
                // from its last resourceVersion, as with upstream's cacher.
                Some(Broadcast::Reset) | None => return,
            },
            _ = ticker.tick(), if bookmarks => {
                if !w.bookmark(false).await {
                    return;
                }
            }
            _ = w.tx.closed() => return,
        }
    }
}

/// A watch from before the cache window, served straight from the store.
async fn store_watch(
    store: &Arc<dyn kybernetes_store::Store>,
    r: &ResourceInfo,
    w: &mut Watcher,
    from: i64,
) {
    let mut stream = match store.watch(&w.prefix, from).await {
        Ok(s) => s,
        Err(e) => {
            let err = super::store_err(r, "", e);
            let line = encode_error(&err);
            let _ = w.send(line).await;
            return;
        }
    };
    while let Some(ev) = stream.events.next().await {
        let Ok(ev) = ev else { return };
        let cache_ev = match ev {
            kybernetes_store::WatchEvent::Put { kv, prev } => {
                let Ok(value) = object::decode(&kv) else {
                    continue;
                };
                let prev = prev.and_then(|p| object::decode(&p).ok().map(|v| (p, v)));
                CacheEvent::detached(
                    if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    kv.key.clone(),
                    value,
                    prev.map(|(p, v)| (p.key, v, p.mod_revision)),
                    kv.mod_revision,
                )
            }
            kybernetes_store::WatchEvent::Delete { prev, revision } => {
                let Ok(mut value) = object::decode(&prev) else {
                    continue;
                };
                object::meta_mut(&mut value)
                    .insert("resourceVersion".into(), json!(revision.to_string()));
                let old = object::decode(&prev)
                    .ok()
                    .map(|v| (prev.key.clone(), v, prev.mod_revision));
                CacheEvent::detached(EventType::Deleted, prev.key.clone(), value, old, revision)
            }
            kybernetes_store::WatchEvent::Progress { .. } => continue,
        };
        if !w.send_event(&cache_ev).await {
            return;
        }
    }
}

async fn watch_start(
    inner: &Arc<Inner>,
    r: &ResourceInfo,
    cacher: &crate::cacher::Cacher,
    prefix: &str,
    rv: Option<i64>,
    send_initial_events: Option<bool>,
    trigger: Option<&str>,
) -> Result<WatchStart, ApiError> {
    let prefix = prefix.to_string();
    Ok(match (rv, send_initial_events) {
        (None, Some(false)) => {
            let current = inner
                .store
                .current_revision()
                .await
                .map_err(|e| store_err(r, "", e))?;
            cacher.wait_until(current, FRESHNESS_TIMEOUT).await?;
            cacher.watch(&prefix, Some(cacher.revision()), trigger)?
        }
        (Some(0), Some(false)) => cacher.watch(&prefix, Some(cacher.revision()), trigger)?,
        (None, _) => {
            let current = inner
                .store
                .current_revision()
                .await
                .map_err(|e| store_err(r, "", e))?;
            cacher.wait_until(current, FRESHNESS_TIMEOUT).await?;
            cacher.watch(&prefix, None, trigger)?
        }
        (Some(0), _) => cacher.watch(&prefix, None, trigger)?,
        (Some(n), Some(true)) => {
            cacher.wait_until(n, FRESHNESS_TIMEOUT).await?;
            cacher.watch(&prefix, None, trigger)?
        }
        (Some(n), _) => cacher.watch(&prefix, Some(n), trigger)?,
    })
}

fn streaming_response(body: Body) -> ApiResponse {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_stream(err: &ApiError) -> ApiResponse {
    streaming_response(Body::from(encode_error(err)))
}

/// An ERROR watch event carrying a Status.
pub fn encode_error(err: &ApiError) -> Bytes {
    encode_event_of("ERROR", &err.to_status())
}
