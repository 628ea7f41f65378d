//! The [`Queue`] trait: the wake-up transport from submitters to workers.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{JobId, Result};

/// What is pushed: a job to wake a worker for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    /// The job.
    pub job_id: JobId,
    /// Higher is delivered first.
    pub priority: i32,
    /// Not delivered before this time (`None`: at once).
    pub not_before: Option<DateTime<Utc>>,
    /// The fairness group, the job's owner when the engine's fair queues are
    /// on; `None`: no group (all such entries share one implicit group).
    pub group: Option<String>,
}

/// A popped entry. Ack it once the job is claimed (or found not claimable);
/// until then it reappears after the queue's visibility timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The job.
    pub job_id: JobId,
    /// The named queue it came from.
    pub queue: String,
    /// Its priority.
    pub priority: i32,
    /// Identifies this delivery: an ack or nack of an older delivery of the same
    /// job does nothing.
    pub receipt: u64,
    /// The fairness group, the job's owner when the engine's fair queues are
    /// on; `None`: no group. A nack re-queues the entry with this group.
    pub group: Option<String>,
}

/// How many entries a named queue holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Deliverable now.
    pub ready: u64,
    /// Waiting for their `not_before`.
    pub delayed: u64,
    /// Popped and not yet acked.
    pub in_flight: u64,
}

/// A wake-up transport with at-least-once delivery.
///
/// # Contract
/// - Entries live in **named queues**; a pop names the queues it serves and never
///   returns an entry of another.
/// - Within a queue: higher `priority` first; within a priority, the entries'
///   **groups take turns** (see "Fairness" below), and one group's entries
///   come first-in first-out. Across the queues of one pop, no order is
///   promised.
/// - An entry with `not_before` is not delivered before that time.
/// - Pushing a job id that is already waiting (ready or delayed) in that queue is a
///   no-op and answers `false`.
/// - A popped entry that is neither acked nor nacked within the queue's
///   visibility timeout is delivered again.
/// - `pop_many` takes up to `max` deliverable entries at once, best first
///   (in the order a sequence of `pop`s would take them); it waits up to
///   `wait`, without busy polling, only while none is deliverable, and answers
///   an empty list when none came (at once for `max == 0`). A worker asks for
///   as many entries as it has free slots.
/// - The queue is not the truth: losing its content loses no job, because
///   recovery pushes due jobs again from the [`Store`](crate::Store).
///
/// # Fairness
/// Start-time fair queuing, per (queue, priority): it keeps a virtual time
/// `V` (starting at 0) and, per group, the tag of that group's last entry.
/// An entry of group `g` that becomes ready — pushed, a delayed entry falling
/// due, a nacked or expired delivery coming back — gets the tag
/// `max(V, last[g]) + 1`, which becomes `last[g]`. A pop takes the entry with
/// the lowest tag (equal tags: the one made ready first) and sets `V` to its
/// tag. So among groups with a backlog each gets one entry per round, however
/// many the others queued: a group that pushes one entry behind another's
/// 10 000 waits for about one entry per other busy group, not 10 000.
///
/// Entries whose [`QueueEntry::group`] is `None` all share one implicit
/// group: without groups the order is exactly first-in first-out. A group's
/// last tag is forgotten once it is `<= V` (it would be max'ed away), so the
/// state held is one tag per group with ready entries, plus `V`.
#[async_trait]
pub trait Queue: Send + Sync + Debug + 'static {
    /// Adds an entry to `queue`; `false` if the job was already waiting there.
    async fn push(&self, queue: &str, entry: QueueEntry) -> Result<bool>;

    /// Takes up to `max` deliverable entries of `queues`, waiting up to `wait`
    /// for the first one.
    async fn pop_many(
        &self,
        queues: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Takes the next deliverable entry of any of `queues`, waiting up to `wait`.
    ///
    /// Provided: [`Queue::pop_many`] with `max` 1.
    async fn pop(&self, queues: &[String], wait: Duration) -> Result<Option<Delivery>> {
        Ok(self.pop_many(queues, 1, wait).await?.pop())
    }

    /// Removes a delivered entry for good.
    async fn ack(&self, delivery: &Delivery) -> Result<()>;

    /// Gives a delivered entry back, deliverable again after `delay` (at once if `None`).
    async fn nack(&self, delivery: &Delivery, delay: Option<Duration>) -> Result<()>;

    /// The depth of a named queue.
    async fn depth(&self, queue: &str) -> Result<QueueDepth>;
}
