//! Compaction bookkeeping for [`super::EtcdStore`], after kube-apiserver's `compact.go`.
//!
//! etcd does not tell clients how far it has been compacted, so the compacted revision is
//! recorded, as a decimal string, under the key [`COMPACT_REV_KEY`] before each compaction. Every
//! store (and kube-apiserver, which uses the same key) on the same etcd reads it, so they agree.
//! The key is never prefixed: compaction is etcd-wide.

use std::sync::Weak;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use tokio::sync::watch as signal;
use tracing::Instrument;

use super::{Inner, is_compacted, is_future};
use crate::{Error, Result};

/// The key holding the compacted revision (kube-apiserver's `compactRevKey`).
pub(crate) const COMPACT_REV_KEY: &str = "compact_rev_key";

/// How often a compaction retries when another store changed the key under it.
const COMPACT_ATTEMPTS: usize = 5;

/// One cheap linearizable read: the current revision and the recorded compaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    /// etcd's current revision.
    pub(crate) current: i64,
    /// The compacted revision recorded under [`COMPACT_REV_KEY`] (0 if none).
    pub(crate) compacted: i64,
    /// The `mod_revision` of [`COMPACT_REV_KEY`] (0 if absent), for compare-and-swap.
    key_revision: i64,
}

impl Inner {
    /// Reads [`COMPACT_REV_KEY`]: the answer's header carries the current revision.
    pub(crate) async fn probe(&self) -> Result<Probe> {
        let resp = self
            .call(|mut kv| async move { kv.get(COMPACT_REV_KEY, None).await })
            .await
            .map_err(|e| Error::backend("etcd read of the current revision", e))?;
        let current = resp
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| Error::Backend {
                context: "etcd answered without a header".into(),
                source: None,
            })?;
        let (compacted, key_revision) = match resp.kvs().first() {
            None => (0, 0),
            Some(kv) => {
                let text = String::from_utf8_lossy(kv.value());
                let compacted = text.trim().parse::<i64>().map_err(|e| {
                    Error::backend(
                        format!("etcd key {COMPACT_REV_KEY} holds {text:?}, not a revision"),
                        e,
                    )
                })?;
                (compacted, kv.mod_revision())
            }
        };
        self.note_compacted(compacted);
        Ok(Probe {
            current,
            compacted,
            key_revision,
        })
    }

    /// The highest compacted revision known: recorded in etcd or seen by this store.
    pub(crate) async fn compacted_revision(&self) -> Result<i64> {
        let probe = self.probe().await?;
        Ok(probe.compacted.max(self.known_compacted()))
    }

    /// Records `revision` under [`COMPACT_REV_KEY`] (compare-and-swap, so concurrent compactions
    /// from several stores do not go backwards), then compacts etcd.
    pub(crate) async fn compact(&self, revision: i64) -> Result<()> {
        for _ in 0..COMPACT_ATTEMPTS {
            let probe = self.probe().await?;
            if revision > probe.current {
                return Err(Error::FutureRevision {
                    requested: revision,
                    current: probe.current,
                });
            }
            if revision <= probe.compacted.max(self.known_compacted()) {
                return Ok(());
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    COMPACT_REV_KEY,
                    CompareOp::Equal,
                    probe.key_revision,
                )])
                .and_then([TxnOp::put(COMPACT_REV_KEY, revision.to_string(), None)]);
            let resp = self
                .call(|mut kv| {
                    let txn = txn.clone();
                    async move { kv.txn(txn).await }
                })
                .await
                .map_err(|e| {
                    Error::backend(format!("etcd record of compaction to {revision}"), e)
                })?;
            if !resp.succeeded() {
                tracing::debug!(
                    revision,
                    "another store recorded a compaction first; retrying"
                );
                continue;
            }
            match self
                .call(|mut kv| async move { kv.compact(revision, None).await })
                .await
            {
                Ok(_) => {}
                // Someone compacted further already: history below `revision` is gone either way.
                Err(e) if is_compacted(&e) => {}
                Err(e) if is_future(&e) => {
                    return Err(Error::FutureRevision {
                        requested: revision,
                        current: probe.current,
                    });
                }
                Err(e) => return Err(Error::backend(format!("etcd compact to {revision}"), e)),
            }
            self.note_compacted(revision);
            tracing::debug!(revision, "compacted etcd");
            return Ok(());
        }
        Err(Error::Backend {
            context: format!(
                "etcd compact to {revision}: the compaction record kept changing under {COMPACT_REV_KEY}"
            ),
            source: None,
        })
    }
}

/// One round of the background loop: compacts up to `last_seen` if that is new, and returns the
/// current revision (`None` if etcd could not be read).
async fn compact_once(inner: &Inner, last_seen: Option<i64>) -> Option<i64> {
    match inner.probe().await {
        Ok(probe) => {
            if let Some(target) = last_seen.filter(|t| *t > probe.compacted)
                && let Err(e) = inner.compact(target).await
            {
                tracing::warn!(error = %e, target, "background etcd compaction failed");
            }
            Some(probe.current)
        }
        Err(e) => {
            tracing::warn!(error = %e, "background etcd compaction could not read the revision");
            None
        }
    }
}

/// The background compaction loop: every `interval`, compact up to the revision seen one interval
/// before. Ends when the store is dropped (`stop` closes).
pub(crate) async fn run_compactor(
    inner: Weak<Inner>,
    interval: Duration,
    mut stop: signal::Receiver<()>,
) {
    let mut last_seen: Option<i64> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let span = tracing::debug_span!("etcd_compactor", ?last_seen);
        last_seen = compact_once(&inner, last_seen)
            .instrument(span)
            .await
            .or(last_seen);
    }
}
