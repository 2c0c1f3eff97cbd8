//! The shared conformance suite against [`SqliteStore`], plus what only a durable store has:
//! reopening, the exclusive lock and compaction on disk.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TempDir;
use futures::StreamExt;
use kybernetes_store::{
    Error, ListOptions, SqliteOptions, SqliteStore, Store, WatchEvent, conformance,
};

fn log_rows(db: &Path) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open raw");
    conn.query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))
        .expect("count rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = TempDir::new("conformance");
    let store = SqliteStore::open(dir.db()).expect("open");
    conformance::run_all_arc(Arc::new(store.clone())).await;
    store.check_integrity().await.expect("integrity");
}

#[tokio::test]
async fn second_open_fails_while_the_first_is_alive() {
    let dir = TempDir::new("lock");
    let store = SqliteStore::open(dir.db()).expect("first open");
    let clone = store.clone();
    match SqliteStore::open(dir.db()) {
        Err(Error::Backend { context, .. }) => {
            assert!(context.contains("in use"), "unclear message: {context}")
        }
        other => panic!("second open: expected Backend error, got {other:?}"),
    }
    drop(store);
    assert!(
        SqliteStore::open(dir.db()).is_err(),
        "a clone still holds the database"
    );
    drop(clone);
    SqliteStore::open(dir.db()).expect("open after every clone is dropped");
}

#[tokio::test]
async fn data_history_and_compaction_survive_reopening() {
    let dir = TempDir::new("reopen");
    let (a1, a2, b, del, current) = {
        let store = SqliteStore::open(dir.db()).expect("open");
        assert_eq!(
            store.current_revision().await.expect("rev"),
            1,
            "empty store revision"
        );
        let a1 = store
            .create("/r/a", Bytes::from_static(b"1"))
            .await
            .expect("create a");
        assert_eq!(a1.mod_revision, 2, "first write revision");
        let a2 = store
            .update("/r/a", Bytes::from_static(b"2"), a1.mod_revision)
            .await
            .expect("update a");
        let b = store
            .create("/r/b", Bytes::from_static(b"b"))
            .await
            .expect("create b");
        let (_, del) = store.delete("/r/b", None).await.expect("delete b");
        let current = store.current_revision().await.expect("rev");
        (a1, a2, b, del, current)
    };
    let store = SqliteStore::open(dir.db()).expect("reopen");
    assert_eq!(
        store.current_revision().await.expect("rev"),
        current,
        "revision after reopen"
    );
    assert_eq!(store.get("/r/a").await.expect("get"), Some(a2.clone()));
    assert_eq!(store.get("/r/b").await.expect("get"), None);
    let old = store
        .list(
            "/r/",
            ListOptions {
                revision: Some(b.mod_revision),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(old.items, [a2.clone(), b.clone()]);

    // The watch backlog comes from the log on disk.
    let mut w = store.watch("/r/", 0).await.expect("watch");
    let mut revs = Vec::new();
    for _ in 0..4 {
        match tokio::time::timeout(Duration::from_secs(5), w.events.next()).await {
            Ok(Some(Ok(ev))) => revs.push(ev.revision()),
            other => panic!("backlog: {other:?}"),
        }
    }
    assert_eq!(
        revs,
        [a1.mod_revision, a2.mod_revision, b.mod_revision, del]
    );

    store.compact(del).await.expect("compact");
    assert_eq!(
        log_rows(&dir.db()),
        1,
        "only the live value of /r/a is left"
    );
    drop(w);
    drop(store);

    let store = SqliteStore::open(dir.db()).expect("reopen after compaction");
    assert_eq!(store.compacted_revision().await.expect("compacted"), del);
    assert_eq!(
        store.current_revision().await.expect("rev"),
        current,
        "compaction never moves the revision back"
    );
    assert!(matches!(
        store
            .list(
                "/r/",
                ListOptions {
                    revision: Some(a2.mod_revision),
                    ..Default::default()
                }
            )
            .await,
        Err(Error::Gone { .. })
    ));
    let next = store
        .create("/r/c", Bytes::new())
        .await
        .expect("create after reopen");
    assert_eq!(
        next.mod_revision,
        current + 1,
        "revisions continue after compacting the newest rows"
    );
}

#[tokio::test]
async fn watch_of_the_future_sees_live_writes_only() {
    let dir = TempDir::new("watch");
    let store = SqliteStore::open(dir.db()).expect("open");
    let current = store.current_revision().await.expect("rev");
    let mut w = store.watch("/w/", current + 1).await.expect("watch");
    store.create("/w/a", Bytes::new()).await.expect("create a");
    let b = store.create("/w/b", Bytes::new()).await.expect("create b");
    match tokio::time::timeout(Duration::from_secs(5), w.events.next()).await {
        Ok(Some(Ok(WatchEvent::Put { kv, prev: None }))) => assert_eq!(kv, b),
        other => panic!("expected the put of /w/b, got {other:?}"),
    }
}

#[tokio::test]
async fn background_compaction_keeps_the_window() {
    let dir = TempDir::new("background");
    let options = SqliteOptions {
        compaction_interval: Some(Duration::from_millis(10)),
        keep_revisions: 5,
    };
    let store = SqliteStore::open_with(dir.db(), options).expect("open");
    let mut kv = store
        .create("/bg/counter", Bytes::from_static(b"0"))
        .await
        .expect("create");
    for i in 1..30 {
        kv = store
            .update("/bg/counter", Bytes::from(i.to_string()), kv.mod_revision)
            .await
            .expect("update");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let compacted = store.compacted_revision().await.expect("compacted");
        if compacted >= kv.mod_revision - 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "background compaction stalled at {compacted}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(log_rows(&dir.db()) <= 6, "superseded rows were not removed");
    assert_eq!(store.get("/bg/counter").await.expect("get"), Some(kv));
}

#[test]
fn outside_a_tokio_runtime_is_an_error_not_a_panic() {
    let dir = TempDir::new("noruntime");
    let store = SqliteStore::open(dir.db()).expect("open");
    match futures::executor::block_on(store.get("/x")) {
        Err(Error::Backend { context, .. }) => assert!(context.contains("tokio"), "{context}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
}

#[test]
fn invalid_options_and_files_are_rejected() {
    let dir = TempDir::new("invalid");
    let zero = SqliteOptions {
        compaction_interval: Some(Duration::ZERO),
        keep_revisions: 1,
    };
    assert!(matches!(
        SqliteStore::open_with(dir.db(), zero),
        Err(Error::Backend { .. })
    ));
    std::fs::write(
        dir.db(),
        b"this is not a database, just some text long enough to matter",
    )
    .expect("write");
    match SqliteStore::open(dir.db()) {
        Err(Error::Backend { context, .. }) => assert!(context.contains("store.db"), "{context}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
}
