//! W7: a soak with retention on. Jobs go through the durable store at a
//! steady rate while every worker deletes the jobs that finished longer ago
//! than the retention age; the tables' and indexes' sizes are sampled over
//! time (they must level off), and a W1-style burst measures jobs/s at the
//! start and at the end.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use projectengine_core::retention::Retention;
use projectengine_core::{Owner, Submit, Worker, WorkerConfig};
use serde_json::json;

use crate::report::{peak_rss_mb, Report};
use crate::workloads::{report, round, wait_all, Setup};
use crate::Args;

/// Jobs of each W1-style burst (fewer when `--n` is smaller).
const BURST: usize = 2000;

pub async fn w7(args: &Args, s: &mut Setup) -> Result<Report, String> {
    let Some(pg) = &s.backends.pg else {
        return Err("W7 measures the PostgreSQL store: use --backend pg-redis".into());
    };
    let n = args.n.unwrap_or(500_000);
    let burst_n = n.min(BURST);
    let rate = args.rate.max(1);
    let retention = Duration::from_secs(args.retention_s.max(1));
    let sample_every = Duration::from_secs(args.sample_s.max(1));
    let worker = Worker::new(
        s.engine.clone(),
        WorkerConfig {
            concurrency: s.concurrency,
            retention: Some(Retention {
                after: retention,
                every: Duration::from_secs(5),
                batch: 500,
            }),
            ..WorkerConfig::default()
        },
    )
    .spawn();
    let owner = Owner::new("bench");
    let observer = &*s.observer;
    let engine = &s.engine;
    let owner = &owner;
    let submit = |i: usize| async move {
        engine
            .submit(owner, Submit::new(format!("job {i}")))
            .await
            .map(|_| ())
            .map_err(|e| format!("submit: {e}"))
    };
    let burst = |from: usize| async move {
        let start = Instant::now();
        futures::stream::iter(from..from + burst_n)
            .map(submit)
            .buffer_unordered(64)
            .try_collect::<Vec<()>>()
            .await?;
        wait_all(observer, from + burst_n, Duration::from_secs(600)).await?;
        Ok::<f64, String>(round(burst_n as f64 / start.elapsed().as_secs_f64(), 1))
    };

    let first = burst(0).await?;
    let mut samples = vec![sample(pg, 0.0, observer.finished()).await?];
    let start = Instant::now();
    let mut next_sample = start + sample_every;
    // Submits in slices of a tenth of a second, each slice's jobs at once.
    let slice = (rate / 10).max(1);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(slice as f64 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0;
    while sent < n {
        tick.tick().await;
        let count = slice.min(n - sent);
        futures::stream::iter(burst_n + sent..burst_n + sent + count)
            .map(submit)
            .buffer_unordered(64)
            .try_collect::<Vec<()>>()
            .await?;
        sent += count;
        if Instant::now() >= next_sample {
            let t = start.elapsed().as_secs_f64();
            samples.push(sample(pg, t, observer.finished()).await?);
            next_sample += sample_every;
        }
    }
    let submit_s = start.elapsed().as_secs_f64();
    wait_all(observer, burst_n + n, Duration::from_secs(600)).await?;
    // One more retention pass has deleted what finished before the end of
    // the soak's submissions, less the retention age.
    tokio::time::sleep(retention + Duration::from_secs(6)).await;
    samples.push(sample(pg, start.elapsed().as_secs_f64(), observer.finished()).await?);
    let last = burst(burst_n + n).await?;
    let soak_s = start.elapsed().as_secs_f64();
    worker.shutdown().await;
    let deleted = pg.jobs_deleted().await?;

    let mut r = report(args, s, n);
    r.set("rate_per_s", rate);
    r.set("retention_s", retention.as_secs());
    r.set("submit_s", round(submit_s, 1));
    r.set("achieved_rate_per_s", round(n as f64 / submit_s, 1));
    r.set("soak_s", round(soak_s, 1));
    r.set("w1_start_jobs_per_s", first);
    r.set("w1_end_jobs_per_s", last);
    r.set("jobs_deleted", deleted);
    r.set("peak_rss_mb", peak_rss_mb());
    r.set("samples", json!(samples));
    Ok(r)
}

/// The sizes of the store's tables (with their indexes and TOAST) and the
/// jobs stored, at `t` seconds into the soak.
async fn sample(
    pg: &crate::backends::PgRun,
    t: f64,
    finished: usize,
) -> Result<serde_json::Value, String> {
    let (sizes, jobs) = pg.table_sizes().await?;
    let total: i64 = sizes.iter().map(|(_, b)| b).sum();
    let mb = |b: i64| round(b as f64 / 1_048_576.0, 1);
    let mut by_table = serde_json::Map::new();
    for (name, bytes) in sizes {
        by_table.insert(name, json!(mb(bytes)));
    }
    Ok(json!({
        "t_s": round(t, 0),
        "finished": finished,
        "jobs_stored": jobs,
        "total_mb": mb(total),
        "mb": by_table,
    }))
}
