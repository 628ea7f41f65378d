//! How many Redis commands a job costs, from `INFO commandstats` before and
//! after 1000 jobs, on a private `redis-server` (nothing else runs there).
//!
//! `cargo test -p projectengine-queue-redis --test commands -- --ignored --nocapture`
//!
//! Commands run inside a Lua script are counted by Redis under their own
//! names as well as the `EVALSHA` that ran them: "top-level" counts what
//! crossed the network, "in scripts" what the scripts ran, "total" both.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::server::Server;
use common::{event, TestRedis};
use projectengine_core::memory::MemoryStore;
use projectengine_core::{
    Engine, JobEvent, JobId, Notifier, Owner, Queue, QueueEntry, Registry, StubOrchestrator,
    Submit, Worker, WorkerConfig,
};

const JOBS: usize = 1000;

/// Commands that arrive over the network; every other one runs in a script
/// (`zrem` is both: an ack is a bare `ZREM`, and scripts run it too).
const TOP_LEVEL: &[&str] = &[
    "evalsha",
    "eval",
    "script|load",
    "blpop",
    "publish",
    "ping",
    "zrem",
    "subscribe",
    "unsubscribe",
    "hello",
    "select",
    "client|setname",
    "client|setinfo",
    "client|id",
    "client|unblock",
];

async fn commandstats(r: &TestRedis) -> BTreeMap<String, u64> {
    let mut admin = r.admin.clone();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut admin)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Prints the per-job cost between two snapshots; answers (top-level, total).
fn report(
    title: &str,
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> (f64, f64) {
    let mut top = 0u64;
    let mut inner = 0u64;
    println!("\n{title}: Redis commands per job over {JOBS} jobs");
    for (name, calls) in after {
        if name == "info" {
            continue;
        }
        let n = calls - before.get(name).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let kind = if TOP_LEVEL.contains(&name.as_str()) {
            top += n;
            "top-level"
        } else {
            inner += n;
            "in scripts"
        };
        println!("  {name:<16} {:>8.3}  ({kind})", n as f64 / JOBS as f64);
    }
    let per = |n: u64| n as f64 / JOBS as f64;
    println!(
        "  top-level {:.2}, in scripts {:.2}, total {:.2}",
        per(top),
        per(inner),
        per(top + inner)
    );
    (per(top), per(top + inner))
}

/// The W1 shape by hand: a worker-like task pops, publishes 9 events in 7
/// calls and acks; jobs are pushed one at a time, each once the previous is
/// done (so a pop finds the queue empty and blocks first). Also a check of
/// the budget: push + pop + ack cost at most 11 commands (5 + 5 + 1), and the
/// 7 publish calls of a job go in at most 3 `PUBLISH`es.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_per_job_push_pop_ack_publish() {
    let Some(server) = Server::start() else {
        return;
    };
    let r = server.ready().await;
    let queue = Arc::new(r.queue().await);
    let notifier = Arc::new(r.notifier().await);
    let names = vec!["default".to_owned()];
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let popper = {
        let (queue, notifier, names) = (queue.clone(), notifier.clone(), names.clone());
        tokio::spawn(async move {
            for _ in 0..JOBS {
                let d = queue
                    .pop(&names, Duration::from_secs(10))
                    .await
                    .expect("pop")
                    .expect("a job");
                let events: Vec<JobEvent> = (1..=9).map(|s| event(d.job_id, s)).collect();
                // 9 events in 7 calls, as a worker publishes them.
                for batch in [&events[0..1], &events[1..2], &events[2..4], &events[4..5]] {
                    notifier.publish(batch).await.expect("publish");
                }
                for batch in [&events[5..6], &events[6..8], &events[8..9]] {
                    notifier.publish(batch).await.expect("publish");
                }
                queue.ack(&d).await.expect("ack");
                done_tx.send(()).expect("driver");
            }
        })
    };
    // Warm up the script cache and the connections, outside the count.
    queue.depth("default").await.expect("depth");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = commandstats(&r).await;
    for _ in 0..JOBS {
        let entry = QueueEntry {
            job_id: JobId::new(),
            priority: 0,
            not_before: None,
        };
        queue.push("default", entry).await.expect("push");
        done_rx.recv().await.expect("popper");
    }
    popper.await.expect("popper");
    let after = commandstats(&r).await;
    let (top, total) = report(
        "push + pop + ack + 9 events in 7 publishes",
        &before,
        &after,
    );
    let per_job = |name: &str| {
        let n = after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
        n as f64 / JOBS as f64
    };
    let publishes = per_job("publish");
    // A call each for push, pop (its BLPOP and its script) and ack.
    assert!(top - publishes >= 4.0, "fewer commands than calls: {top}");
    assert!(
        total - publishes <= 11.1,
        "push + pop + ack cost {:.2} commands",
        total - publishes
    );
    assert!(publishes >= 1.0 / 7.0, "events were published");
    assert!(publishes <= 3.0, "{publishes:.2} PUBLISHes per job");
    assert!(per_job("time") < 0.1, "a TIME per pop: {}", per_job("time"));
}

/// An engine and a worker on the in-memory store, with the Redis queue and
/// notifier, running stub jobs of 5 steps: 1000 jobs submitted at once
/// (`one_at_a_time = false`, the W1 shape, 16 at a time) or each once the one
/// before is done (every pop blocks first).
async fn engine_and_worker(title: &str, concurrency: usize, one_at_a_time: bool) {
    let Some(server) = Server::start() else {
        return;
    };
    let r = server.ready().await;
    let registry = Registry::new().register("stub", StubOrchestrator::new(5, Duration::ZERO));
    let queue: Arc<dyn Queue> = Arc::new(r.queue().await);
    let notifier: Arc<dyn Notifier> = Arc::new(r.notifier().await);
    let engine = Engine::new(Arc::new(MemoryStore::new()), queue, notifier, registry);
    let worker = Worker::new(
        engine.clone(),
        WorkerConfig {
            concurrency,
            ..WorkerConfig::default()
        },
    )
    .spawn();
    let owner = Owner::new("alice");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = commandstats(&r).await;
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let job = engine
            .submit(&owner, Submit::new(format!("job {i}")))
            .await
            .expect("submit");
        ids.push(job.id);
        if one_at_a_time {
            wait_done(&engine, &owner, job.id).await;
        }
    }
    let mut events = 0;
    for id in ids {
        events += wait_done(&engine, &owner, id).await;
    }
    let after = commandstats(&r).await;
    println!("\n{:.2} events per job", events as f64 / JOBS as f64);
    let (top, _) = report(title, &before, &after);
    assert!(top >= 3.0, "{top}");
    worker.shutdown().await;
}

/// Waits for a job to succeed (polling the in-memory store, not Redis);
/// answers its number of events.
async fn wait_done(engine: &Engine, owner: &Owner, id: JobId) -> u64 {
    let start = tokio::time::Instant::now();
    loop {
        let job = engine.get(owner, id).await.expect("get");
        if job.status.is_terminal() {
            assert_eq!(job.status, projectengine_core::JobStatus::Succeeded);
            return job.last_seq;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "job {id} stuck");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn commands_per_job_engine_w1() {
    engine_and_worker(
        "engine + worker, W1: all submitted at once, 16 at a time",
        16,
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn commands_per_job_engine_one_at_a_time() {
    engine_and_worker("engine + worker, one job at a time", 1, true).await;
}
