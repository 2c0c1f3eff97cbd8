//! A conformance suite every [`Store`] backend runs from its own tests.
//!
//! [`run_all`] runs every case, one after the other. Each case works under its own unique key
//! prefix (`/conformance/<case>/<unique>/`), so the suite also runs against a shared store that
//! already holds data, such as a real etcd. Only [`compaction_gone`] touches anything outside its
//! prefix: it compacts the whole store up to a revision it has just written.
//!
//! Every case is also exported on its own, so a backend can run one at a time:
//!
//! ```no_run
//! # async fn demo() {
//! let store = kybernetes_store::MemoryStore::default();
//! kybernetes_store::conformance::watch_progress(&store).await;
//! # }
//! ```
//!
//! # Panics
//!
//! This is a test harness: a case panics, with a message naming the case and what went wrong,
//! as soon as the store breaks a rule.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;

use crate::{Error, KeyValue, ListOptions, ListResult, Store, WatchEvent, WatchStream};

/// How long a case waits for a watch event before it fails.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A revision far beyond anything a test store reaches.
const FAR_FUTURE: i64 = 1_000_000_000;

/// Runs every case in turn. See the module docs.
pub async fn run_all<S: Store + ?Sized>(store: &S) {
    create_get(store).await;
    create_twice(store).await;
    update_expected_revision(store).await;
    delete_expected_revision(store).await;
    not_found(store).await;
    list_prefix_and_order(store).await;
    list_paging(store).await;
    list_at_old_revision(store).await;
    watch_backlog_then_live(store).await;
    watch_prefix_filtering(store).await;
    watch_delete_events(store).await;
    watch_progress(store).await;
    revisions_strictly_increase(store).await;
    concurrent_counter(store).await;
    compaction_gone(store).await;
}

/// Runs [`run_all`], then [`concurrent_counter_parallel`] (which needs an owned handle to spawn
/// tokio tasks, and a multi-threaded runtime to be truly parallel).
pub async fn run_all_arc(store: Arc<dyn Store>) {
    run_all(&store).await;
    concurrent_counter_parallel(store).await;
}

fn unique_prefix(case: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "/conformance/{case}/{nanos:x}-{:x}-{n}/",
        std::process::id()
    )
}

fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn ok<T>(case: &str, what: &str, r: crate::Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("conformance {case}: {what} failed: {e} ({e:?})"),
    }
}

async fn list_at<S: Store + ?Sized>(
    store: &S,
    case: &str,
    prefix: &str,
    revision: Option<i64>,
) -> ListResult {
    ok(
        case,
        &format!("list {prefix} at {revision:?}"),
        store
            .list(
                prefix,
                ListOptions {
                    revision,
                    ..Default::default()
                },
            )
            .await,
    )
}

/// The next event of a watch; fails on an error, the end of the stream, or a timeout.
async fn next_event(case: &str, w: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(WATCH_TIMEOUT, w.events.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("conformance {case}: watch failed: {e} ({e:?})"),
        Ok(None) => panic!("conformance {case}: watch ended unexpectedly"),
        Err(_) => panic!("conformance {case}: no watch event within {WATCH_TIMEOUT:?}"),
    }
}

/// The next change (skipping progress reports) of a watch.
async fn next_change(case: &str, w: &mut WatchStream) -> WatchEvent {
    loop {
        match next_event(case, w).await {
            WatchEvent::Progress { .. } => continue,
            ev => return ev,
        }
    }
}

fn expect_put(case: &str, ev: WatchEvent, kv: &KeyValue, prev: Option<&KeyValue>) {
    let want = WatchEvent::Put {
        kv: kv.clone(),
        prev: prev.cloned(),
    };
    assert_eq!(ev, want, "conformance {case}: wrong put event");
}

fn expect_delete(case: &str, ev: WatchEvent, prev: &KeyValue, revision: i64) {
    let want = WatchEvent::Delete {
        prev: prev.clone(),
        revision,
    };
    assert_eq!(ev, want, "conformance {case}: wrong delete event");
}

/// A future that is pending once, so concurrent futures interleave between a read and a write.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// `create` then `get`; revisions are positive and `current_revision` has caught up.
pub async fn create_get<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "create_get";
    let key = format!("{}a", unique_prefix(CASE));
    assert_eq!(
        ok(CASE, "get before create", store.get(&key).await),
        None,
        "conformance {CASE}: fresh key exists"
    );
    let kv = ok(CASE, "create", store.create(&key, val("v1")).await);
    assert_eq!(kv.key, key, "conformance {CASE}: created key");
    assert_eq!(kv.value, val("v1"), "conformance {CASE}: created value");
    assert!(
        kv.mod_revision > 0,
        "conformance {CASE}: revision {} is not above 0",
        kv.mod_revision
    );
    assert_eq!(
        kv.create_revision, kv.mod_revision,
        "conformance {CASE}: create_revision of a new key"
    );
    assert_eq!(
        ok(CASE, "get", store.get(&key).await),
        Some(kv.clone()),
        "conformance {CASE}: get after create"
    );
    let current = ok(CASE, "current_revision", store.current_revision().await);
    assert!(
        current >= kv.mod_revision,
        "conformance {CASE}: current revision {current} is behind write {}",
        kv.mod_revision
    );
}

/// A second `create` of a key fails with `AlreadyExists` and changes nothing.
pub async fn create_twice<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "create_twice";
    let key = format!("{}a", unique_prefix(CASE));
    let kv = ok(CASE, "create", store.create(&key, val("first")).await);
    match store.create(&key, val("second")).await {
        Err(Error::AlreadyExists { key: k }) => {
            assert_eq!(k, key, "conformance {CASE}: error names the key")
        }
        other => panic!("conformance {CASE}: second create: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        ok(CASE, "get", store.get(&key).await),
        Some(kv),
        "conformance {CASE}: value changed by a failed create"
    );
}

/// `update` succeeds at the right revision and fails with `Conflict` (carrying the actual
/// revision) at a stale one.
pub async fn update_expected_revision<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "update_expected_revision";
    let key = format!("{}a", unique_prefix(CASE));
    let kv1 = ok(CASE, "create", store.create(&key, val("v1")).await);
    let kv2 = ok(
        CASE,
        "update at the right revision",
        store.update(&key, val("v2"), kv1.mod_revision).await,
    );
    assert!(
        kv2.mod_revision > kv1.mod_revision,
        "conformance {CASE}: update did not raise the revision"
    );
    assert_eq!(
        kv2.create_revision, kv1.create_revision,
        "conformance {CASE}: update changed create_revision"
    );
    assert_eq!(kv2.value, val("v2"), "conformance {CASE}: updated value");
    match store.update(&key, val("v3"), kv1.mod_revision).await {
        Err(Error::Conflict {
            key: k,
            expected,
            actual,
        }) => {
            assert_eq!(k, key, "conformance {CASE}: conflict names the key");
            assert_eq!(
                expected, kv1.mod_revision,
                "conformance {CASE}: conflict carries the expected revision"
            );
            assert_eq!(
                actual, kv2.mod_revision,
                "conformance {CASE}: conflict carries the actual revision"
            );
        }
        other => panic!("conformance {CASE}: stale update: expected Conflict, got {other:?}"),
    }
    assert_eq!(
        ok(CASE, "get", store.get(&key).await),
        Some(kv2),
        "conformance {CASE}: value changed by a failed update"
    );
}

/// `delete` with a stale revision fails with `Conflict`; with the right one, or none, it
/// deletes and returns the last value and the delete's revision.
pub async fn delete_expected_revision<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "delete_expected_revision";
    let prefix = unique_prefix(CASE);
    let key = format!("{prefix}a");
    let kv1 = ok(CASE, "create", store.create(&key, val("v1")).await);
    let kv2 = ok(
        CASE,
        "update",
        store.update(&key, val("v2"), kv1.mod_revision).await,
    );
    match store.delete(&key, Some(kv1.mod_revision)).await {
        Err(Error::Conflict {
            key: k,
            expected,
            actual,
        }) => {
            assert_eq!(k, key, "conformance {CASE}: conflict names the key");
            assert_eq!(
                expected, kv1.mod_revision,
                "conformance {CASE}: conflict carries the expected revision"
            );
            assert_eq!(
                actual, kv2.mod_revision,
                "conformance {CASE}: conflict carries the actual revision"
            );
        }
        other => panic!("conformance {CASE}: stale delete: expected Conflict, got {other:?}"),
    }
    assert_eq!(
        ok(CASE, "get", store.get(&key).await),
        Some(kv2.clone()),
        "conformance {CASE}: failed delete removed the key"
    );
    let (prev, rev) = ok(
        CASE,
        "delete at the right revision",
        store.delete(&key, Some(kv2.mod_revision)).await,
    );
    assert_eq!(
        prev, kv2,
        "conformance {CASE}: delete returns the last value"
    );
    assert!(
        rev > kv2.mod_revision,
        "conformance {CASE}: delete revision {rev} is not above {}",
        kv2.mod_revision
    );
    assert_eq!(
        ok(CASE, "get after delete", store.get(&key).await),
        None,
        "conformance {CASE}: key survived delete"
    );
    match store.delete(&key, None).await {
        Err(Error::NotFound { key: k }) => {
            assert_eq!(k, key, "conformance {CASE}: error names the key")
        }
        other => panic!("conformance {CASE}: second delete: expected NotFound, got {other:?}"),
    }

    let other = format!("{prefix}b");
    let b = ok(CASE, "create b", store.create(&other, val("b")).await);
    let (prev, rev_b) = ok(
        CASE,
        "unconditional delete",
        store.delete(&other, None).await,
    );
    assert_eq!(
        prev, b,
        "conformance {CASE}: unconditional delete returns the last value"
    );
    assert!(rev_b > rev, "conformance {CASE}: revisions went backwards");

    let again = ok(
        CASE,
        "re-create after delete",
        store.create(&key, val("v3")).await,
    );
    assert!(
        again.create_revision > rev,
        "conformance {CASE}: re-created key keeps an old create_revision"
    );
    assert_eq!(
        again.create_revision, again.mod_revision,
        "conformance {CASE}: re-created key revisions"
    );
}

/// Reads and writes of a missing key.
pub async fn not_found<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "not_found";
    let key = format!("{}missing", unique_prefix(CASE));
    assert_eq!(
        ok(CASE, "get", store.get(&key).await),
        None,
        "conformance {CASE}: get of a missing key"
    );
    match store.update(&key, val("x"), 1).await {
        Err(Error::NotFound { key: k }) => {
            assert_eq!(k, key, "conformance {CASE}: error names the key")
        }
        other => panic!("conformance {CASE}: update: expected NotFound, got {other:?}"),
    }
    for expected in [None, Some(1)] {
        match store.delete(&key, expected).await {
            Err(Error::NotFound { key: k }) => {
                assert_eq!(k, key, "conformance {CASE}: error names the key")
            }
            other => {
                panic!("conformance {CASE}: delete({expected:?}): expected NotFound, got {other:?}")
            }
        }
    }
}

/// `list` returns exactly the keys under the prefix, in key order.
pub async fn list_prefix_and_order<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "list_prefix_and_order";
    let base = unique_prefix(CASE);
    let mut last = 0;
    for name in [
        "pods/b", "podsx/z", "pods/c/x", "pod", "pods/a", "zz", "pods/c",
    ] {
        last = ok(
            CASE,
            "create",
            store.create(&format!("{base}{name}"), val(name)).await,
        )
        .mod_revision;
    }
    let names = |r: &ListResult| -> Vec<String> {
        r.items
            .iter()
            .map(|kv| {
                kv.key
                    .strip_prefix(base.as_str())
                    .unwrap_or(&kv.key)
                    .to_owned()
            })
            .collect()
    };
    let pods = list_at(store, CASE, &format!("{base}pods/"), None).await;
    assert_eq!(
        names(&pods),
        ["pods/a", "pods/b", "pods/c", "pods/c/x"],
        "conformance {CASE}: list pods/"
    );
    assert!(!pods.more, "conformance {CASE}: unlimited list has more");
    assert!(
        pods.revision >= last,
        "conformance {CASE}: list revision {} is behind write {last}",
        pods.revision
    );
    for kv in &pods.items {
        assert_eq!(
            kv.value,
            val(kv.key.strip_prefix(base.as_str()).unwrap_or_default()),
            "conformance {CASE}: value of {}",
            kv.key
        );
    }
    let all = list_at(store, CASE, &base, None).await;
    assert_eq!(
        names(&all),
        [
            "pod", "pods/a", "pods/b", "pods/c", "pods/c/x", "podsx/z", "zz"
        ],
        "conformance {CASE}: list everything"
    );
    let none = list_at(store, CASE, &format!("{base}none/"), None).await;
    assert!(
        none.items.is_empty(),
        "conformance {CASE}: list of an empty prefix: {:?}",
        none.items
    );
}

/// `limit` and `start_after` page through a list; `more` tells whether keys follow; pages read
/// at the first page's revision stay consistent while the data changes.
pub async fn list_paging<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "list_paging";
    let base = unique_prefix(CASE);
    for i in [3, 0, 4, 1, 2] {
        ok(
            CASE,
            "create",
            store
                .create(&format!("{base}k{i}"), val(&i.to_string()))
                .await,
        );
    }
    let key = |i: usize| format!("{base}k{i}");
    let page = |revision: Option<i64>, limit: usize, after: Option<String>| {
        let opts = ListOptions {
            revision,
            limit: Some(limit),
            start_after: after,
        };
        let prefix = base.clone();
        async move {
            ok(
                CASE,
                &format!("list limit {limit}"),
                store.list(&prefix, opts).await,
            )
        }
    };
    let keys =
        |r: &ListResult| -> Vec<String> { r.items.iter().map(|kv| kv.key.clone()).collect() };

    let p1 = page(None, 2, None).await;
    assert_eq!(keys(&p1), [key(0), key(1)], "conformance {CASE}: page 1");
    assert!(p1.more, "conformance {CASE}: page 1 must say more");
    let at = Some(p1.revision);

    // Change the data between pages: later pages read at the first page's revision.
    let k1 = ok(CASE, "get k1", store.get(&key(1)).await)
        .unwrap_or_else(|| panic!("conformance {CASE}: k1 missing"));
    ok(CASE, "delete k3", store.delete(&key(3), None).await);
    ok(CASE, "create k5", store.create(&key(5), val("5")).await);
    ok(
        CASE,
        "update k1",
        store.update(&key(1), val("changed"), k1.mod_revision).await,
    );

    let p2 = page(at, 2, Some(key(1))).await;
    assert_eq!(
        keys(&p2),
        [key(2), key(3)],
        "conformance {CASE}: page 2 at the first page's revision"
    );
    assert!(p2.more, "conformance {CASE}: page 2 must say more");
    assert_eq!(
        p2.revision, p1.revision,
        "conformance {CASE}: page 2 revision"
    );
    let p3 = page(at, 2, Some(key(3))).await;
    assert_eq!(keys(&p3), [key(4)], "conformance {CASE}: page 3");
    assert!(!p3.more, "conformance {CASE}: last page says more");
    let exact = page(at, 2, Some(key(2))).await;
    assert_eq!(
        keys(&exact),
        [key(3), key(4)],
        "conformance {CASE}: page ending on the last key"
    );
    assert!(
        !exact.more,
        "conformance {CASE}: a page ending on the last key says more"
    );

    let now = list_at(store, CASE, &base, None).await;
    assert_eq!(
        keys(&now),
        [key(0), key(1), key(2), key(4), key(5)],
        "conformance {CASE}: current list"
    );
    assert_eq!(
        now.items.get(1).map(|kv| kv.value.clone()),
        Some(val("changed")),
        "conformance {CASE}: current k1"
    );
    // A deleted key after the limit does not count as "more".
    ok(CASE, "delete k5", store.delete(&key(5), None).await);
    let cut = page(None, 4, None).await;
    assert_eq!(
        keys(&cut),
        [key(0), key(1), key(2), key(4)],
        "conformance {CASE}: list after deleting the last key"
    );
    assert!(
        !cut.more,
        "conformance {CASE}: a deleted key counted as more"
    );
    let unlimited = page(None, 0, None).await;
    assert_eq!(
        unlimited.items.len(),
        4,
        "conformance {CASE}: limit 0 means no limit"
    );
    assert!(!unlimited.more, "conformance {CASE}: limit 0 says more");
}

/// `list` at an older revision returns the state as it was then (MVCC); a future revision fails
/// with `FutureRevision`.
pub async fn list_at_old_revision<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "list_at_old_revision";
    let base = unique_prefix(CASE);
    let a1 = ok(
        CASE,
        "create a",
        store.create(&format!("{base}a"), val("a1")).await,
    );
    let b1 = ok(
        CASE,
        "create b",
        store.create(&format!("{base}b"), val("b1")).await,
    );
    let r1 = b1.mod_revision;
    let a2 = ok(
        CASE,
        "update a",
        store.update(&a1.key, val("a2"), a1.mod_revision).await,
    );
    ok(CASE, "delete b", store.delete(&b1.key, None).await);
    let c1 = ok(
        CASE,
        "create c",
        store.create(&format!("{base}c"), val("c1")).await,
    );

    let old = list_at(store, CASE, &base, Some(r1)).await;
    assert_eq!(
        old.items,
        [a1.clone(), b1.clone()],
        "conformance {CASE}: list at revision {r1}"
    );
    assert_eq!(
        old.revision, r1,
        "conformance {CASE}: list reports the revision it read at"
    );
    let older = list_at(store, CASE, &base, Some(a1.mod_revision)).await;
    assert_eq!(
        older.items,
        [a1],
        "conformance {CASE}: list before b existed"
    );
    let now = list_at(store, CASE, &base, None).await;
    assert_eq!(
        now.items,
        [a2, c1.clone()],
        "conformance {CASE}: current list"
    );
    let at_now = list_at(store, CASE, &base, Some(c1.mod_revision)).await;
    assert_eq!(
        at_now.items, now.items,
        "conformance {CASE}: list at the latest write's revision"
    );
    let zero = list_at(store, CASE, &base, Some(0)).await;
    assert_eq!(
        zero.items, now.items,
        "conformance {CASE}: list at revision 0 reads the current state"
    );

    let current = ok(CASE, "current_revision", store.current_revision().await);
    let future = current + FAR_FUTURE;
    match store
        .list(
            &base,
            ListOptions {
                revision: Some(future),
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::FutureRevision {
            requested,
            current: c,
        }) => {
            assert_eq!(
                requested, future,
                "conformance {CASE}: FutureRevision carries the request"
            );
            assert!(
                c >= current,
                "conformance {CASE}: FutureRevision's current revision went backwards"
            );
        }
        other => panic!(
            "conformance {CASE}: list at a future revision: expected FutureRevision, got {other:?}"
        ),
    }
}

/// A watch from a past revision first replays what happened since (with previous values), then
/// delivers live changes, in revision order.
pub async fn watch_backlog_then_live<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "watch_backlog_then_live";
    let base = unique_prefix(CASE);
    let a1 = ok(
        CASE,
        "create a",
        store.create(&format!("{base}a"), val("a1")).await,
    );
    let a2 = ok(
        CASE,
        "update a",
        store.update(&a1.key, val("a2"), a1.mod_revision).await,
    );
    let b1 = ok(
        CASE,
        "create b",
        store.create(&format!("{base}b"), val("b1")).await,
    );

    let mut w = ok(CASE, "watch", store.watch(&base, a1.mod_revision).await);
    let mut from_start = ok(
        CASE,
        "watch from before a",
        store.watch(&base, a1.mod_revision - 1).await,
    );
    let (_, del) = ok(
        CASE,
        "delete a",
        store.delete(&a2.key, Some(a2.mod_revision)).await,
    );
    let b2 = ok(
        CASE,
        "update b",
        store.update(&b1.key, val("b2"), b1.mod_revision).await,
    );

    expect_put(CASE, next_change(CASE, &mut w).await, &a2, Some(&a1));
    expect_put(CASE, next_change(CASE, &mut w).await, &b1, None);
    expect_delete(CASE, next_change(CASE, &mut w).await, &a2, del);
    expect_put(CASE, next_change(CASE, &mut w).await, &b2, Some(&b1));

    let mut last = 0;
    for want in [
        a1.mod_revision,
        a2.mod_revision,
        b1.mod_revision,
        del,
        b2.mod_revision,
    ] {
        let ev = next_change(CASE, &mut from_start).await;
        assert_eq!(
            ev.revision(),
            want,
            "conformance {CASE}: watch from before the first write: {ev:?}"
        );
        assert!(
            ev.revision() > last,
            "conformance {CASE}: watch revisions out of order"
        );
        last = ev.revision();
    }
}

/// A watch sees only keys under its prefix (`/x/` does not match `/x` or `/xy/`).
pub async fn watch_prefix_filtering<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "watch_prefix_filtering";
    let base = unique_prefix(CASE);
    let start = ok(CASE, "current_revision", store.current_revision().await);
    let mut w = ok(
        CASE,
        "watch",
        store.watch(&format!("{base}in/"), start).await,
    );
    let out = ok(
        CASE,
        "create out",
        store.create(&format!("{base}out/x"), val("o")).await,
    );
    ok(
        CASE,
        "create in (no slash)",
        store.create(&format!("{base}in"), val("i")).await,
    );
    ok(
        CASE,
        "create inx",
        store.create(&format!("{base}inx/y"), val("i")).await,
    );
    let inside = ok(
        CASE,
        "create in/a",
        store.create(&format!("{base}in/a"), val("a")).await,
    );
    expect_put(CASE, next_change(CASE, &mut w).await, &inside, None);
    ok(
        CASE,
        "update out",
        store.update(&out.key, val("o2"), out.mod_revision).await,
    );
    let (prev, del) = ok(CASE, "delete in/a", store.delete(&inside.key, None).await);
    expect_delete(CASE, next_change(CASE, &mut w).await, &prev, del);
}

/// Deletes show up in a watch's backlog and live, with the deleted value; a key re-created
/// afterwards is a fresh key (no previous value).
pub async fn watch_delete_events<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "watch_delete_events";
    let base = unique_prefix(CASE);
    let kv = ok(
        CASE,
        "create",
        store.create(&format!("{base}a"), val("v1")).await,
    );
    let (prev, del) = ok(
        CASE,
        "delete",
        store.delete(&kv.key, Some(kv.mod_revision)).await,
    );
    let mut w = ok(CASE, "watch", store.watch(&base, kv.mod_revision).await);
    expect_delete(CASE, next_change(CASE, &mut w).await, &prev, del);
    let again = ok(CASE, "re-create", store.create(&kv.key, val("v2")).await);
    expect_put(CASE, next_change(CASE, &mut w).await, &again, None);
    let (prev2, del2) = ok(CASE, "delete again", store.delete(&kv.key, None).await);
    assert_eq!(
        prev2, again,
        "conformance {CASE}: delete returns the re-created value"
    );
    expect_delete(CASE, next_change(CASE, &mut w).await, &again, del2);
}

/// A progress request is answered with a `Progress` event ordered after every earlier change.
pub async fn watch_progress<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "watch_progress";
    let base = unique_prefix(CASE);
    let start = ok(CASE, "current_revision", store.current_revision().await);
    let mut w = ok(CASE, "watch", store.watch(&base, start).await);
    let kv = ok(
        CASE,
        "create",
        store.create(&format!("{base}a"), val("v")).await,
    );
    w.progress.request_progress();
    // Progress reports about older revisions may come first; a newer one may not.
    loop {
        match next_event(CASE, &mut w).await {
            WatchEvent::Progress { revision } if revision < kv.mod_revision => continue,
            ev => {
                expect_put(CASE, ev, &kv, None);
                break;
            }
        }
    }
    let reported = match next_event(CASE, &mut w).await {
        WatchEvent::Progress { revision } => revision,
        other => panic!("conformance {CASE}: expected Progress, got {other:?}"),
    };
    assert!(
        reported >= kv.mod_revision,
        "conformance {CASE}: progress {reported} is behind the delivered change {}",
        kv.mod_revision
    );
    // With nothing new, progress is still answered, and never goes backwards.
    w.progress.request_progress();
    match next_event(CASE, &mut w).await {
        WatchEvent::Progress { revision } => {
            assert!(
                revision >= reported,
                "conformance {CASE}: progress went backwards ({revision} < {reported})"
            )
        }
        other => panic!("conformance {CASE}: expected Progress, got {other:?}"),
    }
}

/// Every write gets a revision above every earlier one, and `current_revision` keeps up.
pub async fn revisions_strictly_increase<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "revisions_strictly_increase";
    let base = unique_prefix(CASE);
    let mut last = ok(CASE, "current_revision", store.current_revision().await);
    let mut check = |rev: i64, what: &str| {
        assert!(
            rev > last,
            "conformance {CASE}: {what} got revision {rev}, not above {last}"
        );
        last = rev;
    };
    for i in 0..10 {
        let key = format!("{base}k{}", i % 3);
        match ok(CASE, "get", store.get(&key).await) {
            None => check(
                ok(CASE, "create", store.create(&key, val("c")).await).mod_revision,
                "create",
            ),
            Some(kv) if i % 2 == 0 => check(
                ok(
                    CASE,
                    "update",
                    store.update(&key, val("u"), kv.mod_revision).await,
                )
                .mod_revision,
                "update",
            ),
            Some(_) => check(
                ok(CASE, "delete", store.delete(&key, None).await).1,
                "delete",
            ),
        }
    }
    let current = ok(CASE, "current_revision", store.current_revision().await);
    assert!(
        current >= last,
        "conformance {CASE}: current revision {current} is behind the last write {last}"
    );
}

async fn counter_writer<S: Store + ?Sized>(
    store: &S,
    case: &str,
    key: &str,
    increments: usize,
) -> (usize, usize, Vec<i64>) {
    let mut conflicts = 0;
    let mut revisions = Vec::with_capacity(increments);
    while revisions.len() < increments {
        let kv = ok(case, "get counter", store.get(key).await)
            .unwrap_or_else(|| panic!("conformance {case}: counter vanished"));
        let n: u64 = std::str::from_utf8(&kv.value)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("conformance {case}: counter holds {:?}", kv.value));
        // Let the other writers read the same value before we write.
        YieldOnce(false).await;
        match store
            .update(key, val(&(n + 1).to_string()), kv.mod_revision)
            .await
        {
            Ok(new) => revisions.push(new.mod_revision),
            Err(Error::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("conformance {case}: update counter failed: {e} ({e:?})"),
        }
    }
    (revisions.len(), conflicts, revisions)
}

const WRITERS: usize = 8;
const INCREMENTS: usize = 25;

fn check_counter(case: &str, results: Vec<(usize, usize, Vec<i64>)>, last: Option<KeyValue>) {
    let successes: usize = results.iter().map(|r| r.0).sum();
    let conflicts: usize = results.iter().map(|r| r.1).sum();
    let mut revisions: Vec<i64> = results.into_iter().flat_map(|r| r.2).collect();
    let Some(last) = last else {
        panic!("conformance {case}: counter vanished")
    };
    let value = std::str::from_utf8(&last.value)
        .ok()
        .and_then(|s| s.parse::<usize>().ok());
    assert_eq!(
        value,
        Some(successes),
        "conformance {case}: counter does not equal the {successes} successful writes"
    );
    assert_eq!(
        successes,
        WRITERS * INCREMENTS,
        "conformance {case}: successful writes"
    );
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(
        revisions.len(),
        successes,
        "conformance {case}: two successful writes share a revision"
    );
    tracing::debug!(case, successes, conflicts, "counter done");
}

/// Eight concurrent writers do read-modify-write on one counter, retrying on `Conflict`: no
/// increment is lost, so the counter ends equal to the number of successful writes.
pub async fn concurrent_counter<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "concurrent_counter";
    let key = format!("{}counter", unique_prefix(CASE));
    ok(CASE, "create counter", store.create(&key, val("0")).await);
    let writers = (0..WRITERS).map(|_| counter_writer(store, CASE, &key, INCREMENTS));
    let results = futures::future::join_all(writers).await;
    check_counter(
        CASE,
        results,
        ok(CASE, "get counter", store.get(&key).await),
    );
}

/// Like [`concurrent_counter`], but each writer is its own tokio task, so on a multi-threaded
/// runtime the writers run in parallel. Needs a tokio runtime.
pub async fn concurrent_counter_parallel(store: Arc<dyn Store>) {
    const CASE: &str = "concurrent_counter_parallel";
    let key: Arc<str> = Arc::from(format!("{}counter", unique_prefix(CASE)));
    ok(CASE, "create counter", store.create(&key, val("0")).await);
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let store = Arc::clone(&store);
            let key = Arc::clone(&key);
            tokio::spawn(async move { counter_writer(&*store, CASE, &key, INCREMENTS).await })
        })
        .collect();
    let mut results = Vec::with_capacity(WRITERS);
    for task in tasks {
        match task.await {
            Ok(r) => results.push(r),
            Err(e) => panic!("conformance {CASE}: writer task failed: {e}"),
        }
    }
    check_counter(
        CASE,
        results,
        ok(CASE, "get counter", store.get(&key).await),
    );
}

/// After `compact(r)`, lists and watches before `r` fail with `Gone`, those at `r` or later
/// still work, compacting backwards is a no-op and compacting the future fails.
pub async fn compaction_gone<S: Store + ?Sized>(store: &S) {
    const CASE: &str = "compaction_gone";
    let base = unique_prefix(CASE);
    let kv1 = ok(
        CASE,
        "create",
        store.create(&format!("{base}a"), val("v1")).await,
    );
    let kv2 = ok(
        CASE,
        "update 1",
        store.update(&kv1.key, val("v2"), kv1.mod_revision).await,
    );
    let kv3 = ok(
        CASE,
        "update 2",
        store.update(&kv1.key, val("v3"), kv2.mod_revision).await,
    );
    ok(CASE, "compact", store.compact(kv2.mod_revision).await);
    let compacted = ok(CASE, "compacted_revision", store.compacted_revision().await);
    assert!(
        compacted >= kv2.mod_revision,
        "conformance {CASE}: compacted revision {compacted} is below {}",
        kv2.mod_revision
    );

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
            compacted: c,
        }) => {
            assert_eq!(
                requested, kv1.mod_revision,
                "conformance {CASE}: Gone carries the request"
            );
            assert!(
                c >= kv2.mod_revision,
                "conformance {CASE}: Gone carries the compacted revision"
            );
        }
        other => {
            panic!("conformance {CASE}: list before the compaction: expected Gone, got {other:?}")
        }
    }
    match store.watch(&base, kv1.mod_revision).await {
        Err(Error::Gone { requested, .. }) => assert_eq!(
            requested, kv1.mod_revision,
            "conformance {CASE}: Gone carries the request"
        ),
        Ok(mut w) => match tokio::time::timeout(WATCH_TIMEOUT, w.events.next()).await {
            // Some backends can only report it on the stream.
            Ok(Some(Err(Error::Gone { .. }))) => {}
            other => panic!(
                "conformance {CASE}: watch before the compaction: expected Gone, got {other:?}"
            ),
        },
        Err(e) => {
            panic!("conformance {CASE}: watch before the compaction: expected Gone, got {e:?}")
        }
    }

    let at = list_at(store, CASE, &base, Some(kv2.mod_revision)).await;
    assert_eq!(
        at.items,
        std::slice::from_ref(&kv2),
        "conformance {CASE}: list at the compaction revision"
    );
    let mut w = ok(
        CASE,
        "watch from the compaction revision",
        store.watch(&base, kv2.mod_revision).await,
    );
    expect_put(CASE, next_change(CASE, &mut w).await, &kv3, Some(&kv2));
    assert_eq!(
        ok(CASE, "get", store.get(&kv1.key).await),
        Some(kv3),
        "conformance {CASE}: get after compaction"
    );

    ok(
        CASE,
        "compact backwards",
        store.compact(kv1.mod_revision).await,
    );
    let after = ok(CASE, "compacted_revision", store.compacted_revision().await);
    assert!(
        after >= compacted,
        "conformance {CASE}: compacting backwards moved the compacted revision back"
    );
    let current = ok(CASE, "current_revision", store.current_revision().await);
    match store.compact(current + FAR_FUTURE).await {
        Err(Error::FutureRevision { .. }) => {}
        other => panic!(
            "conformance {CASE}: compacting the future: expected FutureRevision, got {other:?}"
        ),
    }
}
