//! [`SlowStore`]: any store, with latency added to the calls an attempt makes,
//! so that the worker's concurrency is exercised with calls that really pend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    App, AppId, Attempt, Changed, Claim, DeliveryId, DeliveryLog, DeliveryNext, DueJob, EventData,
    Fence, Heartbeat, Job, JobDetail, JobEvent, JobId, JobQuery, NewApp, NewJob, NewTry, Outcome,
    Owner, Result, Store, WebhookDelivery,
};

/// Wraps a store and sleeps `delay` before each write of a running attempt
/// (append, heartbeat, save_app, finish).
#[derive(Debug)]
pub struct SlowStore {
    inner: Arc<dyn Store>,
    delay: Duration,
}

impl SlowStore {
    /// `inner`, `delay` slower on an attempt's writes.
    pub fn new(inner: Arc<dyn Store>, delay: Duration) -> Self {
        Self { inner, delay }
    }

    async fn pause(&self) {
        tokio::time::sleep(self.delay).await;
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Store for SlowStore {
    async fn create_job(&self, job: NewJob) -> Result<Changed> {
        self.inner.create_job(job).await
    }
    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.inner.get_job(id).await
    }
    async fn list_jobs(&self, owner: &Owner, query: &JobQuery) -> Result<Vec<Job>> {
        self.inner.list_jobs(owner, query).await
    }
    async fn claim(&self, id: JobId, worker_id: &str, lease: Duration) -> Result<Option<Claim>> {
        self.inner.claim(id, worker_id, lease).await
    }
    async fn append(&self, fence: Fence, events: Vec<EventData>) -> Result<Vec<JobEvent>> {
        self.pause().await;
        self.inner.append(fence, events).await
    }
    async fn append_batch(
        &self,
        fence: Fence,
        batch: u64,
        events: Vec<EventData>,
    ) -> Result<Option<Vec<JobEvent>>> {
        self.pause().await;
        self.inner.append_batch(fence, batch, events).await
    }
    async fn heartbeat(&self, fence: Fence, lease: Duration) -> Result<Heartbeat> {
        self.pause().await;
        self.inner.heartbeat(fence, lease).await
    }
    async fn finish(&self, fence: Fence, outcome: Outcome) -> Result<Changed> {
        self.pause().await;
        self.inner.finish(fence, outcome).await
    }
    async fn save_app(&self, fence: Fence, app: NewApp) -> Result<(App, Vec<JobEvent>)> {
        self.pause().await;
        self.inner.save_app(fence, app).await
    }
    async fn put_artifact(
        &self,
        fence: Fence,
        artifact: crate::NewArtifact,
    ) -> Result<crate::SavedArtifact> {
        self.inner.put_artifact(fence, artifact).await
    }
    async fn artifacts(&self, job_id: JobId) -> Result<Vec<crate::Artifact>> {
        self.inner.artifacts(job_id).await
    }
    async fn artifact(&self, job_id: JobId, name: &str) -> Result<Option<crate::Artifact>> {
        self.inner.artifact(job_id, name).await
    }
    async fn request_cancel(&self, id: JobId) -> Result<Changed> {
        self.inner.request_cancel(id).await
    }
    async fn retry(&self, id: JobId) -> Result<Changed> {
        self.inner.retry(id).await
    }
    async fn review(&self, id: JobId, decision: crate::ReviewDecision) -> Result<Changed> {
        self.inner.review(id, decision).await
    }
    async fn events(&self, id: JobId, after: u64, limit: usize) -> Result<Vec<JobEvent>> {
        self.inner.events(id, after, limit).await
    }
    async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>> {
        self.inner.attempts(id).await
    }
    async fn job_detail(&self, id: JobId) -> Result<Option<JobDetail>> {
        self.inner.job_detail(id).await
    }
    async fn get_app(&self, id: AppId) -> Result<Option<App>> {
        self.inner.get_app(id).await
    }
    async fn app_by_job(&self, job_id: JobId) -> Result<Option<App>> {
        self.inner.app_by_job(job_id).await
    }
    async fn list_apps(
        &self,
        owner: &Owner,
        cursor: Option<AppId>,
        limit: usize,
    ) -> Result<Vec<App>> {
        self.inner.list_apps(owner, cursor, limit).await
    }
    async fn expired_leases(&self, limit: usize) -> Result<Vec<Fence>> {
        self.inner.expired_leases(limit).await
    }
    async fn due_jobs(&self, overdue: Duration, limit: usize) -> Result<Vec<DueJob>> {
        self.inner.due_jobs(overdue, limit).await
    }
    async fn purge_finished(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<crate::retention::Purged>> {
        self.inner.purge_finished(before, limit).await
    }
    async fn claim_deliveries(
        &self,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<WebhookDelivery>> {
        self.inner.claim_deliveries(limit, visibility).await
    }
    async fn record_delivery_try(
        &self,
        id: DeliveryId,
        claimed_tries: u32,
        attempt: NewTry,
        next: DeliveryNext,
    ) -> Result<WebhookDelivery> {
        self.inner
            .record_delivery_try(id, claimed_tries, attempt, next)
            .await
    }
    async fn deliveries(&self, job_id: JobId) -> Result<Vec<DeliveryLog>> {
        self.inner.deliveries(job_id).await
    }
    async fn create_schedule(&self, s: crate::NewSchedule) -> crate::Result<crate::Schedule> {
        self.inner.create_schedule(s).await
    }
    async fn get_schedule(&self, id: crate::ScheduleId) -> crate::Result<Option<crate::Schedule>> {
        self.inner.get_schedule(id).await
    }
    async fn list_schedules(
        &self,
        owner: &crate::Owner,
        cursor: Option<crate::ScheduleId>,
        limit: usize,
    ) -> crate::Result<Vec<crate::Schedule>> {
        self.inner.list_schedules(owner, cursor, limit).await
    }
    async fn update_schedule(
        &self,
        id: crate::ScheduleId,
        revision: u64,
        settings: crate::ScheduleSettings,
    ) -> crate::Result<crate::Schedule> {
        self.inner.update_schedule(id, revision, settings).await
    }
    async fn delete_schedule(&self, id: crate::ScheduleId) -> crate::Result<()> {
        self.inner.delete_schedule(id).await
    }
    async fn due_schedules(&self, limit: usize) -> crate::Result<Vec<crate::Schedule>> {
        self.inner.due_schedules(limit).await
    }
    async fn fire_schedule(&self, fire: crate::ScheduleFire) -> crate::Result<crate::Fired> {
        self.inner.fire_schedule(fire).await
    }
    async fn schedule_runs(
        &self,
        id: crate::ScheduleId,
        before: Option<chrono::DateTime<chrono::Utc>>,
        limit: usize,
    ) -> crate::Result<Vec<crate::ScheduleRun>> {
        self.inner.schedule_runs(id, before, limit).await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn create_child(
        &self,
        fence: crate::Fence,
        job: crate::NewJob,
    ) -> crate::Result<crate::Created> {
        self.inner.create_child(fence, job).await
    }
    async fn children(&self, parent: crate::JobId) -> crate::Result<Vec<crate::Job>> {
        self.inner.children(parent).await
    }
    async fn create_job_idempotent(
        &self,
        job: crate::NewJob,
        key: &crate::IdempotencyKey,
    ) -> crate::Result<crate::Created> {
        self.inner.create_job_idempotent(job, key).await
    }
    async fn create_jobs(&self, jobs: Vec<crate::NewJob>) -> Result<Vec<crate::Changed>> {
        self.inner.create_jobs(jobs).await
    }
    async fn projects(&self, owner: &crate::Owner) -> Result<Vec<crate::Project>> {
        self.inner.projects(owner).await
    }
}
