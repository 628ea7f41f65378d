#![doc = include_str!("../README.md")]

/// The CTE `e` that appends the events of the JSON array `$events` (see
/// `rows::encode_events`) after the job row `j` a write returned: the write
/// raised `j.last_seq` by the array's length, so the events take the seqs
/// just below it. `j` must return `id`, `attempt`, `last_seq` and `updated_at`.
macro_rules! insert_events {
    ($events:literal) => {
        concat!(
            "e AS (INSERT INTO job_events (job_id, seq, attempt, at, kind, data) ",
            "SELECT j.id, j.last_seq - jsonb_array_length(",
            $events,
            ") + t.ord, j.attempt, j.updated_at, t.ev ->> 'type', t.ev -> 'data' ",
            "FROM j, jsonb_array_elements(",
            $events,
            ") WITH ORDINALITY AS t(ev, ord))"
        )
    };
}

/// The CTE `w` that writes the webhook outbox of the job row `j` a write
/// returned: one pending delivery per destination when `j` is terminal or
/// awaiting review, with
/// the ids `$own` (its own URL) and `$deployment` (the deployment's). The
/// same rule as the core's `transition::webhook_destinations`; a job without
/// destinations inserts nothing. `j` must return the whole `jobs` row.
macro_rules! insert_deliveries {
    ($own:literal, $deployment:literal) => {
        concat!(
            "w AS (INSERT INTO webhook_deliveries (id, job_id, destination, url, job_status, ",
            "error_code, error_message, occurred_at, status, next_at, created_at, updated_at) ",
            "SELECT d.id, j.id, d.destination, CASE WHEN d.destination = 'job' THEN j.webhook END, ",
            "j.status, j.error_code, j.error_message, COALESCE(j.finished_at, j.updated_at), ",
            "'pending', j.updated_at, j.updated_at, j.updated_at ",
            "FROM j, (VALUES (",
            $own,
            "::uuid, 'job'), (",
            $deployment,
            "::uuid, 'deployment')) AS d(id, destination) ",
            "WHERE j.status IN ('awaiting_review', 'succeeded', 'failed', 'cancelled') ",
            "AND CASE d.destination WHEN 'job' THEN j.webhook IS NOT NULL ",
            "ELSE j.notify_deployment END)"
        )
    };
}

/// SQL that renders the timestamptz `$ts` as an RFC 3339 UTC string, as serde
/// writes a `DateTime<Utc>` into event data.
macro_rules! rfc3339 {
    ($ts:literal) => {
        concat!(
            "to_char(",
            $ts,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

mod apps;
mod artifacts;
mod attempts;
mod children;
mod dependencies;
mod error;
mod events;
mod group;
mod jobs;
mod recovery;
mod retention;
mod review;
mod rows;
mod schedules;
mod tx;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use projectengine_core::schedule::{
    Fired, NewSchedule, Schedule, ScheduleFire, ScheduleId, ScheduleRun, ScheduleSettings,
};
use projectengine_core::{
    App, AppId, Artifact, Attempt, Changed, Claim, Created, DeliveryId, DeliveryLog, DeliveryNext,
    DueJob, EventData, Fence, Heartbeat, IdempotencyKey, Job, JobDetail, JobEvent, JobId, JobQuery,
    NewApp, NewArtifact, NewJob, NewTry, Outcome, Owner, Project, Result, ReviewDecision,
    SavedArtifact, Store, WebhookDelivery,
};
use sqlx::postgres::{PgPool, PgPoolOptions};

pub use group::GroupCommit;
use group::{Done, Op, Writes};

/// The migrations this crate embeds, in `migrations/`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A [`Store`] on PostgreSQL (15 or later).
///
/// Cheap to clone: clones share one connection pool and one set of writers.
/// Every state change is one conditional statement, or one transaction whose
/// writes are conditional; concurrent attempt writes share transactions
/// ([`GroupCommit`]). See the crate documentation.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    writes: Arc<Writes>,
}

impl PgStore {
    /// Connects a pool with default settings to `url`
    /// (`postgres://user:password@host:port/database?options`), waiting up to
    /// 10 s for a first connection.
    ///
    /// Does not migrate: call [`PgStore::migrate`] once at startup (or run the
    /// server's `migrate` role).
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(error::map)?;
        Ok(Self::from_pool(pool))
    }

    /// A store on an existing pool: its size, timeouts and connection options
    /// (TLS, `search_path`, …) are the caller's.
    ///
    /// Concurrent writes are grouped with [`GroupCommit::default`].
    pub fn from_pool(pool: PgPool) -> Self {
        Self::with_group_commit(pool, GroupCommit::default())
    }

    /// A store on an existing pool that groups concurrent writes as `config`
    /// says ([`GroupCommit::off`]: a transaction per write).
    pub fn with_group_commit(pool: PgPool, config: GroupCommit) -> Self {
        Self {
            writes: Arc::new(Writes::new(pool.clone(), config)),
            pool,
        }
    }

    /// How this store groups concurrent writes.
    pub fn group_commit(&self) -> GroupCommit {
        self.writes.config()
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations that are not applied yet.
    ///
    /// Idempotent, and safe when several processes migrate at once: the
    /// migrator holds a PostgreSQL advisory lock while it works, on a
    /// connection of its own that is closed afterwards, so the lock never
    /// outlives the call, even when a migration fails.
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(error::map)?;
        // `run_direct`, not `run`: `run`'s future is not `Send` for every
        // lifetime (sqlx's "Acquire is not general enough"), and this one must
        // be spawnable.
        let applied = MIGRATOR.run_direct(&mut *conn).await;
        // Closing ends the session, which releases the advisory lock whatever
        // the outcome; a close failure only means the session is gone already.
        let _ = conn.close().await;
        applied.map_err(|e| error::map(sqlx::Error::Migrate(Box::new(e))))
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_job(&self, job: NewJob) -> Result<Changed> {
        match self.writes.run(Op::Create(job)).await? {
            Done::Changed(changed) => Ok(changed),
            _ => Err(unexpected()),
        }
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        jobs::get(&self.pool, id).await
    }

    async fn list_jobs(&self, owner: &Owner, query: &JobQuery) -> Result<Vec<Job>> {
        jobs::list(&self.pool, owner, query).await
    }

    async fn claim(&self, id: JobId, worker_id: &str, lease: Duration) -> Result<Option<Claim>> {
        let op = Op::Claim {
            id,
            worker_id: worker_id.to_owned(),
            lease,
        };
        match self.writes.run(op).await? {
            Done::Claim(claim) => Ok(claim),
            _ => Err(unexpected()),
        }
    }

    async fn append(&self, fence: Fence, events: Vec<EventData>) -> Result<Vec<JobEvent>> {
        projectengine_core::transition::check_appendable(&events)?;
        match self.writes.run(Op::Append { fence, events }).await? {
            Done::Events(events) => Ok(events),
            _ => Err(unexpected()),
        }
    }

    async fn append_batch(
        &self,
        fence: Fence,
        batch: u64,
        events: Vec<EventData>,
    ) -> Result<Option<Vec<JobEvent>>> {
        events::append_batch(&self.pool, fence, batch, events).await
    }

    async fn heartbeat(&self, fence: Fence, lease: Duration) -> Result<Heartbeat> {
        attempts::heartbeat(&self.pool, fence, lease).await
    }

    async fn finish(&self, fence: Fence, outcome: Outcome) -> Result<Changed> {
        match self.writes.run(Op::Finish { fence, outcome }).await? {
            Done::Changed(changed) => Ok(changed),
            _ => Err(unexpected()),
        }
    }

    async fn save_app(&self, fence: Fence, app: NewApp) -> Result<(App, Vec<JobEvent>)> {
        match self.writes.run(Op::SaveApp { fence, app }).await? {
            Done::App(app, events) => Ok((app, events)),
            _ => Err(unexpected()),
        }
    }

    async fn put_artifact(&self, fence: Fence, artifact: NewArtifact) -> Result<SavedArtifact> {
        artifacts::put(&self.pool, fence, artifact).await
    }

    async fn artifacts(&self, job_id: JobId) -> Result<Vec<Artifact>> {
        artifacts::list(&self.pool, job_id).await
    }

    async fn artifact(&self, job_id: JobId, name: &str) -> Result<Option<Artifact>> {
        artifacts::get(&self.pool, job_id, name).await
    }

    async fn request_cancel(&self, id: JobId) -> Result<Changed> {
        jobs::request_cancel(&self.pool, id).await
    }

    async fn retry(&self, id: JobId) -> Result<Changed> {
        jobs::retry(&self.pool, id).await
    }

    async fn review(&self, id: JobId, decision: ReviewDecision) -> Result<Changed> {
        review::review(&self.pool, id, decision).await
    }

    async fn events(&self, id: JobId, after: u64, limit: usize) -> Result<Vec<JobEvent>> {
        events::list(&self.pool, id, after, limit).await
    }

    async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>> {
        attempts::attempts(&self.pool, id).await
    }

    async fn job_detail(&self, id: JobId) -> Result<Option<JobDetail>> {
        jobs::detail(&self.pool, id).await
    }

    async fn get_app(&self, id: AppId) -> Result<Option<App>> {
        apps::get(&self.pool, id).await
    }

    async fn app_by_job(&self, job_id: JobId) -> Result<Option<App>> {
        apps::by_job(&self.pool, job_id).await
    }

    async fn list_apps(
        &self,
        owner: &Owner,
        cursor: Option<AppId>,
        limit: usize,
    ) -> Result<Vec<App>> {
        apps::list(&self.pool, owner, cursor, limit).await
    }

    async fn expired_leases(&self, limit: usize) -> Result<Vec<Fence>> {
        recovery::expired_leases(&self.pool, limit).await
    }

    async fn due_jobs(&self, overdue: Duration, limit: usize) -> Result<Vec<DueJob>> {
        recovery::due_jobs(&self.pool, overdue, limit).await
    }

    async fn purge_finished(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<projectengine_core::retention::Purged>> {
        retention::purge_finished(&self.pool, before, limit).await
    }

    async fn claim_deliveries(
        &self,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<WebhookDelivery>> {
        webhooks::claim(&self.pool, limit, visibility).await
    }

    async fn record_delivery_try(
        &self,
        id: DeliveryId,
        claimed_tries: u32,
        attempt: NewTry,
        next: DeliveryNext,
    ) -> Result<WebhookDelivery> {
        webhooks::record_try(&self.pool, id, claimed_tries, attempt, next).await
    }

    async fn deliveries(&self, job_id: JobId) -> Result<Vec<DeliveryLog>> {
        webhooks::list(&self.pool, job_id).await
    }

    async fn create_schedule(&self, schedule: NewSchedule) -> Result<Schedule> {
        schedules::create(&self.pool, schedule).await
    }

    async fn get_schedule(&self, id: ScheduleId) -> Result<Option<Schedule>> {
        schedules::get_one(&self.pool, id).await
    }

    async fn list_schedules(
        &self,
        owner: &Owner,
        cursor: Option<ScheduleId>,
        limit: usize,
    ) -> Result<Vec<Schedule>> {
        schedules::list(&self.pool, owner, cursor, limit).await
    }

    async fn update_schedule(
        &self,
        id: ScheduleId,
        revision: u64,
        settings: ScheduleSettings,
    ) -> Result<Schedule> {
        schedules::update(&self.pool, id, revision, settings).await
    }

    async fn delete_schedule(&self, id: ScheduleId) -> Result<()> {
        schedules::delete(&self.pool, id).await
    }

    async fn due_schedules(&self, limit: usize) -> Result<Vec<Schedule>> {
        schedules::due(&self.pool, limit).await
    }

    async fn fire_schedule(&self, fire: ScheduleFire) -> Result<Fired> {
        schedules::fire(&self.pool, fire).await
    }

    async fn schedule_runs(
        &self,
        id: ScheduleId,
        before: Option<chrono::DateTime<chrono::Utc>>,
        limit: usize,
    ) -> Result<Vec<ScheduleRun>> {
        schedules::runs(&self.pool, id, before, limit).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(error::map)?;
        Ok(())
    }

    async fn create_child(&self, fence: Fence, job: NewJob) -> Result<Created> {
        children::create_child(&self.pool, fence, job).await
    }

    async fn children(&self, parent: JobId) -> Result<Vec<Job>> {
        children::children(&self.pool, parent).await
    }

    async fn create_job_idempotent(&self, job: NewJob, key: &IdempotencyKey) -> Result<Created> {
        children::create_job_idempotent(&self.pool, job, key).await
    }

    async fn create_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Changed>> {
        jobs::create_all(&self.pool, &jobs).await
    }

    async fn projects(&self, owner: &Owner) -> Result<Vec<Project>> {
        jobs::projects(&self.pool, owner).await
    }
}

/// A write answered with another write's kind of answer: a bug of this crate.
fn unexpected() -> projectengine_core::Error {
    projectengine_core::Error::internal("a write got an answer of the wrong kind")
}
