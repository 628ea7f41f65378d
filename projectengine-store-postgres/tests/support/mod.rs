//! Test support: a migrated [`PgStore`] in a schema of its own, dropped when
//! the store is.
#![allow(dead_code)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use projectengine_core::testkit::service_missing;
use projectengine_core::{
    App, AppId, Attempt, Changed, Claim, DueJob, EventData, Fence, Heartbeat, Job, JobDetail,
    JobEvent, JobId, JobQuery, NewApp, NewJob, Outcome, Owner, Result, Store,
};
use projectengine_store_postgres::PgStore;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};

/// The server the tests use.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// An empty schema of its own on the test server, dropped with this value;
/// `None` (after reporting it) when the server cannot be reached.
pub struct Schema {
    pub name: String,
    url: String,
}

impl Schema {
    pub async fn new() -> Option<Schema> {
        let url = database_url();
        let mut conn = match connect_admin(&url).await {
            Ok(conn) => conn,
            Err(e) => {
                service_missing("PostgreSQL", &url, &e);
                return None;
            }
        };
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .expect("create the test schema");
        let _ = conn.close().await;
        Some(Schema { name, url })
    }

    /// A store on this schema (not migrated), with a pool of `connections`.
    pub async fn store(&self, connections: u32) -> PgStore {
        let options = PgConnectOptions::from_str(&self.url)
            .expect("DATABASE_URL parses")
            .options([("search_path", self.name.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .expect("connect to the test schema");
        PgStore::from_pool(pool)
    }
}

async fn connect_admin(url: &str) -> std::result::Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url))
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Best effort, on a runtime of its own: Drop may run inside or outside
        // the test's runtime, even while it shuts down.
        let (url, name) = (self.url.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = connect_admin(&url).await {
                    let _ = sqlx::query("SET lock_timeout = '10s'")
                        .execute(&mut conn)
                        .await;
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = done.join();
    }
}

/// A migrated store in a fresh schema, or `None` without a server.
pub async fn fresh(connections: u32) -> Option<TestStore> {
    let schema = Schema::new().await?;
    let store = schema.store(connections).await;
    store.migrate().await.expect("migrate");
    Some(TestStore {
        store,
        _schema: schema,
    })
}

/// A fresh store as the conformance suites take it.
pub async fn fresh_dyn() -> Option<Arc<dyn Store>> {
    Some(Arc::new(fresh(8).await?) as Arc<dyn Store>)
}

/// A [`PgStore`] that drops its schema when it is dropped.
#[derive(Debug)]
pub struct TestStore {
    pub store: PgStore,
    _schema: Schema,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("name", &self.name).finish()
    }
}

impl std::ops::Deref for TestStore {
    type Target = PgStore;
    fn deref(&self) -> &PgStore {
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
    async fn put_artifact(
        &self,
        fence: Fence,
        artifact: projectengine_core::NewArtifact,
    ) -> Result<projectengine_core::SavedArtifact> {
        self.store.put_artifact(fence, artifact).await
    }
    async fn artifacts(&self, job_id: JobId) -> Result<Vec<projectengine_core::Artifact>> {
        self.store.artifacts(job_id).await
    }
    async fn artifact(
        &self,
        job_id: JobId,
        name: &str,
    ) -> Result<Option<projectengine_core::Artifact>> {
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
    ) -> Result<Vec<projectengine_core::WebhookDelivery>> {
        self.store.claim_deliveries(limit, visibility).await
    }
    async fn record_delivery_try(
        &self,
        id: projectengine_core::DeliveryId,
        claimed_tries: u32,
        attempt: projectengine_core::NewTry,
        next: projectengine_core::DeliveryNext,
    ) -> Result<projectengine_core::WebhookDelivery> {
        self.store
            .record_delivery_try(id, claimed_tries, attempt, next)
            .await
    }
    async fn deliveries(&self, job_id: JobId) -> Result<Vec<projectengine_core::DeliveryLog>> {
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
