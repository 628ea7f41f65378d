//! The [`Notifier`] trait: live, best-effort fan-out of persisted events.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{JobEvent, JobId, Result};

/// What a subscription yields.
#[derive(Clone, Debug, PartialEq)]
pub enum Notification {
    /// A persisted event of the subscribed job.
    Event(JobEvent),
    /// Events may have been missed (a slow subscriber, a broker reconnect): the
    /// reader should catch up from the [`Store`](crate::Store).
    Lagged,
}

/// A subscription to one job's events.
pub type NotificationStream = BoxStream<'static, Notification>;

/// Live fan-out of events to subscribers, possibly in other processes.
///
/// # Contract
/// - Best effort: an event may be lost or delivered twice; a subscriber that may
///   have missed events is told so with [`Notification::Lagged`] when the adapter
///   can know it. Ordering and completeness are restored by the engine's
///   [`watch`](crate::Engine::watch), which reads the store.
/// - A subscription receives only events of its job that were published after it
///   was established.
/// - One broker connection per process serves every subscription.
/// - The stream ends only if the notifier is shut down.
#[async_trait]
pub trait Notifier: Send + Sync + Debug + 'static {
    /// Publishes events (already persisted) to the subscribers of their jobs.
    async fn publish(&self, events: &[JobEvent]) -> Result<()>;

    /// Subscribes to one job's events.
    async fn subscribe(&self, job_id: JobId) -> Result<NotificationStream>;
}
