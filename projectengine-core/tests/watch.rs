//! The watch relies on its notifier: a lost notification reported as
//! `Lagged` is caught at once, one lost silently by the safety net, and an
//! idle watch reads the store only once per safety-net interval.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::{
    App, AppId, Attempt, Changed, Claim, DueJob, Engine, EventData, Fence, Heartbeat, Job,
    JobDetail, JobEvent, JobId, JobQuery, JobStatus, NewApp, NewJob, Notification,
    NotificationStream, Notifier, Outcome, Owner, Registry, Result, Store, StubOrchestrator,
    Submit, WatchConfig, Worker, WorkerConfig,
};
use tokio::time::Instant;

/// A store that counts the reads a watch makes (`events` and `get_job`).
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn Store>,
    events: AtomicUsize,
    get_job: AtomicUsize,
}

impl CountingStore {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(MemoryStore::new()),
            events: AtomicUsize::new(0),
            get_job: AtomicUsize::new(0),
        })
    }

    fn reads(&self) -> (usize, usize) {
        (
            self.events.load(Ordering::SeqCst),
            self.get_job.load(Ordering::SeqCst),
        )
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Store for CountingStore {
    async fn create_job(&self, job: NewJob) -> Result<Changed> {
        self.inner.create_job(job).await
    }
    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.get_job.fetch_add(1, Ordering::SeqCst);
        self.inner.get_job(id).await
    }
    async fn list_jobs(&self, owner: &Owner, query: &JobQuery) -> Result<Vec<Job>> {
        self.inner.list_jobs(owner, query).await
    }
    async fn claim(&self, id: JobId, worker_id: &str, lease: Duration) -> Result<Option<Claim>> {
        self.inner.claim(id, worker_id, lease).await
    }
    async fn append(&self, fence: Fence, events: Vec<EventData>) -> Result<Vec<JobEvent>> {
        self.inner.append(fence, events).await
    }
    async fn append_batch(
        &self,
        fence: Fence,
        batch: u64,
        events: Vec<EventData>,
    ) -> Result<Option<Vec<JobEvent>>> {
        self.inner.append_batch(fence, batch, events).await
    }
    async fn heartbeat(&self, fence: Fence, lease: Duration) -> Result<Heartbeat> {
        self.inner.heartbeat(fence, lease).await
    }
    async fn finish(&self, fence: Fence, outcome: Outcome) -> Result<Changed> {
        self.inner.finish(fence, outcome).await
    }
    async fn save_app(&self, fence: Fence, app: NewApp) -> Result<(App, Vec<JobEvent>)> {
        self.inner.save_app(fence, app).await
    }
    async fn put_artifact(
        &self,
        fence: Fence,
        artifact: projectengine_core::NewArtifact,
    ) -> Result<projectengine_core::SavedArtifact> {
        self.inner.put_artifact(fence, artifact).await
    }
    async fn artifacts(&self, job_id: JobId) -> Result<Vec<projectengine_core::Artifact>> {
        self.inner.artifacts(job_id).await
    }
    async fn artifact(
        &self,
        job_id: JobId,
        name: &str,
    ) -> Result<Option<projectengine_core::Artifact>> {
        self.inner.artifact(job_id, name).await
    }
    async fn request_cancel(&self, id: JobId) -> Result<Changed> {
        self.inner.request_cancel(id).await
    }
    async fn retry(&self, id: JobId) -> Result<Changed> {
        self.inner.retry(id).await
    }
    async fn review(
        &self,
        id: JobId,
        decision: projectengine_core::ReviewDecision,
    ) -> Result<Changed> {
        self.inner.review(id, decision).await
    }
    async fn events(&self, id: JobId, after: u64, limit: usize) -> Result<Vec<JobEvent>> {
        self.events.fetch_add(1, Ordering::SeqCst);
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
    ) -> Result<Vec<projectengine_core::retention::Purged>> {
        self.inner.purge_finished(before, limit).await
    }
    async fn claim_deliveries(
        &self,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<projectengine_core::WebhookDelivery>> {
        self.inner.claim_deliveries(limit, visibility).await
    }
    async fn record_delivery_try(
        &self,
        id: projectengine_core::DeliveryId,
        claimed_tries: u32,
        attempt: projectengine_core::NewTry,
        next: projectengine_core::DeliveryNext,
    ) -> Result<projectengine_core::WebhookDelivery> {
        self.inner
            .record_delivery_try(id, claimed_tries, attempt, next)
            .await
    }
    async fn deliveries(&self, job_id: JobId) -> Result<Vec<projectengine_core::DeliveryLog>> {
        self.inner.deliveries(job_id).await
    }
    async fn create_schedule(
        &self,
        s: projectengine_core::NewSchedule,
    ) -> projectengine_core::Result<projectengine_core::Schedule> {
        self.inner.create_schedule(s).await
    }
    async fn get_schedule(
        &self,
        id: projectengine_core::ScheduleId,
    ) -> projectengine_core::Result<Option<projectengine_core::Schedule>> {
        self.inner.get_schedule(id).await
    }
    async fn list_schedules(
        &self,
        owner: &projectengine_core::Owner,
        cursor: Option<projectengine_core::ScheduleId>,
        limit: usize,
    ) -> projectengine_core::Result<Vec<projectengine_core::Schedule>> {
        self.inner.list_schedules(owner, cursor, limit).await
    }
    async fn update_schedule(
        &self,
        id: projectengine_core::ScheduleId,
        revision: u64,
        settings: projectengine_core::ScheduleSettings,
    ) -> projectengine_core::Result<projectengine_core::Schedule> {
        self.inner.update_schedule(id, revision, settings).await
    }
    async fn delete_schedule(
        &self,
        id: projectengine_core::ScheduleId,
    ) -> projectengine_core::Result<()> {
        self.inner.delete_schedule(id).await
    }
    async fn due_schedules(
        &self,
        limit: usize,
    ) -> projectengine_core::Result<Vec<projectengine_core::Schedule>> {
        self.inner.due_schedules(limit).await
    }
    async fn fire_schedule(
        &self,
        fire: projectengine_core::ScheduleFire,
    ) -> projectengine_core::Result<projectengine_core::Fired> {
        self.inner.fire_schedule(fire).await
    }
    async fn schedule_runs(
        &self,
        id: projectengine_core::ScheduleId,
        before: Option<chrono::DateTime<chrono::Utc>>,
        limit: usize,
    ) -> projectengine_core::Result<Vec<projectengine_core::ScheduleRun>> {
        self.inner.schedule_runs(id, before, limit).await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn create_child(
        &self,
        fence: projectengine_core::Fence,
        job: projectengine_core::NewJob,
    ) -> projectengine_core::Result<projectengine_core::Created> {
        self.inner.create_child(fence, job).await
    }
    async fn children(
        &self,
        parent: projectengine_core::JobId,
    ) -> projectengine_core::Result<Vec<projectengine_core::Job>> {
        self.inner.children(parent).await
    }
    async fn create_job_idempotent(
        &self,
        job: projectengine_core::NewJob,
        key: &projectengine_core::IdempotencyKey,
    ) -> projectengine_core::Result<projectengine_core::Created> {
        self.inner.create_job_idempotent(job, key).await
    }
    async fn create_jobs(
        &self,
        jobs: Vec<projectengine_core::NewJob>,
    ) -> Result<Vec<projectengine_core::Changed>> {
        self.inner.create_jobs(jobs).await
    }
    async fn projects(
        &self,
        owner: &projectengine_core::Owner,
    ) -> Result<Vec<projectengine_core::Project>> {
        self.inner.projects(owner).await
    }
}

/// An in-memory notifier that loses every terminal event on its way to the
/// subscribers: reported as `Lagged` (as the contract asks) or, if not
/// `honest`, silently (as when a publisher dies before publishing).
#[derive(Debug)]
struct LosingNotifier {
    inner: MemoryNotifier,
    honest: bool,
    lost: Arc<AtomicUsize>,
}

impl LosingNotifier {
    fn new(honest: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryNotifier::default(),
            honest,
            lost: Arc::default(),
        })
    }
}

#[async_trait]
impl Notifier for LosingNotifier {
    async fn publish(&self, events: &[JobEvent]) -> Result<()> {
        self.inner.publish(events).await
    }

    async fn subscribe(&self, job_id: JobId) -> Result<NotificationStream> {
        let (honest, lost) = (self.honest, self.lost.clone());
        let sub = self.inner.subscribe(job_id).await?;
        Ok(sub
            .filter_map(move |n| {
                let out = match n {
                    Notification::Event(e) if e.is_terminal() => {
                        lost.fetch_add(1, Ordering::SeqCst);
                        honest.then_some(Notification::Lagged)
                    }
                    n => Some(n),
                };
                std::future::ready(out)
            })
            .boxed())
    }
}

fn registry() -> Registry {
    Registry::new().register("stub", StubOrchestrator::new(5, Duration::from_millis(20)))
}

fn engine(store: Arc<dyn Store>, notifier: Arc<dyn Notifier>) -> Engine {
    Engine::new(
        store,
        Arc::new(MemoryQueue::default()),
        notifier,
        registry(),
    )
}

fn worker_config() -> WorkerConfig {
    WorkerConfig {
        recovery_every: None,
        ..WorkerConfig::default()
    }
}

/// Seq 1..n, each once, the last one terminal.
fn assert_complete(events: &[JobEvent], job: &Job) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=job.last_seq).collect();
    assert_eq!(seqs, expected);
    assert!(events.last().is_some_and(|e| e.is_terminal()));
}

#[tokio::test]
async fn a_lost_event_reported_as_lagged_is_caught_at_once() {
    let notifier = LosingNotifier::new(true);
    let engine = engine(Arc::new(MemoryStore::new()), notifier.clone());
    assert_eq!(engine.watch_config().safety_net, Duration::from_secs(30));
    let worker = Worker::new(engine.clone(), worker_config()).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(&owner, Submit::new("x"))
        .await
        .expect("submit");
    let start = Instant::now();
    let watch = engine.watch(&owner, job.id, 0).await.expect("watch");
    let events: Vec<JobEvent> = tokio::time::timeout(
        Duration::from_secs(5),
        watch.map(|e| e.expect("event")).collect(),
    )
    .await
    .expect("the watch ended well before the safety net");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        notifier.lost.load(Ordering::SeqCst) >= 1,
        "nothing was lost"
    );
    let job = engine.get(&owner, job.id).await.expect("get");
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_complete(&events, &job);
    worker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_silently_lost_event_is_caught_by_the_safety_net() {
    let notifier = LosingNotifier::new(false);
    let mut config = WatchConfig::default();
    config.safety_net = Duration::from_secs(40);
    let engine = engine(Arc::new(MemoryStore::new()), notifier.clone()).with_watch_config(config);
    let worker = Worker::new(engine.clone(), worker_config()).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(&owner, Submit::new("x"))
        .await
        .expect("submit");
    let start = Instant::now();
    let watch = engine.watch(&owner, job.id, 0).await.expect("watch");
    let events: Vec<JobEvent> = watch.map(|e| e.expect("event")).collect().await;
    let took = start.elapsed();
    assert_eq!(notifier.lost.load(Ordering::SeqCst), 1);
    assert!(
        took >= Duration::from_secs(40) && took < Duration::from_secs(41),
        "{took:?}"
    );
    let job = engine.get(&owner, job.id).await.expect("get");
    assert_complete(&events, &job);
    worker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_watch_reads_the_store_once_per_safety_net() {
    let store = CountingStore::new();
    let engine = engine(store.clone(), Arc::new(MemoryNotifier::default()));
    let owner = Owner::new("alice");
    // Nobody works: the job stays queued and its watch idle.
    let job = engine
        .submit(&owner, Submit::new("x"))
        .await
        .expect("submit");
    let mut watch = engine.watch(&owner, job.id, 0).await.expect("watch");
    let first = watch.next().await.expect("the replay").expect("event");
    assert_eq!(first.seq, 1);
    let reader = tokio::spawn(async move { watch.next().await.map(|e| e.map(|e| e.seq)) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (events0, get0) = store.reads();
    // 95 s idle: the safety net (30 s) fires three times, no more.
    tokio::time::sleep(Duration::from_secs(95)).await;
    let (events1, get1) = store.reads();
    assert_eq!(events1 - events0, 3, "event reads while idle");
    assert!(get1 - get0 <= 3, "{} job reads while idle", get1 - get0);
    assert!(!reader.is_finished());
    reader.abort();
}
