//! Test support: a [`SqliteStore`] on a file of its own in a directory of its
//! own, removed when the store is dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use projectengine_core::{
    App, AppId, Artifact, Attempt, Changed, Claim, DeliveryId, DeliveryLog, DeliveryNext, DueJob,
    EventData, Fence, Heartbeat, Job, JobDetail, JobEvent, JobId, JobQuery, NewApp, NewArtifact,
    NewJob, NewTry, Outcome, Owner, Result, SavedArtifact, Store, WebhookDelivery,
};
use projectengine_store_sqlite::{SqliteConfig, SqliteStore};

/// A directory of its own under the system's temporary directory, removed
/// (with what it holds) when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "projectengine-sqlite-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The URL of the database file `name` in this directory.
    pub fn url(&self, name: &str) -> String {
        format!("sqlite://{}", self.0.join(name).display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store on a fresh file, with `config`.
pub async fn fresh_with(config: SqliteConfig) -> TestStore {
    let dir = TempDir::new();
    let store = SqliteStore::open_with(&dir.url("jobs.db"), config)
        .await
        .expect("open a fresh SQLite file");
    TestStore {
        store,
        url: dir.url("jobs.db"),
        _dir: dir,
    }
}

/// A store on a fresh file.
pub async fn fresh() -> TestStore {
    fresh_with(SqliteConfig::default()).await
}

/// A fresh store as the conformance suites take it.
pub async fn fresh_dyn() -> Option<Arc<dyn Store>> {
    Some(Arc::new(fresh().await) as Arc<dyn Store>)
}

/// A [`SqliteStore`] that removes its file when it is dropped.
#[derive(Debug)]
pub struct TestStore {
    pub store: SqliteStore,
    /// The file's URL, for a connection of the test's own.
    pub url: String,
    _dir: TempDir,
}

impl std::ops::Deref for TestStore {
    type Target = SqliteStore;
    fn deref(&self) -> &SqliteStore {
        &self.store
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Store for TestStore {
    async fn create_job(&self, job: NewJob) -> Result<Changed> {
        self.store.create_job(job).await
    }
    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.store.get_job(id).await
    }
    async fn list_jobs(&self, owner: &Owner, query: &JobQuery) -> Result<Vec<Job>> {
        self.store.list_jobs(owner, query).await
    }
    async fn claim(&self, id: JobId, worker_id: &str, lease: Duration) -> Result<Option<Claim>> {
        self.store.claim(id, worker_id, lease).await
    }
    async fn append(&self, fence: Fence, events: Vec<EventData>) -> Result<Vec<JobEvent>> {
        self.store.append(fence, events).await
    }
    async fn append_batch(
        &self,
        fence: Fence,
        batch: u64,
        events: Vec<EventData>,
    ) -> Result<Option<Vec<JobEvent>>> {
        self.store.append_batch(fence, batch, events).await
    }
    async fn heartbeat(&self, fence: Fence, lease: Duration) -> Result<Heartbeat> {
        self.store.heartbeat(fence, lease).await
    }
    async fn finish(&self, fence: Fence, outcome: Outcome) -> Result<Changed> {
        self.store.finish(fence, outcome).await
    }
    async fn save_app(&self, fence: Fence, app: NewApp) -> Result<(App, Vec<JobEvent>)> {
        self.store.save_app(fence, app).await
    }
    async fn put_artifact(&self, fence: Fence, artifact: NewArtifact) -> Result<SavedArtifact> {
        self.store.put_artifact(fence, artifact).await
    }
    async fn artifacts(&self, job_id: JobId) -> Result<Vec<Artifact>> {
        self.store.artifacts(job_id).await
    }
    async fn artifact(&self, job_id: JobId, name: &str) -> Result<Option<Artifact>> {
        self.store.artifact(job_id, name).await
    }
    async fn request_cancel(&self, id: JobId) -> Result<Changed> {
        self.store.request_cancel(id).await
    }
    async fn retry(&self, id: JobId) -> Result<Changed> {
        self.store.retry(id).await
    }
    async fn review(
        &self,
        id: JobId,
        decision: projectengine_core::ReviewDecision,
    ) -> Result<Changed> {
        self.store.review(id, decision).await
    }
    async fn events(&self, id: JobId, after: u64, limit: usize) -> Result<Vec<JobEvent>> {
        self.store.events(id, after, limit).await
    }
    async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>> {
        self.store.attempts(id).await
    }
    async fn job_detail(&self, id: JobId) -> Result<Option<JobDetail>> {
        self.store.job_detail(id).await
    }
    async fn get_app(&self, id: AppId) -> Result<Option<App>> {
        self.store.get_app(id).await
    }
    async fn app_by_job(&self, job_id: JobId) -> Result<Option<App>> {
        self.store.app_by_job(job_id).await
    }
    async fn list_apps(
        &self,
        owner: &Owner,
        cursor: Option<AppId>,
        limit: usize,
    ) -> Result<Vec<App>> {
        self.store.list_apps(owner, cursor, limit).await
    }
    async fn expired_leases(&self, limit: usize) -> Result<Vec<Fence>> {
        self.store.expired_leases(limit).await
    }
    async fn due_jobs(&self, overdue: Duration, limit: usize) -> Result<Vec<DueJob>> {
        self.store.due_jobs(overdue, limit).await
    }
    async fn purge_finished(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<projectengine_core::retention::Purged>> {
        self.store.purge_finished(before, limit).await
    }
    async fn claim_deliveries(
        &self,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<WebhookDelivery>> {
        self.store.claim_deliveries(limit, visibility).await
    }
    async fn record_delivery_try(
        &self,
        id: DeliveryId,
        claimed_tries: u32,
        attempt: NewTry,
        next: DeliveryNext,
    ) -> Result<WebhookDelivery> {
        self.store
            .record_delivery_try(id, claimed_tries, attempt, next)
            .await
    }
    async fn deliveries(&self, job_id: JobId) -> Result<Vec<DeliveryLog>> {
        self.store.deliveries(job_id).await
    }
    async fn create_schedule(
        &self,
        s: projectengine_core::NewSchedule,
    ) -> projectengine_core::Result<projectengine_core::Schedule> {
        self.store.create_schedule(s).await
    }
    async fn get_schedule(
        &self,
        id: projectengine_core::ScheduleId,
    ) -> projectengine_core::Result<Option<projectengine_core::Schedule>> {
        self.store.get_schedule(id).await
    }
    async fn list_schedules(
        &self,
        owner: &projectengine_core::Owner,
        cursor: Option<projectengine_core::ScheduleId>,
        limit: usize,
    ) -> projectengine_core::Result<Vec<projectengine_core::Schedule>> {
        self.store.list_schedules(owner, cursor, limit).await
    }
    async fn update_schedule(
        &self,
        id: projectengine_core::ScheduleId,
        revision: u64,
        settings: projectengine_core::ScheduleSettings,
    ) -> projectengine_core::Result<projectengine_core::Schedule> {
        self.store.update_schedule(id, revision, settings).await
    }
    async fn delete_schedule(
        &self,
        id: projectengine_core::ScheduleId,
    ) -> projectengine_core::Result<()> {
        self.store.delete_schedule(id).await
    }
    async fn due_schedules(
        &self,
        limit: usize,
    ) -> projectengine_core::Result<Vec<projectengine_core::Schedule>> {
        self.store.due_schedules(limit).await
    }
    async fn fire_schedule(
        &self,
        fire: projectengine_core::ScheduleFire,
    ) -> projectengine_core::Result<projectengine_core::Fired> {
        self.store.fire_schedule(fire).await
    }
    async fn schedule_runs(
        &self,
        id: projectengine_core::ScheduleId,
        before: Option<chrono::DateTime<chrono::Utc>>,
        limit: usize,
    ) -> projectengine_core::Result<Vec<projectengine_core::ScheduleRun>> {
        self.store.schedule_runs(id, before, limit).await
    }
    async fn ping(&self) -> Result<()> {
        self.store.ping().await
    }
    async fn create_child(
        &self,
        fence: projectengine_core::Fence,
        job: projectengine_core::NewJob,
    ) -> projectengine_core::Result<projectengine_core::Created> {
        self.store.create_child(fence, job).await
    }
    async fn children(
        &self,
        parent: projectengine_core::JobId,
    ) -> projectengine_core::Result<Vec<projectengine_core::Job>> {
        self.store.children(parent).await
    }
    async fn create_job_idempotent(
        &self,
        job: projectengine_core::NewJob,
        key: &projectengine_core::IdempotencyKey,
    ) -> projectengine_core::Result<projectengine_core::Created> {
        self.store.create_job_idempotent(job, key).await
    }
    async fn create_jobs(
        &self,
        jobs: Vec<projectengine_core::NewJob>,
    ) -> Result<Vec<projectengine_core::Changed>> {
        self.store.create_jobs(jobs).await
    }
    async fn projects(
        &self,
        owner: &projectengine_core::Owner,
    ) -> Result<Vec<projectengine_core::Project>> {
        self.store.projects(owner).await
    }
}
