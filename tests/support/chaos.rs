//! W5, recovery: web + two worker processes on PostgreSQL and Redis, one
//! worker SIGKILLed at random moments and restarted, a WebSocket watcher on
//! every job.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{deployment, http, migrate, submit, token, watch_to_end, Server};

/// The shape of one run.
#[derive(Clone, Debug)]
pub struct Chaos {
    /// Jobs submitted.
    pub jobs: usize,
    /// Steps per job.
    pub steps: u32,
    /// Delay between steps.
    pub delay_ms: u64,
    /// SIGKILLs of the second worker.
    pub kills: usize,
    /// Random pause before each kill, in milliseconds.
    pub kill_gap_ms: (u64, u64),
    /// Attempts each worker runs at once.
    pub concurrency: usize,
    /// Seed of the kill moments.
    pub seed: u64,
    /// How long watchers wait for the jobs to finish.
    pub limit: Duration,
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Jobs submitted.
    pub jobs: usize,
    /// Jobs the store no longer shows, or not finished in time.
    pub lost: usize,
    /// Jobs that succeeded.
    pub succeeded: usize,
    /// SIGKILLs sent.
    pub kills: usize,
    /// Jobs that ran again after a kill.
    pub orphaned: usize,
    /// Seqs a watcher received more than once, over all jobs.
    pub duplicate_seqs: usize,
    /// Seqs a watcher never received, over all jobs.
    pub missing_seqs: usize,
    /// Longest time from a kill to an orphaned job running again.
    pub max_recovery: Duration,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Report {
    /// The figures as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "workload": "W5",
            "jobs": self.jobs,
            "succeeded": self.succeeded,
            "lost": self.lost,
            "kills": self.kills,
            "orphaned_jobs": self.orphaned,
            "duplicate_seqs": self.duplicate_seqs,
            "missing_seqs": self.missing_seqs,
            "max_kill_to_running_ms": self.max_recovery.as_millis() as u64,
            "elapsed_ms": self.elapsed.as_millis() as u64,
        })
    }
}

/// Runs the workload; `None` when a service is missing (and not required).
pub async fn run(c: &Chaos) -> Option<Report> {
    let env = deployment().await?;
    migrate(&env);
    let mut worker_env = env.clone();
    worker_env.push((
        "PROJECTENGINE_WORKER_CONCURRENCY",
        c.concurrency.to_string(),
    ));
    let started = Instant::now();
    let web = Server::start("web", &env);
    let _steady = Server::start("worker", &worker_env);
    let mut victim = Server::start("worker", &worker_env);
    let addr = web.addr();
    let t = token("chaos");
    let mut ids = Vec::with_capacity(c.jobs);
    let mut watchers = Vec::with_capacity(c.jobs);
    for i in 0..c.jobs {
        let body = json!({
            "prompt": format!("chaos {i}"),
            "params": {"steps": c.steps, "delay_ms": c.delay_ms},
            "max_attempts": c.kills as u32 + 2,
        });
        let id = submit(addr, &t, &body).await;
        let (wid, wt, limit) = (id.clone(), t.clone(), c.limit);
        watchers.push(tokio::spawn(async move {
            watch_to_end(addr, &wid, &wt, limit).await
        }));
        ids.push(id);
    }
    let mut rng = fastrand::Rng::with_seed(c.seed);
    let mut kills: Vec<Instant> = Vec::new();
    for _ in 0..c.kills {
        tokio::time::sleep(Duration::from_millis(
            rng.u64(c.kill_gap_ms.0..=c.kill_gap_ms.1),
        ))
        .await;
        victim.kill();
        kills.push(Instant::now());
        victim = Server::start("worker", &worker_env);
    }
    let mut report = Report {
        jobs: c.jobs,
        kills: kills.len(),
        ..Report::default()
    };
    for (id, w) in ids.iter().zip(watchers) {
        let watched = w.await.expect("watcher");
        let (dups, missing) = watched.seq_faults();
        report.duplicate_seqs += dups;
        report.missing_seqs += missing;
        let mut reran = false;
        for (e, at) in &watched.events {
            let rerun = e["type"] == "status"
                && e["data"]["status"] == "running"
                && e["attempt"].as_u64().unwrap_or(0) >= 2;
            if let (true, Some(kill)) = (rerun, kills.iter().rev().find(|k| *k <= at)) {
                reran = true;
                report.max_recovery = report.max_recovery.max(at.duration_since(*kill));
            }
        }
        report.orphaned += usize::from(reran);
        let (code, job) = http(addr, "GET", &format!("/api/jobs/{id}/"), Some(&t), None).await;
        match (code, job["status"].as_str()) {
            (200, Some("succeeded")) => report.succeeded += 1,
            (200, Some("failed" | "cancelled")) => {}
            _ => report.lost += 1,
        }
    }
    report.elapsed = started.elapsed();
    Some(report)
}
