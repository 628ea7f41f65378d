//! The notifier beyond the conformance kit: one subscriber connection per
//! process, reconnects with `Lagged`, unsubscribing, coalesced publishing,
//! overflow as `Lagged`, the subscription barrier, shutdown, and an engine
//! watch that stays gap-free across a killed subscriber connection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{event, TestRedis};
use futures::StreamExt;
use projectengine_core::memory::MemoryStore;
use projectengine_core::testkit::assert::{assert_seqs, eventually, seqs};
use projectengine_core::testkit::scenarios::fast_worker;
use projectengine_core::{
    Engine, JobId, JobStatus, Notification, NotificationStream, Notifier, Owner, Registry,
    StubOrchestrator, Submit, Worker,
};
use projectengine_queue_redis::{RedisConfig, RedisNotifier};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(5);

async fn next(sub: &mut NotificationStream) -> Notification {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a notification in time")
        .expect("the stream goes on")
}

/// Subscribers of the events channel.
async fn pubsub_numsub(r: &TestRedis) -> i64 {
    let mut admin = r.admin.clone();
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(format!("{}:events", r.prefix()))
        .query_async(&mut admin)
        .await
        .expect("PUBSUB NUMSUB");
    n
}

#[tokio::test]
async fn one_subscriber_connection_serves_every_watched_job() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let n = r.notifier().await;
    let jobs: Vec<JobId> = (0..20).map(|_| JobId::new()).collect();
    let mut subs = Vec::new();
    for job in &jobs {
        subs.push(n.subscribe(*job).await.expect("subscribe"));
        subs.push(n.subscribe(*job).await.expect("subscribe twice"));
    }
    assert_eq!(
        pubsub_numsub(&r).await,
        1,
        "one Redis subscription for every job"
    );
    let events: Vec<_> = jobs.iter().map(|j| event(*j, 1)).collect();
    n.publish(&events).await.expect("publish");
    for (i, sub) in subs.iter_mut().enumerate() {
        match next(sub).await {
            Notification::Event(e) => assert_eq!(e, events[i / 2]),
            other => panic!("{other:?}"),
        }
    }
    // The killed connection is the only one of its kind.
    assert_eq!(r.kill(Some("subscriber")).await, 1);
    r.cleanup().await;
}

#[tokio::test]
async fn subscribers_hear_lagged_after_a_reconnect_and_then_events_again() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let n = r.notifier().await;
    let job = JobId::new();
    let mut sub = n.subscribe(job).await.expect("subscribe");
    let e1 = event(job, 1);
    n.publish(std::slice::from_ref(&e1)).await.expect("publish");
    assert_eq!(next(&mut sub).await, Notification::Event(e1));
    assert_eq!(r.kill(Some("subscriber")).await, 1);
    assert_eq!(
        next(&mut sub).await,
        Notification::Lagged,
        "told after the reconnect"
    );
    // Resubscribed before `Lagged` was sent: this one arrives live.
    let e2 = event(job, 2);
    n.publish(std::slice::from_ref(&e2)).await.expect("publish");
    assert_eq!(next(&mut sub).await, Notification::Event(e2));
    assert_eq!(pubsub_numsub(&r).await, 1);
    r.cleanup().await;
}

#[tokio::test]
async fn the_last_stream_dropped_unsubscribes() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let n = r.notifier().await;
    assert_eq!(pubsub_numsub(&r).await, 0, "nothing watched yet");
    let (job, other) = (JobId::new(), JobId::new());
    let a = n.subscribe(job).await.expect("subscribe");
    let b = n.subscribe(job).await.expect("subscribe");
    let o = n.subscribe(other).await.expect("subscribe");
    assert_eq!(pubsub_numsub(&r).await, 1);
    drop(a);
    drop(o);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pubsub_numsub(&r).await, 1, "b still watches");
    drop(b);
    eventually("unsubscribed", WAIT, || async {
        (pubsub_numsub(&r).await == 0).then_some(())
    })
    .await;
    // And a new subscription works again.
    let mut c = n.subscribe(job).await.expect("subscribe");
    let e = event(job, 1);
    n.publish(std::slice::from_ref(&e)).await.expect("publish");
    assert_eq!(next(&mut c).await, Notification::Event(e));
    r.cleanup().await;
}

/// PUBLISH commands naming this test's prefix, seen by MONITOR while `f` runs.
async fn publishes_during<F: std::future::Future<Output = ()>>(r: &TestRedis, f: F) -> usize {
    let client = redis::Client::open(r.url.as_str()).expect("url");
    let monitor = client.get_async_monitor().await.expect("MONITOR");
    let mut lines = monitor.into_on_message::<String>();
    f.await;
    let mut publishes = 0;
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(300), lines.next()).await
    {
        if line.contains("\"PUBLISH\"") && line.contains(r.prefix()) {
            publishes += 1;
        }
    }
    publishes
}

#[tokio::test]
async fn publishes_made_while_one_is_in_flight_share_a_message() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let n = r.notifier().await;
    let jobs: Vec<JobId> = (0..10).map(|_| JobId::new()).collect();
    let mut subs = Vec::new();
    for job in &jobs {
        subs.push(n.subscribe(*job).await.expect("subscribe"));
    }
    // 10 jobs × 20 calls, back to back: publish never waits for Redis, so
    // all but the first few calls find a PUBLISH in flight and join the next.
    let calls = 200;
    let publishes = publishes_during(&r, async {
        for seq in 1..=20 {
            for job in &jobs {
                n.publish(&[event(*job, seq)]).await.expect("publish");
            }
        }
    })
    .await;
    assert!(publishes >= 1, "events were published");
    assert!(
        publishes * 10 <= calls,
        "{publishes} PUBLISHes for {calls} calls"
    );
    // Each job's events arrive complete and in order.
    for (job, sub) in jobs.iter().zip(subs.iter_mut()) {
        for seq in 1..=20 {
            match next(sub).await {
                Notification::Event(e) => assert_eq!((e.job_id, e.seq), (*job, seq)),
                other => panic!("{other:?}"),
            }
        }
    }
    r.cleanup().await;
}

#[tokio::test]
async fn an_idle_publisher_sends_at_once() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let n = r.notifier().await;
    let job = JobId::new();
    let mut sub = n.subscribe(job).await.expect("subscribe");
    for seq in 1..=3 {
        let start = Instant::now();
        n.publish(&[event(job, seq)]).await.expect("publish");
        match next(&mut sub).await {
            Notification::Event(e) => assert_eq!(e.seq, seq),
            other => panic!("{other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
    r.cleanup().await;
}

#[tokio::test]
async fn an_overflowing_outbox_drops_events_and_subscribers_lag() {
    let Some(mut r) = TestRedis::connect().await else {
        return;
    };
    r.config.publish_buffer = 4;
    let n = r.notifier().await;
    let job = JobId::new();
    let mut sub = n.subscribe(job).await.expect("subscribe");
    let total = 500u64;
    for seq in 1..=total {
        n.publish(&[event(job, seq)])
            .await
            .expect("publish never fails");
    }
    // Once the outbox has drained, a last event goes through.
    tokio::time::sleep(Duration::from_millis(300)).await;
    n.publish(&[event(job, total + 1)]).await.expect("publish");
    // Some events were dropped (the outbox holds 4), and the subscriber is
    // told; what does arrive is in order.
    let mut lagged = false;
    let mut received = 0;
    let mut last = 0;
    loop {
        match next(&mut sub).await {
            Notification::Lagged => lagged = true,
            Notification::Event(e) => {
                assert!(e.seq > last, "{} after {last}", e.seq);
                last = e.seq;
                received += 1;
                if e.seq == total + 1 {
                    break;
                }
            }
        }
    }
    assert!(lagged, "the subscriber was told it lagged");
    assert!(received < total, "{received} events: none was dropped");
    r.cleanup().await;
}

#[tokio::test]
async fn a_subscription_gets_only_events_published_after_it() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let n = r.notifier().await;
    let job = JobId::new();
    // The channel is already subscribed (another job is watched), so the
    // barrier is a PING, not the SUBSCRIBE.
    let _other = n.subscribe(JobId::new()).await.expect("subscribe");
    for round in 0..20u64 {
        let before: Vec<_> = (1..=50).map(|s| event(job, round * 100 + s)).collect();
        n.publish(&before).await.expect("publish");
        let mut sub = n.subscribe(job).await.expect("subscribe");
        let after = event(job, round * 100 + 99);
        n.publish(std::slice::from_ref(&after))
            .await
            .expect("publish");
        assert_eq!(
            next(&mut sub).await,
            Notification::Event(after),
            "round {round}: an event from before the subscription leaked"
        );
    }
    r.cleanup().await;
}

#[tokio::test]
async fn streams_end_when_the_notifier_shuts_down() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let n = r.notifier().await;
    let mut sub = n.subscribe(JobId::new()).await.expect("subscribe");
    n.shutdown();
    let end = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("ends in time");
    assert_eq!(end, None);
    match n.subscribe(JobId::new()).await {
        Err(e) => assert_eq!(e.code(), "unavailable"),
        Ok(_) => panic!("subscribed to a notifier that was shut down"),
    }
    // Dropping the last clone does the same.
    let n = r.notifier().await;
    let mut sub = n.subscribe(JobId::new()).await.expect("subscribe");
    drop(n);
    let end = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("ends in time");
    assert_eq!(end, None);
    r.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable() {
    let err = RedisNotifier::connect(&RedisConfig::new("redis://127.0.0.1:1"))
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.code(), "unavailable");
}

/// End to end: a watcher keeps receiving seq 1..n exactly once while the
/// notifier's subscriber connection is killed twice mid-job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_stays_gap_free_across_killed_subscriber_connections() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let store = Arc::new(MemoryStore::new());
    let notifier = Arc::new(r.notifier().await);
    let queue = Arc::new(r.queue().await);
    let registry =
        Registry::new().register("stub", StubOrchestrator::new(40, Duration::from_millis(25)));
    let engine = Engine::new(store, queue, notifier, registry);
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(&owner, Submit::new("watch me"))
        .await
        .expect("submit");
    let watch = engine.watch(&owner, job.id, 0).await.expect("watch");
    let collector = tokio::spawn(watch.map(|e| e.expect("event")).collect::<Vec<_>>());
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(r.kill(Some("subscriber")).await, 1);
    }
    let events = tokio::time::timeout(Duration::from_secs(30), collector)
        .await
        .expect("the job finished in time")
        .expect("collector");
    let job = engine.get(&owner, job.id).await.expect("get");
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_seqs(&seqs(&events), 1..=job.last_seq);
    assert!(events.len() > 40, "{} events", events.len());
    worker.shutdown().await;
    r.cleanup().await;
}
