//! The engine's failure paths, with mocks for faults a real backend cannot
//! produce on demand: a store failing mid-attempt, a notifier that is down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::testkit::assert::{assert_gap_free, watch_to_end};
use projectengine_core::testkit::scenarios::fast_worker;
use projectengine_core::testkit::{MockNotifier, MockStore};
use projectengine_core::*;

/// How long a watch may take to reach the end of its job.
const WATCH: Duration = Duration::from_secs(30);

/// A mock store that does what the in-memory store does, except where a test
/// overrides a method. (The in-memory store never awaits, so `block_on` is safe.)
fn delegating(
    mem: Arc<MemoryStore>,
    fail_append: Option<usize>,
    fail_finish: Option<usize>,
) -> MockStore {
    let mut m = MockStore::new();
    macro_rules! delegate {
        ($expect:ident, $method:ident, |$($a:ident),*|) => {{
            let s = mem.clone();
            m.$expect().returning(move |$($a),*| block_on(s.$method($($a),*)));
        }};
    }
    delegate!(expect_create_job, create_job, |j|);
    delegate!(expect_get_job, get_job, |id|);
    {
        let s = mem.clone();
        m.expect_list_jobs()
            .returning(move |o, q| block_on(s.list_jobs(o, q)));
        let s = mem.clone();
        m.expect_claim()
            .returning(move |id, w, l| block_on(s.claim(id, w, l)));
    }
    delegate!(expect_heartbeat, heartbeat, |f, l|);
    delegate!(expect_save_app, save_app, |f, a|);
    delegate!(expect_request_cancel, request_cancel, |id|);
    delegate!(expect_retry, retry, |id|);
    delegate!(expect_events, events, |id, after, limit|);
    delegate!(expect_attempts, attempts, |id|);
    delegate!(expect_get_app, get_app, |id|);
    delegate!(expect_app_by_job, app_by_job, |id|);
    {
        let s = mem.clone();
        m.expect_list_apps()
            .returning(move |o, c, l| block_on(s.list_apps(o, c, l)));
    }
    delegate!(expect_expired_leases, expired_leases, |l|);
    delegate!(expect_due_jobs, due_jobs, |o, l|);
    {
        let s = mem.clone();
        m.expect_ping().returning(move || block_on(s.ping()));
    }
    let calls = Arc::new(AtomicUsize::new(0));
    {
        let (s, calls) = (mem.clone(), calls.clone());
        m.expect_append().returning(move |f, e| {
            if Some(calls.fetch_add(1, Ordering::SeqCst)) == fail_append {
                Err(Error::unavailable("connection reset"))
            } else {
                block_on(s.append(f, e))
            }
        });
    }
    let finishes = Arc::new(AtomicUsize::new(0));
    {
        let s = mem.clone();
        m.expect_finish().returning(move |f, o| {
            if Some(finishes.fetch_add(1, Ordering::SeqCst)) == fail_finish {
                Err(Error::unavailable("connection reset"))
            } else {
                block_on(s.finish(f, o))
            }
        });
    }
    m
}

fn engine(store: Arc<dyn Store>, notifier: Arc<dyn Notifier>) -> Engine {
    let registry =
        Registry::new().register("stub", StubOrchestrator::new(3, Duration::from_millis(5)));
    Engine::new(
        store,
        Arc::new(MemoryQueue::new(Duration::from_secs(1))),
        notifier,
        registry,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_mid_attempt_costs_one_attempt_not_the_job() {
    let mem = Arc::new(MemoryStore::new());
    // The second append (the second step) fails as if the database dropped out.
    let store = delegating(mem.clone(), Some(1), None);
    let engine = engine(Arc::new(store), Arc::new(MemoryNotifier::default()));
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(&owner, Submit::new("x"))
        .await
        .expect("submit");
    let events = watch_to_end(&engine, &owner, job.id, 0, WATCH).await;
    assert_gap_free(&events, 1);
    let job = engine.get(&owner, job.id).await.expect("get");
    assert_eq!(job.status, JobStatus::Succeeded);
    let attempts = engine.attempts(&owner, job.id).await.expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, AttemptStatus::Failed);
    assert_eq!(
        attempts[0].error.as_ref().map(|e| e.code.as_str()),
        Some("unavailable")
    );
    engine.app_by_job(&owner, job.id).await.expect("the app");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_the_store_could_not_record_is_recovered() {
    let mem = Arc::new(MemoryStore::new());
    // Recording the first outcome fails: the lease runs out and recovery takes over.
    let store = delegating(mem.clone(), None, Some(0));
    let engine = engine(Arc::new(store), Arc::new(MemoryNotifier::default()));
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(&owner, Submit::new("x"))
        .await
        .expect("submit");
    let events = watch_to_end(&engine, &owner, job.id, 0, WATCH).await;
    assert_gap_free(&events, 1);
    let attempts = engine.attempts(&owner, job.id).await.expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, AttemptStatus::Lost);
    assert_eq!(attempts[1].status, AttemptStatus::Succeeded);
    // The first attempt saved its app before the failed finish; the second finds it.
    assert_eq!(
        engine.get(&owner, job.id).await.expect("get").status,
        JobStatus::Succeeded
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_notifier_down_jobs_finish_and_watch_reads_the_store() {
    let mut notifier = MockNotifier::new();
    notifier
        .expect_publish()
        .returning(|_| Err(Error::unavailable("broker down")));
    notifier
        .expect_subscribe()
        .returning(|_| Err(Error::unavailable("broker down")));
    let engine = engine(Arc::new(MemoryStore::new()), Arc::new(notifier));
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(&owner, Submit::new("x"))
        .await
        .expect("submit");
    let events = watch_to_end(&engine, &owner, job.id, 0, WATCH).await;
    assert_gap_free(&events, 1);
    assert_eq!(
        events.last().and_then(JobEvent::status),
        Some(JobStatus::Succeeded)
    );
    engine.app_by_job(&owner, job.id).await.expect("the app");
    worker.shutdown().await;
}
