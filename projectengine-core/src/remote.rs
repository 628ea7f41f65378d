//! Attempts run by remote agents: the engine's side of the agent protocol.
//!
//! A remote agent is just another worker. Its claim takes a queue entry of
//! one of its kinds and claims the job through the same path as the
//! in-process worker; its heartbeats, reports, App, artifacts and outcome go
//! through the same fenced [`Store`](crate::Store) calls, each persisted, then
//! published. A lost agent's lease expires and recovery requeues its job as
//! for any worker.

use std::time::Duration;

use tokio::time::Instant;

use crate::worker::{claim_delivery, Backoff};
use crate::{
    App, Claim, Engine, Error, EventData, Fence, Heartbeat, Job, JobError, JobEvent, NewApp,
    Outcome, Result,
};

/// A running attempt as a remote agent names it: the fence and the job's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteAttempt {
    /// The attempt's fence.
    pub fence: Fence,
    /// The job's kind.
    pub kind: String,
}

/// How a remote agent ended its attempt.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RemoteOutcome {
    /// The run succeeded.
    Succeeded,
    /// A transient failure: the job is retried (after `retry_in`, or the
    /// engine's backoff) while attempts remain.
    Retryable {
        /// The error recorded.
        error: JobError,
        /// The delay before the next attempt; the default backoff when `None`.
        retry_in: Option<Duration>,
    },
    /// A permanent failure: the job fails now.
    Fatal {
        /// The error recorded.
        error: JobError,
    },
    /// The agent stopped on the owner's cancel.
    Cancelled,
}

impl Engine {
    /// Claims a job of one of `kinds` for the remote agent `worker_id`,
    /// waiting up to `wait` for one: the claim path of the in-process worker,
    /// with a lease of `lease`. `Ok(None)` when none came in time. An unknown
    /// kind, or one without a remote registration, is
    /// [`Error::Invalid`].
    pub async fn claim_remote(
        &self,
        kinds: &[String],
        worker_id: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<Claim>> {
        if kinds.is_empty() {
            return Err(Error::invalid("kinds", "must name at least one kind"));
        }
        let mut queues = Vec::with_capacity(kinds.len());
        for kind in kinds {
            match self.registry().get(kind) {
                Some(r) if r.remote => queues.push(r.queue.clone()),
                Some(_) => {
                    return Err(Error::invalid(
                        "kinds",
                        format!("kind `{kind}` is run in process, not by agents"),
                    ))
                }
                None => return Err(Error::invalid("kinds", format!("unknown kind `{kind}`"))),
            }
        }
        queues.sort();
        queues.dedup();
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let popped = self.queue().pop_many(&queues, 1, left).await?;
            for delivery in popped {
                if let Some(claim) = claim_delivery(self, delivery, worker_id, lease).await {
                    return Ok(Some(claim));
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Renews a remote attempt's lease to `lease` from now and reports a
    /// pending cancel; [`Error::StaleAttempt`] once it lost its lease.
    pub async fn heartbeat_remote(&self, at: &RemoteAttempt, lease: Duration) -> Result<Heartbeat> {
        self.store().heartbeat(at.fence, lease).await
    }

    /// Appends a remote attempt's numbered batch of reports once, then
    /// publishes it: `None` when that batch was applied already (a retried
    /// request), and nothing changes.
    pub async fn append_remote(
        &self,
        at: &RemoteAttempt,
        batch: u64,
        events: Vec<EventData>,
    ) -> Result<Option<Vec<JobEvent>>> {
        let appended = self.store().append_batch(at.fence, batch, events).await?;
        if let Some(events) = &appended {
            self.publish(&at.kind, events).await;
        }
        Ok(appended)
    }

    /// Saves a remote attempt's App, then publishes its event.
    pub async fn publish_app_remote(&self, at: &RemoteAttempt, app: NewApp) -> Result<App> {
        let (app, events) = self.store().save_app(at.fence, app).await?;
        self.publish(&at.kind, &events).await;
        Ok(app)
    }

    /// Ends a remote attempt with `outcome`, publishes the change and, when
    /// the job is queued again, wakes a worker.
    pub async fn finish_remote(&self, at: &RemoteAttempt, outcome: RemoteOutcome) -> Result<Job> {
        let outcome = match outcome {
            RemoteOutcome::Succeeded => Outcome::Succeeded,
            RemoteOutcome::Retryable { error, retry_in } => Outcome::Failed {
                error,
                retry_in: Some(
                    retry_in.unwrap_or_else(|| Backoff::default().delay(at.fence.attempt)),
                ),
            },
            RemoteOutcome::Fatal { error } => Outcome::Failed {
                error,
                retry_in: None,
            },
            RemoteOutcome::Cancelled => Outcome::Cancelled,
        };
        let changed = self.store().finish(at.fence, outcome).await?;
        self.announce(&changed).await;
        Ok(changed.job)
    }
}
