//! [`SqliteStore`]: a durable embedded [`Store`] on SQLite, laid out like k3s's kine.
//!
//! The database is a log: one row per write, whose `id` is the write's revision.
//!
//! | column            | meaning                                                            |
//! |-------------------|--------------------------------------------------------------------|
//! | `id`              | the revision (`INTEGER PRIMARY KEY AUTOINCREMENT`)                 |
//! | `name`            | the key                                                            |
//! | `created`         | 1 if this write created the key                                    |
//! | `deleted`         | 1 if this write deleted the key (a tombstone; `value` is empty)    |
//! | `create_revision` | revision that created the key                                      |
//! | `prev_revision`   | revision of the key's previous row, 0 if none                      |
//! | `value`           | the value written                                                  |
//! | `old_value`       | the value before this write (NULL for a create)                    |
//!
//! A `meta` table holds the schema version and the compaction revision. The revision counter
//! lives in `sqlite_sequence`, so it never goes backwards, even when compaction removes the
//! newest rows.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::hub::WatchHub;
use crate::memory::EMPTY_STORE_REVISION;
use crate::{Error, KeyValue, ListOptions, ListResult, Result, Store, WatchEvent, WatchStream};

/// The layout of the database this code reads and writes.
const SCHEMA_VERSION: i64 = 1;

/// At most this many idle read connections are kept.
const MAX_IDLE_READERS: usize = 4;

/// How long a statement waits for a lock held by another connection before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB
);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1), ('compact_revision', 0);
";

/// Options for [`SqliteStore::open_with`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How often a background thread compacts the history; `None` (the default) never does, and
    /// history is only dropped by [`Store::compact`].
    pub compaction_interval: Option<Duration>,
    /// How many revisions of history the background compaction keeps below the current one.
    /// Default 10,000.
    pub keep_revisions: i64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            compaction_interval: None,
            keep_revisions: 10_000,
        }
    }
}

/// A durable [`Store`] in one SQLite file.
///
/// - Every write is one transaction in WAL mode with `synchronous=FULL`, and is acknowledged
///   only after it has committed, so an acknowledged write survives a crash or power loss.
/// - Revisions follow [`crate::MemoryStore`]'s: an empty store is at revision 1 and the first
///   write gets revision 2.
/// - One `SqliteStore` owns the file: [`SqliteStore::open`] takes an exclusive lock on
///   `<path>.lock` and a second open, in this process or another, fails until every clone of the
///   first store is dropped. Because nobody else writes, watches are served in-process: from the
///   log for the backlog, then from each commit.
/// - All SQLite work runs on tokio's blocking threads, so the store must be used inside a tokio
///   runtime.
/// - Each watch has its own unbounded queue; a watcher that never reads keeps its events in
///   memory until it is dropped.
///
/// Cloning is cheap: clones share the same database connection.
#[derive(Clone)]
pub struct SqliteStore {
    /// `None` once [`Store::close`] ran; every later call fails.
    slot: Arc<std::sync::RwLock<Option<Arc<Inner>>>>,
    path: PathBuf,
}

struct Inner {
    path: PathBuf,
    /// The only connection that writes. Holding it excludes writers and compaction.
    writer: Mutex<Connection>,
    /// Idle read-only connections (WAL lets them read while the writer writes).
    readers: Mutex<Vec<Connection>>,
    /// The last committed revision.
    revision: AtomicI64,
    /// The compaction revision.
    compacted: AtomicI64,
    hub: Arc<WatchHub>,
    /// Dropping it stops the background compaction thread.
    _stop_compactor: Option<std_mpsc::Sender<()>>,
    /// Held for the store's lifetime; dropped (unlocked) after the connections are closed.
    _lock: File,
}

/// Attaches a context to a SQLite error.
trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::backend(what(), e))
    }
}

fn corrupt(what: String) -> Error {
    tracing::error!(%what, "sqlite store data is inconsistent");
    Error::Backend {
        context: format!("database is inconsistent: {what}"),
        source: None,
    }
}

/// The smallest string above every string that starts with `prefix`, if there is one.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut end = prefix.to_owned();
    while let Some(c) = end.pop() {
        let next = match c {
            '\u{D7FF}' => Some('\u{E000}'),
            char::MAX => None,
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            end.push(next);
            return Some(end);
        }
    }
    None
}

fn last_revision(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'log'")?
        .query_row([], |r| r.get(0))
}

fn compact_revision(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = 'compact_revision'")?
        .query_row([], |r| r.get(0))
}

/// The newest row of a key.
struct Latest {
    id: i64,
    deleted: bool,
    create_revision: i64,
    value: Vec<u8>,
}

impl Latest {
    fn live(self, key: &str) -> Option<KeyValue> {
        (!self.deleted).then(|| KeyValue {
            key: key.to_owned(),
            value: Bytes::from(self.value),
            create_revision: self.create_revision,
            mod_revision: self.id,
        })
    }
}

fn latest(conn: &Connection, key: &str) -> Result<Option<Latest>> {
    conn.prepare_cached(
        "SELECT id, deleted, create_revision, value FROM log WHERE name = ?1 ORDER BY id DESC LIMIT 1",
    )
    .and_then(|mut st| {
        st.query_row([key], |r| {
            Ok(Latest { id: r.get(0)?, deleted: r.get(1)?, create_revision: r.get(2)?, value: r.get(3)? })
        })
        .optional()
    })
    .ctx(|| format!("reading key {key}"))
}

/// One row to append to the log.
struct NewRow<'a> {
    id: i64,
    name: &'a str,
    created: bool,
    deleted: bool,
    create_revision: i64,
    prev_revision: i64,
    value: &'a [u8],
    old_value: Option<&'a [u8]>,
}

fn insert(conn: &Connection, row: &NewRow<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO log (id, name, created, deleted, create_revision, prev_revision, value, old_value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(params![
            row.id,
            row.name,
            row.created,
            row.deleted,
            row.create_revision,
            row.prev_revision,
            row.value,
            row.old_value
        ])
    })
    .ctx(|| format!("writing revision {} of key {}", row.id, row.name))?;
    Ok(())
}

/// The watch event of one log row.
fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<WatchEvent>> {
    let id: i64 = row.get(0)?;
    let name: String = row.get(1)?;
    let created: bool = row.get(2)?;
    let deleted: bool = row.get(3)?;
    let create_revision: i64 = row.get(4)?;
    let prev_revision: i64 = row.get(5)?;
    let value: Vec<u8> = row.get(6)?;
    let old_value: Option<Vec<u8>> = row.get(7)?;
    let prev = |name: String| {
        old_value.map(|v| KeyValue {
            key: name,
            value: Bytes::from(v),
            create_revision,
            mod_revision: prev_revision,
        })
    };
    Ok(if deleted {
        match prev(name.clone()) {
            Some(prev) => Ok(WatchEvent::Delete { prev, revision: id }),
            None => Err(corrupt(format!(
                "delete of {name} at revision {id} has no old value"
            ))),
        }
    } else if created {
        let kv = KeyValue {
            key: name,
            value: Bytes::from(value),
            create_revision,
            mod_revision: id,
        };
        Ok(WatchEvent::Put { kv, prev: None })
    } else {
        match prev(name.clone()) {
            Some(prev) => {
                let kv = KeyValue {
                    key: name,
                    value: Bytes::from(value),
                    create_revision,
                    mod_revision: id,
                };
                Ok(WatchEvent::Put {
                    kv,
                    prev: Some(prev),
                })
            }
            None => Err(corrupt(format!(
                "update of {name} at revision {id} has no old value"
            ))),
        }
    })
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let conn =
        Connection::open_with_flags(path, flags).ctx(|| "opening the database".to_owned())?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx(|| "setting busy_timeout".to_owned())?;
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection> {
    open_connection(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
}

/// Opens the writing connection, switches to WAL with full fsync, and creates the schema.
fn open_writer(path: &Path) -> Result<Connection> {
    let mut conn = open_connection(path, OpenFlags::default())?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .ctx(|| "switching to WAL mode".to_owned())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Backend {
            context: format!("the database refused WAL mode (journal_mode is {mode})"),
            source: None,
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .ctx(|| "setting synchronous=FULL".to_owned())?;

    // One transaction, so a crash while creating the schema leaves no half-made database.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx(|| "starting the schema transaction".to_owned())?;
    tx.execute_batch(SCHEMA)
        .ctx(|| "creating the schema".to_owned())?;
    tx.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'log', ?1
         WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'log')",
        [EMPTY_STORE_REVISION],
    )
    .ctx(|| "seeding the revision counter".to_owned())?;
    let version: i64 = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .ctx(|| "reading the schema version".to_owned())?;
    if version != SCHEMA_VERSION {
        return Err(Error::Backend {
            context: format!(
                "unsupported schema version {version} (this build knows {SCHEMA_VERSION})"
            ),
            source: None,
        });
    }
    tx.commit().ctx(|| "committing the schema".to_owned())?;
    Ok(conn)
}

/// Takes the exclusive lock on `<path>.lock`.
fn lock_database(path: &Path) -> Result<File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| Error::backend(format!("opening lock file {}", lock_path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Backend {
            context: format!(
                "database {} is in use by another SqliteStore, in this process or another \
                 (lock file {} is held)",
                path.display(),
                lock_path.display()
            ),
            source: None,
        }),
        Err(TryLockError::Error(e)) => Err(Error::backend(
            format!("locking {}", lock_path.display()),
            e,
        )),
    }
}

impl Inner {
    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection rolls its transaction back on unwind, so the
        // connection is still usable.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `op` on an idle read connection.
    fn read<T>(&self, op: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = op(&conn);
        if conn.is_autocommit() {
            let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }

    /// Runs one write as a transaction at the next revision, then publishes its event.
    /// `op` gets the transaction and the revision; it returns the answer and the event.
    fn write<T>(&self, op: impl FnOnce(&Connection, i64) -> Result<(T, WatchEvent)>) -> Result<T> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| "starting a write transaction".to_owned())?;
        let revision = last_revision(&tx).ctx(|| "reading the revision counter".to_owned())? + 1;
        let (answer, event) = op(&tx, revision)?;
        if let Err(e) = tx.commit() {
            self.after_failed_commit(&conn);
            return Err(Error::backend(format!("committing revision {revision}"), e));
        }
        self.revision.store(revision, Ordering::SeqCst);
        self.hub.publish(event);
        Ok(answer)
    }

    /// After a failed COMMIT nobody knows whether the write is durable; watchers cannot be told
    /// exactly what happened, so every watch ends with an error (watchers re-list), and the
    /// revision is read back from the database.
    fn after_failed_commit(&self, conn: &Connection) {
        tracing::error!(path = %self.path.display(), "sqlite commit failed; ending every watch");
        self.hub.fail_all(|| Error::Backend {
            context: format!(
                "sqlite {}: a commit failed, so this watch cannot vouch for what follows; re-list",
                self.path.display()
            ),
            source: None,
        });
        match last_revision(conn) {
            Ok(revision) => self.revision.store(revision, Ordering::SeqCst),
            Err(e) => tracing::error!(error = %e, "re-reading the revision after a failed commit"),
        }
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.read(|conn| Ok(latest(conn, key)?.and_then(|l| l.live(key))))
    }

    fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
        self.read(|conn| {
            // One read transaction: the revision, the compaction revision and the rows all come
            // from the same snapshot.
            let tx = conn
                .unchecked_transaction()
                .ctx(|| "starting a read transaction".to_owned())?;
            let current = last_revision(&tx).ctx(|| "reading the revision counter".to_owned())?;
            let compacted =
                compact_revision(&tx).ctx(|| "reading the compaction revision".to_owned())?;
            let at = crate::resolve_read_revision(opts.revision, current, compacted)?;
            let limit = opts.limit.filter(|&l| l > 0);
            let (lower_op, lower) = match opts.start_after.as_deref() {
                Some(after) if after >= prefix => (">", after),
                _ => (">=", prefix),
            };
            let end = prefix_end(prefix);
            let upper = if end.is_some() {
                "AND name < ?3"
            } else {
                "AND ?3 IS NULL"
            };
            // In key order, straight off the (name, id) index: each key's newest row at `at`
            // (SQLite takes the bare columns from the row holding MAX(id)). Tombstones are
            // skipped here, and stepping stops once the page is full, so a page costs its size
            // rather than the size of the prefix.
            let sql = format!(
                "SELECT name, MAX(id), deleted, create_revision, value FROM log
                 WHERE name {lower_op} ?1 {upper} AND id <= ?2
                 GROUP BY name ORDER BY name"
            );
            let mut stmt = tx
                .prepare_cached(&sql)
                .ctx(|| "preparing list".to_owned())?;
            let mut rows = stmt
                .query(params![lower, at, end])
                .ctx(|| format!("listing {prefix}"))?;
            let mut items = Vec::new();
            let mut more = false;
            while let Some(row) = rows.next().ctx(|| format!("listing {prefix}"))? {
                let read = || -> rusqlite::Result<Option<KeyValue>> {
                    if row.get::<_, bool>(2)? {
                        return Ok(None);
                    }
                    Ok(Some(KeyValue {
                        key: row.get(0)?,
                        mod_revision: row.get(1)?,
                        create_revision: row.get(3)?,
                        value: Bytes::from(row.get::<_, Vec<u8>>(4)?),
                    }))
                };
                let Some(kv) = read().ctx(|| format!("listing {prefix}"))? else {
                    continue;
                };
                if !kv.key.starts_with(prefix) {
                    break;
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    more = true;
                    break;
                }
                items.push(kv);
            }
            Ok(ListResult {
                items,
                revision: at,
                more,
            })
        })
    }

    fn create(&self, key: &str, value: &Bytes) -> Result<KeyValue> {
        self.write(|tx, rev| {
            let latest = latest(tx, key)?;
            if latest.as_ref().is_some_and(|l| !l.deleted) {
                return Err(Error::AlreadyExists {
                    key: key.to_owned(),
                });
            }
            insert(
                tx,
                &NewRow {
                    id: rev,
                    name: key,
                    created: true,
                    deleted: false,
                    create_revision: rev,
                    prev_revision: latest.map_or(0, |l| l.id),
                    value,
                    old_value: None,
                },
            )?;
            let kv = KeyValue {
                key: key.to_owned(),
                value: value.clone(),
                create_revision: rev,
                mod_revision: rev,
            };
            Ok((kv.clone(), WatchEvent::Put { kv, prev: None }))
        })
    }

    fn update(&self, key: &str, value: &Bytes, expected: i64) -> Result<KeyValue> {
        self.write(|tx, rev| {
            let prev =
                latest(tx, key)?
                    .and_then(|l| l.live(key))
                    .ok_or_else(|| Error::NotFound {
                        key: key.to_owned(),
                    })?;
            if prev.mod_revision != expected {
                return Err(Error::Conflict {
                    key: key.to_owned(),
                    expected,
                    actual: prev.mod_revision,
                });
            }
            insert(
                tx,
                &NewRow {
                    id: rev,
                    name: key,
                    created: false,
                    deleted: false,
                    create_revision: prev.create_revision,
                    prev_revision: prev.mod_revision,
                    value,
                    old_value: Some(&prev.value[..]),
                },
            )?;
            let kv = KeyValue {
                key: key.to_owned(),
                value: value.clone(),
                create_revision: prev.create_revision,
                mod_revision: rev,
            };
            Ok((
                kv.clone(),
                WatchEvent::Put {
                    kv,
                    prev: Some(prev),
                },
            ))
        })
    }

    fn delete(&self, key: &str, expected: Option<i64>) -> Result<(KeyValue, i64)> {
        self.write(|tx, rev| {
            let prev =
                latest(tx, key)?
                    .and_then(|l| l.live(key))
                    .ok_or_else(|| Error::NotFound {
                        key: key.to_owned(),
                    })?;
            if let Some(expected) = expected
                && expected != prev.mod_revision
            {
                return Err(Error::Conflict {
                    key: key.to_owned(),
                    expected,
                    actual: prev.mod_revision,
                });
            }
            insert(
                tx,
                &NewRow {
                    id: rev,
                    name: key,
                    created: false,
                    deleted: true,
                    create_revision: prev.create_revision,
                    prev_revision: prev.mod_revision,
                    value: &[],
                    old_value: Some(&prev.value[..]),
                },
            )?;
            Ok((
                (prev.clone(), rev),
                WatchEvent::Delete {
                    prev,
                    revision: rev,
                },
            ))
        })
    }

    fn watch(self: &Arc<Self>, prefix: &str, from: i64) -> Result<WatchStream> {
        // Holding the writer excludes commits from the backlog read until the watch is
        // registered: no gap, no duplicate.
        let conn = self.writer();
        let compacted = self.compacted.load(Ordering::SeqCst);
        if from < compacted {
            return Err(Error::Gone {
                requested: from,
                compacted,
            });
        }
        let end = prefix_end(prefix);
        let upper = if end.is_some() {
            "AND name < ?3"
        } else {
            "AND ?3 IS NULL"
        };
        let sql = format!(
            "SELECT id, name, created, deleted, create_revision, prev_revision, value, old_value
             FROM log WHERE id > ?1 AND name >= ?2 {upper} ORDER BY id"
        );
        let mut stmt = conn
            .prepare_cached(&sql)
            .ctx(|| "preparing the watch backlog".to_owned())?;
        let rows = stmt
            .query_map(params![from, prefix, end], event_from_row)
            .ctx(|| format!("reading the watch backlog of {prefix} after {from}"))?;
        let mut backlog = Vec::new();
        for row in rows {
            let event =
                row.ctx(|| format!("reading the watch backlog of {prefix} after {from}"))??;
            backlog.push(event);
        }
        Ok(self.hub.subscribe(prefix, from, backlog))
    }

    fn compact(&self, revision: i64) -> Result<()> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| "starting the compaction transaction".to_owned())?;
        let current = last_revision(&tx).ctx(|| "reading the revision counter".to_owned())?;
        let compacted =
            compact_revision(&tx).ctx(|| "reading the compaction revision".to_owned())?;
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        if revision <= compacted {
            return Ok(());
        }
        // Rows at or below `compacted` were dealt with by earlier compactions. First the rows
        // that a later write at or below `revision` superseded (tombstones included: their
        // prev_revision points at the value they deleted), then the tombstones themselves.
        let superseded = tx
            .execute(
                "DELETE FROM log WHERE id IN
                 (SELECT prev_revision FROM log WHERE id > ?1 AND id <= ?2 AND prev_revision != 0)",
                [compacted, revision],
            )
            .ctx(|| format!("compacting superseded rows up to {revision}"))?;
        let tombstones = tx
            .execute(
                "DELETE FROM log WHERE id > ?1 AND id <= ?2 AND deleted != 0",
                [compacted, revision],
            )
            .ctx(|| format!("compacting tombstones up to {revision}"))?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'compact_revision'",
            [revision],
        )
        .ctx(|| "recording the compaction revision".to_owned())?;
        if let Err(e) = tx.commit() {
            if let Ok(c) = compact_revision(&conn) {
                self.compacted.store(c, Ordering::SeqCst);
            }
            return Err(Error::backend(
                format!("committing the compaction to {revision}"),
                e,
            ));
        }
        self.compacted.store(revision, Ordering::SeqCst);
        tracing::debug!(path = %self.path.display(), revision, superseded, tombstones, "sqlite store compacted");
        Ok(())
    }
}

/// The background compaction loop: every `interval`, compacts to `keep` revisions below the
/// current one. Ends when the store is dropped.
fn compaction_loop(
    inner: Weak<Inner>,
    stop: std_mpsc::Receiver<()>,
    interval: Duration,
    keep: i64,
) {
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(inner) = inner.upgrade() else { return };
        let target = inner.revision.load(Ordering::SeqCst).saturating_sub(keep);
        if target > inner.compacted.load(Ordering::SeqCst)
            && let Err(e) = inner.compact(target)
        {
            tracing::warn!(path = %inner.path.display(), error = %e, "background compaction failed");
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, with default [`SqliteOptions`]: no
    /// background compaction.
    ///
    /// Blocks while it opens the file; call it at startup or from a blocking task. Fails with
    /// [`Error::Backend`] if another `SqliteStore` holds the database, or if the file is not a
    /// database this build can use.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if needed) the store at `path` with `options`. See [`SqliteStore::open`].
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let in_path = |e: Error| match e {
            Error::Backend { context, source } => Error::Backend {
                context: format!("sqlite {}: {context}", path.display()),
                source,
            },
            other => other,
        };
        if options.compaction_interval.is_some_and(|i| i.is_zero()) {
            return Err(in_path(Error::Backend {
                context: "SqliteOptions::compaction_interval must be above zero".to_owned(),
                source: None,
            }));
        }
        if options.keep_revisions < 0 {
            return Err(in_path(Error::Backend {
                context: format!(
                    "SqliteOptions::keep_revisions is negative ({})",
                    options.keep_revisions
                ),
                source: None,
            }));
        }
        let lock = lock_database(&path)?;
        let writer = open_writer(&path).map_err(in_path)?;
        let revision = last_revision(&writer)
            .ctx(|| "reading the revision counter".to_owned())
            .map_err(in_path)?;
        let compacted = compact_revision(&writer)
            .ctx(|| "reading the compaction revision".to_owned())
            .map_err(in_path)?;
        let (stop_tx, stop_rx) = match options.compaction_interval {
            Some(_) => {
                let (tx, rx) = std_mpsc::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let inner = Arc::new(Inner {
            path: path.clone(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            hub: WatchHub::new(revision),
            _stop_compactor: stop_tx,
            _lock: lock,
        });
        if let (Some(interval), Some(stop)) = (options.compaction_interval, stop_rx) {
            let weak = Arc::downgrade(&inner);
            let keep = options.keep_revisions;
            std::thread::Builder::new()
                .name("kyb-sqlite-compactor".to_owned())
                .spawn(move || compaction_loop(weak, stop, interval, keep))
                .map_err(|e| {
                    in_path(Error::backend(
                        "starting the background compaction thread",
                        e,
                    ))
                })?;
        }
        tracing::info!(path = %path.display(), revision, compacted, "sqlite store opened");
        let path = inner.path.clone();
        Ok(SqliteStore {
            slot: Arc::new(std::sync::RwLock::new(Some(inner))),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn inner(&self) -> Result<Arc<Inner>> {
        let slot = self.slot.read().unwrap_or_else(PoisonError::into_inner);
        slot.clone().ok_or_else(|| Error::Backend {
            context: format!("sqlite {}: the store is closed", self.path.display()),
            source: None,
        })
    }

    /// Runs SQLite's `PRAGMA integrity_check`; fails with [`Error::Backend`] listing the
    /// problems if the file is damaged.
    pub async fn check_integrity(&self) -> Result<()> {
        self.run("integrity check", |inner| {
            let conn = inner.writer();
            let mut stmt = conn
                .prepare("PRAGMA integrity_check")
                .ctx(|| "preparing integrity_check".to_owned())?;
            let problems = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .ctx(|| "running integrity_check".to_owned())?;
            if problems.len() == 1 && problems.first().is_some_and(|p| p == "ok") {
                Ok(())
            } else {
                Err(Error::Backend {
                    context: format!("integrity check failed: {}", problems.join("; ")),
                    source: None,
                })
            }
        })
        .await
    }

    /// Runs `f` on a blocking thread, naming the database in backend errors.
    async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Arc<Inner>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = self.path.display().to_string();
        let inner = self.inner()?;
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::backend(
                format!("sqlite {path}: {what}: SqliteStore must be used inside a tokio runtime"),
                e,
            )
        })?;
        let result = handle
            .spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| {
                Error::backend(
                    format!("sqlite {path}: {what}: the blocking task failed"),
                    e,
                )
            })?;
        result.map_err(|e| match e {
            Error::Backend { context, source } => Error::Backend {
                context: format!("sqlite {path}: {what}: {context}"),
                source,
            },
            other => other,
        })
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("open", &self.inner().is_ok())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.run("get", move |inner| inner.get(&key)).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_owned();
        self.run("list", move |inner| inner.list(&prefix, &opts))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let key = key.to_owned();
        self.run("create", move |inner| inner.create(&key, &value))
            .await
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<KeyValue> {
        let key = key.to_owned();
        self.run("update", move |inner| {
            inner.update(&key, &value, expected_revision)
        })
        .await
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        let key = key.to_owned();
        self.run("delete", move |inner| inner.delete(&key, expected_revision))
            .await
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        let prefix = prefix.to_owned();
        self.run("watch", move |inner| inner.watch(&prefix, from_revision))
            .await
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.run("compact", move |inner| inner.compact(revision))
            .await
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.inner()?.revision.load(Ordering::SeqCst))
    }

    async fn compacted_revision(&self) -> Result<i64> {
        Ok(self.inner()?.compacted.load(Ordering::SeqCst))
    }

    /// Closes the database and releases its lock file, waiting (up to 10 s) for in-flight
    /// requests and open watches to finish. Later calls on any clone fail.
    async fn close(&self) -> Result<()> {
        let taken = self
            .slot
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(inner) = taken else { return Ok(()) };
        let weak = Arc::downgrade(&inner);
        drop(inner);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while weak.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Backend {
                    context: format!(
                        "sqlite {}: still in use by {} open requests or watches after 10 s",
                        self.path.display(),
                        weak.strong_count()
                    ),
                    source: None,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tracing::info!(path = %self.path.display(), "sqlite store closed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_string() {
        assert_eq!(prefix_end("/a/").as_deref(), Some("/a0"));
        assert_eq!(prefix_end("").as_deref(), None);
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }
}
