//! Redis loses its whole content mid-run, and no job is lost: recovery pushes
//! due jobs from the store again.
//!
//! This test empties a whole database with `FLUSHDB`, so it runs on database
//! 15 of the server at `REDIS_URL` (nothing else should use it), never on the
//! database the other tests share, and it is alone in its test binary.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestRedis;
use projectengine_core::memory::MemoryStore;
use projectengine_core::testkit::assert::wait_all_succeeded;
use projectengine_core::testkit::scenarios::fast_worker;
use projectengine_core::{
    Engine, JobId, Owner, Queue, Registry, StubOrchestrator, Submit, Worker, WorkerConfig,
};

/// The database this test may empty.
const FLUSH_DB: u32 = 15;

/// `url` with its database replaced by `db` (query parameters kept).
fn with_db(url: &str, db: u32) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].rfind('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

#[test]
fn urls_get_the_flush_database() {
    assert_eq!(
        with_db("redis://127.0.0.1:6379", 15),
        "redis://127.0.0.1:6379/15"
    );
    assert_eq!(with_db("redis://h:1/0", 15), "redis://h:1/15");
    assert_eq!(
        with_db("redis://:pw@h:1/3?protocol=resp3", 15),
        "redis://:pw@h:1/15?protocol=resp3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flushing_redis_mid_run_loses_no_job() {
    let url = with_db(&common::redis_url(), FLUSH_DB);
    let Some(r) = TestRedis::connect_to(&url).await else {
        return;
    };
    let mut admin = r.admin.clone();
    let info: String = redis::cmd("CLIENT")
        .arg("INFO")
        .query_async(&mut admin)
        .await
        .expect("CLIENT INFO");
    assert!(
        info.contains(&format!(" db={FLUSH_DB} ")),
        "not on database {FLUSH_DB}: {info}"
    );

    let queue = Arc::new(r.queue().await);
    let registry =
        Registry::new().register("stub", StubOrchestrator::new(3, Duration::from_millis(60)));
    let queue_name = registry.queues()[0].clone();
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        queue.clone(),
        Arc::new(r.notifier().await),
        registry,
    );
    let worker = Worker::new(
        engine.clone(),
        WorkerConfig {
            concurrency: 2,
            recovery_every: Some(Duration::from_millis(200)),
            recovery_overdue: Duration::from_millis(300),
            ..fast_worker()
        },
    )
    .spawn();
    let owner = Owner::new("alice");
    let mut jobs: Vec<JobId> = Vec::new();
    for i in 0..20 {
        let job = engine
            .submit(&owner, Submit::new(format!("job {i}")))
            .await
            .expect("submit");
        jobs.push(job.id);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = queue.depth(&queue_name).await.expect("depth");
    assert!(
        before.ready > 0,
        "the flush must hit waiting entries: {before:?}"
    );

    let () = redis::cmd("FLUSHDB")
        .query_async(&mut admin)
        .await
        .expect("FLUSHDB");
    let after = queue.depth(&queue_name).await.expect("depth");
    assert_eq!(after, Default::default(), "the queue's content is gone");

    wait_all_succeeded(&engine, &owner, &jobs, Duration::from_secs(60)).await;
    worker.shutdown().await;
    r.cleanup().await;
}
