//! The worker runtime: pop → claim → run, N at a time, with leases, heartbeats,
//! timeouts, cancellation, panic isolation, retries and graceful shutdown; and
//! the recovery loop.

mod attempt;
mod backoff;
mod callbacks;
mod recovery;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use backoff::Backoff;
pub use recovery::{recover_once, RecoveryReport};

use crate::{Claim, Delivery, Engine, JobStatus};

/// How a [`Worker`] runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Names this worker in attempts (default: a random id).
    pub worker_id: String,
    /// Attempts run at once.
    pub concurrency: usize,
    /// The named queues served; `None` serves every queue of the registry.
    pub queues: Option<Vec<String>>,
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// How often a running attempt renews its lease and looks for a cancel.
    pub heartbeat: Duration,
    /// How long a stopped orchestrator gets to return before it is aborted.
    pub cancel_grace: Duration,
    /// On shutdown, how long running attempts may take to finish before they are
    /// released (queued again without spending an attempt).
    pub shutdown_grace: Duration,
    /// Delays between attempts of a failing job.
    pub backoff: Backoff,
    /// How often recovery runs (`None`: never, in this worker).
    pub recovery_every: Option<Duration>,
    /// A queued job this long past due is pushed to the queue again by recovery.
    /// The first pass, when the worker starts, pushes every due job: the
    /// queue may have started empty (an in-memory queue after a restart).
    pub recovery_overdue: Duration,
    /// Log lines that may wait for other reports: once this many are queued,
    /// they are written when the orchestrator next yields (see
    /// [`JobCallbacks::log`](crate::JobCallbacks::log)).
    pub log_batch: usize,
    /// Queued log lines are written at least this often.
    pub log_flush: Duration,
    /// How long one queue pop waits.
    pub pop_wait: Duration,
    /// How often the schedule ticker looks for due ticks (`None`: never, in
    /// this worker); see [`schedule`](crate::schedule).
    pub schedule_every: Option<Duration>,
    /// A tick further than this in the past was missed (downtime): its
    /// schedule's [`MisfirePolicy`](crate::MisfirePolicy) decides.
    pub schedule_grace: Duration,
    /// Deletes finished jobs older than a given age (`None`, the default:
    /// jobs are kept for ever); see [`retention`](crate::retention).
    pub retention: Option<crate::retention::Retention>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", uuid::Uuid::now_v7().simple()),
            concurrency: 16,
            queues: None,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            cancel_grace: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            backoff: Backoff::default(),
            recovery_every: Some(Duration::from_secs(5)),
            recovery_overdue: Duration::from_secs(10),
            log_batch: 64,
            log_flush: Duration::from_millis(200),
            pop_wait: Duration::from_secs(5),
            schedule_every: Some(Duration::from_secs(1)),
            schedule_grace: Duration::from_secs(60),
            retention: None,
        }
    }
}

/// Runs the orchestrators of an [`Engine`]'s registry on the jobs of its queue.
#[derive(Debug, Clone)]
pub struct Worker {
    engine: Engine,
    config: Arc<WorkerConfig>,
}

/// A running worker, from [`Worker::spawn`].
#[derive(Debug)]
pub struct WorkerHandle {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops taking work, lets running attempts finish within the grace period
    /// (then releases them), and waits until all is done.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// The token that [`WorkerHandle::shutdown`] fires.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops the worker at once, as if its process were killed: attempts stop
    /// where they are, nothing is released, leases simply expire.
    pub fn abort(self) {
        self.task.abort();
    }
}

impl Worker {
    /// A worker for `engine`'s kinds.
    pub fn new(engine: Engine, config: WorkerConfig) -> Self {
        Self {
            engine,
            config: Arc::new(config),
        }
    }

    /// Runs in a task of its own until [`WorkerHandle::shutdown`].
    pub fn spawn(self) -> WorkerHandle {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(self.run(shutdown.clone()));
        WorkerHandle { shutdown, task }
    }

    /// Runs until `shutdown` fires, then shuts down gracefully.
    pub async fn run(self, shutdown: CancellationToken) {
        let cfg = self.config.clone();
        let queues = cfg
            .queues
            .clone()
            .unwrap_or_else(|| self.engine.registry().local_queues());
        tracing::info!(worker_id = %cfg.worker_id, ?queues, concurrency = cfg.concurrency, "worker started");
        let tracker = TaskTracker::new();
        // Fires when the grace period is over: running attempts are released.
        let release = CancellationToken::new();
        let background = CancellationToken::new();
        if let Some(every) = cfg.recovery_every {
            tracker.spawn(recovery::run(
                self.engine.clone(),
                every,
                cfg.recovery_overdue,
                background.clone(),
            ));
        }
        if let Some(retention) = cfg.retention.clone() {
            tracker.spawn(crate::retention::run(
                self.engine.clone(),
                retention,
                background.clone(),
            ));
        }
        if let Some(every) = cfg.schedule_every {
            tracker.spawn(crate::schedule::run(
                self.engine.clone(),
                every,
                cfg.schedule_grace,
                background.clone(),
            ));
        }
        let concurrency = cfg.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        let queues: Arc<[String]> = queues.into();
        // Whether the queue filled every free slot at the last look: then it
        // likely holds more, and a task that finished its job takes the next
        // one itself with a pop that does not wait, instead of handing its
        // slot back to this loop. The first short answer clears it, and
        // waiting for work is this loop's again.
        let backlog = Arc::new(AtomicBool::new(false));
        let mut errors = 0u32;
        // One wait for the shutdown, registered once rather than per batch.
        let mut stop = std::pin::pin!(shutdown.cancelled());
        loop {
            // Wait for a free slot, then take every other free slot: the pop
            // asks for exactly as many entries as this worker can run.
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = &mut stop => break,
            };
            let mut permits = vec![first];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            let free = permits.len();
            let popped = tokio::select! {
                r = self.engine.queue().pop_many(&queues, free, cfg.pop_wait) => r,
                _ = &mut stop => break,
            };
            match popped {
                Ok(deliveries) => {
                    errors = 0;
                    backlog.store(deliveries.len() == free, Ordering::Relaxed);
                    for delivery in deliveries {
                        let Some(permit) = permits.pop() else {
                            // More than asked for: not this worker's to run.
                            tracing::warn!(job_id = %delivery.job_id, "the queue answered more entries than asked for; giving one back");
                            if let Err(e) = self.engine.queue().nack(&delivery, None).await {
                                tracing::debug!(error = %e, "nack failed");
                            }
                            continue;
                        };
                        let this = self.clone();
                        let release = release.clone();
                        let shutdown = shutdown.clone();
                        let queues = queues.clone();
                        let backlog = backlog.clone();
                        tracker.spawn(async move {
                            let mut delivery = delivery;
                            loop {
                                this.handle(delivery, release.clone()).await;
                                match this.next(&queues, &backlog, &shutdown).await {
                                    Some(next) => delivery = next,
                                    None => break,
                                }
                            }
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    errors = errors.saturating_add(1);
                    let pause = Duration::from_millis(100u64 << errors.min(6));
                    tracing::warn!(error = %e, ?pause, "queue pop failed");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = &mut stop => break,
                    }
                }
            }
        }
        tracing::info!(worker_id = %cfg.worker_id, "worker stopping: no new work; draining");
        background.cancel();
        tracker.close();
        if tokio::time::timeout(cfg.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over: releasing running attempts");
            release.cancel();
            tracker.wait().await;
        }
        tracing::info!(worker_id = %cfg.worker_id, "worker stopped");
    }

    /// The next delivery for a task that just finished one, while the queue
    /// has a backlog (its last answer filled every slot asked for) and the
    /// worker is not shutting down; `None` hands the slot back to the popping
    /// loop.
    async fn next(
        &self,
        queues: &[String],
        backlog: &AtomicBool,
        shutdown: &CancellationToken,
    ) -> Option<Delivery> {
        if shutdown.is_cancelled() || !backlog.load(Ordering::Relaxed) {
            return None;
        }
        // A long backlog of jobs that never wait must not hold this thread:
        // yield when the task's cooperative budget is spent.
        tokio::task::coop::consume_budget().await;
        match self
            .engine
            .queue()
            .pop_many(queues, 1, Duration::ZERO)
            .await
        {
            Ok(mut taken) if !taken.is_empty() => taken.pop(),
            Ok(_) => {
                backlog.store(false, Ordering::Relaxed);
                None
            }
            Err(e) => {
                // The popping loop sees the error too, and backs off.
                tracing::debug!(error = %e, "queue pop failed");
                backlog.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    async fn handle(&self, delivery: Delivery, release: CancellationToken) {
        let claimed = claim_delivery(
            &self.engine,
            delivery,
            &self.config.worker_id,
            self.config.lease,
        )
        .await;
        if let Some(claim) = claimed {
            // Boxed: the attempt's future is large, and this task's future is
            // moved several times on its way into the runtime.
            Box::pin(attempt::run(&self.engine, &self.config, claim, release)).await;
        }
    }
}

/// Claims the job of a popped queue entry for `worker_id`, acks the entry
/// and publishes the claim; when the job is not claimable, acks the entry
/// (or puts it back until the job is due). Shared by the in-process worker
/// and the agent protocol's claim.
pub(crate) async fn claim_delivery(
    engine: &Engine,
    delivery: Delivery,
    worker_id: &str,
    lease: Duration,
) -> Option<Claim> {
    let store = engine.store();
    let queue = engine.queue();
    match store.claim(delivery.job_id, worker_id, lease).await {
        Ok(Some(claim)) => {
            let (acked, ()) = tokio::join!(
                queue.ack(&delivery),
                engine.publish(&claim.job.kind, &claim.events)
            );
            if let Err(e) = acked {
                // The entry comes back after its visibility timeout and is then
                // found not claimable: harmless.
                tracing::debug!(error = %e, "ack failed");
            }
            Some(claim)
        }
        Ok(None) => {
            // Not claimable: finished, running elsewhere, not yet due, or
            // its concurrency key is full.
            let later = match store.get_job(delivery.job_id).await {
                Ok(Some(job)) if job.status == JobStatus::Queued => {
                    match (job.run_at - chrono::Utc::now()).to_std() {
                        Ok(not_yet) => Some(not_yet),
                        Err(_) if job.concurrency_key.is_some() => {
                            Some(crate::concurrency::RETRY_WHEN_FULL)
                        }
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            let r = match later {
                Some(delay) => queue.nack(&delivery, Some(delay)).await,
                None => queue.ack(&delivery).await,
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "ack/nack failed");
            }
            None
        }
        Err(e) => {
            tracing::warn!(job_id = %delivery.job_id, error = %e, "claim failed; retrying later");
            let _ = queue.nack(&delivery, Some(Duration::from_secs(1))).await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::sync::Arc;

    use super::{Worker, WorkerConfig};
    use crate::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
    use crate::{Engine, JobId, JobStatus, Owner, Registry, StubOrchestrator, Submit};

    async fn wait_succeeded(engine: &Engine, owner: &Owner, ids: &[JobId]) {
        for id in ids {
            let done = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let job = engine.get(owner, *id).await.expect("the job");
                    if job.status.is_terminal() {
                        return job.status;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            assert_eq!(done, Ok(JobStatus::Succeeded), "job {id}");
        }
    }

    /// A backlog is drained by tasks taking their next job themselves; once it
    /// is empty, the popping loop waits again and picks up later work.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drains_a_backlog_then_waits_for_more() {
        let registry = Registry::new().register("stub", StubOrchestrator::new(2, Duration::ZERO));
        let engine = Engine::in_memory(registry);
        let owner = Owner::new("o");
        let mut ids = Vec::new();
        for i in 0..200 {
            let job = engine
                .submit(&owner, Submit::new(format!("job {i}")))
                .await
                .expect("submitted");
            ids.push(job.id);
        }
        let worker = Worker::new(
            engine.clone(),
            WorkerConfig {
                concurrency: 3,
                pop_wait: Duration::from_millis(50),
                ..WorkerConfig::default()
            },
        )
        .spawn();
        wait_succeeded(&engine, &owner, &ids).await;
        let depth = engine.queue().depth("stub").await.expect("depth");
        assert_eq!((depth.ready, depth.in_flight), (0, 0));

        // The queue ran dry: the next job is the popping loop's to find.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let later = engine
            .submit(&owner, Submit::new("later"))
            .await
            .expect("submitted");
        wait_succeeded(&engine, &owner, &[later.id]).await;
        worker.shutdown().await;
        for id in ids.iter().chain([&later.id]) {
            let attempts = engine.attempts(&owner, *id).await.expect("attempts");
            assert_eq!(attempts.len(), 1, "job {id} ran once");
        }
    }

    /// A restart on a durable store with a fresh, empty queue: the worker's
    /// first recovery pass pushes the jobs that were queued, however recently
    /// they came due, so they run without waiting to be overdue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fresh_queue_gets_the_due_jobs_at_start() {
        let registry =
            || Registry::new().register("stub", StubOrchestrator::new(1, Duration::ZERO));
        let store = Arc::new(MemoryStore::new());
        let before = Engine::new(
            store.clone(),
            Arc::new(MemoryQueue::default()),
            Arc::new(MemoryNotifier::default()),
            registry(),
        );
        let owner = Owner::new("o");
        let job = before
            .submit(&owner, Submit::new("queued before the restart"))
            .await
            .expect("submitted");
        // The same store after a restart: the queue that knew the job is gone.
        let after = Engine::new(
            store,
            Arc::new(MemoryQueue::default()),
            Arc::new(MemoryNotifier::default()),
            registry(),
        );
        let worker = Worker::new(
            after.clone(),
            WorkerConfig {
                pop_wait: Duration::from_millis(50),
                // Later passes would push it only an hour past due.
                recovery_every: Some(Duration::from_secs(3600)),
                recovery_overdue: Duration::from_secs(3600),
                ..WorkerConfig::default()
            },
        )
        .spawn();
        wait_succeeded(&after, &owner, &[job.id]).await;
        worker.shutdown().await;
    }
}
