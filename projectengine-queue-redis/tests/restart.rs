//! The queue, notifier and worker carry on when every Redis connection is
//! killed (`CLIENT KILL TYPE normal`, then `TYPE pubsub` for the subscriber)
//! and when Redis restarts empty.
//!
//! These tests run a `redis-server` of their own (from `PATH`) on a free
//! port, so killing every client or the server itself disturbs no other test.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_all_succeeded, TestRedis};
use futures::StreamExt;
use projectengine_core::memory::MemoryStore;
use projectengine_core::testkit::scenarios::{assert_gap_free, fast_worker};
use projectengine_core::testkit::service_missing;
use projectengine_core::{Engine, JobId, Owner, Registry, StubOrchestrator, Submit, Worker};

/// A private `redis-server`, killed when dropped.
struct Server {
    port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts one on a free port; `None` (after reporting it) without `redis-server`.
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self { port, child: None };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(e) => {
                service_missing("redis-server (on PATH)", "a private port", &e);
                None
            }
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until it answers.
    async fn ready(&self) -> TestRedis {
        for _ in 0..100 {
            if common::admin(&self.url()).await.is_ok() {
                return TestRedis::connect_to(&self.url())
                    .await
                    .expect("it answers");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} never answered", self.port);
    }

    /// Kills the server at once (no shutdown, no save).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

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
    assert_gap_free(&events, 1);
    let last = engine.get(&owner, jobs[15]).await.expect("get").last_seq;
    assert_eq!(events.len() as u64, last);
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
    assert_gap_free(&events, 1);
    let last = engine.get(&owner, jobs[15]).await.expect("get").last_seq;
    assert_eq!(events.len() as u64, last);
    worker.shutdown().await;
}
