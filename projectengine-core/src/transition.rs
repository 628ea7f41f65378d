//! The one state machine: every change of a job's status — claim, heartbeat,
//! cancel, retry, the end of an attempt, recovery — is planned here, and
//! checked against [`JobStatus::can_become`]. A store only executes a plan,
//! inside its own atomic compare-and-set (a lock, one conditional statement,
//! or a transaction): it never decides a transition itself.
//!
//! Each plan says which state it starts from (what the store compares) and
//! what it writes. [`MemoryStore`](crate::memory::MemoryStore) applies plans
//! to its records with their `apply_to` methods; a database store writes the
//! same fields. The plans that do not depend on the job as it is
//! ([`plan_claim`], [`plan_finish_unread`]) let a store write without reading
//! first: its conditional write checks the plan's starting state instead.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::review::{ReviewDecision, REJECTED};
use crate::{
    AttemptStatus, DeliveryNext, DeliveryStatus, Destination, Error, EventData, Fence, Heartbeat,
    Job, JobError, JobId, JobStatus, Outcome, Result,
};

/// Refuses a move the transition table does not allow. `retry` marks an
/// owner's explicit retry, the only way out of `failed` and `cancelled`.
fn check(from: JobStatus, to: JobStatus, retry: bool) -> Result<()> {
    let allowed = if retry {
        from.can_retry() && to == JobStatus::Queued
    } else {
        from.can_become(to)
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::conflict(format!(
            "a job cannot go from {from} to {to}"
        )))
    }
}

/// `now + lease`, saturating.
pub fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

/// Whether `fence` names the job's running attempt (the job side of the
/// fence; the store also checks that the attempt itself is still running).
pub fn holds(job: &Job, fence: Fence) -> bool {
    job.id == fence.job_id && job.status == JobStatus::Running && job.attempt == fence.attempt
}

/// The owner's quota at submission: a job whose owner has `queued` jobs
/// `queued` already may be created only below `max` (the job's
/// [`NewJob::max_queued`](crate::NewJob::max_queued)); otherwise
/// [`LimitExceeded`](Error::LimitExceeded). The store counts `queued` in the
/// same atomic step as the insert.
pub fn check_quota(queued: u64, max: Option<u32>) -> Result<()> {
    match max {
        Some(max) if queued >= u64::from(max) => Err(Error::LimitExceeded(
            "too many queued jobs; wait for some to start".into(),
        )),
        _ => Ok(()),
    }
}

/// The events an attempt may append ([`Store::append`](crate::Store::append)):
/// `stage`, `step`, `progress` (0–100), `log`, `error` and `fs_audit`;
/// anything else is [`Invalid`](crate::Error::Invalid), before anything is
/// written. Every store checks with this one function.
pub fn check_appendable(events: &[EventData]) -> Result<()> {
    for data in events {
        match data {
            EventData::Stage { .. }
            | EventData::Step(_)
            | EventData::Log(_)
            | EventData::Error(_)
            | EventData::FsAudit(_) => {}
            EventData::Progress { progress } if *progress <= 100 => {}
            EventData::Progress { .. } => {
                return Err(Error::invalid("progress", "must be between 0 and 100"))
            }
            other => {
                return Err(Error::invalid(
                    "events",
                    format!("`{}` events cannot be appended by an attempt", other.kind()),
                ))
            }
        }
    }
    Ok(())
}

/// Checks a numbered batch of an attempt's reports against the last one
/// applied ([`Store::append_batch`](crate::Store::append_batch)): the next
/// number is applied, an earlier one (a retry) changes nothing, a later one
/// is [`Invalid`](crate::Error::Invalid) — a batch went missing.
pub fn check_batch(last: u64, batch: u64) -> Result<()> {
    if batch == 0 {
        return Err(Error::invalid("batch", "must be at least 1"));
    }
    if batch > last.saturating_add(1) {
        return Err(Error::invalid(
            "batch",
            format!("expected batch {} at most, got {batch}", last + 1),
        ));
    }
    Ok(())
}

/// A claim: a due `queued` job becomes `running` under a new attempt.
///
/// The job must be in [`ClaimPlan::from`] with `run_at <= now` ([`claimable`]);
/// then `attempt` and `attempts_used` grow by one, `started_at` is now,
/// `cancel_requested` is cleared, and [`ClaimPlan::events`] are appended.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimPlan {
    /// The status the store compares against.
    pub from: JobStatus,
    /// The status written.
    pub to: JobStatus,
    /// The events to append, in order.
    pub events: Vec<EventData>,
}

impl ClaimPlan {
    /// The plan's writes to `job` (the caller checked [`claimable`]).
    pub fn apply_to(&self, job: &mut Job, now: DateTime<Utc>) {
        job.status = self.to;
        job.attempt += 1;
        job.attempts_used += 1;
        job.started_at = Some(now);
        job.cancel_requested = false;
    }
}

/// Plans a claim. It depends on nothing but the job's status and `run_at`,
/// which the store compares: see [`claimable`].
pub fn plan_claim() -> ClaimPlan {
    let (from, to) = (JobStatus::Queued, JobStatus::Running);
    debug_assert!(check(from, to, false).is_ok());
    ClaimPlan {
        from,
        to,
        events: vec![EventData::Status {
            status: to,
            error: None,
            run_at: None,
        }],
    }
}

/// Whether `job` may be claimed at `now`.
pub fn claimable(job: &Job, now: DateTime<Utc>) -> bool {
    job.status == JobStatus::Queued && job.run_at <= now
}

/// A heartbeat of the running attempt `fence` (checked with [`holds`]): its
/// lease runs until `now + lease`, and it learns of a pending cancel.
pub fn plan_heartbeat(job: &Job, now: DateTime<Utc>, lease: Duration) -> Heartbeat {
    Heartbeat {
        cancel_requested: job.cancel_requested,
        lease_expires_at: lease_until(now, lease),
    }
}

/// An owner's cancel, from [`plan_cancel`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CancelPlan {
    /// A job no worker holds (`queued`, `waiting` or `awaiting_review`) is
    /// `cancelled` at once and finished now.
    Cancel {
        /// The status the store compares against.
        from: JobStatus,
        /// The status written (`cancelled`).
        to: JobStatus,
        /// The events to append.
        events: Vec<EventData>,
    },
    /// A `running` job gets `cancel_requested`, for its worker to honour.
    Request {
        /// The events to append.
        events: Vec<EventData>,
    },
    /// A cancel is pending already: nothing to write.
    Pending,
}

impl CancelPlan {
    /// The status the plan starts from: what the store compares against
    /// (with `cancel_requested` false for [`CancelPlan::Request`]).
    pub fn from(&self) -> JobStatus {
        match self {
            CancelPlan::Cancel { from, .. } => *from,
            CancelPlan::Request { .. } | CancelPlan::Pending => JobStatus::Running,
        }
    }

    /// The events to append.
    pub fn events(&self) -> &[EventData] {
        match self {
            CancelPlan::Cancel { events, .. } | CancelPlan::Request { events } => events,
            CancelPlan::Pending => &[],
        }
    }

    /// The plan's writes to `job`.
    pub fn apply_to(&self, job: &mut Job, now: DateTime<Utc>) {
        match self {
            CancelPlan::Cancel { to, .. } => {
                job.status = *to;
                job.finished_at = Some(now);
            }
            CancelPlan::Request { .. } => job.cancel_requested = true,
            CancelPlan::Pending => {}
        }
    }
}

/// Plans an owner's cancel of `job`: a finished job is a
/// [`Conflict`](Error::Conflict).
pub fn plan_cancel(job: &Job) -> Result<CancelPlan> {
    match job.status {
        JobStatus::Queued | JobStatus::Waiting | JobStatus::AwaitingReview => {
            let to = JobStatus::Cancelled;
            check(job.status, to, false)?;
            Ok(CancelPlan::Cancel {
                from: job.status,
                to,
                events: vec![EventData::Status {
                    status: to,
                    error: None,
                    run_at: None,
                }],
            })
        }
        JobStatus::Running if job.cancel_requested => Ok(CancelPlan::Pending),
        JobStatus::Running => Ok(CancelPlan::Request {
            events: vec![EventData::CancelRequested],
        }),
        s => Err(Error::conflict(format!("the job is already {s}"))),
    }
}

/// An owner's retry, from [`plan_retry`]: the job is `queued` again, due
/// [`RetryPlan::run_at`], with its attempt budget renewed, its error and
/// `finished_at` cleared.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPlan {
    /// The status the store compares against.
    pub from: JobStatus,
    /// The status written (`queued`).
    pub to: JobStatus,
    /// When the job is due.
    pub run_at: DateTime<Utc>,
    /// The events to append.
    pub events: Vec<EventData>,
}

impl RetryPlan {
    /// The plan's writes to `job`.
    pub fn apply_to(&self, job: &mut Job) {
        job.status = self.to;
        job.attempts_used = 0;
        job.cancel_requested = false;
        job.error = None;
        job.finished_at = None;
        job.run_at = self.run_at;
    }
}

/// Plans an owner's retry of `job` at `now`: only a `failed` or `cancelled`
/// job may be retried; any other is a [`Conflict`](Error::Conflict).
pub fn plan_retry(job: &Job, now: DateTime<Utc>) -> Result<RetryPlan> {
    let to = JobStatus::Queued;
    check(job.status, to, true).map_err(|_| {
        Error::conflict(format!(
            "only a failed or cancelled job can be retried; this one is {}",
            job.status
        ))
    })?;
    Ok(RetryPlan {
        from: job.status,
        to,
        run_at: now,
        events: vec![EventData::Status {
            status: to,
            error: None,
            run_at: Some(now),
        }],
    })
}

/// The writes an [`Outcome`] implies for a job whose running attempt ends.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishPlan {
    /// The attempt's final status.
    pub attempt_status: AttemptStatus,
    /// The error recorded on the attempt.
    pub attempt_error: Option<JobError>,
    /// The job's new status.
    pub job_status: JobStatus,
    /// The job's error afterwards.
    pub job_error: Option<JobError>,
    /// The job's new `run_at` when it is queued again; `None` keeps it.
    pub run_at: Option<DateTime<Utc>>,
    /// The job's new `attempts_used`; `None` keeps it.
    pub attempts_used: Option<u32>,
    /// Whether the job is finished now (`finished_at` set to now; otherwise cleared).
    pub finished: bool,
    /// The events to append, in order.
    pub events: Vec<EventData>,
}

impl FinishPlan {
    /// The plan's writes to `job` (the attempt's are the caller's, from
    /// `attempt_status` and `attempt_error`).
    pub fn apply_to(&self, job: &mut Job, now: DateTime<Utc>) {
        job.status = self.job_status;
        job.error = self.job_error.clone();
        if let Some(run_at) = self.run_at {
            job.run_at = run_at;
        }
        if let Some(used) = self.attempts_used {
            job.attempts_used = used;
        }
        job.finished_at = self.finished.then_some(now);
        if self.job_status == JobStatus::Queued {
            job.cancel_requested = false;
        }
    }
}

/// A plan that depends on nothing but the outcome: a running attempt that
/// ends with `outcome` becomes terminal the same way whatever the job holds.
fn terminal(attempt_status: AttemptStatus, job_status: JobStatus) -> FinishPlan {
    debug_assert!(check(JobStatus::Running, job_status, false).is_ok());
    FinishPlan {
        attempt_status,
        attempt_error: None,
        job_status,
        job_error: None,
        run_at: None,
        attempts_used: None,
        finished: true,
        events: vec![EventData::Status {
            status: job_status,
            error: None,
            run_at: None,
        }],
    }
}

/// Whether the plan for `outcome` depends on the job as it is (a failure, a
/// release, a lost lease): then it comes from [`plan_finish`], and a store
/// reads (and locks) the job first; otherwise from [`plan_finish_unread`]
/// (or [`plan_finish_reviewed`] for a job with [`Job::review`], which never
/// changes after submission: a store compares it in its conditional write).
pub fn finish_reads_job(outcome: &Outcome) -> bool {
    !matches!(outcome, Outcome::Succeeded | Outcome::Cancelled)
}

/// The plan for `outcome` when it does not depend on the job (a success, an
/// honoured cancel) of a job without review ([`Job::review`] false), so a
/// store may write it without reading the job first; `None` when it does:
/// then use [`plan_finish`].
pub fn plan_finish_unread(outcome: &Outcome) -> Option<FinishPlan> {
    match outcome {
        Outcome::Succeeded => Some(terminal(AttemptStatus::Succeeded, JobStatus::Succeeded)),
        Outcome::Cancelled => Some(terminal(AttemptStatus::Cancelled, JobStatus::Cancelled)),
        _ => {
            debug_assert!(finish_reads_job(outcome));
            None
        }
    }
}

/// Like [`plan_finish_unread`], for a job with [`Job::review`]: its success
/// leaves the attempt `succeeded` and the job `awaiting_review` (not
/// finished) until a reviewer decides ([`plan_review`]).
pub fn plan_finish_reviewed(outcome: &Outcome) -> Option<FinishPlan> {
    match outcome {
        Outcome::Succeeded => {
            let to = JobStatus::AwaitingReview;
            debug_assert!(check(JobStatus::Running, to, false).is_ok());
            Some(FinishPlan {
                attempt_status: AttemptStatus::Succeeded,
                attempt_error: None,
                job_status: to,
                job_error: None,
                run_at: None,
                attempts_used: None,
                finished: false,
                events: vec![EventData::Status {
                    status: to,
                    error: None,
                    run_at: None,
                }],
            })
        }
        _ => plan_finish_unread(outcome),
    }
}

/// Plans the end of `job`'s running attempt with `outcome`, at time `now`.
///
/// `job` must be `running`, and the caller holds it locked (or compares-and-sets
/// on its `attempt`) while applying the plan. `lease_expires_at` is the
/// attempt's lease: [`Outcome::Lost`] is a [`Conflict`](Error::Conflict)
/// while it has not expired.
pub fn plan_finish(
    job: &Job,
    lease_expires_at: DateTime<Utc>,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<FinishPlan> {
    if job.status != JobStatus::Running {
        return Err(Error::StaleAttempt);
    }
    let unread = if job.review {
        plan_finish_reviewed(outcome)
    } else {
        plan_finish_unread(outcome)
    };
    if let Some(plan) = unread {
        return Ok(plan);
    }
    let attempts_left = job.attempts_used < job.max_attempts;
    let requeue = |attempt_status, error: JobError, delay: Option<Duration>| {
        let mut events = vec![EventData::Error(error.clone())];
        match delay {
            Some(d) if attempts_left => {
                let run_at =
                    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
                events.push(EventData::Status {
                    status: JobStatus::Queued,
                    error: Some(error.clone()),
                    run_at: Some(run_at),
                });
                FinishPlan {
                    attempt_status,
                    attempt_error: Some(error.clone()),
                    job_status: JobStatus::Queued,
                    job_error: Some(error),
                    run_at: Some(run_at),
                    attempts_used: None,
                    finished: false,
                    events,
                }
            }
            _ => {
                events.push(EventData::Status {
                    status: JobStatus::Failed,
                    error: Some(error.clone()),
                    run_at: None,
                });
                FinishPlan {
                    attempt_status,
                    attempt_error: Some(error.clone()),
                    job_status: JobStatus::Failed,
                    job_error: Some(error),
                    run_at: None,
                    attempts_used: None,
                    finished: true,
                    events,
                }
            }
        }
    };
    let plan = match outcome {
        Outcome::Failed { error, retry_in } => {
            requeue(AttemptStatus::Failed, error.clone(), *retry_in)
        }
        Outcome::TimedOut { retry_in } => requeue(
            AttemptStatus::TimedOut,
            JobError::new(
                "timeout",
                format!("the attempt ran longer than {} ms", job.timeout_ms),
            ),
            *retry_in,
        ),
        Outcome::Released => {
            let error = JobError::new("released", "the worker shut down; queued again");
            FinishPlan {
                attempt_status: AttemptStatus::Cancelled,
                attempt_error: Some(error.clone()),
                job_status: JobStatus::Queued,
                job_error: job.error.clone(),
                run_at: Some(now),
                attempts_used: Some(job.attempts_used.saturating_sub(1)),
                finished: false,
                events: vec![EventData::Status {
                    status: JobStatus::Queued,
                    error: Some(error),
                    run_at: Some(now),
                }],
            }
        }
        Outcome::Lost => {
            if lease_expires_at > now {
                return Err(Error::conflict("the attempt's lease has not expired"));
            }
            let error = JobError::new("lost", "the worker stopped renewing its lease");
            if job.cancel_requested {
                let mut plan = terminal(AttemptStatus::Lost, JobStatus::Cancelled);
                plan.attempt_error = Some(error);
                plan
            } else {
                requeue(AttemptStatus::Lost, error, Some(Duration::ZERO))
            }
        }
        // Planned without the job above.
        Outcome::Succeeded | Outcome::Cancelled => unreachable!("planned by plan_finish_unread"),
    };
    check(job.status, plan.job_status, false)?;
    Ok(plan)
}

/// Whether a job that a transition leaves in `status` notifies its webhook
/// destinations: a terminal status, or `awaiting_review` (a person is
/// awaited).
pub fn notifies(status: JobStatus) -> bool {
    status.is_terminal() || status == JobStatus::AwaitingReview
}

/// The webhook destinations `job` notifies now: none unless it is terminal
/// or awaiting review ([`notifies`]); then its own URL ([`Job::webhook`])
/// and the deployment's ([`Job::notify_deployment`]), each if set. A store
/// writes one [`WebhookDelivery`](crate::WebhookDelivery) per destination in
/// the same transaction as the state: every transition that ends a job or
/// holds it for review (an attempt's [`FinishPlan`], a queued job's
/// [`CancelPlan::Cancel`], a [`ReviewPlan`]) calls this on the job as the
/// plan leaves it.
pub fn webhook_destinations(job: &Job) -> impl Iterator<Item = Destination> {
    let notify = notifies(job.status);
    let own = (notify && job.webhook.is_some()).then_some(Destination::Job);
    let deployment = (notify && job.notify_deployment).then_some(Destination::Deployment);
    own.into_iter().chain(deployment)
}

/// A reviewer's decision, from [`plan_review`]: the job leaves
/// `awaiting_review` for `succeeded`, `queued` (due [`ReviewPlan::run_at`])
/// or `failed`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewPlan {
    /// The status the store compares against (`awaiting_review`).
    pub from: JobStatus,
    /// The status written.
    pub to: JobStatus,
    /// The job's error afterwards (`rejected` after a rejection, else none).
    pub error: Option<JobError>,
    /// The job's new `run_at` when it is queued again; `None` keeps it.
    pub run_at: Option<DateTime<Utc>>,
    /// Whether the job is finished now (`finished_at` set to now).
    pub finished: bool,
    /// The job's [`Job::review_comment`] afterwards.
    pub review_comment: Option<String>,
    /// The events to append, in order.
    pub events: Vec<EventData>,
}

impl ReviewPlan {
    /// The plan's writes to `job`.
    pub fn apply_to(&self, job: &mut Job, now: DateTime<Utc>) {
        job.status = self.to;
        job.error = self.error.clone();
        if let Some(run_at) = self.run_at {
            job.run_at = run_at;
        }
        if self.finished {
            job.finished_at = Some(now);
        }
        job.cancel_requested = false;
        job.review_comment = self.review_comment.clone();
    }
}

/// Plans a reviewer's `decision` on `job` at `now`. Only a job
/// `awaiting_review` may be reviewed; any other is a
/// [`Conflict`](Error::Conflict). An approval makes it `succeeded`; a
/// rejection records the comment ([`Job::review_comment`], and the error
/// `rejected` in the status event) and queues the job for its next attempt
/// when it has attempts left, or fails it when its `max_attempts` are spent
/// (see [`crate::review`]).
pub fn plan_review(job: &Job, decision: &ReviewDecision, now: DateTime<Utc>) -> Result<ReviewPlan> {
    if job.status != JobStatus::AwaitingReview {
        return Err(Error::conflict(format!(
            "only a job awaiting review can be reviewed; this one is {}",
            job.status
        )));
    }
    let plan = match decision {
        ReviewDecision::Approve => ReviewPlan {
            from: job.status,
            to: JobStatus::Succeeded,
            error: None,
            run_at: None,
            finished: true,
            review_comment: job.review_comment.clone(),
            events: vec![EventData::Status {
                status: JobStatus::Succeeded,
                error: None,
                run_at: None,
            }],
        },
        ReviewDecision::Reject { comment } => {
            let error = JobError::new(REJECTED, comment.clone());
            let again = job.attempts_used < job.max_attempts;
            let (to, run_at) = if again {
                (JobStatus::Queued, Some(now))
            } else {
                (JobStatus::Failed, None)
            };
            ReviewPlan {
                from: job.status,
                to,
                error: Some(error.clone()),
                run_at,
                finished: !again,
                review_comment: Some(comment.clone()),
                events: vec![EventData::Status {
                    status: to,
                    error: Some(error),
                    run_at,
                }],
            }
        }
    };
    check(plan.from, plan.to, false)?;
    Ok(plan)
}

/// The status a pending delivery takes after a try that says `next`.
pub fn delivery_status_after(next: DeliveryNext) -> DeliveryStatus {
    match next {
        DeliveryNext::Retry { .. } => DeliveryStatus::Pending,
        DeliveryNext::Delivered => DeliveryStatus::Delivered,
        DeliveryNext::Failed => DeliveryStatus::Failed,
    }
}

/// Refuses a try recorded on a delivery that is no longer pending, or that
/// another dispatcher recorded a try on since `tries` was read (its claim
/// lapsed and the delivery was claimed again): the caller's try is stale.
pub fn check_delivery_try(status: DeliveryStatus, tries: u32, claimed_tries: u32) -> Result<()> {
    if status != DeliveryStatus::Pending {
        return Err(Error::conflict(format!("the delivery is already {status}")));
    }
    if tries != claimed_tries {
        return Err(Error::conflict(
            "another dispatcher recorded a try since this one claimed the delivery",
        ));
    }
    Ok(())
}

/// Whether a job that reached `status` releases its `waiting` dependents
/// (those whose every dependency has now succeeded): a success.
pub fn releases_dependents(status: JobStatus) -> bool {
    status == JobStatus::Succeeded
}

/// Whether a job that reached `status` cancels its `waiting` dependents
/// (with [`DEPENDENCY_FAILED`], transitively): a failure or a cancel.
pub fn fails_dependents(status: JobStatus) -> bool {
    matches!(status, JobStatus::Failed | JobStatus::Cancelled)
}

/// The error code of a job cancelled because a job it depends on failed or
/// was cancelled.
pub const DEPENDENCY_FAILED: &str = "dependency_failed";

/// A dependent's release, from [`plan_release`]: a `waiting` job whose
/// dependencies have all succeeded is `queued`, due at [`ReleasePlan::run_at`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReleasePlan {
    /// The status the store compares against (`waiting`).
    pub from: JobStatus,
    /// The status written (`queued`).
    pub to: JobStatus,
    /// When the job is due: its own `run_at`, or now if that has passed.
    pub run_at: DateTime<Utc>,
    /// The events to append.
    pub events: Vec<EventData>,
}

impl ReleasePlan {
    /// The plan's writes to `job`.
    pub fn apply_to(&self, job: &mut Job) {
        job.status = self.to;
        job.run_at = self.run_at;
    }
}

/// Plans the release of `job`, a dependent whose dependencies have all
/// succeeded (the store checks that, under the same lock or transaction as
/// the write). Only a `waiting` job is released; any other is a
/// [`Conflict`](Error::Conflict).
pub fn plan_release(job: &Job, now: DateTime<Utc>) -> Result<ReleasePlan> {
    let (from, to) = (JobStatus::Waiting, JobStatus::Queued);
    if job.status != from {
        return Err(Error::conflict(format!(
            "only a waiting job is released; this one is {}",
            job.status
        )));
    }
    check(from, to, false)?;
    let run_at = job.run_at.max(now);
    Ok(ReleasePlan {
        from,
        to,
        run_at,
        events: vec![EventData::Status {
            status: to,
            error: None,
            run_at: Some(run_at),
        }],
    })
}

/// A dependent's cancel because a job it depends on failed or was
/// cancelled, from [`plan_dependency_failed`]: `waiting → cancelled`, with
/// the error [`DEPENDENCY_FAILED`], finished now.
#[derive(Clone, Debug, PartialEq)]
pub struct DependencyFailedPlan {
    /// The status the store compares against (`waiting`).
    pub from: JobStatus,
    /// The status written (`cancelled`).
    pub to: JobStatus,
    /// The job's error afterwards.
    pub error: JobError,
    /// The events to append.
    pub events: Vec<EventData>,
}

impl DependencyFailedPlan {
    /// The plan's writes to `job`.
    pub fn apply_to(&self, job: &mut Job, now: DateTime<Utc>) {
        job.status = self.to;
        job.error = Some(self.error.clone());
        job.finished_at = Some(now);
    }
}

/// Plans the cancel of `job`, a `waiting` dependent of `dependency`, which
/// has just failed or been cancelled ([`fails_dependents`]). Any other
/// status of `job` is a [`Conflict`](Error::Conflict).
pub fn plan_dependency_failed(
    job: &Job,
    dependency: JobId,
    dependency_status: JobStatus,
) -> Result<DependencyFailedPlan> {
    let (from, to) = (JobStatus::Waiting, JobStatus::Cancelled);
    if job.status != from {
        return Err(Error::conflict(format!(
            "only a waiting job is cancelled for its dependencies; this one is {}",
            job.status
        )));
    }
    check(from, to, false)?;
    let error = JobError::new(
        DEPENDENCY_FAILED,
        format!("job {dependency}, which this job depends on, is {dependency_status}"),
    );
    Ok(DependencyFailedPlan {
        from,
        to,
        events: vec![EventData::Status {
            status: to,
            error: Some(error.clone()),
            run_at: None,
        }],
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Owner;

    fn job(status: JobStatus) -> Job {
        let now = Utc::now();
        Job {
            id: JobId::new(),
            owner: Owner::new("o"),
            kind: "k".into(),
            queue: "q".into(),
            prompt: "p".into(),
            params: serde_json::json!({}),
            status,
            stage: None,
            progress: 0,
            priority: 0,
            max_attempts: 2,
            timeout_ms: 1000,
            run_at: now,
            attempt: 1,
            attempts_used: 1,
            cancel_requested: false,
            error: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now,
            last_seq: 1,
            webhook: None,
            notify_deployment: false,
            trace_parent: None,
            review: false,
            review_comment: None,
            parent_id: None,
            child_key: None,
            project: None,
            depends_on: vec![],
            concurrency_key: None,
            concurrency_limit: None,
        }
    }

    #[test]
    fn every_plan_follows_the_table() {
        use JobStatus::*;
        let now = Utc::now();
        for from in [
            Queued,
            Waiting,
            Running,
            AwaitingReview,
            Succeeded,
            Failed,
            Cancelled,
        ] {
            let mut j = job(from);
            j.run_at = now;
            if let Ok(CancelPlan::Cancel { to, .. }) = plan_cancel(&j) {
                assert!(from.can_become(to), "cancel {from} → {to}");
            }
            assert_eq!(
                plan_cancel(&j).is_err(),
                from.is_terminal(),
                "cancel {from}"
            );
            assert_eq!(
                plan_retry(&j, now).is_ok(),
                from.can_retry(),
                "retry {from}"
            );
            assert_eq!(claimable(&j, now), from == Queued, "claim {from}");
            let finished = plan_finish(&j, now, &Outcome::Released, now);
            assert_eq!(finished.is_ok(), from == Running, "finish {from}");
            for decision in [
                ReviewDecision::Approve,
                ReviewDecision::reject("no").unwrap(),
            ] {
                let plan = plan_review(&j, &decision, now);
                assert_eq!(plan.is_ok(), from == AwaitingReview, "review {from}");
                if let Ok(plan) = plan {
                    assert!(from.can_become(plan.to), "review {from} → {}", plan.to);
                }
            }
        }
        let claim = plan_claim();
        assert!(claim.from.can_become(claim.to));
    }

    #[test]
    fn only_terminal_and_reviewed_jobs_notify_their_destinations() {
        use JobStatus::*;
        for status in [
            Queued,
            Waiting,
            Running,
            AwaitingReview,
            Succeeded,
            Failed,
            Cancelled,
        ] {
            let mut j = job(status);
            assert_eq!(webhook_destinations(&j).count(), 0, "{status}: none set");
            j.webhook = Some("https://example.com/hook".into());
            j.notify_deployment = true;
            let got: Vec<_> = webhook_destinations(&j).collect();
            let want = if status.is_terminal() || status == AwaitingReview {
                vec![Destination::Job, Destination::Deployment]
            } else {
                vec![]
            };
            assert_eq!(got, want, "{status}");
        }
    }

    #[test]
    fn only_waiting_jobs_are_released_or_cancelled_for_their_dependencies() {
        use JobStatus::*;
        let now = Utc::now();
        for from in [
            Queued,
            Waiting,
            Running,
            AwaitingReview,
            Succeeded,
            Failed,
            Cancelled,
        ] {
            let j = job(from);
            let release = plan_release(&j, now);
            assert_eq!(release.is_ok(), from == Waiting, "release {from}");
            if let Ok(plan) = release {
                assert!(plan.from.can_become(plan.to));
                assert_eq!(plan.to, Queued);
                assert!(plan.run_at >= now);
            }
            let cancel = plan_dependency_failed(&j, JobId::new(), Failed);
            assert_eq!(cancel.is_ok(), from == Waiting, "dependency_failed {from}");
            if let Ok(plan) = cancel {
                assert!(plan.from.can_become(plan.to));
                assert_eq!(plan.error.code, DEPENDENCY_FAILED);
                let mut after = j.clone();
                plan.apply_to(&mut after, now);
                assert!(after.status.is_terminal() && after.finished_at.is_some());
            }
        }
        assert!(releases_dependents(Succeeded) && !releases_dependents(AwaitingReview));
        assert!(fails_dependents(Failed) && fails_dependents(Cancelled));
        assert!(!fails_dependents(Queued) && !fails_dependents(Succeeded));
    }

    #[test]
    fn lost_needs_an_expired_lease() {
        let now = Utc::now();
        let j = job(JobStatus::Running);
        let later = now + chrono::Duration::seconds(1);
        assert!(matches!(
            plan_finish(&j, later, &Outcome::Lost, now),
            Err(Error::Conflict(_))
        ));
        let plan = plan_finish(&j, now, &Outcome::Lost, now).expect("expired");
        assert_eq!(plan.job_status, JobStatus::Queued);
        assert_eq!(plan.attempt_status, AttemptStatus::Lost);
    }

    #[test]
    fn spent_attempts_fail_and_released_ones_are_given_back() {
        let now = Utc::now();
        let mut j = job(JobStatus::Running);
        j.attempts_used = j.max_attempts;
        let failed = Outcome::Failed {
            error: JobError::new("e", "m"),
            retry_in: Some(Duration::from_secs(1)),
        };
        let plan = plan_finish(&j, now, &failed, now).expect("plan");
        assert_eq!((plan.job_status, plan.finished), (JobStatus::Failed, true));
        let plan = plan_finish(&j, now, &Outcome::Released, now).expect("plan");
        assert_eq!(plan.attempts_used, Some(j.max_attempts - 1));
        assert_eq!(plan.job_status, JobStatus::Queued);
    }

    #[test]
    fn unread_plans_equal_read_ones() {
        let now = Utc::now();
        let j = job(JobStatus::Running);
        for outcome in [Outcome::Succeeded, Outcome::Cancelled] {
            assert_eq!(
                plan_finish_unread(&outcome),
                Some(plan_finish(&j, now, &outcome, now).expect("plan"))
            );
        }
        assert_eq!(plan_finish_unread(&Outcome::Lost), None);
        for outcome in [
            Outcome::Succeeded,
            Outcome::Cancelled,
            Outcome::Lost,
            Outcome::Released,
        ] {
            assert_eq!(
                finish_reads_job(&outcome),
                plan_finish_unread(&outcome).is_none()
            );
        }
    }

    #[test]
    fn a_reviewed_success_waits_and_a_rejection_spends_no_extra_attempt() {
        let now = Utc::now();
        let mut j = job(JobStatus::Running);
        j.review = true;
        let plan = plan_finish(&j, now, &Outcome::Succeeded, now).expect("plan");
        assert_eq!(
            plan,
            plan_finish_reviewed(&Outcome::Succeeded).expect("unread")
        );
        assert_eq!(
            (plan.job_status, plan.attempt_status, plan.finished),
            (JobStatus::AwaitingReview, AttemptStatus::Succeeded, false)
        );
        plan.apply_to(&mut j, now);
        assert_eq!(j.finished_at, None);

        let approve = plan_review(&j, &ReviewDecision::Approve, now).expect("approve");
        assert_eq!((approve.to, approve.finished), (JobStatus::Succeeded, true));

        // One attempt used of two: the rejection queues the job again.
        let reject = ReviewDecision::reject("make it blue").expect("valid");
        let plan = plan_review(&j, &reject, now).expect("reject");
        assert_eq!(plan.to, JobStatus::Queued);
        assert_eq!(plan.review_comment.as_deref(), Some("make it blue"));
        let mut queued = j.clone();
        plan.apply_to(&mut queued, now);
        assert_eq!(
            queued.error.as_ref().map(|e| e.code.as_str()),
            Some(REJECTED)
        );
        assert_eq!((queued.run_at, queued.finished_at), (now, None));

        // Its attempts spent, it fails with the code `rejected`.
        j.attempts_used = j.max_attempts;
        let plan = plan_review(&j, &reject, now).expect("reject");
        assert_eq!((plan.to, plan.finished), (JobStatus::Failed, true));
        assert_eq!(plan.error.map(|e| e.code), Some(REJECTED.to_owned()));
    }
}
