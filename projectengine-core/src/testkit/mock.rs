//! mockall mocks of the [`Store`] and [`Notifier`] ports, for the failure paths
//! a real adapter cannot produce on demand (a store failing mid-attempt, a
//! notifier that is down). There is no mock of the [`Queue`](crate::Queue) port:
//! the in-memory queue serves those tests. Behaviour is tested on the real
//! adapters, through the suites.
#![allow(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;

use crate::{
    App, AppId, Attempt, Changed, Claim, DeliveryId, DeliveryLog, DeliveryNext, DueJob, EventData,
    Fence, Heartbeat, Job, JobEvent, JobId, JobQuery, NewApp, NewJob, NewTry, NotificationStream,
    Notifier, Outcome, Owner, Result, Store, WebhookDelivery,
};

mockall::mock! {
    /// A mocked [`Store`].
    pub Store {}
    #[async_trait]
    impl Store for Store {
        async fn create_job(&self, job: NewJob) -> Result<Changed>;
        async fn get_job(&self, id: JobId) -> Result<Option<Job>>;
        async fn list_jobs(&self, owner: &Owner, query: &JobQuery) -> Result<Vec<Job>>;
        async fn claim(&self, id: JobId, worker_id: &str, lease: Duration) -> Result<Option<Claim>>;
        async fn append(&self, fence: Fence, events: Vec<EventData>) -> Result<Vec<JobEvent>>;
        async fn append_batch(&self, fence: Fence, batch: u64, events: Vec<EventData>) -> Result<Option<Vec<JobEvent>>>;
        async fn heartbeat(&self, fence: Fence, lease: Duration) -> Result<Heartbeat>;
        async fn finish(&self, fence: Fence, outcome: Outcome) -> Result<Changed>;
        async fn save_app(&self, fence: Fence, app: NewApp) -> Result<(App, Vec<JobEvent>)>;
        async fn put_artifact(&self, fence: Fence, artifact: crate::NewArtifact) -> Result<crate::SavedArtifact>;
        async fn artifacts(&self, job_id: JobId) -> Result<Vec<crate::Artifact>>;
        async fn artifact(&self, job_id: JobId, name: &str) -> Result<Option<crate::Artifact>>;
        async fn request_cancel(&self, id: JobId) -> Result<Changed>;
        async fn retry(&self, id: JobId) -> Result<Changed>;
        async fn review(&self, id: JobId, decision: crate::ReviewDecision) -> Result<Changed>;
        async fn events(&self, id: JobId, after: u64, limit: usize) -> Result<Vec<JobEvent>>;
        async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>>;
        async fn get_app(&self, id: AppId) -> Result<Option<App>>;
        async fn app_by_job(&self, job_id: JobId) -> Result<Option<App>>;
        async fn list_apps(&self, owner: &Owner, cursor: Option<AppId>, limit: usize) -> Result<Vec<App>>;
        async fn expired_leases(&self, limit: usize) -> Result<Vec<Fence>>;
        async fn due_jobs(&self, overdue: Duration, limit: usize) -> Result<Vec<DueJob>>;
        async fn purge_finished(&self, before: chrono::DateTime<chrono::Utc>, limit: usize) -> Result<Vec<crate::retention::Purged>>;
        async fn claim_deliveries(&self, limit: usize, visibility: Duration) -> Result<Vec<WebhookDelivery>>;
        async fn record_delivery_try(&self, id: DeliveryId, claimed_tries: u32, attempt: NewTry, next: DeliveryNext) -> Result<WebhookDelivery>;
        async fn deliveries(&self, job_id: JobId) -> Result<Vec<DeliveryLog>>;
        async fn create_schedule(&self, schedule: crate::NewSchedule) -> Result<crate::Schedule>;
        async fn get_schedule(&self, id: crate::ScheduleId) -> Result<Option<crate::Schedule>>;
        async fn list_schedules(&self, owner: &Owner, cursor: Option<crate::ScheduleId>, limit: usize) -> Result<Vec<crate::Schedule>>;
        async fn update_schedule(&self, id: crate::ScheduleId, revision: u64, settings: crate::ScheduleSettings) -> Result<crate::Schedule>;
        async fn delete_schedule(&self, id: crate::ScheduleId) -> Result<()>;
        async fn due_schedules(&self, limit: usize) -> Result<Vec<crate::Schedule>>;
        async fn fire_schedule(&self, fire: crate::ScheduleFire) -> Result<crate::Fired>;
        async fn schedule_runs(&self, id: crate::ScheduleId, before: Option<chrono::DateTime<chrono::Utc>>, limit: usize) -> Result<Vec<crate::ScheduleRun>>;
        async fn ping(&self) -> Result<()>;
        async fn create_child(&self, fence: Fence, job: NewJob) -> Result<crate::Created>;
        async fn children(&self, parent: JobId) -> Result<Vec<Job>>;
        async fn create_job_idempotent(&self, job: NewJob, key: &crate::IdempotencyKey) -> Result<crate::Created>;
        async fn create_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Changed>>;
        async fn projects(&self, owner: &Owner) -> Result<Vec<crate::Project>>;
    }
}

mockall::mock! {
    /// A mocked [`Notifier`].
    pub Notifier {}
    #[async_trait]
    impl Notifier for Notifier {
        async fn publish(&self, events: &[JobEvent]) -> Result<()>;
        async fn subscribe(&self, job_id: JobId) -> Result<NotificationStream>;
    }
}

impl std::fmt::Debug for MockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockStore")
    }
}

impl std::fmt::Debug for MockNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockNotifier")
    }
}
