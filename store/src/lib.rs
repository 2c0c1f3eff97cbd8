//! kybernetes-store: the `Store` trait (keyed bytes with a global revision, like etcd) and its
//! backends: [`MemoryStore`], `SqliteStore` (feature `sqlite`) and `EtcdStore` (feature `etcd`).
//!
//! The API server keeps Kubernetes objects here under keys of the form
//! `/registry/<group>/<resource>/<namespace>/<name>`. Every write bumps one global revision;
//! that revision is what clients see as `metadata.resourceVersion`.
//!
//! # How to implement your own store
//!
//! Implement [`Store`] and run the shared conformance suite from your tests:
//!
//! ```no_run
//! # async fn demo() {
//! let store = kybernetes_store::MemoryStore::default();
//! kybernetes_store::conformance::run_all(&store).await;
//! # }
//! ```
//!
//! The rules every backend must keep:
//! - revisions are strictly increasing integers starting above 0, one per successful write
//!   (the built-in backends, like etcd, start empty at revision 1, so the first write gets 2);
//! - `create` fails with [`Error::AlreadyExists`] if the key is present;
//! - `update` and `delete` fail with [`Error::NotFound`] if the key is absent, and with
//!   [`Error::Conflict`] (carrying the actual revision) when an expected revision differs from
//!   the key's `mod_revision`;
//! - `watch(prefix, from)` delivers every change with revision `> from`, in order, with no gaps,
//!   each with the key's previous value, and fails with [`Error::Gone`] when `from` is older than
//!   the compacted revision;
//! - `list` at an explicit revision returns the state as it was at that revision (MVCC), or
//!   [`Error::Gone`] once that revision is compacted, or [`Error::FutureRevision`] if it has not
//!   happened yet;
//! - `compact(r)` keeps reads and watches at `r` and later working.
//!
//! [`MemoryStore`] is the worked example.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub mod conformance;
#[cfg(feature = "etcd")]
mod etcd;
mod hub;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "etcd")]
pub use etcd::{EtcdOptions, EtcdStore, EtcdTlsOptions};
pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore};

/// Errors a store returns. The API server maps them to Kubernetes `Status` codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `create` on a key that already exists (HTTP 409 AlreadyExists).
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// The key does not exist (HTTP 404).
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The expected revision did not match (HTTP 409 Conflict).
    #[error("key {key}: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: i64,
        /// The revision the key has now.
        actual: i64,
    },
    /// The requested revision has been compacted (HTTP 410 Gone).
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Gone {
        /// The revision asked for.
        requested: i64,
        /// The compaction revision.
        compacted: i64,
    },
    /// The requested revision is in the future.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The current revision.
        current: i64,
    },
    /// The backend failed (I/O, connection, corruption).
    #[error("store backend: {context}")]
    Backend {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// A backend error with context and a source.
    pub fn backend(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Backend {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// The revision a `list` reads at: `requested` if it is positive (checked against the history the
/// store keeps), else `current`. Shared by the backends.
pub(crate) fn resolve_read_revision(
    requested: Option<i64>,
    current: i64,
    compacted: i64,
) -> Result<i64> {
    match requested {
        Some(r) if r > 0 => {
            if r > current {
                Err(Error::FutureRevision {
                    requested: r,
                    current,
                })
            } else if r < compacted {
                Err(Error::Gone {
                    requested: r,
                    compacted,
                })
            } else {
                Ok(r)
            }
        }
        _ => Ok(current),
    }
}

/// `Result` with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One stored key with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key.
    pub key: String,
    /// The stored bytes.
    pub value: Bytes,
    /// Revision of the write that created the key.
    pub create_revision: i64,
    /// Revision of the last write to the key; this is the object's resourceVersion.
    pub mod_revision: i64,
}

/// Options for [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Read the state as of this revision; `None` (or a revision `<= 0`, as in etcd) reads the
    /// current state. Continue a paged list at the first page's [`ListResult::revision`] to get
    /// a consistent snapshot.
    pub revision: Option<i64>,
    /// At most this many items; `None` or 0 means no limit.
    pub limit: Option<usize>,
    /// Start strictly after this key (used to continue a paged list).
    pub start_after: Option<String>,
}

/// The answer to [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListResult {
    /// Items in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at (the store's current revision if none was asked).
    pub revision: i64,
    /// True when `limit` cut the list short and more keys follow the last item.
    pub more: bool,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated. `prev` is the value before, if the key existed.
    Put {
        /// The new key/value.
        kv: KeyValue,
        /// The previous key/value, if any.
        prev: Option<KeyValue>,
    },
    /// A key was deleted. `prev` is the last value; `revision` the deleting write.
    Delete {
        /// The deleted key/value as it was.
        prev: KeyValue,
        /// Revision of the delete.
        revision: i64,
    },
    /// The watch has delivered every event up to this revision (answer to a progress request).
    /// Never below the revision of an event delivered before it.
    Progress {
        /// The revision.
        revision: i64,
    },
}

impl WatchEvent {
    /// The revision this event happened at.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
            WatchEvent::Progress { revision } => *revision,
        }
    }
}

/// Asks a running watch to report progress (deliver a [`WatchEvent::Progress`]).
pub trait ProgressRequester: Send + Sync {
    /// Request a progress event. The event arrives in order, after every earlier change.
    fn request_progress(&self);
}

/// A stream of watch events plus a handle to request progress notifications.
pub struct WatchStream {
    /// The events, in revision order. An `Err` ends the watch. Dropping the stream ends the watch
    /// and frees what the store kept for it.
    pub events: Pin<Box<dyn Stream<Item = Result<WatchEvent>> + Send>>,
    /// Requests a [`WatchEvent::Progress`] on this stream.
    pub progress: Arc<dyn ProgressRequester>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

/// Keyed bytes with a global revision, like etcd. See the crate docs for the rules.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Read one key at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// List keys starting with `prefix`, in key order. See [`ListOptions`]; `more` is set when
    /// `limit` cut the list short.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;
    /// Create a key; fails with [`Error::AlreadyExists`] if present.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;
    /// Replace a key's value if its mod revision equals `expected_revision`; the new value keeps
    /// the key's `create_revision`.
    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<KeyValue>;
    /// Delete a key, optionally only at `expected_revision`. Returns the deleted value and the
    /// revision of the delete.
    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)>;
    /// Watch keys starting with `prefix` for changes with revision `> from_revision`: first the
    /// changes already made (the backlog), then live ones. `from_revision` may be in the future;
    /// the watch then starts when the store gets there. Fails with [`Error::Gone`] if
    /// `from_revision` is below [`Store::compacted_revision`] (a backend that only learns that
    /// once the watch runs reports it as the stream's first item instead).
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream>;
    /// Drop history older than `revision`: afterwards reads and watches below it fail with
    /// [`Error::Gone`], while those at `revision` or later still work. Fails with
    /// [`Error::FutureRevision`] if `revision` is above the current one; does nothing if it is
    /// not above the compacted revision.
    async fn compact(&self, revision: i64) -> Result<()>;
    /// The current (latest) revision.
    async fn current_revision(&self) -> Result<i64>;
    /// The revision history starts at: reads and watches before it fail with `Gone`.
    async fn compacted_revision(&self) -> Result<i64>;
    /// Releases the backend (files, locks, connections). Calls after it fail. The default
    /// does nothing, for stores with nothing to release.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        (**self).get(key).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        (**self).list(prefix, opts).await
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        (**self).create(key, value).await
    }
    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<KeyValue> {
        (**self).update(key, value, expected_revision).await
    }
    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        (**self).delete(key, expected_revision).await
    }
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        (**self).watch(prefix, from_revision).await
    }
    async fn compact(&self, revision: i64) -> Result<()> {
        (**self).compact(revision).await
    }
    async fn current_revision(&self) -> Result<i64> {
        (**self).current_revision().await
    }
    async fn compacted_revision(&self) -> Result<i64> {
        (**self).compacted_revision().await
    }
    async fn close(&self) -> Result<()> {
        (**self).close().await
    }
}
