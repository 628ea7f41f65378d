//! [`RedisNotifier`]: the [`Notifier`] on Redis pub/sub.

mod publisher;
mod stream;
mod subscriber;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use projectengine_core::{
    CancellationToken, Error, JobEvent, JobId, NotificationStream, Notifier, Result,
};
use tokio::sync::{broadcast, mpsc};

use crate::link::Link;
use crate::RedisConfig;
use stream::Subscription;
use subscriber::Request;

/// A [`Notifier`] on Redis pub/sub, for processes that share one Redis.
///
/// Every job's events go to one channel, `<prefix>:events`, as messages of
/// the form `{"lagged": bool, "events": [...]}`. [`publish`](Notifier::publish)
/// never waits for Redis: it hands the events to a background publisher that
/// sends at once when idle and, while a `PUBLISH` is in flight, gathers what
/// comes meanwhile into the next one — so under load one `PUBLISH` carries the
/// events of many calls and many jobs. Its buffer is bounded
/// ([`RedisConfig::publish_buffer`]); on overflow (or a failed `PUBLISH`)
/// events are dropped and the next message tells every subscriber
/// [`Notification::Lagged`](projectengine_core::Notification::Lagged). Events
/// of one process keep their order.
///
/// A process subscribes to the channel while it watches at least one job and
/// filters by job itself. [`subscribe`](Notifier::subscribe) first waits
/// (at most [`RedisConfig::command_timeout`]) until what this process
/// published before is sent, then sets a barrier on the subscriber connection
/// (the `SUBSCRIBE`, or a `PING` when already subscribed), so the new
/// subscription sees only events published after it was established. It
/// returns once Redis answered that barrier: the subscription is live, as the
/// [`Notifier`] contract asks; while the subscriber connection is down it
/// fails with [`Error::Unavailable`] instead (the watch then polls the store).
///
/// Every subscription of a process shares **one** subscriber connection (RESP3,
/// named `<prefix>:subscriber`), owned by a background task that fans
/// messages out to per-job broadcast channels. When that connection drops,
/// the task reconnects with backoff, subscribes again
/// and then tells each subscriber [`Notification::Lagged`](projectengine_core::Notification::Lagged):
/// streams survive the reconnect, and the engine's watch reads what was
/// missed from the store.
///
/// Cheap to clone; the background task stops, and every stream ends, when the
/// last clone is dropped or [`RedisNotifier::shutdown`] is called.
#[derive(Clone)]
pub struct RedisNotifier {
    handle: Arc<Handle>,
}

/// Stops the background task when the last clone of the notifier goes.
struct Handle {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the notifier and its background task share.
pub(crate) struct Shared {
    prefix: String,
    config: RedisConfig,
    publisher: Link,
    /// Events on their way to Redis.
    outbox: publisher::Outbox,
    /// A sender per watched job. Only the subscriber task changes it.
    subs: Mutex<HashMap<JobId, broadcast::Sender<projectengine_core::Notification>>>,
    /// Subscriptions wanted, served by the subscriber task.
    requests: mpsc::UnboundedSender<Request>,
    /// Streams report here when dropped, so their job can be forgotten.
    dropped: mpsc::UnboundedSender<JobId>,
}

impl Shared {
    fn subs(
        &self,
    ) -> MutexGuard<'_, HashMap<JobId, broadcast::Sender<projectengine_core::Notification>>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The channel every event goes to.
    fn channel(&self) -> String {
        format!("{}:events", self.prefix)
    }
}

impl std::fmt::Debug for RedisNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNotifier")
            .field("prefix", &self.handle.shared.prefix)
            .field("watched_jobs", &self.handle.shared.subs().len())
            .finish()
    }
}

impl RedisNotifier {
    /// Connects the subscriber connection and starts its background task.
    ///
    /// Fails with [`Error::Invalid`] for a bad configuration and with
    /// [`Error::Unavailable`] when Redis cannot be reached. Later outages are
    /// not fatal: the task reconnects.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        config.validate()?;
        let publisher = Link::new(config, "notifier")?;
        let (dropped, dropped_rx) = mpsc::unbounded_channel();
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            prefix: config.prefix.clone(),
            config: config.clone(),
            publisher,
            outbox: publisher::Outbox::new(config.publish_buffer),
            subs: Mutex::new(HashMap::new()),
            requests,
            dropped,
        });
        let first = subscriber::connect(&shared, false).await?;
        let stop = CancellationToken::new();
        tokio::spawn(subscriber::run(
            shared.clone(),
            first,
            requests_rx,
            dropped_rx,
            stop.clone(),
        ));
        tokio::spawn(publisher::run(shared.clone(), stop.clone()));
        Ok(Self {
            handle: Arc::new(Handle { shared, stop }),
        })
    }

    /// Stops the background task: every stream of this notifier ends.
    pub fn shutdown(&self) {
        self.handle.stop.cancel();
    }
}

#[async_trait]
impl Notifier for RedisNotifier {
    /// Hands the events to the background publisher; never waits for Redis.
    async fn publish(&self, events: &[JobEvent]) -> Result<()> {
        if !events.is_empty() {
            self.handle.shared.outbox.offer(events);
        }
        Ok(())
    }

    async fn subscribe(&self, job_id: JobId) -> Result<NotificationStream> {
        let shared = &self.handle.shared;
        if self.handle.stop.is_cancelled() {
            return Err(Error::unavailable("the notifier was shut down"));
        }
        // What this process published before must not reach the new
        // subscription: it goes out first (the barrier below does the rest).
        let mark = shared.outbox.mark();
        shared
            .outbox
            .flushed(mark, shared.config.command_timeout)
            .await;
        let rx = subscriber::subscribe(shared, job_id).await?;
        Ok(Box::pin(Subscription::new(
            rx,
            job_id,
            shared.dropped.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_carries_the_prefix() {
        let (dropped, _rx) = mpsc::unbounded_channel();
        let (requests, _req) = mpsc::unbounded_channel();
        let config = RedisConfig::default().with_prefix("pe:x");
        let shared = Shared {
            prefix: config.prefix.clone(),
            publisher: Link::new(&config, "notifier").expect("a valid url"),
            outbox: publisher::Outbox::new(config.publish_buffer),
            config,
            subs: Mutex::new(HashMap::new()),
            requests,
            dropped,
        };
        assert_eq!(shared.channel(), "pe:x:events");
    }
}
