//! Every point of the Queue contract, on a real Redis.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::TestRedis;
use futures::StreamExt;
use projectengine_core::{Delivery, JobId, Queue, QueueDepth, QueueEntry};
use projectengine_queue_redis::RedisQueue;
use tokio::time::Instant;

fn entry(job_id: JobId, priority: i32) -> QueueEntry {
    QueueEntry {
        job_id,
        priority,
        not_before: None,
        group: None,
    }
}

fn delayed(job_id: JobId, after: Duration) -> QueueEntry {
    QueueEntry {
        job_id,
        priority: 0,
        not_before: Some(Utc::now() + after),
        group: None,
    }
}

fn names(queues: &[&str]) -> Vec<String> {
    queues.iter().map(|q| q.to_string()).collect()
}

async fn pop_now(q: &RedisQueue, queue: &str) -> Option<Delivery> {
    q.pop(&names(&[queue]), Duration::ZERO).await.expect("pop")
}

#[tokio::test]
async fn higher_priority_first_then_fifo() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = r.queue().await;
    let jobs: Vec<JobId> = (0..6).map(|_| JobId::new()).collect();
    let priorities = [0, 5, 0, 5, -1, i32::MAX];
    for (job, p) in jobs.iter().zip(priorities) {
        assert!(q.push("default", entry(*job, p)).await.expect("push"));
    }
    let mut order = Vec::new();
    while let Some(d) = pop_now(&q, "default").await {
        assert_eq!(d.queue, "default");
        order.push((d.job_id, d.priority));
    }
    let expected = vec![
        (jobs[5], i32::MAX),
        (jobs[1], 5),
        (jobs[3], 5),
        (jobs[0], 0),
        (jobs[2], 0),
        (jobs[4], -1),
    ];
    assert_eq!(order, expected);
    r.cleanup().await;
}

#[tokio::test]
async fn pushing_a_waiting_job_again_is_a_no_op() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = r.queue().await;
    let (a, b) = (JobId::new(), JobId::new());
    assert!(q.push("default", entry(a, 0)).await.expect("push"));
    assert!(
        !q.push("default", entry(a, 9)).await.expect("push"),
        "ready twice"
    );
    assert!(q
        .push("default", delayed(b, Duration::from_secs(30)))
        .await
        .expect("push"));
    assert!(
        !q.push("default", entry(b, 0)).await.expect("push"),
        "delayed twice"
    );
    // Another queue is another place to wait.
    assert!(q.push("other", entry(a, 0)).await.expect("push"));
    assert_eq!(
        q.depth("default").await.expect("depth"),
        QueueDepth {
            ready: 1,
            delayed: 1,
            in_flight: 0
        }
    );
    // The duplicate did not change the priority.
    let d = pop_now(&q, "default").await.expect("a is ready");
    assert_eq!((d.job_id, d.priority), (a, 0));
    // Once taken, it is no longer waiting: it may be pushed again.
    assert!(q.push("default", entry(a, 0)).await.expect("push"));
    assert_eq!(
        q.depth("default").await.expect("depth"),
        QueueDepth {
            ready: 1,
            delayed: 1,
            in_flight: 1
        }
    );
    r.cleanup().await;
}

#[tokio::test]
async fn a_waiting_record_without_its_entry_does_not_block_the_job() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = r.queue().await;
    let (a, b) = (JobId::new(), JobId::new());
    q.push("default", entry(a, 4)).await.expect("push");
    q.push("default", delayed(b, Duration::from_secs(60)))
        .await
        .expect("push");
    // A partial loss (an evicted key): the entries go, their records stay.
    let mut admin = r.admin.clone();
    let lost = [
        format!("{}:queue:default:ready", r.prefix()),
        format!("{}:queue:default:delayed", r.prefix()),
    ];
    let n: i64 = redis::cmd("DEL")
        .arg(&lost)
        .query_async(&mut admin)
        .await
        .expect("DEL");
    assert_eq!(n, 2);
    // Recovery pushes them again: they are taken, not refused as waiting.
    assert!(q.push("default", entry(a, 4)).await.expect("push"));
    assert!(q.push("default", entry(b, 0)).await.expect("push"));
    assert!(
        !q.push("default", entry(b, 0)).await.expect("push"),
        "now truly waiting"
    );
    let mut got = vec![
        pop_now(&q, "default").await.expect("a").job_id,
        pop_now(&q, "default").await.expect("b").job_id,
    ];
    got.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(pop_now(&q, "default").await, None);
    r.cleanup().await;
}

#[tokio::test]
async fn delayed_entries_appear_at_their_time() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = r.queue().await;
    let job = JobId::new();
    let start = Instant::now();
    q.push("default", delayed(job, Duration::from_millis(500)))
        .await
        .expect("push");
    assert_eq!(pop_now(&q, "default").await, None, "not before its time");
    assert_eq!(q.depth("default").await.expect("depth").delayed, 1);
    let d = q
        .pop(&names(&["default"]), Duration::from_secs(5))
        .await
        .expect("pop")
        .expect("due within the wait");
    let waited = start.elapsed();
    assert_eq!(d.job_id, job);
    assert!(
        waited >= Duration::from_millis(490),
        "too early: {waited:?}"
    );
    assert!(waited < Duration::from_millis(700), "too late: {waited:?}");
    // A not_before in the past is no delay at all.
    let past = JobId::new();
    let entry = QueueEntry {
        job_id: past,
        priority: 0,
        not_before: Some(Utc::now() - chrono::Duration::seconds(5)),
        group: None,
    };
    q.push("default", entry).await.expect("push");
    assert_eq!(pop_now(&q, "default").await.map(|d| d.job_id), Some(past));
    r.cleanup().await;
}

#[tokio::test]
async fn an_unacked_delivery_reappears_after_the_visibility_timeout() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = r.queue().await;
    let job = JobId::new();
    q.push("default", entry(job, 3)).await.expect("push");
    let first = pop_now(&q, "default").await.expect("ready");
    assert_eq!(pop_now(&q, "default").await, None, "in flight, not visible");
    assert_eq!(q.depth("default").await.expect("depth").in_flight, 1);
    let start = Instant::now();
    let second = q
        .pop(&names(&["default"]), Duration::from_secs(5))
        .await
        .expect("pop")
        .expect("redelivered");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "too early: {waited:?}"
    );
    assert!(waited < Duration::from_millis(1300), "too late: {waited:?}");
    assert_eq!((second.job_id, second.priority), (job, 3));
    assert_ne!(second.receipt, first.receipt);
    // The first delivery is stale: its ack and nack do nothing.
    q.ack(&first).await.expect("ack");
    q.nack(&first, None).await.expect("nack");
    assert_eq!(
        q.depth("default").await.expect("depth"),
        QueueDepth {
            ready: 0,
            delayed: 0,
            in_flight: 1
        }
    );
    q.ack(&second).await.expect("ack");
    assert_eq!(
        q.depth("default").await.expect("depth"),
        QueueDepth::default()
    );
    // Acked: it never comes back.
    let again = q
        .pop(&names(&["default"]), Duration::from_millis(1300))
        .await;
    assert_eq!(again.expect("pop"), None);
    assert!(
        r.keys().await.iter().all(|k| k.ends_with("queue-seq")),
        "no leftovers"
    );
    r.cleanup().await;
}

/// Another process's delivery that expires is found by a pop blocked here,
/// though this queue never saw it: it looks again every half visibility
/// timeout.
#[tokio::test]
async fn a_blocked_pop_finds_an_expired_delivery_of_another_process() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let (here, there) = (r.queue().await, r.queue().await);
    // This queue has looked (so knows of nothing due) before the other pops.
    assert_eq!(pop_now(&here, "default").await, None);
    let job = JobId::new();
    there.push("default", entry(job, 0)).await.expect("push");
    let start = Instant::now();
    let abandoned = pop_now(&there, "default").await.expect("ready");
    drop(there);
    let d = here
        .pop(&names(&["default"]), Duration::from_secs(5))
        .await
        .expect("pop")
        .expect("redelivered here");
    let waited = start.elapsed();
    assert_eq!(d.job_id, job);
    assert_ne!(d.receipt, abandoned.receipt);
    assert!(
        waited >= Duration::from_millis(900),
        "too early: {waited:?}"
    );
    // The visibility timeout (1 s), then at most half of it more.
    assert!(waited < Duration::from_millis(1800), "too late: {waited:?}");
    here.ack(&d).await.expect("ack");
    r.cleanup().await;
}

#[tokio::test]
async fn nack_gives_the_entry_back_at_once_or_after_a_delay() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = r.queue().await;
    let (a, b) = (JobId::new(), JobId::new());
    q.push("default", entry(a, 7)).await.expect("push");
    let d = pop_now(&q, "default").await.expect("ready");
    q.nack(&d, None).await.expect("nack");
    let again = pop_now(&q, "default").await.expect("back at once");
    assert_eq!((again.job_id, again.priority), (a, 7));
    assert_ne!(again.receipt, d.receipt);
    q.ack(&again).await.expect("ack");

    q.push("default", entry(b, 0)).await.expect("push");
    let d = pop_now(&q, "default").await.expect("ready");
    let start = Instant::now();
    q.nack(&d, Some(Duration::from_millis(400)))
        .await
        .expect("nack");
    assert_eq!(
        q.depth("default").await.expect("depth"),
        QueueDepth {
            ready: 0,
            delayed: 1,
            in_flight: 0
        }
    );
    assert_eq!(pop_now(&q, "default").await, None, "delayed by the nack");
    let back = q
        .pop(&names(&["default"]), Duration::from_secs(3))
        .await
        .expect("pop")
        .expect("after the delay");
    assert_eq!(back.job_id, b);
    assert!(
        start.elapsed() >= Duration::from_millis(390),
        "{:?}",
        start.elapsed()
    );
    r.cleanup().await;
}

#[tokio::test]
async fn nack_of_a_job_pushed_again_meanwhile_adds_no_duplicate() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = r.queue().await;
    let job = JobId::new();
    q.push("default", entry(job, 0)).await.expect("push");
    let d = pop_now(&q, "default").await.expect("ready");
    assert!(
        q.push("default", entry(job, 0)).await.expect("push"),
        "in flight is not waiting"
    );
    q.nack(&d, None).await.expect("nack");
    assert_eq!(
        q.depth("default").await.expect("depth"),
        QueueDepth {
            ready: 1,
            delayed: 0,
            in_flight: 0
        }
    );
    let again = pop_now(&q, "default").await.expect("the waiting entry");
    assert_eq!(again.job_id, job);
    assert_eq!(pop_now(&q, "default").await, None);
    r.cleanup().await;
}

#[tokio::test]
async fn a_pop_serves_only_the_queues_it_names() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = r.queue().await;
    let (a, b) = (JobId::new(), JobId::new());
    q.push("a", entry(a, 0)).await.expect("push");
    q.push("b", entry(b, 9)).await.expect("push");
    let d = q
        .pop(&names(&["a"]), Duration::ZERO)
        .await
        .expect("pop")
        .expect("a");
    assert_eq!((d.job_id, d.queue.as_str()), (a, "a"));
    assert_eq!(
        q.pop(&names(&["a"]), Duration::from_millis(200))
            .await
            .expect("pop"),
        None
    );
    let d = q
        .pop(&names(&["a", "b"]), Duration::ZERO)
        .await
        .expect("pop")
        .expect("b");
    assert_eq!((d.job_id, d.queue.as_str()), (b, "b"));
    // Acks name the delivery's queue.
    q.ack(&d).await.expect("ack");
    assert_eq!(q.depth("b").await.expect("depth"), QueueDepth::default());
    assert_eq!(q.depth("a").await.expect("depth").in_flight, 1);
    r.cleanup().await;
}

#[tokio::test]
async fn prefixes_keep_deployments_apart() {
    let Some(r1) = TestRedis::connect().await else {
        return;
    };
    let Some(r2) = TestRedis::connect().await else {
        return;
    };
    let (q1, q2) = (r1.queue().await, r2.queue().await);
    let job = JobId::new();
    q1.push("default", entry(job, 0)).await.expect("push");
    assert!(
        q2.push("default", entry(job, 0)).await.expect("push"),
        "not shared"
    );
    assert_eq!(
        q2.pop(&names(&["default"]), Duration::ZERO)
            .await
            .expect("pop")
            .map(|d| d.job_id),
        Some(job)
    );
    assert_eq!(
        q2.pop(&names(&["default"]), Duration::ZERO)
            .await
            .expect("pop"),
        None
    );
    assert_eq!(q1.depth("default").await.expect("depth").ready, 1);
    assert!(r1
        .keys()
        .await
        .iter()
        .all(|k| k.starts_with(&format!("{}:", r1.prefix()))));
    r1.cleanup().await;
    r2.cleanup().await;
}

#[tokio::test]
async fn a_blocked_pop_wakes_promptly_on_a_push() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = Arc::new(r.queue().await);
    let popper = {
        let q = q.clone();
        tokio::spawn(async move {
            let d = q
                .pop(&names(&["x", "default"]), Duration::from_secs(10))
                .await;
            (d, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = JobId::new();
    let pushed_at = Instant::now();
    q.push("default", entry(job, 0)).await.expect("push");
    let (d, woke_at) = popper.await.expect("popper");
    assert_eq!(d.expect("pop").map(|d| d.job_id), Some(job));
    let latency = woke_at - pushed_at;
    assert!(
        latency < Duration::from_millis(50),
        "woke {latency:?} after the push"
    );
    r.cleanup().await;
}

#[tokio::test]
async fn a_pop_with_nothing_to_take_returns_none_after_its_wait() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = r.queue().await;
    for wait in [
        Duration::ZERO,
        Duration::from_millis(150),
        Duration::from_millis(600),
    ] {
        let start = Instant::now();
        assert_eq!(q.pop(&names(&["default"]), wait).await.expect("pop"), None);
        let took = start.elapsed();
        assert!(took >= wait, "{took:?} < {wait:?}");
        assert!(
            took < wait + Duration::from_millis(60),
            "{took:?} for {wait:?}"
        );
    }
    assert_eq!(
        q.pop(&[], Duration::from_millis(50)).await.expect("pop"),
        None
    );
    r.cleanup().await;
}

#[tokio::test]
async fn a_blocked_pop_sends_no_commands_while_it_waits() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    // A visibility timeout long enough that no look for expired deliveries
    // (every half of it) falls in the wait.
    let q = RedisQueue::connect(
        &r.config
            .clone()
            .with_visibility_timeout(Duration::from_secs(10)),
    )
    .await
    .expect("connect");
    // Warm up: the blocking connection and the script cache.
    q.pop(&names(&["default"]), Duration::from_millis(20))
        .await
        .expect("pop");
    let client = redis::Client::open(r.url.as_str()).expect("url");
    let monitor = client.get_async_monitor().await.expect("MONITOR");
    let mut lines = monitor.into_on_message::<String>();
    let start = Instant::now();
    assert_eq!(
        q.pop(&names(&["default"]), Duration::from_millis(1500))
            .await
            .expect("pop"),
        None
    );
    assert!(start.elapsed() >= Duration::from_millis(1500));
    let mut ours = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(200), lines.next()).await
    {
        // Only top-level commands; the script's own commands carry "lua".
        if line.contains(r.prefix()) && !line.contains("lua]") || line.contains("UNBLOCK") {
            ours.push(line);
        }
    }
    // One BLPOP, one CLIENT UNBLOCK at our deadline, one pop script to look
    // before answering (at most one more script, if the warm-up's look was
    // not remembered).
    assert!(
        ours.len() <= 4,
        "{} commands in 1.5 s: {ours:#?}",
        ours.len()
    );
    assert!(ours.iter().any(|l| l.contains("BLPOP")), "{ours:#?}");
    r.cleanup().await;
}

#[tokio::test]
async fn concurrent_pops_take_each_entry_once() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = Arc::new(r.queue().await);
    let poppers: Vec<_> = (0..6)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(d) = q
                    .pop(&names(&["default"]), Duration::from_millis(800))
                    .await
                    .expect("pop")
                {
                    q.ack(&d).await.expect("ack");
                    got.push(d.job_id);
                }
                got
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let jobs: Vec<JobId> = (0..60).map(|_| JobId::new()).collect();
    for job in &jobs {
        q.push("default", entry(*job, 0)).await.expect("push");
    }
    let mut seen = Vec::new();
    for p in poppers {
        seen.extend(p.await.expect("popper"));
    }
    assert_eq!(seen.len(), jobs.len(), "each entry exactly once");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>(),
        jobs.iter().collect::<HashSet<_>>()
    );
    assert_eq!(
        q.depth("default").await.expect("depth"),
        QueueDepth::default()
    );
    r.cleanup().await;
}

#[tokio::test]
async fn the_queue_recovers_when_its_connections_are_killed() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = Arc::new(r.queue().await);
    let job = JobId::new();
    let popper = {
        let q = q.clone();
        tokio::spawn(async move { q.pop(&names(&["default"]), Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        r.kill(None).await >= 2,
        "the shared and the blocking connection"
    );
    // The first call on the killed shared connection may fail; then it reconnects.
    let mut pushed = false;
    for _ in 0..20 {
        if q.push("default", entry(job, 0)).await.is_ok() {
            pushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pushed, "push never succeeded after the kill");
    let d = popper
        .await
        .expect("popper")
        .expect("the blocked pop carried on");
    assert_eq!(d.map(|d| d.job_id), Some(job));
    r.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_not_a_hang() {
    // Nothing listens on port 1.
    let config = projectengine_queue_redis::RedisConfig::new("redis://127.0.0.1:1");
    let start = Instant::now();
    let err = RedisQueue::connect(&config)
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.code(), "unavailable");
    let q = RedisQueue::new(&config).expect("valid config");
    let err = q
        .push("default", entry(JobId::new(), 0))
        .await
        .expect_err("down");
    assert_eq!(err.code(), "unavailable");
    let err = q
        .pop(&names(&["default"]), Duration::from_secs(1))
        .await
        .expect_err("down");
    assert_eq!(err.code(), "unavailable");
    assert!(start.elapsed() < Duration::from_secs(5));
}

fn in_group(job_id: JobId, group: &str, after: Option<Duration>) -> QueueEntry {
    QueueEntry {
        job_id,
        priority: 0,
        not_before: after.map(|d| Utc::now() + d),
        group: Some(group.to_owned()),
    }
}

/// A group keeps its name (any text: a `:`, `/`, or none at all) through a
/// delayed push, a delayed nack and an expired delivery; a group whose entry
/// falls due takes its turn from then, not from its push; and once all is
/// acked no fair-queuing state is left behind.
#[tokio::test]
async fn groups_survive_delays_nacks_and_expiry() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let q = r.queue().await;
    let (odd, empty) = ("o:wner/1 ü", "");
    let (late, a0, a1) = (JobId::new(), JobId::new(), JobId::new());
    q.push(
        "default",
        in_group(late, odd, Some(Duration::from_millis(300))),
    )
    .await
    .expect("push");
    q.push("default", in_group(a0, empty, None))
        .await
        .expect("push");
    q.push("default", in_group(a1, empty, None))
        .await
        .expect("push");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Due now: tagged like a new push, it goes between a0 and a1.
    let first = q
        .pop_many(&names(&["default"]), 3, Duration::ZERO)
        .await
        .expect("pop_many");
    for d in &first {
        q.ack(d).await.expect("ack");
    }
    let got: Vec<(JobId, Option<String>)> =
        first.into_iter().map(|d| (d.job_id, d.group)).collect();
    let (go, ge) = (Some(odd.to_owned()), Some(empty.to_owned()));
    assert_eq!(
        got,
        vec![(a0, ge.clone()), (late, go.clone()), (a1, ge.clone())]
    );

    // A delayed nack and an expired delivery come back with their group.
    let (b, c) = (JobId::new(), JobId::new());
    q.push("default", in_group(b, odd, None))
        .await
        .expect("push");
    q.push("default", in_group(c, empty, None))
        .await
        .expect("push");
    let db = pop_now(&q, "default").await.expect("b");
    assert_eq!((db.job_id, db.group.clone()), (b, go.clone()));
    q.nack(&db, Some(Duration::from_millis(200)))
        .await
        .expect("nack");
    let dc = pop_now(&q, "default").await.expect("c");
    assert_eq!((dc.job_id, dc.group.clone()), (c, ge.clone()));
    let mut back = Vec::new();
    while back.len() < 2 {
        let d = q
            .pop(&names(&["default"]), Duration::from_secs(5))
            .await
            .expect("pop")
            .expect("b after its delay, c after its timeout");
        back.push((d.job_id, d.group.clone()));
        q.ack(&d).await.expect("ack");
    }
    back.sort();
    let mut expected = vec![(b, go), (c, ge)];
    expected.sort();
    assert_eq!(back, expected);
    // The expired first delivery of c is stale: acking it does nothing.
    q.ack(&dc).await.expect("ack");
    assert_eq!(
        q.depth("default").await.expect("depth"),
        QueueDepth::default()
    );
    // Nothing ready: no virtual time, no group's last tag is kept.
    let waiting = format!("{}:queue:default:waiting", r.prefix());
    let mut admin = r.admin.clone();
    let left: i64 = redis::cmd("HLEN")
        .arg(&waiting)
        .query_async(&mut admin)
        .await
        .expect("HLEN");
    assert_eq!(left, 0, "fair-queuing state left behind");
    r.cleanup().await;
}
