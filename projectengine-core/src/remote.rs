//! Attempts run by remote agents: the engine's side of the agent protocol.
//!
//! A remote agent is just another worker. Its claim takes a queue entry of
//! one of its kinds and claims the job through the same path as the
//! in-process worker; its heartbeats, reports, App, artifacts and outcome go
//! through the same fenced [`Store`](crate::Store) calls, each persisted, then
//! published. A lost agent's lease expires and recovery requeues its job as
//! for any worker.

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use crate::worker::{claim_delivery, Backoff};
use crate::{
    App, Claim, Engine, Error, EventData, Fence, Heartbeat, Job, JobError, JobEvent, JobQuery,
    JobStatus, NewApp, Outcome, Owner, Result,
};

/// How often an agent limited to owners looks for their jobs while it
/// waits (see [`Engine::claim_remote_for`]).
pub const OWNED_CLAIM_POLL: Duration = Duration::from_millis(500);

/// Queued jobs read per page, and pages per owner, when an agent limited to
/// owners looks for their jobs.
const OWNED_CLAIM_PAGE: usize = 200;
const OWNED_CLAIM_PAGES: usize = 5;

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
        self.claim_remote_for(kinds, &[], worker_id, lease, wait)
            .await
    }

    /// Like [`Engine::claim_remote`], limited to the jobs of `owners` (none:
    /// every owner's).
    ///
    /// An agent limited to owners does not take queue entries, which other
    /// agents of its kinds may be waiting for: it looks for its owners'
    /// queued, due jobs of `kinds` in the store (highest priority, then
    /// oldest first) and claims one with the store's conditional claim,
    /// looking again every [`OWNED_CLAIM_POLL`] while it waits. The job's
    /// queue entry is then found not claimable by whoever pops it, as for
    /// any job claimed elsewhere.
    pub async fn claim_remote_for(
        &self,
        kinds: &[String],
        owners: &[Owner],
        worker_id: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<Claim>> {
        let queues = self.remote_queues(kinds)?;
        let deadline = Instant::now() + wait;
        if !owners.is_empty() {
            return self
                .claim_owned(kinds, owners, worker_id, lease, deadline)
                .await;
        }
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

    /// The queues of `kinds`, each a kind run by agents.
    fn remote_queues(&self, kinds: &[String]) -> Result<Vec<String>> {
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
        Ok(queues)
    }

    /// The claim of an agent limited to `owners` (see
    /// [`Engine::claim_remote_for`]).
    async fn claim_owned(
        &self,
        kinds: &[String],
        owners: &[Owner],
        worker_id: &str,
        lease: Duration,
        deadline: Instant,
    ) -> Result<Option<Claim>> {
        loop {
            let now = Utc::now();
            let mut due: Vec<Job> = Vec::new();
            for owner in owners {
                let mut cursor = None;
                for _ in 0..OWNED_CLAIM_PAGES {
                    let page = self
                        .store()
                        .list_jobs(
                            owner,
                            &JobQuery {
                                status: Some(JobStatus::Queued),
                                cursor,
                                limit: OWNED_CLAIM_PAGE,
                                newest_first: false,
                                ..JobQuery::default()
                            },
                        )
                        .await?;
                    let full = page.len() == OWNED_CLAIM_PAGE;
                    cursor = page.last().map(|j| j.id);
                    due.extend(
                        page.into_iter()
                            .filter(|j| j.run_at <= now && kinds.contains(&j.kind)),
                    );
                    if !full {
                        break;
                    }
                }
            }
            due.sort_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then(a.run_at.cmp(&b.run_at))
                    .then(a.id.cmp(&b.id))
            });
            for job in due {
                // Conditional: another agent or worker may have taken it.
                if let Some(claim) = self.store().claim(job.id, worker_id, lease).await? {
                    self.publish(&claim.job.kind, &claim.events).await;
                    return Ok(Some(claim));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            tokio::time::sleep(left.min(OWNED_CLAIM_POLL)).await;
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
