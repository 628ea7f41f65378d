//! W1 (drain throughput), W2 (latency) and W6 (fairness); the setup and
//! teardown every workload shares.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use projectengine_core::{
    Engine, JobStatus, Owner, Registry, StubOrchestrator, Submit, Worker, WorkerConfig,
    WorkerHandle,
};
use serde_json::json;

use crate::backends::{self, Backends, CommandStats};
use crate::observe::Observer;
use crate::report::{peak_rss_mb, percentile, Report};
use crate::Args;

/// A run's engine, observer and backends; the worker once spawned.
pub struct Setup {
    pub engine: Engine,
    pub observer: Arc<Observer>,
    pub worker: Option<WorkerHandle>,
    pub backends: Backends,
    pub k: u32,
    pub concurrency: usize,
}

impl Setup {
    /// Starts the worker (W3 starts it only once its clients are connected).
    pub fn spawn_worker(&mut self) {
        if self.worker.is_none() {
            let worker = Worker::new(
                self.engine.clone(),
                WorkerConfig {
                    concurrency: self.concurrency,
                    ..WorkerConfig::default()
                },
            )
            .spawn();
            self.worker = Some(worker);
        }
    }

    pub async fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown().await;
        }
    }

    /// Stops the worker, drops the database and deletes the Redis keys.
    async fn teardown(mut self) -> Result<(), String> {
        self.stop_worker().await;
        if let Some(r) = self.backends.redis.as_mut() {
            r.cleanup().await?;
        }
        if let Some(pg) = &self.backends.pg {
            pg.drop_database().await?;
        }
        if let Some(sqlite) = &self.backends.sqlite {
            sqlite.remove()?;
        }
        Ok(())
    }
}

async fn setup(args: &Args, k: u32, concurrency: usize, step: Duration) -> Result<Setup, String> {
    let backends = backends::connect(
        &args.backend,
        args.redis_monitor,
        args.group_commit,
        args.publish_interval,
    )
    .await?;
    let observer = Observer::new(backends.notifier.clone(), args.workload == "w3");
    let stub = StubOrchestrator {
        steps: k,
        delay: step,
        app_bytes: 1024,
    };
    let registry = Registry::new().register("bench", stub);
    let engine = Engine::new(
        backends.store.clone(),
        backends.queue.clone(),
        observer.clone(),
        registry,
    );
    Ok(Setup {
        engine,
        observer,
        worker: None,
        backends,
        k,
        concurrency,
    })
}

pub async fn run(args: &Args) -> Result<Vec<Report>, String> {
    if args.workload == "store-xacts" {
        return crate::store_xacts::run(args).await.map(|r| vec![r]);
    }
    if args.workload == "w6" {
        // Fair queues off, then on, each on fresh backends.
        let mut reports = Vec::new();
        for fair in [false, true] {
            let (k, concurrency) = (args.k.unwrap_or(5), args.concurrency.unwrap_or(16));
            let step = Duration::from_millis(args.step_ms.unwrap_or(5));
            let mut s = setup(args, k, concurrency, step).await?;
            let result = w6(args, &mut s, fair).await;
            let cleanup = s.teardown().await;
            reports.push(result?);
            cleanup?;
        }
        return Ok(reports);
    }
    // The workload's defaults (WORKLOADS.md).
    let (k, concurrency, step) = match args.workload.as_str() {
        "w1" | "w2" | "w4" | "w7" => (args.k.unwrap_or(5), args.concurrency.unwrap_or(16), 0),
        "w3" => (
            args.k.unwrap_or(20),
            args.concurrency.unwrap_or(100),
            args.step_ms.unwrap_or(50),
        ),
        other => {
            return Err(format!(
                "unknown workload `{other}` (w1, w2, w3, w4, w6, w7, store-xacts)"
            ))
        }
    };
    let mut s = setup(args, k, concurrency, Duration::from_millis(step)).await?;
    let result = match args.workload.as_str() {
        "w1" => w1(args, &mut s).await,
        "w2" => w2(args, &mut s).await,
        "w3" => crate::http::w3(args, &mut s).await,
        "w7" => crate::soak::w7(args, &mut s).await,
        _ => crate::http::w4(args, &mut s).await,
    };
    let cleanup = s.teardown().await;
    let r = result?;
    cleanup?;
    Ok(vec![r])
}

pub fn report(args: &Args, s: &Setup, n: usize) -> Report {
    Report {
        workload: args.workload.clone(),
        backend: args.backend.clone(),
        n,
        k: s.k,
        concurrency: s.concurrency,
        fields: Vec::new(),
    }
}

/// W1: N jobs submitted as fast as one producer can while workers run; jobs/s
/// from the first submit to the last job observed `succeeded`. On pg-redis,
/// PostgreSQL transactions and Redis commands per job.
///
/// The producer is one task that keeps up to `--inflight` submits in flight
/// (each an `Engine::submit`, answered once the job is durable), as a client
/// with many jobs to send would; `--inflight 1` waits for each in turn.
async fn w1(args: &Args, s: &mut Setup) -> Result<Report, String> {
    let n = args.n.unwrap_or(2000);
    s.spawn_worker();
    let other_clients = match s.backends.redis.as_mut() {
        Some(r) => Some(r.other_clients().await?),
        None => None,
    };
    let xact_before = match &s.backends.pg {
        Some(pg) => Some(pg.xact_commit().await?),
        None => None,
    };
    let redis_before = redis_snapshot(s).await?;
    let sqlite_before = s.backends.sqlite.as_ref().map(|r| r.write_stats());
    let owner = Owner::new("bench");
    let start = Instant::now();
    let engine = &s.engine;
    let owner = &owner;
    let ids: Vec<_> = futures::stream::iter(0..n)
        .map(|i| async move {
            engine
                .submit(owner, Submit::new(format!("job {i}")))
                .await
                .map(|job| job.id)
                .map_err(|e| format!("submit: {e}"))
        })
        .buffer_unordered(args.inflight)
        .try_collect()
        .await?;
    let submitted = start.elapsed();
    wait_all(&s.observer, n, Duration::from_secs(600)).await?;
    let wall = start.elapsed();
    let peak = peak_rss_mb();
    let failed = ids
        .iter()
        .filter(|id| s.observer.times(**id).finished.map(|f| f.1) != Some(JobStatus::Succeeded))
        .count();
    let redis_after = redis_snapshot(s).await?;
    s.stop_worker().await;
    let xact_after = match &s.backends.pg {
        Some(pg) => {
            pg.close().await;
            Some(pg.xact_commit().await?)
        }
        None => None,
    };
    let events = s.observer.events();
    let mut r = report(args, s, n);
    r.set("wall_s", round(wall.as_secs_f64(), 3));
    r.set("jobs_per_s", round(n as f64 / wall.as_secs_f64(), 1));
    r.set("submit_s", round(submitted.as_secs_f64(), 3));
    r.set("inflight", args.inflight);
    r.set("jobs_succeeded", n - failed);
    r.set("not_succeeded", failed);
    r.set("events", events);
    r.set("peak_rss_mb", peak);
    if let (Some(b), Some(a)) = (xact_before, xact_after) {
        r.set("pg_xacts", a - b);
        r.set("pg_xacts_per_job", round((a - b) as f64 / n as f64, 2));
    }
    if let Some(pg) = &s.backends.pg {
        let (updates, hot) = pg.jobs_updates().await?;
        r.set(
            "pg_job_updates_per_job",
            round(updates as f64 / n as f64, 2),
        );
        r.set(
            "pg_job_updates_hot_share",
            round(hot as f64 / updates.max(1) as f64, 2),
        );
    }
    if let (Some(before), Some(run)) = (sqlite_before, &s.backends.sqlite) {
        let after = run.write_stats();
        let commits = after.commits - before.commits;
        r.set("sqlite_xacts", commits);
        r.set("sqlite_xacts_per_job", round(commits as f64 / n as f64, 2));
        r.set(
            "sqlite_writes_per_xact",
            round(
                (after.writes - before.writes) as f64 / commits.max(1) as f64,
                1,
            ),
        );
    }
    set_redis_counts(&mut r, n, redis_before, redis_after);
    if let Some(c) = other_clients {
        r.set("redis_other_clients", c);
    }
    Ok(r)
}

/// W2: idle workers; jobs submitted one at a time, each awaited before the
/// next (so every pop waits first). On pg-redis, Redis commands per job too.
async fn w2(args: &Args, s: &mut Setup) -> Result<Report, String> {
    let n = args.n.unwrap_or(300);
    s.spawn_worker();
    let redis_before = redis_snapshot(s).await?;
    let owner = Owner::new("bench");
    let (mut to_start, mut to_done) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let start = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        let job = s
            .engine
            .submit(&owner, Submit::new(format!("job {i}")))
            .await
            .map_err(|e| format!("submit: {e}"))?;
        wait_all(&s.observer, i + 1, Duration::from_secs(60)).await?;
        let t = s.observer.times(job.id);
        let started = t.started.ok_or("no start observed")?;
        let (done, status) = t.finished.ok_or("no finish observed")?;
        if status != JobStatus::Succeeded {
            return Err(format!("job {} ended {status}", job.id));
        }
        to_start.push((started - t0).as_secs_f64() * 1000.0);
        to_done.push((done - t0).as_secs_f64() * 1000.0);
    }
    let wall = start.elapsed();
    let redis_after = redis_snapshot(s).await?;
    to_start.sort_by(f64::total_cmp);
    to_done.sort_by(f64::total_cmp);
    let mut r = report(args, s, n);
    r.set("wall_s", round(wall.as_secs_f64(), 3));
    r.set("jobs_succeeded", to_done.len());
    r.set("events", s.observer.events());
    r.set("start_p50_ms", percentile(&to_start, 50.0));
    r.set("start_p95_ms", percentile(&to_start, 95.0));
    r.set("start_p99_ms", percentile(&to_start, 99.0));
    r.set("p50_ms", percentile(&to_done, 50.0));
    r.set("p95_ms", percentile(&to_done, 95.0));
    r.set("p99_ms", percentile(&to_done, 99.0));
    r.set("peak_rss_mb", peak_rss_mb());
    set_redis_counts(&mut r, n, redis_before, redis_after);
    Ok(r)
}

/// W6: fairness. Workers busy: owner A submits N jobs (default 5 000, K = 5
/// steps of 5 ms each), as fast as one producer can (`--inflight` submits in
/// flight); once they are all in, owner B submits 10, one after the other.
/// Figures: B's submit → start p50 / p99 (of 10: p99 is the slowest), A's
/// jobs/s (first submit → A's last job `succeeded`), and A's backlog when B
/// came (A's jobs not started by B's first submit). Run with fair queues off
/// (`fair` 0) and on (`fair` 1): one report each.
async fn w6(args: &Args, s: &mut Setup, fair: bool) -> Result<Report, String> {
    const B_JOBS: usize = 10;
    let n = args.n.unwrap_or(5000);
    s.engine = s.engine.clone().with_fair_queues(fair);
    s.spawn_worker();
    let (a, b) = (Owner::new("owner-a"), Owner::new("owner-b"));
    let start = Instant::now();
    let engine = &s.engine;
    let a_ref = &a;
    let a_ids: Vec<_> = futures::stream::iter(0..n)
        .map(|i| async move {
            engine
                .submit(a_ref, Submit::new(format!("a {i}")))
                .await
                .map(|job| job.id)
                .map_err(|e| format!("submit: {e}"))
        })
        .buffer_unordered(args.inflight)
        .try_collect()
        .await?;
    let mut b_jobs = Vec::with_capacity(B_JOBS);
    for i in 0..B_JOBS {
        let t0 = Instant::now();
        let job = s
            .engine
            .submit(&b, Submit::new(format!("b {i}")))
            .await
            .map_err(|e| format!("submit: {e}"))?;
        b_jobs.push((job.id, t0));
    }
    wait_all(&s.observer, n + B_JOBS, Duration::from_secs(1200)).await?;
    let peak = peak_rss_mb();
    s.stop_worker().await;
    let b_first = b_jobs[0].1;
    let mut a_last = start;
    let (mut a_failed, mut a_started_before_b) = (0, 0);
    for id in &a_ids {
        let t = s.observer.times(*id);
        match t.finished {
            Some((at, JobStatus::Succeeded)) => a_last = a_last.max(at),
            _ => a_failed += 1,
        }
        if t.started.is_some_and(|at| at < b_first) {
            a_started_before_b += 1;
        }
    }
    let mut b_start = Vec::with_capacity(B_JOBS);
    let mut b_done = Vec::with_capacity(B_JOBS);
    for (id, t0) in &b_jobs {
        let t = s.observer.times(*id);
        let started = t.started.ok_or("no start observed")?;
        let (done, status) = t.finished.ok_or("no finish observed")?;
        if status != JobStatus::Succeeded {
            return Err(format!("job {id} ended {status}"));
        }
        b_start.push((started - *t0).as_secs_f64() * 1000.0);
        b_done.push((done - *t0).as_secs_f64() * 1000.0);
    }
    b_start.sort_by(f64::total_cmp);
    b_done.sort_by(f64::total_cmp);
    let a_wall = (a_last - start).as_secs_f64();
    let mut r = report(args, s, n);
    r.set("fair", u8::from(fair));
    r.set("b_start_p50_ms", percentile(&b_start, 50.0));
    r.set("b_start_p99_ms", percentile(&b_start, 99.0));
    r.set("b_done_p50_ms", percentile(&b_done, 50.0));
    r.set("b_done_p99_ms", percentile(&b_done, 99.0));
    r.set("a_jobs_per_s", round(n as f64 / a_wall, 1));
    r.set("a_wall_s", round(a_wall, 3));
    r.set("a_backlog_at_b", n - a_started_before_b);
    r.set("a_not_succeeded", a_failed);
    r.set("step_ms", args.step_ms.unwrap_or(5));
    r.set("peak_rss_mb", peak);
    Ok(r)
}

/// Redis's command counters (and MONITOR's, when on), on a run with Redis.
type RedisSnapshot = Option<(CommandStats, Option<(u64, u64)>)>;

async fn redis_snapshot(s: &mut Setup) -> Result<RedisSnapshot, String> {
    Ok(match s.backends.redis.as_mut() {
        Some(r) => Some((r.command_stats().await?, r.monitor_counts())),
        None => None,
    })
}

/// Redis commands per job between two snapshots: in all, by command, scripts,
/// and (with MONITOR) top-level ones and ones run inside scripts.
fn set_redis_counts(r: &mut Report, n: usize, before: RedisSnapshot, after: RedisSnapshot) {
    let (Some((b, mb)), Some((a, ma))) = (before, after) else {
        return;
    };
    let mut per_cmd = a.since(&b);
    // The first INFO is counted in the second snapshot.
    if let Some(v) = per_cmd.get_mut("info") {
        *v -= 1;
    }
    per_cmd.retain(|_, v| *v > 0);
    let total: u64 = per_cmd.values().sum();
    let evalsha =
        per_cmd.get("evalsha").copied().unwrap_or(0) + per_cmd.get("eval").copied().unwrap_or(0);
    r.set("redis_cmds", total);
    r.set("redis_cmds_per_job", round(total as f64 / n as f64, 2));
    r.set("redis_scripts_per_job", round(evalsha as f64 / n as f64, 2));
    if let (Some((bt, bs)), Some((at, as_))) = (mb, ma) {
        let (top, inner) = (at - bt, as_ - bs);
        r.set("redis_toplevel_per_job", round(top as f64 / n as f64, 2));
        r.set(
            "redis_in_scripts_per_job",
            round(inner as f64 / n as f64, 2),
        );
    }
    r.set("redis_by_command", json!(per_cmd));
}

pub async fn wait_all(observer: &Observer, n: usize, limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    observer
        .target
        .store(n, std::sync::atomic::Ordering::SeqCst);
    loop {
        let notified = observer.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if observer.finished() >= n {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Err(format!(
                "only {} of {n} jobs finished in {limit:?}",
                observer.finished()
            ));
        }
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}
