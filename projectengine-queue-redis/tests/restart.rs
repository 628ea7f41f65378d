//! The queue, notifier and worker carry on when every Redis connection is
//! killed (`CLIENT KILL TYPE normal`, then `TYPE pubsub` for the subscriber)
//! and when Redis restarts empty.
//!
//! These tests run a `redis-server` of their own (from `PATH`) on a free
//! port, so killing every client or the server itself disturbs no other test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::server::Server;
use common::TestRedis;
use futures::StreamExt;
use projectengine_core::memory::MemoryStore;
use projectengine_core::testkit::assert::{assert_seqs, seqs, wait_all_succeeded};
use projectengine_core::testkit::scenarios::fast_worker;
use projectengine_core::{Engine, JobId, Owner, Registry, StubOrchestrator, Submit, Worker};

/// An engine on the in-memory store with the Redis queue and notifier, a
/// worker, and `n` submitted jobs of a few steps each.
async fn run_jobs(r: &TestRedis, n: usize) -> (Engine, Owner, Vec<JobId>) {
    let registry =
        Registry::new().register("stub", StubOrchestrator::new(5, Duration::from_millis(40)));
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(r.queue().await),
        Arc::new(r.notifier().await),
        registry,
    );
    let owner = Owner::new("alice");
    let mut jobs = Vec::new();
    for i in 0..n {
        let job = engine
            .submit(&owner, Submit::new(format!("job {i}")))
            .await
            .expect("submit");
        jobs.push(job.id);
    }
    (engine, owner, jobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_every_connection_mid_run_loses_no_job() {
    let Some(server) = Server::start() else {
        return;
    };
    let r = server.ready().await;
    let (engine, owner, jobs) = run_jobs(&r, 16).await;
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let watch = engine.watch(&owner, jobs[15], 0).await.expect("watch");
    let watcher = tokio::spawn(watch.map(|e| e.expect("event")).collect::<Vec<_>>());
    let mut admin = r.admin.clone();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Our admin connection is spared (SKIPME yes); everything else goes:
        // normal clients, then the subscriber (a pubsub client).
        let mut killed = 0;
        for kind in ["normal", "pubsub"] {
            let n: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg(kind)
                .query_async(&mut admin)
                .await
                .expect("CLIENT KILL");
            killed += n;
        }
        // At first: the queue's, the publisher's and the subscriber's (a pop
        // may be blocked too); later rounds hit whatever reconnected since.
        let least = if round == 0 { 3 } else { 1 };
        assert!(
            killed >= least,
            "round {round}: killed only {killed} connections"
        );
    }
    wait_all_succeeded(&engine, &owner, &jobs, Duration::from_secs(60)).await;
    let events = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .expect("the watch ended")
        .expect("watcher");
    let last = engine.get(&owner, jobs[15]).await.expect("get").last_seq;
    assert_seqs(&seqs(&events), 1..=last);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_mid_run_loses_no_job() {
    let Some(mut server) = Server::start() else {
        return;
    };
    let r = server.ready().await;
    let (engine, owner, jobs) = run_jobs(&r, 16).await;
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let watch = engine.watch(&owner, jobs[15], 0).await.expect("watch");
    let watcher = tokio::spawn(watch.map(|e| e.expect("event")).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.spawn().expect("restart redis-server");
    // Back, and empty: recovery pushes the waiting jobs again.
    let _ = server.ready().await;
    wait_all_succeeded(&engine, &owner, &jobs, Duration::from_secs(60)).await;
    let events = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .expect("the watch ended")
        .expect("watcher");
    let last = engine.get(&owner, jobs[15]).await.expect("get").last_seq;
    assert_seqs(&seqs(&events), 1..=last);
    worker.shutdown().await;
}
