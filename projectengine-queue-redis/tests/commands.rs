//! How many Redis commands a job's queue and notifier calls cost, from `INFO
//! commandstats` before and after 1000 jobs, on a private `redis-server`
//! (nothing else runs there). What an engine and a worker cost in all is
//! measured by the bench program (`bench w1|w2 --backend pg-redis`).
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
use projectengine_core::{JobEvent, JobId, Notifier, Queue, QueueEntry};

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
/// the budget: push + pop + ack cost at most 14 commands (6 + 7 + 1: fair
/// queuing reads the pushed entry's group state with its de-duplication
/// check, one `HMGET`, and a pop reads the group's last tag, `HGET`, and
/// looks whether its priority has entries left, `ZCOUNT`, or moves the
/// virtual time, `HSET`), and the 7 publish calls of a job go in at most 3
/// `PUBLISH`es.
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
            group: None,
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
        total - publishes <= 14.1,
        "push + pop + ack cost {:.2} commands",
        total - publishes
    );
    assert!(publishes >= 1.0 / 7.0, "events were published");
    assert!(publishes <= 3.0, "{publishes:.2} PUBLISHes per job");
    assert!(per_job("time") < 0.1, "a TIME per pop: {}", per_job("time"));
}
