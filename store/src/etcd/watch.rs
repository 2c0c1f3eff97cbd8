//! [`super::EtcdStore`]'s watch: one etcd watch (one gRPC stream) per [`crate::Store::watch`].
//!
//! # Progress reports on etcd 3.4
//!
//! A [`WatchEvent::Progress`] answers etcd's `WatchProgressRequest`: a watch response without
//! events whose header revision is the store's revision. Before 3.4.24/3.5.8 etcd may send that
//! answer ahead of events already queued for the stream (etcd issue #15220), and before
//! 3.4.32/3.5.13 also while the watcher is still replaying its backlog (#17619). So this module
//! only reports a progress revision `R` once
//! - the watcher has caught up: it started at or after the revision etcd had when the watch was
//!   created, or delivered an event at or after it, or has run for [`CATCH_UP_GRACE`]; and
//! - a second progress request, sent after `R` arrived, has been answered: events queued before
//!   `R` was sent are flushed by then, since etcd's send loop drains ready events before the
//!   second request can even arrive.
//!
//! This closes those races in practice; on a fixed etcd both conditions hold at once and only cost
//! one extra round trip per progress request.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    EventType, WatchOptions, WatchRequestSender, WatchResponse, WatchResponseStream,
};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Inner;
use crate::{Error, ProgressRequester, Result, WatchEvent, WatchStream};

/// How long a progress request waits for etcd's answer before it is sent again.
const PROGRESS_RETRY: Duration = Duration::from_millis(300);

/// After this long a watch that started in the past is taken to have replayed its backlog.
const CATCH_UP_GRACE: Duration = Duration::from_secs(1);

/// Opens an etcd watch on `prefix` for changes after `from`.
pub(crate) async fn watch(inner: Arc<Inner>, prefix: &str, from: i64) -> Result<WatchStream> {
    let from = from.max(0);
    let compacted = inner.known_compacted();
    if from < compacted {
        return Err(Error::Gone {
            requested: from,
            compacted,
        });
    }
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(from + 1)
        .with_prev_key();
    let what = || format!("etcd watch {prefix} from {from}");
    let key = inner.full_key(prefix);
    let stream = inner
        .retry(|| {
            let (mut client, key, options) =
                (inner.client.watch_client(), key.clone(), options.clone());
            async move { client.watch(key, Some(options)).await }
        })
        .await
        .map_err(|e| Error::backend(what(), e))?;
    let (sender, mut responses) = stream.split();
    // etcd answers a create request first; waiting for it reports a broken connection here.
    let created = match responses.next().await {
        Some(Ok(resp)) if resp.created() => resp,
        Some(Ok(resp)) if resp.canceled() => return Err(canceled(&inner, &resp, from)),
        Some(Ok(_)) => {
            return Err(Error::Backend {
                context: format!("{}: etcd did not confirm the watch", what()),
                source: None,
            });
        }
        Some(Err(e)) => return Err(Error::backend(what(), e)),
        None => {
            return Err(Error::Backend {
                context: format!("{}: etcd closed the stream", what()),
                source: None,
            });
        }
    };
    let created_revision = created.header().map(|h| h.revision()).unwrap_or(0);
    let notify = Arc::new(Notify::new());
    let state = State {
        inner,
        from,
        sender,
        responses,
        notify: Arc::clone(&notify),
        last: from,
        caught_up: from >= created_revision,
        created_revision,
        created_at: Instant::now(),
        wanted: false,
        candidate: None,
        resend_at: None,
        pending: std::collections::VecDeque::new(),
        done: false,
    };
    let events = futures::stream::unfold(state, |mut state| async move {
        state.next().await.map(|item| (item, state))
    });
    let events: Pin<Box<dyn futures::Stream<Item = Result<WatchEvent>> + Send>> = Box::pin(events);
    Ok(WatchStream {
        events,
        progress: Arc::new(EtcdProgress { notify }),
    })
}

/// The error for a canceled etcd watch: `Gone` when it was canceled for compaction.
fn canceled(inner: &Inner, resp: &WatchResponse, last: i64) -> Error {
    if resp.compact_revision() > 0 {
        inner.note_compacted(resp.compact_revision());
        Error::Gone {
            requested: last,
            compacted: resp.compact_revision(),
        }
    } else {
        Error::Backend {
            context: format!("etcd canceled the watch: {}", resp.cancel_reason()),
            source: None,
        }
    }
}

/// Wakes the watch stream to send a progress request to etcd.
struct EtcdProgress {
    notify: Arc<Notify>,
}

impl ProgressRequester for EtcdProgress {
    fn request_progress(&self) {
        self.notify.notify_one();
    }
}

struct State {
    inner: Arc<Inner>,
    /// The revision the watch started after (for errors).
    from: i64,
    sender: WatchRequestSender,
    responses: WatchResponseStream,
    notify: Arc<Notify>,
    /// The revision of the last event delivered (or `from`).
    last: i64,
    /// Whether the watcher has replayed its backlog (see the module docs).
    caught_up: bool,
    /// etcd's revision when the watch was created.
    created_revision: i64,
    created_at: Instant,
    /// The user asked for progress and has not had it yet.
    wanted: bool,
    /// A progress revision waiting for its confirming second answer.
    candidate: Option<i64>,
    /// When to (re)send a progress request to etcd.
    resend_at: Option<Instant>,
    /// Converted events not yet handed out.
    pending: std::collections::VecDeque<WatchEvent>,
    /// The watch has ended (after an error).
    done: bool,
}

impl State {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            if self.done {
                return None;
            }
            let resend_at = self.resend_at;
            tokio::select! {
                biased;
                resp = self.responses.next() => match resp {
                    Some(Ok(resp)) => {
                        if let Some(item) = self.handle(resp).await {
                            return Some(item);
                        }
                    }
                    Some(Err(e)) => {
                        self.inner.member_failed();
                        return self.fail(Error::backend("etcd watch stream failed", e));
                    }
                    None => {
                        self.inner.member_failed();
                        let e = Error::Backend { context: format!("etcd closed the watch stream (watch from {})", self.from), source: None };
                        return self.fail(e);
                    }
                },
                _ = self.notify.notified() => {
                    self.wanted = true;
                    if self.candidate.is_none() && self.resend_at.is_none()
                        && let Err(e) = self.send_progress_request().await {
                        return self.fail(e);
                    }
                }
                _ = sleep_until(resend_at) => {
                    self.candidate = None;
                    if let Err(e) = self.send_progress_request().await {
                        return self.fail(e);
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: Error) -> Option<Result<WatchEvent>> {
        self.done = true;
        tracing::debug!(error = %e, from = self.from, last = self.last, "etcd watch ended");
        Some(Err(e))
    }

    async fn send_progress_request(&mut self) -> Result<()> {
        self.resend_at = Some(Instant::now() + PROGRESS_RETRY);
        self.sender
            .request_progress()
            .await
            .map_err(|e| Error::backend("etcd watch progress request", e))
    }

    /// Handles one etcd response: queues its events, or turns it into a progress report.
    async fn handle(&mut self, resp: WatchResponse) -> Option<Result<WatchEvent>> {
        if resp.canceled() {
            let e = canceled(&self.inner, &resp, self.last);
            return self.fail(e);
        }
        if resp.created() {
            return None;
        }
        if !resp.events().is_empty() {
            for event in resp.events() {
                match self.convert(event) {
                    Ok(ev) => {
                        self.last = self.last.max(ev.revision());
                        self.pending.push_back(ev);
                    }
                    Err(e) => return self.fail(e),
                }
            }
            if self.last >= self.created_revision {
                self.caught_up = true;
            }
            return None;
        }
        // A progress notification.
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        if !self.wanted {
            return None;
        }
        if !self.caught_up && self.created_at.elapsed() >= CATCH_UP_GRACE {
            self.caught_up = true;
        }
        if !self.caught_up {
            // Ask again once the backlog has had time to arrive.
            self.candidate = None;
            self.resend_at = Some(Instant::now() + PROGRESS_RETRY);
            return None;
        }
        match self.candidate.take() {
            None => {
                self.candidate = Some(revision);
                if let Err(e) = self.send_progress_request().await {
                    return self.fail(e);
                }
                None
            }
            Some(confirmed) => {
                self.wanted = false;
                self.resend_at = None;
                Some(Ok(WatchEvent::Progress {
                    revision: confirmed.max(self.last),
                }))
            }
        }
    }

    fn convert(&self, event: &etcd_client::Event) -> Result<WatchEvent> {
        let inner = &self.inner;
        let kv = event.kv().ok_or_else(|| Error::Backend {
            context: "etcd watch event without a key".into(),
            source: None,
        })?;
        let prev = event.prev_kv().map(|p| inner.convert_ref(p)).transpose()?;
        match event.event_type() {
            EventType::Put => Ok(WatchEvent::Put {
                kv: inner.convert_ref(kv)?,
                prev,
            }),
            EventType::Delete => {
                let prev = prev.ok_or_else(|| Error::Backend {
                    context: format!(
                        "etcd delete event of {:?} at {} without the previous value",
                        String::from_utf8_lossy(kv.key()),
                        kv.mod_revision()
                    ),
                    source: None,
                })?;
                Ok(WatchEvent::Delete {
                    prev,
                    revision: kv.mod_revision(),
                })
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
