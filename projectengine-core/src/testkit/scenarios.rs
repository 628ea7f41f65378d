//! Engine and worker scenarios on any (Store, Queue, Notifier).
//!
//! The scenarios whose jobs run take an `impl Into<`[`Setup`]`>`: the
//! backends alone (their jobs then run on in-process workers), or the
//! backends and a [`Runner`] that runs them elsewhere — the remote-agent
//! tests of `projectengine-agent` pass one that runs the same orchestrator
//! through the agent protocol against a real server.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use serde_json::{json, Value};

use super::{assert, unique};
use crate::worker::Backoff;
use crate::{
    AttemptStatus, Engine, Error, EventData, Job, JobEvent, JobId, JobQuery, JobStatus, Notifier,
    Orchestrator, Owner, Queue, Registry, Store, StubOrchestrator, Submit, Worker, WorkerConfig,
    WorkerHandle,
};

/// The backends a scenario runs on.
pub type Backends = (Arc<dyn Store>, Arc<dyn Queue>, Arc<dyn Notifier>);

/// Where a scenario's jobs run: [`InProcess`] workers, or anything else
/// that runs an [`Orchestrator`] for an [`Engine`] (a remote agent).
pub trait Runner: Send + Sync + 'static {
    /// Registers the scenario's `orchestrator` as `kind`, on `queue` if the
    /// runner uses one of its choosing.
    fn register(
        &self,
        registry: Registry,
        kind: String,
        queue: String,
        orchestrator: Arc<dyn Orchestrator>,
    ) -> Registry;

    /// Starts running `engine`'s jobs of the registered kind with
    /// `orchestrator`, with the settings of `config` (concurrency, lease,
    /// heartbeat, cancel grace, recovery), until the answer is shut down.
    fn start(
        &self,
        engine: &Engine,
        orchestrator: Arc<dyn Orchestrator>,
        config: WorkerConfig,
    ) -> Box<dyn RunningWorker>;
}

/// What a [`Runner`] started.
#[async_trait]
pub trait RunningWorker: Send {
    /// Stops taking jobs, lets the running ones end, and stops.
    async fn shutdown(self: Box<Self>);
}

#[async_trait]
impl RunningWorker for WorkerHandle {
    async fn shutdown(self: Box<Self>) {
        WorkerHandle::shutdown(*self).await;
    }
}

/// The in-process [`Worker`].
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcess;

/// An `Arc<dyn Orchestrator>` as an orchestrator.
struct Shared(Arc<dyn Orchestrator>);

#[async_trait]
impl Orchestrator for Shared {
    async fn run(
        &self,
        job: &Job,
        cb: &dyn crate::JobCallbacks,
    ) -> Result<(), crate::OrchestratorError> {
        self.0.run(job, cb).await
    }
}

impl Runner for InProcess {
    fn register(
        &self,
        registry: Registry,
        kind: String,
        queue: String,
        orchestrator: Arc<dyn Orchestrator>,
    ) -> Registry {
        registry.register_in(kind, queue, Shared(orchestrator))
    }

    fn start(
        &self,
        engine: &Engine,
        _orchestrator: Arc<dyn Orchestrator>,
        config: WorkerConfig,
    ) -> Box<dyn RunningWorker> {
        Box::new(Worker::new(engine.clone(), config).spawn())
    }
}

/// The backends of a scenario and where its jobs run.
#[derive(Clone)]
pub struct Setup {
    /// The backends.
    pub backends: Backends,
    /// Where jobs run.
    pub runner: Arc<dyn Runner>,
}

impl Setup {
    /// Jobs on `backends` run by `runner`.
    pub fn new(backends: Backends, runner: impl Runner) -> Self {
        Self {
            backends,
            runner: Arc::new(runner),
        }
    }
}

impl From<Backends> for Setup {
    fn from(backends: Backends) -> Self {
        Self::new(backends, InProcess)
    }
}

const DEADLINE: Duration = Duration::from_secs(30);

/// An engine with one stub kind on a queue of its own, and an owner.
pub struct Harness {
    /// The engine.
    pub engine: Engine,
    /// The stub's kind.
    pub kind: String,
    /// A fresh owner.
    pub owner: Owner,
    runner: Arc<dyn Runner>,
    orchestrator: Arc<dyn Orchestrator>,
}

impl Harness {
    /// The same engine and stub, for another fresh owner.
    pub fn other_owner(&self) -> Harness {
        Harness {
            engine: self.engine.clone(),
            kind: self.kind.clone(),
            owner: Owner::new(unique("other")),
            runner: self.runner.clone(),
            orchestrator: self.orchestrator.clone(),
        }
    }

    /// An engine over the setup's backends with a stub of `steps` steps
    /// `delay` apart, run by the setup's runner.
    pub fn new(setup: impl Into<Setup>, steps: u32, delay: Duration) -> Self {
        let Setup { backends, runner } = setup.into();
        let (store, queue, notifier) = backends;
        let kind = unique("stub");
        let orchestrator: Arc<dyn Orchestrator> = Arc::new(StubOrchestrator::new(steps, delay));
        let registry = runner.register(
            Registry::new(),
            kind.clone(),
            unique("queue"),
            orchestrator.clone(),
        );
        Self {
            engine: Engine::new(store, queue, notifier, registry),
            kind,
            owner: Owner::new(unique("owner")),
            runner,
            orchestrator,
        }
    }

    /// Starts a worker (of the setup's runner) with the fast settings of
    /// [`fast_worker`].
    pub fn worker(&self) -> Box<dyn RunningWorker> {
        self.runner
            .start(&self.engine, self.orchestrator.clone(), fast_worker())
    }

    /// Submits a job with these params.
    pub async fn submit(&self, params: Value) -> Job {
        self.engine
            .submit(&self.owner, Submit::new("build something").params(params))
            .await
            .expect("submit")
    }

    /// Watches the job from `after` to its end, with a deadline.
    pub async fn watch_all(&self, id: JobId, after: u64) -> Vec<JobEvent> {
        assert::watch_to_end(&self.engine, &self.owner, id, after, DEADLINE).await
    }

    /// Waits until the job is in `status`.
    pub async fn wait_for(&self, id: JobId, status: JobStatus) -> Job {
        assert::wait_for_status(&self.engine, &self.owner, id, status, DEADLINE).await
    }
}

/// Worker settings that make scenarios quick: short heartbeat, lease, backoff
/// and recovery intervals.
pub fn fast_worker() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        lease: Duration::from_millis(1500),
        heartbeat: Duration::from_millis(100),
        cancel_grace: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(5),
        backoff: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(400),
            jitter: false,
        },
        recovery_every: Some(Duration::from_millis(200)),
        recovery_overdue: Duration::from_millis(500),
        log_batch: 16,
        log_flush: Duration::from_millis(50),
        pop_wait: Duration::from_millis(500),
        ..WorkerConfig::default()
    }
}

pub use super::assert::assert_gap_free;

fn statuses(events: &[JobEvent]) -> Vec<JobStatus> {
    events.iter().filter_map(JobEvent::status).collect()
}

/// A job runs through a worker to `succeeded` and its App; a watcher sees every
/// event once, in order, ending with the terminal one.
pub async fn check_job_runs_to_its_app(setup: impl Into<Setup>) {
    let h = Harness::new(setup, 3, Duration::from_millis(10));
    let worker = h.worker();
    let job = h.submit(json!({})).await;
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.kind, h.kind);
    let events = h.watch_all(job.id, 0).await;
    assert_gap_free(&events, 1);
    assert_eq!(
        statuses(&events),
        [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded]
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e.data, EventData::Step(_)))
            .count(),
        3
    );
    let app = h.engine.app_by_job(&h.owner, job.id).await.expect("app");
    assert!(events.iter().any(|e| e.data
        == EventData::App {
            app_id: app.id,
            name: app.name.clone()
        }));
    assert_eq!(h.engine.app(&h.owner, app.id).await.expect("app"), app);
    let job = h.engine.get(&h.owner, job.id).await.expect("get");
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.last_seq, events.len() as u64);
    assert_eq!(
        h.engine
            .events(&h.owner, job.id, 0, 0)
            .await
            .expect("events"),
        events
    );
    worker.shutdown().await;
}

/// A watcher that reconnects with `after` sees each seq exactly once in all.
pub async fn check_watch_across_reconnects(setup: impl Into<Setup>) {
    let h = Harness::new(setup, 12, Duration::from_millis(25));
    let worker = h.worker();
    let job = h.submit(json!({})).await;
    let mut seen: Vec<JobEvent> = Vec::new();
    for take in [4usize, 3, 5] {
        let after = seen.last().map_or(0, |e| e.seq);
        let stream = h
            .engine
            .watch(&h.owner, job.id, after)
            .await
            .expect("watch");
        let part: Vec<JobEvent> = tokio::time::timeout(
            DEADLINE,
            stream.take(take).map(|e| e.expect("event")).collect(),
        )
        .await
        .expect("events in time");
        // Each connection ends mid-job, so the next one resumes with `after`.
        assert_eq!(part.len(), take, "the job ended before the reconnects");
        seen.extend(part);
    }
    let rest = h.watch_all(job.id, seen.last().map_or(0, |e| e.seq)).await;
    seen.extend(rest);
    assert_gap_free(&seen, 1);
    assert!(seen.last().is_some_and(JobEvent::is_terminal));
    let unique: HashSet<u64> = seen.iter().map(|e| e.seq).collect();
    assert_eq!(unique.len(), seen.len());
    worker.shutdown().await;
}

/// Watching a finished job replays its log and ends; from its last seq, at once.
pub async fn check_watch_of_a_finished_job(setup: impl Into<Setup>) {
    let h = Harness::new(setup, 2, Duration::ZERO);
    let worker = h.worker();
    let job = h.submit(json!({})).await;
    let first = h.watch_all(job.id, 0).await;
    assert_gap_free(&first, 1);
    assert!(first.last().is_some_and(JobEvent::is_terminal), "{first:?}");
    let again = h.watch_all(job.id, 0).await;
    assert_eq!(first, again);
    let last = first.last().map_or(0, |e| e.seq);
    assert!(h.watch_all(job.id, last).await.is_empty());
    assert_eq!(h.watch_all(job.id, last - 1).await.len(), 1);
    worker.shutdown().await;
}

/// Bad submissions name the field and store nothing.
pub async fn check_submit_validation(backends: Backends) {
    let h = Harness::new(backends, 1, Duration::ZERO);
    let cases: Vec<(Submit, &str)> = vec![
        (Submit::new(""), "prompt"),
        (Submit::new("   "), "prompt"),
        (Submit::new("x".repeat(32 * 1024 + 1)), "prompt"),
        (Submit::new("ok").kind("no-such-kind"), "kind"),
        (Submit::new("ok").params(json!([1, 2])), "params"),
        (Submit::new("ok").priority(1_000), "priority"),
        (Submit::new("ok").max_attempts(0), "max_attempts"),
        (Submit::new("ok").timeout(Duration::ZERO), "timeout"),
        (
            Submit::new("ok").run_at(Utc::now() + chrono::Duration::days(365 * 20_000)),
            "run_at",
        ),
    ];
    for (req, field) in cases {
        match h.engine.submit(&h.owner, req).await {
            Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected Invalid {{ field: {field} }}, got {other:?}"),
        }
    }
    let page = h
        .engine
        .list(&h.owner, JobQuery::default())
        .await
        .expect("list");
    assert!(page.items.is_empty(), "nothing was stored");
    h.engine
        .submit(&h.owner, Submit::new("x".repeat(32 * 1024)))
        .await
        .expect("a prompt of exactly the limit is fine");
}

/// Another owner's jobs and apps are not found, through every call.
pub async fn check_owner_scoping(setup: impl Into<Setup>) {
    let h = Harness::new(setup, 1, Duration::ZERO);
    let worker = h.worker();
    let job = h.submit(json!({})).await;
    h.watch_all(job.id, 0).await;
    let app = h.engine.app_by_job(&h.owner, job.id).await.expect("app");
    let eve = Owner::new(unique("eve"));
    let e = &h.engine;
    let nf = |r: Result<(), Error>| assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    nf(e.get(&eve, job.id).await.map(drop));
    nf(e.cancel(&eve, job.id).await.map(drop));
    nf(e.retry(&eve, job.id).await.map(drop));
    nf(e.events(&eve, job.id, 0, 10).await.map(drop));
    nf(e.attempts(&eve, job.id).await.map(drop));
    nf(e.watch(&eve, job.id, 0).await.map(drop));
    nf(e.app(&eve, app.id).await.map(drop));
    nf(e.app_by_job(&eve, job.id).await.map(drop));
    assert!(e
        .list(&eve, JobQuery::default())
        .await
        .expect("list")
        .items
        .is_empty());
    assert!(e.apps(&eve, None, 10).await.expect("apps").items.is_empty());
    assert_eq!(
        e.list(&h.owner, JobQuery::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    assert_eq!(
        e.apps(&h.owner, None, 10).await.expect("apps").items,
        vec![app]
    );
    worker.shutdown().await;
}

/// A queued job is cancelled at once and never runs.
pub async fn check_cancel_queued_job(setup: impl Into<Setup>) {
    let h = Harness::new(setup, 1, Duration::ZERO);
    let job = h
        .engine
        .submit(
            &h.owner,
            Submit::new("later").run_at(Utc::now() + chrono::Duration::seconds(1)),
        )
        .await
        .expect("submit");
    let worker = h.worker();
    let cancelled = h.engine.cancel(&h.owner, job.id).await.expect("cancel");
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = h.watch_all(job.id, 0).await;
    assert_eq!(statuses(&events), [JobStatus::Queued, JobStatus::Cancelled]);
    assert!(h
        .engine
        .attempts(&h.owner, job.id)
        .await
        .expect("attempts")
        .is_empty());
    assert!(matches!(
        h.engine.cancel(&h.owner, job.id).await,
        Err(Error::Conflict(_))
    ));
    worker.shutdown().await;
}

/// A running job's cancel reaches its orchestrator within a heartbeat; the
/// attempt and the job end `cancelled`.
pub async fn check_cancel_running_job(setup: impl Into<Setup>) {
    let h = Harness::new(setup, 200, Duration::from_millis(50));
    let worker = h.worker();
    let job = h.submit(json!({})).await;
    h.wait_for(job.id, JobStatus::Running).await;
    h.engine.cancel(&h.owner, job.id).await.expect("cancel");
    let start = tokio::time::Instant::now();
    let done = h.wait_for(job.id, JobStatus::Cancelled).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(done.finished_at.is_some());
    let attempts = h.engine.attempts(&h.owner, job.id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status, AttemptStatus::Cancelled);
    let events = h.watch_all(job.id, 0).await;
    assert_gap_free(&events, 1);
    assert!(events.iter().any(|e| e.data == EventData::CancelRequested));
    worker.shutdown().await;
}

/// A retryable failure is retried with growing delays until `max_attempts`, then
/// the job fails.
pub async fn check_retries_with_backoff_then_failed(setup: impl Into<Setup>) {
    let h = Harness::new(setup, 1, Duration::ZERO);
    let worker = h.worker();
    let job = h
        .engine
        .submit(
            &h.owner,
            Submit::new("flaky")
                .params(json!({"fail": "retryable"}))
                .max_attempts(3),
        )
        .await
        .expect("submit");
    let events = h.watch_all(job.id, 0).await;
    assert_gap_free(&events, 1);
    use JobStatus::*;
    assert_eq!(
        statuses(&events),
        [Queued, Running, Queued, Running, Queued, Running, Failed]
    );
    let attempts = h.engine.attempts(&h.owner, job.id).await.expect("attempts");
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|a| a.status == AttemptStatus::Failed));
    // Backoff base 50 ms, doubling: at least ~50 ms, then ~100 ms between attempts.
    let gap = |a: usize| attempts[a + 1].started_at - attempts[a].finished_at.expect("finished");
    assert!(gap(0) >= chrono::Duration::milliseconds(45), "{:?}", gap(0));
    assert!(gap(1) >= chrono::Duration::milliseconds(95), "{:?}", gap(1));
    let job = h.engine.get(&h.owner, job.id).await.expect("get");
    assert_eq!(job.status, Failed);
    assert_eq!(job.attempts_used, 3);
    assert_eq!(
        job.error.as_ref().map(|e| e.code.as_str()),
        Some("orchestrator_error")
    );
    worker.shutdown().await;
}

/// A fatal error fails the job without another attempt.
pub async fn check_fatal_error_fails_at_once(setup: impl Into<Setup>) {
    let h = Harness::new(setup, 1, Duration::ZERO);
    let worker = h.worker();
    let job = h
        .engine
        .submit(
            &h.owner,
            Submit::new("doomed")
                .params(json!({"fail": "fatal"}))
                .max_attempts(5),
        )
        .await
        .expect("submit");
    let events = h.watch_all(job.id, 0).await;
    assert_eq!(
        statuses(&events),
        [JobStatus::Queued, JobStatus::Running, JobStatus::Failed]
    );
    assert_eq!(
        h.engine
            .attempts(&h.owner, job.id)
            .await
            .expect("attempts")
            .len(),
        1
    );
    worker.shutdown().await;
}

/// A panicking orchestrator fails its attempt; the worker goes on and the retry
/// succeeds.
pub async fn check_panic_fails_the_attempt_not_the_worker(setup: impl Into<Setup>) {
    let h = Harness::new(setup, 1, Duration::ZERO);
    let worker = h.worker();
    let job = h.submit(json!({"panic": true, "fail_attempts": 1})).await;
    let events = h.watch_all(job.id, 0).await;
    assert_eq!(statuses(&events).last(), Some(&JobStatus::Succeeded));
    let attempts = h.engine.attempts(&h.owner, job.id).await.expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, AttemptStatus::Failed);
    assert_eq!(
        attempts[0].error.as_ref().map(|e| e.code.as_str()),
        Some("panic")
    );
    let next = h.submit(json!({})).await;
    h.watch_all(next.id, 0).await;
    assert_eq!(
        h.engine.get(&h.owner, next.id).await.expect("get").status,
        JobStatus::Succeeded
    );
    worker.shutdown().await;
}

/// An attempt past its timeout ends `timed_out`.
pub async fn check_timeout(backends: Backends) {
    let h = Harness::new(backends, 1, Duration::from_secs(60));
    let worker = h.worker();
    let job = h
        .engine
        .submit(
            &h.owner,
            Submit::new("slow")
                .timeout(Duration::from_secs(1))
                .max_attempts(1),
        )
        .await
        .expect("submit");
    let events = h.watch_all(job.id, 0).await;
    assert_eq!(statuses(&events).last(), Some(&JobStatus::Failed));
    let attempts = h.engine.attempts(&h.owner, job.id).await.expect("attempts");
    assert_eq!(attempts[0].status, AttemptStatus::TimedOut);
    let job = h.engine.get(&h.owner, job.id).await.expect("get");
    assert_eq!(job.error.as_ref().map(|e| e.code.as_str()), Some("timeout"));
    worker.shutdown().await;
}

/// The owner's retry runs a failed job again, to success.
pub async fn check_owner_retry_runs_again(setup: impl Into<Setup>) {
    let h = Harness::new(setup, 1, Duration::ZERO);
    let worker = h.worker();
    let job = h
        .engine
        .submit(
            &h.owner,
            Submit::new("again")
                .params(json!({"fail": "fatal", "fail_attempts": 1}))
                .max_attempts(1),
        )
        .await
        .expect("submit");
    let first = h.watch_all(job.id, 0).await;
    assert_eq!(statuses(&first).last(), Some(&JobStatus::Failed));
    let retried = h.engine.retry(&h.owner, job.id).await.expect("retry");
    assert_eq!(retried.status, JobStatus::Queued);
    let rest = h.watch_all(job.id, first.len() as u64).await;
    assert_gap_free(&rest, first.len() as u64 + 1);
    assert_eq!(statuses(&rest).last(), Some(&JobStatus::Succeeded));
    h.engine.app_by_job(&h.owner, job.id).await.expect("app");
    worker.shutdown().await;
}

/// A worker that dies mid-attempt (its lease is never renewed) loses the job to
/// recovery, and another worker finishes it; the log stays gap-free.
pub async fn check_lost_worker_is_recovered(setup: impl Into<Setup>) {
    let h = Harness::new(setup, 2, Duration::from_millis(10));
    let job = h.submit(json!({})).await;
    // The dead worker: pops and claims with a short lease, then is never heard of.
    let queues = h.engine.registry().queues();
    let delivery = h
        .engine
        .queue()
        .pop(&queues, Duration::from_secs(5))
        .await
        .expect("pop")
        .expect("the job's entry");
    let claim = h
        .engine
        .store()
        .claim(job.id, "dead-worker", Duration::from_millis(300))
        .await
        .expect("claim")
        .expect("claimable");
    h.engine.queue().ack(&delivery).await.expect("ack");
    h.engine.publish(&claim.job.kind, &claim.events).await;
    let worker = h.worker();
    let events = h.watch_all(job.id, 0).await;
    assert_gap_free(&events, 1);
    use JobStatus::*;
    assert_eq!(
        statuses(&events),
        [Queued, Running, Queued, Running, Succeeded]
    );
    let attempts = h.engine.attempts(&h.owner, job.id).await.expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, AttemptStatus::Lost);
    assert_eq!(attempts[0].worker_id, "dead-worker");
    assert_eq!(attempts[1].status, AttemptStatus::Succeeded);
    worker.shutdown().await;
}

/// On shutdown, an attempt still running after the grace period is released —
/// queued again without spending an attempt — and another worker finishes it.
pub async fn check_graceful_shutdown_releases(backends: Backends) {
    let h = Harness::new(backends, 40, Duration::from_millis(50));
    let first = Worker::new(
        h.engine.clone(),
        WorkerConfig {
            shutdown_grace: Duration::from_millis(200),
            ..fast_worker()
        },
    )
    .spawn();
    let job = h
        .engine
        .submit(&h.owner, Submit::new("long").max_attempts(1))
        .await
        .expect("submit");
    h.wait_for(job.id, JobStatus::Running).await;
    first.shutdown().await;
    let released = h.engine.get(&h.owner, job.id).await.expect("get");
    assert_eq!(released.status, JobStatus::Queued);
    assert_eq!(released.attempts_used, 0);
    let second = h.worker();
    let events = h.watch_all(job.id, 0).await;
    assert_gap_free(&events, 1);
    assert_eq!(statuses(&events).last(), Some(&JobStatus::Succeeded));
    let attempts = h.engine.attempts(&h.owner, job.id).await.expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, AttemptStatus::Cancelled);
    assert_eq!(attempts[1].status, AttemptStatus::Succeeded);
    second.shutdown().await;
}

/// Engine pages: `next_cursor` leads through every job once, and is `None` at the end.
pub async fn check_cursor_pages_through_engine(backends: Backends) {
    let h = Harness::new(backends, 1, Duration::ZERO);
    let later = Utc::now() + chrono::Duration::seconds(3600);
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(
            h.engine
                .submit(&h.owner, Submit::new("p").run_at(later))
                .await
                .expect("submit")
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = h
            .engine
            .list(
                &h.owner,
                JobQuery {
                    cursor,
                    limit: 5,
                    ..JobQuery::default()
                },
            )
            .await
            .expect("list");
        pages += 1;
        seen.extend(page.items.iter().map(|j| j.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c.parse().expect("a job id")),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);
}

/// Buffered logs, steps and the periodic log flush interleave without
/// stalling the attempt when every store write really waits (the flush must
/// never wait for a write the orchestrator has in flight).
pub async fn check_logs_and_steps_with_a_slow_store(backends: Backends) {
    let (store, queue, notifier) = backends;
    let slow: Arc<dyn Store> = Arc::new(super::SlowStore::new(store, Duration::from_millis(3)));
    let h = Harness::new((slow, queue, notifier), 40, Duration::from_millis(1));
    let worker = Worker::new(
        h.engine.clone(),
        WorkerConfig {
            log_flush: Duration::from_millis(2),
            heartbeat: Duration::from_millis(20),
            lease: Duration::from_millis(1500),
            ..fast_worker()
        },
    )
    .spawn();
    let job = h.submit(json!({"log_lines": 2})).await;
    let events = h.watch_all(job.id, 0).await;
    assert_gap_free(&events, 1);
    assert_eq!(
        statuses(&events),
        [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded]
    );
    let logs = events
        .iter()
        .filter(|e| matches!(e.data, EventData::Log(_)))
        .count();
    assert_eq!(logs, 80, "every log line persisted");
    assert_eq!(
        h.engine
            .attempts(&h.owner, job.id)
            .await
            .expect("attempts")
            .len(),
        1
    );
    worker.shutdown().await;
}

/// Jobs of one concurrency key limited to 1 run one at a time through
/// workers with room for more, and all of them run: the worker puts a
/// held-back job back and takes it again once the key is free. Every
/// listing of the owner's jobs (one consistent read) shows at most one of
/// them running.
pub async fn check_concurrency_key_limits_running_jobs(setup: impl Into<Setup>) {
    const JOBS: usize = 4;
    let h = Harness::new(setup, 4, Duration::from_millis(20));
    let key = unique("key");
    let mut ids = HashSet::new();
    for _ in 0..JOBS {
        let submit = Submit::new("one at a time")
            .kind(h.kind.clone())
            .concurrency(key.clone(), 1);
        ids.insert(h.engine.submit(&h.owner, submit).await.expect("submit").id);
    }
    let worker = h.worker();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut seen_running = false;
    loop {
        let query = JobQuery {
            limit: 100,
            ..JobQuery::default()
        };
        let page = h.engine.list(&h.owner, query).await.expect("list");
        let ours: Vec<&Job> = page.items.iter().filter(|j| ids.contains(&j.id)).collect();
        assert_eq!(ours.len(), JOBS);
        let running = ours
            .iter()
            .filter(|j| j.status == JobStatus::Running)
            .count();
        assert!(
            running <= 1,
            "{running} jobs of a key limited to 1 ran at once"
        );
        seen_running |= running == 1;
        if ours.iter().all(|j| j.status == JobStatus::Succeeded) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the jobs of one key did not all succeed: {:?}",
            ours.iter().map(|j| j.status).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(seen_running, "no listing caught a job running");
    for id in &ids {
        let attempts = h.engine.attempts(&h.owner, *id).await.expect("attempts");
        assert_eq!(attempts.len(), 1, "a held-back job spends no attempt");
    }
    worker.shutdown().await;
}

/// A worker with retention on deletes a job once it has finished longer
/// ago than the retention age, and leaves a job that has not finished.
pub async fn check_retention_in_the_worker(backends: Backends) {
    let h = Harness::new(backends, 1, Duration::ZERO);
    let held = h
        .engine
        .submit(
            &h.owner,
            Submit::new("later").run_at(Utc::now() + chrono::Duration::hours(1)),
        )
        .await
        .expect("submit");
    let job = h.submit(json!({})).await;
    let worker = Worker::new(
        h.engine.clone(),
        WorkerConfig {
            retention: Some(crate::retention::Retention {
                after: Duration::from_millis(200),
                every: Duration::from_millis(50),
                batch: 10,
            }),
            ..fast_worker()
        },
    )
    .spawn();
    h.wait_for(job.id, JobStatus::Succeeded).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match h.engine.get(&h.owner, job.id).await {
            Err(Error::NotFound { .. }) => break,
            Ok(_) => {}
            Err(e) => panic!("get: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a finished job outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = h
        .engine
        .get(&h.owner, held.id)
        .await
        .expect("an unfinished job is kept");
    assert_eq!(kept.status, JobStatus::Queued);
    worker.shutdown().await;
}
