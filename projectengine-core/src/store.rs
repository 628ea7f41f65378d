//! The [`Store`] trait: the source of truth.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::schedule::{
    Fired, NewSchedule, Schedule, ScheduleFire, ScheduleId, ScheduleRun, ScheduleSettings,
};
use crate::{
    App, AppId, Artifact, Attempt, DeliveryId, DeliveryLog, DeliveryNext, EventData, Fence,
    IdempotencyKey, Job, JobError, JobEvent, JobId, JobQuery, NewApp, NewArtifact, NewJob, NewTry,
    Owner, Project, Result, ReviewDecision, SavedArtifact, WebhookDelivery,
};

/// A job after a change, with the events the change appended (to publish).
#[derive(Clone, Debug, PartialEq)]
pub struct Changed {
    /// The job as it is now.
    pub job: Job,
    /// The events appended, in seq order.
    pub events: Vec<JobEvent>,
    /// Other jobs the change moved in the same transaction, each with its
    /// events (a flat list: their own `dependents` are empty): dependents
    /// released (`waiting → queued`) when the job succeeded, or cancelled
    /// with `dependency_failed` (transitively) when it failed or was
    /// cancelled. See [`crate::workflow`].
    pub dependents: Vec<Changed>,
}

impl Changed {
    /// A change of one job only.
    pub fn of(job: Job, events: Vec<JobEvent>) -> Self {
        Self {
            job,
            events,
            dependents: Vec::new(),
        }
    }
}

/// What a create that may find its job existing did: created it (with the
/// events to publish), or found the job an earlier call created.
#[derive(Clone, Debug, PartialEq)]
pub enum Created {
    /// Created now.
    New(Changed),
    /// Created earlier; nothing changed.
    Existing(Job),
}

/// A successful claim: the job, its new running attempt, and the `running` event.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// The job, now `running`.
    pub job: Job,
    /// The new attempt; [`Attempt::fence`] guards its writes.
    pub attempt: Attempt,
    /// The events appended (the `running` status event).
    pub events: Vec<JobEvent>,
}

/// A job with its whole event log and its attempts, from
/// [`Store::job_detail`] and [`Engine::detail`](crate::Engine::detail).
#[derive(Clone, Debug, PartialEq)]
pub struct JobDetail {
    /// The job.
    pub job: Job,
    /// Its events, by seq.
    pub events: Vec<JobEvent>,
    /// Its attempts, by number.
    pub attempts: Vec<Attempt>,
}

/// What a heartbeat learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The owner asked to cancel: the worker must stop the orchestrator.
    pub cancel_requested: bool,
    /// The lease now runs until then.
    pub lease_expires_at: DateTime<Utc>,
}

/// How an attempt ended, as reported to [`Store::finish`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The orchestrator succeeded: job `succeeded`, attempt `succeeded`.
    Succeeded,
    /// The orchestrator failed. With `retry_in` and attempts left, the job is
    /// queued again to run after that delay; otherwise it is `failed`.
    Failed {
        /// The error.
        error: JobError,
        /// Retry after this delay, if attempts remain; `None` for a fatal error.
        retry_in: Option<Duration>,
    },
    /// The attempt ran past the job's timeout; retried like [`Outcome::Failed`].
    TimedOut {
        /// Retry after this delay, if attempts remain.
        retry_in: Option<Duration>,
    },
    /// The owner's cancel was honoured: job and attempt `cancelled`.
    Cancelled,
    /// The worker is shutting down: attempt `cancelled`, job queued again at once
    /// without spending an attempt.
    Released,
    /// Recovery: the attempt's lease has expired (the store checks it in the same
    /// statement). Attempt `lost`; the job is queued again, or `failed` when its
    /// attempts are spent, or `cancelled` when a cancel was pending.
    Lost,
}

/// A queued job whose time has come, for recovery to push to the queue again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueJob {
    /// The job.
    pub id: JobId,
    /// Its named queue.
    pub queue: String,
    /// Its priority.
    pub priority: i32,
    /// When it may run.
    pub run_at: DateTime<Utc>,
    /// Its owner (the fairness group of its queue entry, with fair queues).
    pub owner: Owner,
}

/// The source of truth for jobs, attempts, events and apps.
///
/// # Contract
/// - **Transitions** are planned by [`transition`](crate::transition) (claim,
///   heartbeat, cancel, retry, finish, recovery's `Lost`), which checks them
///   against [`JobStatus::can_become`](crate::JobStatus::can_become); a store
///   executes the plan as one atomic compare-and-set on the state the plan
///   starts from (never read-then-write). A change the table forbids returns
///   [`Error::Conflict`](crate::Error::Conflict) and changes nothing.
/// - **Quota**: a [`NewJob`] with `max_queued` is refused with
///   [`Error::LimitExceeded`](crate::Error::LimitExceeded) when its owner has
///   that many `queued` jobs, counted atomically with the insert: concurrent
///   submissions never pass it.
/// - **Events**: every change appends its events in the same transaction, with a
///   per-job `seq` of 1, 2, 3 … without gaps, even under concurrent writers. Every
///   mutating call returns the events it appended so the caller can publish them.
/// - **Fencing**: a call taking a [`Fence`] succeeds only while `fence.attempt` is
///   the job's running attempt; otherwise it returns
///   [`Error::StaleAttempt`](crate::Error::StaleAttempt) and changes nothing.
/// - **Claim** is exclusive: of any number of concurrent claimers of a job, at
///   most one gets it.
/// - Unknown ids: getters answer `Ok(None)`; mutations answer
///   [`Error::NotFound`](crate::Error::NotFound).
/// - **Webhook outbox**: every transition that leaves a job `succeeded`,
///   `failed`, `cancelled` or `awaiting_review` ([`Store::finish`], including
///   recovery's [`Outcome::Lost`], [`Store::request_cancel`] of a job no
///   worker holds, and [`Store::review`]) writes
///   one `pending` [`WebhookDelivery`], due now, per destination of
///   [`transition::webhook_destinations`](crate::transition::webhook_destinations),
///   in the same transaction as the state. A job without destinations writes none.
/// - **Deliveries**: [`Store::claim_deliveries`] hands a due delivery to one
///   caller only, hiding it for the visibility timeout; a try is recorded
///   only on a pending delivery whose `tries` is still what the claim saw
///   (otherwise [`Conflict`](crate::Error::Conflict), nothing changed).
/// - **Dependencies** (see [`crate::workflow`]): a transition that leaves
///   a job `succeeded` releases, in the same transaction, each `waiting`
///   dependent whose dependencies have all succeeded
///   ([`transition::plan_release`](crate::transition::plan_release)); one
///   that leaves it `failed` or `cancelled` ([`Store::finish`], recovery's
///   [`Outcome::Lost`], [`Store::request_cancel`]) cancels its `waiting`
///   dependents, transitively
///   ([`transition::plan_dependency_failed`](crate::transition::plan_dependency_failed)),
///   each with its status event and its webhook outbox rows. The jobs moved
///   are in the answer's [`Changed::dependents`] (a flat list). A new job's
///   dependencies are read under a lock that orders the insert against
///   their end, so no dependent is ever left waiting for a job that ended.
/// - Owner checks are the [`Engine`](crate::Engine)'s; the store trusts its
///   caller, except that a new job's dependencies must be its owner's.
/// - Times come from the store's own clock.
///
/// The kit's `store_suite!` (feature `testkit`) checks all of it, and runs the
/// differential check: every method's answers, side by side with
/// [`MemoryStore`](crate::memory::MemoryStore), the reference.
///
/// # Provided methods
/// [`Store::job_detail`] has a default built on [`Store::get_job`],
/// [`Store::events`] and [`Store::attempts`] (several round trips); a store
/// that can answer in one read overrides it. Every other method is required.
///
/// # Wrappers
/// A store that wraps another (adds latency, counts calls, injects faults)
/// must forward **every** method, provided ones included, or it silently
/// replaces the inner store's override with the default. Put
/// `#[deny(clippy::missing_trait_methods)]` on the `impl` so the compiler says
/// when one is missing:
///
/// ```
/// # use std::sync::Arc;
/// # use projectengine_core::Store;
/// #[derive(Debug)]
/// struct Counting {
///     inner: Arc<dyn Store>,
/// }
///
/// #[async_trait::async_trait]
/// #[deny(clippy::missing_trait_methods)]
/// impl Store for Counting {
///     // ... every method, forwarding to `self.inner` ...
/// #   async fn create_job(&self, j: projectengine_core::NewJob) -> projectengine_core::Result<projectengine_core::Changed> { self.inner.create_job(j).await }
/// #   async fn get_job(&self, id: projectengine_core::JobId) -> projectengine_core::Result<Option<projectengine_core::Job>> { self.inner.get_job(id).await }
/// #   async fn list_jobs(&self, o: &projectengine_core::Owner, q: &projectengine_core::JobQuery) -> projectengine_core::Result<Vec<projectengine_core::Job>> { self.inner.list_jobs(o, q).await }
/// #   async fn claim(&self, id: projectengine_core::JobId, w: &str, l: std::time::Duration) -> projectengine_core::Result<Option<projectengine_core::Claim>> { self.inner.claim(id, w, l).await }
/// #   async fn append(&self, f: projectengine_core::Fence, e: Vec<projectengine_core::EventData>) -> projectengine_core::Result<Vec<projectengine_core::JobEvent>> { self.inner.append(f, e).await }
/// #   async fn append_batch(&self, f: projectengine_core::Fence, b: u64, e: Vec<projectengine_core::EventData>) -> projectengine_core::Result<Option<Vec<projectengine_core::JobEvent>>> { self.inner.append_batch(f, b, e).await }
/// #   async fn heartbeat(&self, f: projectengine_core::Fence, l: std::time::Duration) -> projectengine_core::Result<projectengine_core::Heartbeat> { self.inner.heartbeat(f, l).await }
/// #   async fn finish(&self, f: projectengine_core::Fence, o: projectengine_core::Outcome) -> projectengine_core::Result<projectengine_core::Changed> { self.inner.finish(f, o).await }
/// #   async fn save_app(&self, f: projectengine_core::Fence, a: projectengine_core::NewApp) -> projectengine_core::Result<(projectengine_core::App, Vec<projectengine_core::JobEvent>)> { self.inner.save_app(f, a).await }
/// #   async fn put_artifact(&self, f: projectengine_core::Fence, a: projectengine_core::NewArtifact) -> projectengine_core::Result<projectengine_core::SavedArtifact> { self.inner.put_artifact(f, a).await }
/// #   async fn artifacts(&self, id: projectengine_core::JobId) -> projectengine_core::Result<Vec<projectengine_core::Artifact>> { self.inner.artifacts(id).await }
/// #   async fn artifact(&self, id: projectengine_core::JobId, n: &str) -> projectengine_core::Result<Option<projectengine_core::Artifact>> { self.inner.artifact(id, n).await }
/// #   async fn request_cancel(&self, id: projectengine_core::JobId) -> projectengine_core::Result<projectengine_core::Changed> { self.inner.request_cancel(id).await }
/// #   async fn retry(&self, id: projectengine_core::JobId) -> projectengine_core::Result<projectengine_core::Changed> { self.inner.retry(id).await }
/// #   async fn review(&self, id: projectengine_core::JobId, d: projectengine_core::ReviewDecision) -> projectengine_core::Result<projectengine_core::Changed> { self.inner.review(id, d).await }
/// #   async fn events(&self, id: projectengine_core::JobId, a: u64, l: usize) -> projectengine_core::Result<Vec<projectengine_core::JobEvent>> { self.inner.events(id, a, l).await }
/// #   async fn attempts(&self, id: projectengine_core::JobId) -> projectengine_core::Result<Vec<projectengine_core::Attempt>> { self.inner.attempts(id).await }
/// #   async fn job_detail(&self, id: projectengine_core::JobId) -> projectengine_core::Result<Option<projectengine_core::JobDetail>> { self.inner.job_detail(id).await }
/// #   async fn get_app(&self, id: projectengine_core::AppId) -> projectengine_core::Result<Option<projectengine_core::App>> { self.inner.get_app(id).await }
/// #   async fn app_by_job(&self, id: projectengine_core::JobId) -> projectengine_core::Result<Option<projectengine_core::App>> { self.inner.app_by_job(id).await }
/// #   async fn list_apps(&self, o: &projectengine_core::Owner, c: Option<projectengine_core::AppId>, l: usize) -> projectengine_core::Result<Vec<projectengine_core::App>> { self.inner.list_apps(o, c, l).await }
/// #   async fn expired_leases(&self, l: usize) -> projectengine_core::Result<Vec<projectengine_core::Fence>> { self.inner.expired_leases(l).await }
/// #   async fn due_jobs(&self, o: std::time::Duration, l: usize) -> projectengine_core::Result<Vec<projectengine_core::DueJob>> { self.inner.due_jobs(o, l).await }
/// #   async fn purge_finished(&self, b: chrono::DateTime<chrono::Utc>, l: usize) -> projectengine_core::Result<Vec<projectengine_core::retention::Purged>> { self.inner.purge_finished(b, l).await }
/// #   async fn claim_deliveries(&self, l: usize, v: std::time::Duration) -> projectengine_core::Result<Vec<projectengine_core::WebhookDelivery>> { self.inner.claim_deliveries(l, v).await }
/// #   async fn record_delivery_try(&self, id: projectengine_core::DeliveryId, c: u32, t: projectengine_core::NewTry, n: projectengine_core::DeliveryNext) -> projectengine_core::Result<projectengine_core::WebhookDelivery> { self.inner.record_delivery_try(id, c, t, n).await }
/// #   async fn deliveries(&self, id: projectengine_core::JobId) -> projectengine_core::Result<Vec<projectengine_core::DeliveryLog>> { self.inner.deliveries(id).await }
/// #   async fn create_child(&self, f: projectengine_core::Fence, j: projectengine_core::NewJob) -> projectengine_core::Result<projectengine_core::Created> { self.inner.create_child(f, j).await }
/// #   async fn children(&self, id: projectengine_core::JobId) -> projectengine_core::Result<Vec<projectengine_core::Job>> { self.inner.children(id).await }
/// #   async fn create_job_idempotent(&self, j: projectengine_core::NewJob, k: &projectengine_core::IdempotencyKey) -> projectengine_core::Result<projectengine_core::Created> { self.inner.create_job_idempotent(j, k).await }
/// #   async fn create_schedule(&self, s: projectengine_core::NewSchedule) -> projectengine_core::Result<projectengine_core::Schedule> { self.inner.create_schedule(s).await }
/// #   async fn get_schedule(&self, id: projectengine_core::ScheduleId) -> projectengine_core::Result<Option<projectengine_core::Schedule>> { self.inner.get_schedule(id).await }
/// #   async fn list_schedules(&self, o: &projectengine_core::Owner, c: Option<projectengine_core::ScheduleId>, l: usize) -> projectengine_core::Result<Vec<projectengine_core::Schedule>> { self.inner.list_schedules(o, c, l).await }
/// #   async fn update_schedule(&self, id: projectengine_core::ScheduleId, r: u64, s: projectengine_core::ScheduleSettings) -> projectengine_core::Result<projectengine_core::Schedule> { self.inner.update_schedule(id, r, s).await }
/// #   async fn delete_schedule(&self, id: projectengine_core::ScheduleId) -> projectengine_core::Result<()> { self.inner.delete_schedule(id).await }
/// #   async fn due_schedules(&self, l: usize) -> projectengine_core::Result<Vec<projectengine_core::Schedule>> { self.inner.due_schedules(l).await }
/// #   async fn fire_schedule(&self, f: projectengine_core::ScheduleFire) -> projectengine_core::Result<projectengine_core::Fired> { self.inner.fire_schedule(f).await }
/// #   async fn schedule_runs(&self, id: projectengine_core::ScheduleId, b: Option<chrono::DateTime<chrono::Utc>>, l: usize) -> projectengine_core::Result<Vec<projectengine_core::ScheduleRun>> { self.inner.schedule_runs(id, b, l).await }
/// #   async fn ping(&self) -> projectengine_core::Result<()> { self.inner.ping().await }
/// #   async fn create_jobs(&self, j: Vec<projectengine_core::NewJob>) -> projectengine_core::Result<Vec<projectengine_core::Changed>> { self.inner.create_jobs(j).await }
/// #   async fn projects(&self, o: &projectengine_core::Owner) -> projectengine_core::Result<Vec<projectengine_core::Project>> { self.inner.projects(o).await }
/// }
/// ```
///
/// There is no blanket `impl Store for Arc<T>`: the engine holds an
/// `Arc<dyn Store>` already, and such an impl would make every call through
/// it box a second future to forward to the first.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// Creates a `queued` job and appends its first event (`status: queued`, seq 1).
    /// An id that exists already is a [`Conflict`](crate::Error::Conflict).
    /// A job with [`NewJob::depends_on`] starts as
    /// [`workflow::plan_create`](crate::workflow::plan_create) says, from its
    /// dependencies as they are in the same transaction (`waiting` while one
    /// has not succeeded); they are recorded so that their end releases or
    /// cancels it.
    async fn create_job(&self, job: NewJob) -> Result<Changed>;

    /// The job, if it exists.
    async fn get_job(&self, id: JobId) -> Result<Option<Job>>;

    /// One page of an owner's jobs in id order (ascending, or descending with
    /// `newest_first`), strictly after `query.cursor`, at most `query.limit` of them.
    async fn list_jobs(&self, owner: &Owner, query: &JobQuery) -> Result<Vec<Job>>;

    /// Claims a `queued` job whose `run_at` has come: job `running`, a new attempt
    /// (number + 1, lease `lease` from now), the `running` event. `Ok(None)` when
    /// the job is not claimable (not queued, not due, unknown, or claimed by
    /// another), or when it has a concurrency key and as many of its owner's
    /// jobs with that key as its limit are `running` — counted in one step
    /// with the claim, so the limit holds under concurrent claims (see
    /// [`crate::concurrency`]).
    async fn claim(&self, id: JobId, worker_id: &str, lease: Duration) -> Result<Option<Claim>>;

    /// Appends progress events of a running attempt, in order, in one transaction:
    /// `stage`, `step`, `progress`, `log`, `error` and `fs_audit` only (others are
    /// [`Invalid`](crate::Error::Invalid)). Stage and progress also update the job.
    async fn append(&self, fence: Fence, events: Vec<EventData>) -> Result<Vec<JobEvent>>;

    /// Appends the attempt's numbered batch of reports once, like
    /// [`Store::append`]: batches are numbered 1, 2, 3 … per attempt; the
    /// next number is appended (`Some(events)`) and becomes the attempt's last
    /// batch in the same transaction; a number already applied (a retried
    /// request) answers `None` and changes nothing; a number past the next
    /// is [`Invalid`](crate::Error::Invalid) (checked by
    /// [`transition::check_batch`](crate::transition::check_batch)).
    async fn append_batch(
        &self,
        fence: Fence,
        batch: u64,
        events: Vec<EventData>,
    ) -> Result<Option<Vec<JobEvent>>>;

    /// Extends the attempt's lease to `lease` from now, and reports a pending cancel.
    async fn heartbeat(&self, fence: Fence, lease: Duration) -> Result<Heartbeat>;

    /// Ends the attempt with `outcome` and moves the job accordingly.
    async fn finish(&self, fence: Fence, outcome: Outcome) -> Result<Changed>;

    /// Saves the job's App (fenced) and appends the `app` event. A job has one
    /// App: a later attempt's App replaces an earlier attempt's (keeping its id);
    /// a second App from the same attempt is a [`Conflict`](crate::Error::Conflict).
    async fn save_app(&self, fence: Fence, app: NewApp) -> Result<(App, Vec<JobEvent>)>;

    /// Makes an uploaded artifact visible (fenced) and appends the `artifact`
    /// event. A name is unique in its job: a later write of the same name, by
    /// this attempt or a later one, replaces the earlier and answers it as
    /// `replaced`. Past `artifact.max_job_bytes` it is
    /// [`LimitExceeded`](crate::Error::LimitExceeded) and changes nothing.
    async fn put_artifact(&self, fence: Fence, artifact: NewArtifact) -> Result<SavedArtifact>;

    /// The job's artifacts, by name.
    async fn artifacts(&self, job_id: JobId) -> Result<Vec<Artifact>>;

    /// The job's artifact of that name, if any.
    async fn artifact(&self, job_id: JobId, name: &str) -> Result<Option<Artifact>>;

    /// The owner's cancel: a `queued` job becomes `cancelled` at once; a `running`
    /// job gets `cancel_requested` (and a `cancel_requested` event) for its worker
    /// to honour. A finished job is a [`Conflict`](crate::Error::Conflict).
    async fn request_cancel(&self, id: JobId) -> Result<Changed>;

    /// The owner's retry: a `failed` or `cancelled` job is `queued` again, due now,
    /// with its attempt budget renewed. Any other status is a
    /// [`Conflict`](crate::Error::Conflict).
    async fn retry(&self, id: JobId) -> Result<Changed>;

    /// A reviewer's decision on a job `awaiting_review`, as
    /// [`transition::plan_review`](crate::transition::plan_review) plans it,
    /// in one transaction with its events and its webhook outbox: an
    /// approval makes the job `succeeded`; a rejection records the comment
    /// and queues the job again (due now) or fails it with the error
    /// `rejected` when its attempts are spent. Any other status is a
    /// [`Conflict`](crate::Error::Conflict).
    async fn review(&self, id: JobId, decision: ReviewDecision) -> Result<Changed>;

    /// Events with `seq > after`, ascending, at most `limit`.
    async fn events(&self, id: JobId, after: u64, limit: usize) -> Result<Vec<JobEvent>>;

    /// The job's attempts, by number.
    async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>>;

    /// The job with its whole event log and its attempts, if it exists: what
    /// a job page shows. The default reads them one after another; a store
    /// with round trips to save may answer in one.
    async fn job_detail(&self, id: JobId) -> Result<Option<JobDetail>> {
        const PAGE: usize = 1000;
        let Some(job) = self.get_job(id).await? else {
            return Ok(None);
        };
        let mut events: Vec<JobEvent> = Vec::new();
        loop {
            let after = events.last().map_or(0, |e| e.seq);
            let page = self.events(id, after, PAGE).await?;
            let more = page.len() >= PAGE;
            events.extend(page);
            if !more {
                break;
            }
        }
        let attempts = self.attempts(id).await?;
        Ok(Some(JobDetail {
            job,
            events,
            attempts,
        }))
    }

    /// The App, if it exists.
    async fn get_app(&self, id: AppId) -> Result<Option<App>>;

    /// The App a job published, if any.
    async fn app_by_job(&self, job_id: JobId) -> Result<Option<App>>;

    /// One page of an owner's apps in id order, strictly after `cursor`.
    async fn list_apps(
        &self,
        owner: &Owner,
        cursor: Option<AppId>,
        limit: usize,
    ) -> Result<Vec<App>>;

    /// Running attempts whose lease has expired, at most `limit`.
    async fn expired_leases(&self, limit: usize) -> Result<Vec<Fence>>;

    /// Queued jobs whose `run_at` is at least `overdue` in the past, oldest
    /// first, at most `limit`: the jobs a lost queue entry may have stranded.
    async fn due_jobs(&self, overdue: Duration, limit: usize) -> Result<Vec<DueJob>>;

    /// Deletes at most `limit` jobs that finished before `before`, oldest
    /// first, in one transaction: each with its events, attempts, App,
    /// artifact records, webhook deliveries and idempotency keys. Keeps a job
    /// that is not finished, one with a webhook delivery still pending, and
    /// one with child jobs still stored (see [`crate::retention`]). Answers
    /// the jobs deleted with their artifacts' blobs.
    async fn purge_finished(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::retention::Purged>>;

    /// Claims up to `limit` due deliveries (`pending`, `next_at` reached),
    /// earliest `next_at` first: each is hidden from other claims until
    /// `visibility` from now (its `next_at` moves there), so concurrent
    /// dispatchers never get the same one; if its try is not recorded by then,
    /// it is due again.
    async fn claim_deliveries(
        &self,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<WebhookDelivery>>;

    /// Records a try of a claimed delivery and its next state: the try is
    /// number `tries + 1`, stamped with the store's clock; `next` makes the
    /// delivery due again after a delay, `delivered` or `failed`. Refused with
    /// [`Conflict`](crate::Error::Conflict) unless the delivery is pending with
    /// `claimed_tries` tries (the [`WebhookDelivery::tries`] its claim
    /// returned); an unknown id is [`NotFound`](crate::Error::NotFound).
    async fn record_delivery_try(
        &self,
        id: DeliveryId,
        claimed_tries: u32,
        attempt: NewTry,
        next: DeliveryNext,
    ) -> Result<WebhookDelivery>;

    /// A job's deliveries, oldest first, each with its tries by number.
    async fn deliveries(&self, job_id: JobId) -> Result<Vec<DeliveryLog>>;

    /// Creates a schedule with its settings (revision 1). An id that exists
    /// already is a [`Conflict`](crate::Error::Conflict).
    async fn create_schedule(&self, schedule: NewSchedule) -> Result<Schedule>;

    /// The schedule, if it exists.
    async fn get_schedule(&self, id: ScheduleId) -> Result<Option<Schedule>>;

    /// One page of an owner's schedules in id order, strictly after `cursor`.
    async fn list_schedules(
        &self,
        owner: &Owner,
        cursor: Option<ScheduleId>,
        limit: usize,
    ) -> Result<Vec<Schedule>>;

    /// Replaces the schedule's settings (its `next_fire_at` included) and
    /// bumps its revision, only while its revision is still `revision`
    /// (otherwise [`Conflict`](crate::Error::Conflict), nothing changed); an
    /// unknown id is [`NotFound`](crate::Error::NotFound).
    async fn update_schedule(
        &self,
        id: ScheduleId,
        revision: u64,
        settings: ScheduleSettings,
    ) -> Result<Schedule>;

    /// Deletes the schedule and its runs (its jobs stay); an unknown id is
    /// [`NotFound`](crate::Error::NotFound).
    async fn delete_schedule(&self, id: ScheduleId) -> Result<()>;

    /// Enabled schedules whose `next_fire_at` has come (store clock),
    /// earliest first, at most `limit`.
    async fn due_schedules(&self, limit: usize) -> Result<Vec<Schedule>>;

    /// Fires one tick, in one transaction: only while the schedule's
    /// `next_fire_at` is `fire.expected_next_fire_at` (and it is enabled),
    /// moves it to `fire.next_fire_at`, records the tick's
    /// [`ScheduleRun`] and creates `fire.job` like [`Store::create_job`]
    /// (the schedule's `last_job_id` becomes its id). With
    /// `skip_if_running`, while the schedule's last job is not finished, no
    /// job is created and the run is skipped (`overlap`). A plan whose
    /// `next_fire_at` no longer matches, or whose tick (or job id) was
    /// fired already, answers [`Fired::AlreadyFired`] and changes nothing.
    async fn fire_schedule(&self, fire: ScheduleFire) -> Result<Fired>;

    /// The schedule's runs, newest tick first, with ticks strictly before
    /// `before`, at most `limit`.
    async fn schedule_runs(
        &self,
        id: ScheduleId,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<ScheduleRun>>;

    /// Checks that the store is reachable.
    async fn ping(&self) -> Result<()>;

    /// Creates a child of the job whose running attempt is `fence`, like
    /// [`Store::create_job`] (quota included): `job.parent_id` must be
    /// `fence.job_id` and `job.child_key` set, else
    /// [`Invalid`](crate::Error::Invalid). (parent, key) is unique: when the
    /// parent has a child of that key already, the answer is
    /// [`Created::Existing`] with that child and nothing changes. Fenced: a
    /// `fence` that is not the parent's running attempt is
    /// [`StaleAttempt`](crate::Error::StaleAttempt), checked in the same
    /// transaction as the insert, and nothing changes.
    async fn create_child(&self, fence: Fence, job: NewJob) -> Result<Created>;

    /// The job's children, oldest first.
    async fn children(&self, parent: JobId) -> Result<Vec<Job>>;

    /// Creates a job like [`Store::create_job`], keyed by `key` in its
    /// owner's keys. While the owner's key is kept (it expires `key.ttl`
    /// after its first use, by the store's clock), the same key with the
    /// same `request_hash` answers [`Created::Existing`] with the job it
    /// created, and with another hash
    /// [`IdempotencyKeyReused`](crate::Error::IdempotencyKeyReused); neither
    /// changes anything. Otherwise (no key, or an expired one) the job and
    /// the key are written in one transaction: of any number of concurrent
    /// calls with one key, exactly one creates a job. A refused create
    /// (quota, conflict) keeps no key.
    async fn create_job_idempotent(&self, job: NewJob, key: &IdempotencyKey) -> Result<Created>;
    /// Creates the jobs in one transaction, in the order given, all or none:
    /// each as [`Store::create_job`] would, so a job may depend on one
    /// earlier in the list. The first refusal is the answer, and nothing is
    /// created.
    async fn create_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Changed>>;

    /// The owner's projects, by name, with their jobs counted per status.
    async fn projects(&self, owner: &Owner) -> Result<Vec<Project>>;
}
