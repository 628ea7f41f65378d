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
/// - **Confirmed subscription**: [`subscribe`](Notifier::subscribe) returns
///   only once the subscription is live (for a broker: the subscription is
///   acknowledged). Every event published after it returns, by any process,
///   reaches the subscription or is reported lost (below). Events published
///   before it may arrive too, or not.
/// - **Every loss is reported**: an event may be delivered twice, but one that
///   a subscription does not receive (a full buffer, a broker reconnect, a
///   failed send) is followed, once the adapter knows, by
///   [`Notification::Lagged`] on that subscription, before any later event of
///   its job. The adapter must know, except when a publishing process dies
///   before its events leave it.
/// - A subscription receives only events of its job.
/// - One broker connection per process serves every subscription.
/// - The stream ends only if the notifier is shut down.
///
/// Ordering and completeness are restored by the engine's
/// [`watch`](crate::Engine::watch): it subscribes, replays from the store, and
/// reads the store again on a gap in seq or a `Lagged` — so it re-reads an
/// idle job only rarely ([`WatchConfig::safety_net`](crate::WatchConfig)).
/// The conformance suite `testkit::notifier` (feature `testkit`) checks the
/// contract.
#[async_trait]
pub trait Notifier: Send + Sync + Debug + 'static {
    /// Publishes events (already persisted) to the subscribers of their jobs.
    async fn publish(&self, events: &[JobEvent]) -> Result<()>;

    /// Subscribes to one job's events; returns once the subscription is live.
    /// An error (e.g. [`Error::Unavailable`](crate::Error::Unavailable) while a
    /// broker is unreachable) leaves the caller to poll the store.
    async fn subscribe(&self, job_id: JobId) -> Result<NotificationStream>;
}
