//! W1 (drain throughput) and W2 (latency).

use std::sync::Arc;
use std::time::{Duration, Instant};

use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::{
    Engine, JobStatus, Notifier, Owner, Queue, Registry, Store, StubOrchestrator, Submit, Worker,
    WorkerConfig,
};

use crate::observe::Observer;
use crate::report::{peak_rss_mb, percentile, Report};
use crate::Args;

type Backends = (Arc<dyn Store>, Arc<dyn Queue>, Arc<dyn Notifier>);

async fn backends(name: &str) -> Result<Backends, String> {
    match name {
        "memory" => Ok((
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryQueue::default()),
            Arc::new(MemoryNotifier::default()),
        )),
        other => Err(format!("unknown backend `{other}` (memory)")),
    }
}

struct Setup {
    engine: Engine,
    observer: Arc<Observer>,
    worker: projectengine_core::WorkerHandle,
}

async fn setup(args: &Args) -> Result<Setup, String> {
    let (store, queue, notifier) = backends(&args.backend).await?;
    let observer = Observer::new(notifier);
    let stub = StubOrchestrator {
        steps: args.k,
        delay: Duration::ZERO,
        app_bytes: 1024,
    };
    let registry = Registry::new().register("bench", stub);
    let engine = Engine::new(store, queue, observer.clone(), registry);
    let worker = Worker::new(
        engine.clone(),
        WorkerConfig {
            concurrency: args.concurrency,
            ..WorkerConfig::default()
        },
    )
    .spawn();
    Ok(Setup {
        engine,
        observer,
        worker,
    })
}

pub async fn run(args: &Args) -> Result<Report, String> {
    match args.workload.as_str() {
        "w1" => w1(args).await,
        "w2" => w2(args).await,
        other => Err(format!("unknown workload `{other}` (w1, w2)")),
    }
}

fn report(args: &Args, name: &str, n: usize) -> Report {
    Report {
        workload: name.into(),
        backend: args.backend.clone(),
        n,
        k: args.k,
        concurrency: args.concurrency,
        fields: Vec::new(),
    }
}

/// W1: N jobs submitted as fast as one producer can while workers run; jobs/s
/// from the first submit to the last job observed `succeeded`.
async fn w1(args: &Args) -> Result<Report, String> {
    let n = args.n.unwrap_or(2000);
    let s = setup(args).await?;
    let owner = Owner::new("bench");
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let job = s
            .engine
            .submit(&owner, Submit::new(format!("job {i}")))
            .await
            .map_err(|e| format!("submit: {e}"))?;
        ids.push(job.id);
    }
    let submitted = start.elapsed();
    wait_all(&s.observer, n, Duration::from_secs(600)).await?;
    let wall = start.elapsed();
    let failed = ids
        .iter()
        .filter(|id| s.observer.times(**id).finished.map(|f| f.1) != Some(JobStatus::Succeeded))
        .count();
    s.worker.shutdown().await;
    let mut r = report(args, "w1", n);
    r.set("wall_s", round(wall.as_secs_f64(), 3));
    r.set("jobs_per_s", round(n as f64 / wall.as_secs_f64(), 1));
    r.set("submit_s", round(submitted.as_secs_f64(), 3));
    r.set("not_succeeded", failed);
    r.set("peak_rss_mb", peak_rss_mb());
    Ok(r)
}

/// W2: idle workers; jobs submitted one at a time, each awaited before the next.
async fn w2(args: &Args) -> Result<Report, String> {
    let n = args.n.unwrap_or(300);
    let s = setup(args).await?;
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
    s.worker.shutdown().await;
    to_start.sort_by(f64::total_cmp);
    to_done.sort_by(f64::total_cmp);
    let mut r = report(args, "w2", n);
    r.set("wall_s", round(wall.as_secs_f64(), 3));
    r.set("start_p50_ms", percentile(&to_start, 50.0));
    r.set("start_p95_ms", percentile(&to_start, 95.0));
    r.set("start_p99_ms", percentile(&to_start, 99.0));
    r.set("p50_ms", percentile(&to_done, 50.0));
    r.set("p95_ms", percentile(&to_done, 95.0));
    r.set("p99_ms", percentile(&to_done, 99.0));
    r.set("peak_rss_mb", peak_rss_mb());
    Ok(r)
}

async fn wait_all(observer: &Observer, n: usize, limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
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

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}
