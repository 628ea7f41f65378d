//! The ordered, gap-free, de-duplicated event stream behind
//! [`Engine::watch`](crate::Engine::watch).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;

use crate::{JobEvent, JobId, Notification, NotificationStream, Notifier, Result, Store};

/// A job's events in seq order, each once. An `Err` item means the store could
/// not be read; the stream ends after it, and the reader resumes with `after`.
pub type EventStream = BoxStream<'static, Result<JobEvent>>;

/// How a watch catches up when live notifications are quiet or unavailable.
///
/// A watch relies on its notifier's contract: a subscription is live once
/// [`Notifier::subscribe`] returns, and every event it may have missed is
/// reported as [`Notification::Lagged`] (or shows as a gap in seq). Both send
/// it to the store at once. The safety net covers only what no notifier can
/// know: an event persisted by a process that died before publishing it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchConfig {
    /// With a live subscription, read the store anyway after this long
    /// without news (default 30 s).
    pub safety_net: Duration,
    /// Without one (the notifier is down): read the store, and try to
    /// subscribe again, this often (default 250 ms).
    pub fallback_poll: Duration,
    /// Events read from the store at a time (default 500).
    pub batch: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            safety_net: Duration::from_secs(30),
            fallback_poll: Duration::from_millis(250),
            batch: 500,
        }
    }
}

struct State {
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    config: WatchConfig,
    job_id: JobId,
    /// The seq of the last event handed out.
    last: u64,
    buf: VecDeque<JobEvent>,
    sub: Option<NotificationStream>,
    catch_up: bool,
    done: bool,
}

/// Subscribes first (a subscription is live once `subscribe` returns), then
/// replays from the store, then forwards live events, dropping duplicates and
/// filling gaps from the store.
pub(crate) async fn watch(
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    config: WatchConfig,
    job_id: JobId,
    after: u64,
) -> EventStream {
    let sub = subscribe(&*notifier, job_id).await;
    let state = State {
        store,
        notifier,
        config,
        job_id,
        last: after,
        buf: VecDeque::new(),
        sub,
        catch_up: true,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    })
    .boxed()
}

async fn subscribe(notifier: &dyn Notifier, job_id: JobId) -> Option<NotificationStream> {
    match notifier.subscribe(job_id).await {
        Ok(sub) => Some(sub),
        Err(e) => {
            tracing::warn!(%job_id, error = %e, "live subscription failed; watching by polling the store");
            None
        }
    }
}

impl State {
    async fn next(&mut self) -> Option<Result<JobEvent>> {
        loop {
            if let Some(ev) = self.buf.pop_front() {
                self.last = ev.seq;
                if ev.is_terminal() && self.buf.is_empty() {
                    // The end, unless the job went on (an owner's retry).
                    match self.read_store().await {
                        Ok(true) => {}
                        Ok(false) => self.done = true,
                        Err(e) => return Some(Err(e)),
                    }
                }
                return Some(Ok(ev));
            }
            if self.done {
                return None;
            }
            if self.catch_up {
                match self.read_store().await {
                    Ok(true) => continue,
                    Ok(false) => self.catch_up = false,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
                // Nothing more to read: a finished job has nothing more to say.
                match self.store.get_job(self.job_id).await {
                    Ok(Some(job)) if job.status.is_terminal() && job.last_seq <= self.last => {
                        return None
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return None,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
            self.wait_live().await;
        }
    }

    /// Reads the next batch after `last` into the buffer; `true` if it found any.
    async fn read_store(&mut self) -> Result<bool> {
        let after = self.buf.back().map_or(self.last, |e| e.seq);
        let events = self
            .store
            .events(self.job_id, after, self.config.batch.max(1))
            .await?;
        let found = !events.is_empty();
        self.buf.extend(events);
        Ok(found)
    }

    /// Waits for the next live event, or for a reason to read the store.
    async fn wait_live(&mut self) {
        let Some(sub) = self.sub.as_mut() else {
            tokio::time::sleep(self.config.fallback_poll).await;
            self.catch_up = true;
            self.sub = subscribe(&*self.notifier, self.job_id).await;
            return;
        };
        let next = tokio::time::timeout(self.config.safety_net, sub.next()).await;
        match next {
            Ok(Some(Notification::Event(ev))) => {
                if ev.job_id != self.job_id || ev.seq <= self.last {
                    // A duplicate, or already read from the store.
                } else if ev.seq == self.last + 1 {
                    self.buf.push_back(ev);
                } else {
                    self.catch_up = true;
                }
            }
            Ok(Some(Notification::Lagged)) | Err(_) => self.catch_up = true,
            Ok(None) => {
                self.sub = None;
                self.catch_up = true;
            }
        }
    }
}
