//! [`RedisNotifier`]: the [`Notifier`] on Redis pub/sub.

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
use subscriber::Control;

/// A [`Notifier`] on Redis pub/sub, for processes that share one Redis.
///
/// Each job has a channel of its own, `<prefix>:events:<job id>`, so a
/// process receives only the events of the jobs it watches and Redis does the
/// filtering. A publish sends each job's events of the call as one message
/// (a JSON array), so publishing a batch costs one `PUBLISH`.
///
/// Every subscription of a process shares **one** subscriber connection (RESP3,
/// named `<prefix>:subscriber`), owned by a background task that fans
/// messages out to per-job broadcast channels. When that connection drops,
/// the task reconnects with backoff, subscribes again to every watched job
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
    /// A sender per watched job. Only holders of `control` add entries.
    subs: Mutex<HashMap<JobId, broadcast::Sender<projectengine_core::Notification>>>,
    /// The subscriber connection; held while (un)subscribing or resubscribing,
    /// so those never interleave.
    control: tokio::sync::Mutex<Control>,
    /// Streams report here when dropped, so their job can be unsubscribed.
    dropped: mpsc::UnboundedSender<JobId>,
}

impl Shared {
    fn subs(
        &self,
    ) -> MutexGuard<'_, HashMap<JobId, broadcast::Sender<projectengine_core::Notification>>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The channel of a job's events.
    fn channel(&self, job_id: JobId) -> String {
        format!("{}:events:{job_id}", self.prefix)
    }

    /// The job whose channel this is, if it is one of ours.
    fn job_of(&self, channel: &[u8]) -> Option<JobId> {
        let rest = channel.strip_prefix(self.prefix.as_bytes())?;
        let id = rest.strip_prefix(b":events:")?;
        std::str::from_utf8(id).ok()?.parse().ok()
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
        let shared = Arc::new(Shared {
            prefix: config.prefix.clone(),
            config: config.clone(),
            publisher,
            subs: Mutex::new(HashMap::new()),
            control: tokio::sync::Mutex::new(Control::default()),
            dropped,
        });
        let first = subscriber::connect(&shared).await?;
        let stop = CancellationToken::new();
        tokio::spawn(subscriber::run(
            shared.clone(),
            first,
            dropped_rx,
            stop.clone(),
        ));
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
    async fn publish(&self, events: &[JobEvent]) -> Result<()> {
        let shared = &self.handle.shared;
        let mut pipe = redis::pipe();
        for batch in events.chunk_by(|a, b| a.job_id == b.job_id) {
            let payload = serde_json::to_string(batch)
                .map_err(|e| Error::internal(format!("encoding events: {e}")))?;
            pipe.cmd("PUBLISH")
                .arg(shared.channel(batch[0].job_id))
                .arg(payload)
                .ignore();
        }
        if events.is_empty() {
            return Ok(());
        }
        let pipe = &pipe;
        shared
            .publisher
            .run(
                "publish",
                |mut c| async move { pipe.exec_async(&mut c).await },
            )
            .await
    }

    async fn subscribe(&self, job_id: JobId) -> Result<NotificationStream> {
        let shared = &self.handle.shared;
        if self.handle.stop.is_cancelled() {
            return Err(Error::unavailable("the notifier was shut down"));
        }
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
    fn channels_round_trip_to_their_job() {
        let (dropped, _rx) = mpsc::unbounded_channel();
        let config = RedisConfig::default().with_prefix("pe:x");
        let shared = Shared {
            prefix: config.prefix.clone(),
            publisher: Link::new(&config, "notifier").expect("a valid url"),
            config,
            subs: Mutex::new(HashMap::new()),
            control: tokio::sync::Mutex::new(Control::default()),
            dropped,
        };
        let job = JobId::new();
        let channel = shared.channel(job);
        assert_eq!(channel, format!("pe:x:events:{job}"));
        assert_eq!(shared.job_of(channel.as_bytes()), Some(job));
        assert_eq!(
            shared.job_of(format!("other:events:{job}").as_bytes()),
            None
        );
        assert_eq!(shared.job_of(b"pe:x:events:not-a-uuid"), None);
    }
}
