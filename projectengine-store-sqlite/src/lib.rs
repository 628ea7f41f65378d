#![doc = include_str!("../README.md")]

mod dependencies;
mod error;
mod reads;
mod retention;
mod review;
mod rows;
mod schedules;
mod writer;
mod writes;

use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use projectengine_core::schedule::{
    Fired, NewSchedule, Schedule, ScheduleFire, ScheduleId, ScheduleRun, ScheduleSettings,
};
use projectengine_core::{
    App, AppId, Artifact, Attempt, Changed, Claim, Created, DeliveryId, DeliveryLog, DeliveryNext,
    DueJob, Error, EventData, Fence, Heartbeat, IdempotencyKey, Job, JobDetail, JobEvent, JobId,
    JobQuery, NewApp, NewArtifact, NewJob, NewTry, Outcome, Owner, Project, Result, ReviewDecision,
    SavedArtifact, Store, WebhookDelivery,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;

use error::map;
use writer::{Done, Op, ScheduleOp, Writer};

/// The migrations this crate embeds, in `migrations/`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How a [`SqliteStore`] runs: batch size, read connections, busy timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqliteConfig {
    /// The most writes one transaction (one WAL sync) takes (default 64).
    pub max_batch: usize,
    /// Connections of the read pool (default 4).
    pub readers: u32,
    /// How long a connection waits for a lock another process holds before
    /// the call fails with `Unavailable` (default 5 s).
    pub busy_timeout: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            max_batch: 64,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// What the writer has committed so far, from [`SqliteStore::write_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes answered from them (refused ones included).
    pub writes: u64,
}

/// A [`Store`] in one SQLite file: WAL mode, `synchronous = FULL`, one writer
/// task that commits the writes waiting for it in shared transactions, and a
/// pool of read-only connections. See the crate documentation.
///
/// Cheap to clone: clones share the writer and the read pool.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    reads: SqlitePool,
    writer: Writer,
}

impl SqliteStore {
    /// Opens the database at `url` (`sqlite://jobs.db`, `sqlite:///abs/path.db`,
    /// or a bare path), creating the file if it is missing, and applies the
    /// embedded migrations that are not applied yet. Must be called inside a
    /// Tokio runtime: it starts the writer task there.
    ///
    /// An in-memory database is refused: it is not durable, and each
    /// connection would see a database of its own.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, SqliteConfig::default()).await
    }

    /// Like [`SqliteStore::open`], with `config`.
    pub async fn open_with(url: &str, config: SqliteConfig) -> Result<Self> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(Error::invalid(
                "database_url",
                "an in-memory SQLite database is not durable; name a file, or use the memory store",
            ));
        }
        let url = if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            format!("sqlite://{url}")
        };
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(map)?
            .create_if_missing(true)
            .busy_timeout(config.busy_timeout)
            .foreign_keys(true);
        let mut conn = options
            .clone()
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .connect()
            .await
            .map_err(map)?;
        MIGRATOR
            .run_direct(&mut conn)
            .await
            .map_err(|e| map(sqlx::Error::Migrate(Box::new(e))))?;
        let reads = SqlitePoolOptions::new()
            .max_connections(config.readers.max(1))
            .acquire_timeout(config.busy_timeout.max(Duration::from_secs(1)))
            .connect_with(options.pragma("query_only", "ON"))
            .await
            .map_err(map)?;
        Ok(Self {
            reads,
            writer: Writer::spawn(conn, config.max_batch),
        })
    }

    /// The transactions the writer committed so far, and the writes they held.
    pub fn write_stats(&self) -> WriteStats {
        let counters = self.writer.counters();
        WriteStats {
            commits: counters.commits.load(Ordering::Relaxed),
            writes: counters.writes.load(Ordering::Relaxed),
        }
    }

    async fn write(&self, op: Op) -> Result<Done> {
        self.writer.run(op).await
    }
}

/// A write answered with another write's kind of answer: a bug of this crate.
fn unexpected() -> Error {
    Error::internal("a write got an answer of the wrong kind")
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_job(&self, job: NewJob) -> Result<Changed> {
        match self.write(Op::Create(job)).await? {
            Done::Changed(changed) => Ok(changed),
            _ => Err(unexpected()),
        }
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        let mut conn = self.reads.acquire().await.map_err(map)?;
        reads::job(&mut conn, id).await
    }

    async fn list_jobs(&self, owner: &Owner, query: &JobQuery) -> Result<Vec<Job>> {
        reads::list_jobs(&self.reads, owner, query).await
    }

    async fn claim(&self, id: JobId, worker_id: &str, lease: Duration) -> Result<Option<Claim>> {
        let op = Op::Claim {
            id,
            worker_id: worker_id.to_owned(),
            lease,
        };
        match self.write(op).await? {
            Done::Claim(claim) => Ok(claim),
            _ => Err(unexpected()),
        }
    }

    async fn append(&self, fence: Fence, events: Vec<EventData>) -> Result<Vec<JobEvent>> {
        projectengine_core::transition::check_appendable(&events)?;
        match self.write(Op::Append { fence, events }).await? {
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
        projectengine_core::transition::check_appendable(&events)?;
        match self
            .write(Op::AppendBatch {
                fence,
                batch,
                events,
            })
            .await?
        {
            Done::Batch(events) => Ok(events),
            _ => Err(unexpected()),
        }
    }

    async fn heartbeat(&self, fence: Fence, lease: Duration) -> Result<Heartbeat> {
        match self.write(Op::Heartbeat { fence, lease }).await? {
            Done::Heartbeat(beat) => Ok(beat),
            _ => Err(unexpected()),
        }
    }

    async fn finish(&self, fence: Fence, outcome: Outcome) -> Result<Changed> {
        match self.write(Op::Finish { fence, outcome }).await? {
            Done::Changed(changed) => Ok(changed),
            _ => Err(unexpected()),
        }
    }

    async fn save_app(&self, fence: Fence, app: NewApp) -> Result<(App, Vec<JobEvent>)> {
        match self.write(Op::SaveApp { fence, app }).await? {
            Done::App(app, events) => Ok((app, events)),
            _ => Err(unexpected()),
        }
    }

    async fn put_artifact(&self, fence: Fence, artifact: NewArtifact) -> Result<SavedArtifact> {
        match self.write(Op::PutArtifact { fence, artifact }).await? {
            Done::Artifact(saved) => Ok(saved),
            _ => Err(unexpected()),
        }
    }

    async fn artifacts(&self, job_id: JobId) -> Result<Vec<Artifact>> {
        reads::artifacts(&self.reads, job_id).await
    }

    async fn artifact(&self, job_id: JobId, name: &str) -> Result<Option<Artifact>> {
        reads::artifact(&self.reads, job_id, name).await
    }

    async fn request_cancel(&self, id: JobId) -> Result<Changed> {
        match self.write(Op::Cancel(id)).await? {
            Done::Changed(changed) => Ok(changed),
            _ => Err(unexpected()),
        }
    }

    async fn retry(&self, id: JobId) -> Result<Changed> {
        match self.write(Op::Retry(id)).await? {
            Done::Changed(changed) => Ok(changed),
            _ => Err(unexpected()),
        }
    }

    async fn review(&self, id: JobId, decision: ReviewDecision) -> Result<Changed> {
        match self.write(Op::Review { id, decision }).await? {
            Done::Changed(changed) => Ok(changed),
            _ => Err(unexpected()),
        }
    }

    async fn events(&self, id: JobId, after: u64, limit: usize) -> Result<Vec<JobEvent>> {
        let mut conn = self.reads.acquire().await.map_err(map)?;
        reads::events(&mut conn, id, after, limit).await
    }

    async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>> {
        let mut conn = self.reads.acquire().await.map_err(map)?;
        reads::attempts(&mut conn, id).await
    }

    async fn job_detail(&self, id: JobId) -> Result<Option<JobDetail>> {
        reads::detail(&self.reads, id).await
    }

    async fn get_app(&self, id: AppId) -> Result<Option<App>> {
        reads::app(&self.reads, id).await
    }

    async fn app_by_job(&self, job_id: JobId) -> Result<Option<App>> {
        reads::app_by_job(&self.reads, job_id).await
    }

    async fn list_apps(
        &self,
        owner: &Owner,
        cursor: Option<AppId>,
        limit: usize,
    ) -> Result<Vec<App>> {
        reads::list_apps(&self.reads, owner, cursor, limit).await
    }

    async fn expired_leases(&self, limit: usize) -> Result<Vec<Fence>> {
        reads::expired_leases(&self.reads, limit).await
    }

    async fn due_jobs(&self, overdue: Duration, limit: usize) -> Result<Vec<DueJob>> {
        reads::due_jobs(&self.reads, overdue, limit).await
    }

    async fn purge_finished(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<projectengine_core::retention::Purged>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        match self.write(Op::Purge { before, limit }).await? {
            Done::Purged(purged) => Ok(purged),
            _ => Err(unexpected()),
        }
    }

    async fn claim_deliveries(
        &self,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<WebhookDelivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        match self
            .write(Op::ClaimDeliveries { limit, visibility })
            .await?
        {
            Done::Deliveries(claimed) => Ok(claimed),
            _ => Err(unexpected()),
        }
    }

    async fn record_delivery_try(
        &self,
        id: DeliveryId,
        claimed_tries: u32,
        attempt: NewTry,
        next: DeliveryNext,
    ) -> Result<WebhookDelivery> {
        let op = Op::RecordTry {
            id,
            claimed_tries,
            attempt,
            next,
        };
        match self.write(op).await? {
            Done::Delivery(delivery) => Ok(delivery),
            _ => Err(unexpected()),
        }
    }

    async fn deliveries(&self, job_id: JobId) -> Result<Vec<DeliveryLog>> {
        reads::deliveries(&self.reads, job_id).await
    }

    async fn create_schedule(&self, schedule: NewSchedule) -> Result<Schedule> {
        match self
            .write(Op::Schedule(ScheduleOp::Create(schedule)))
            .await?
        {
            Done::Schedule(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    async fn get_schedule(&self, id: ScheduleId) -> Result<Option<Schedule>> {
        schedules::get_one(&self.reads, id).await
    }

    async fn list_schedules(
        &self,
        owner: &Owner,
        cursor: Option<ScheduleId>,
        limit: usize,
    ) -> Result<Vec<Schedule>> {
        schedules::list(&self.reads, owner, cursor, limit).await
    }

    async fn update_schedule(
        &self,
        id: ScheduleId,
        revision: u64,
        settings: ScheduleSettings,
    ) -> Result<Schedule> {
        let op = ScheduleOp::Update {
            id,
            revision,
            settings,
        };
        match self.write(Op::Schedule(op)).await? {
            Done::Schedule(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    async fn delete_schedule(&self, id: ScheduleId) -> Result<()> {
        match self.write(Op::Schedule(ScheduleOp::Delete(id))).await? {
            Done::Deleted => Ok(()),
            _ => Err(unexpected()),
        }
    }

    async fn due_schedules(&self, limit: usize) -> Result<Vec<Schedule>> {
        schedules::due(&self.reads, limit).await
    }

    async fn fire_schedule(&self, fire: ScheduleFire) -> Result<Fired> {
        match self.write(Op::Schedule(ScheduleOp::Fire(fire))).await? {
            Done::Fired(f) => Ok(f),
            _ => Err(unexpected()),
        }
    }

    async fn schedule_runs(
        &self,
        id: ScheduleId,
        before: Option<chrono::DateTime<chrono::Utc>>,
        limit: usize,
    ) -> Result<Vec<ScheduleRun>> {
        schedules::runs(&self.reads, id, before, limit).await
    }

    async fn ping(&self) -> Result<()> {
        if !self.writer.alive() {
            return Err(Error::unavailable("the SQLite writer stopped"));
        }
        sqlx::query("SELECT 1")
            .execute(&self.reads)
            .await
            .map_err(map)?;
        Ok(())
    }

    async fn create_child(&self, fence: Fence, job: NewJob) -> Result<Created> {
        match self.write(Op::CreateChild { fence, job }).await? {
            Done::Created(created) => Ok(created),
            _ => Err(unexpected()),
        }
    }

    async fn create_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Changed>> {
        match self.write(Op::CreateAll(jobs)).await? {
            Done::ChangedAll(all) => Ok(all),
            _ => Err(unexpected()),
        }
    }

    async fn children(&self, parent: JobId) -> Result<Vec<Job>> {
        reads::children(&self.reads, parent).await
    }

    async fn create_job_idempotent(&self, job: NewJob, key: &IdempotencyKey) -> Result<Created> {
        let op = Op::CreateIdempotent {
            job,
            key: key.clone(),
        };
        match self.write(op).await? {
            Done::Created(created) => Ok(created),
            _ => Err(unexpected()),
        }
    }

    async fn projects(&self, owner: &Owner) -> Result<Vec<Project>> {
        reads::projects(&self.reads, owner).await
    }
}
