//! How an attempt's reports reach the store: written behind the orchestrator,
//! in the order reported, coalesced while a write is in flight, refused at the
//! call when no store could hold them, and refused once the attempt is lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::testkit::assert::{assert_gap_free, watch_to_end};
use projectengine_core::testkit::scenarios::fast_worker;
use projectengine_core::testkit::SlowStore;
use projectengine_core::worker::{recover_once, RecoveryReport};
use projectengine_core::*;
use serde_json::json;

/// How long a watch may take to reach the end of its job.
const WATCH: Duration = Duration::from_secs(30);

/// What the test orchestrator saw from its calls.
#[derive(Default, Debug)]
struct Seen {
    answers: Mutex<Vec<String>>,
}

impl Seen {
    fn push(&self, what: String) {
        self.answers.lock().expect("lock").push(what);
    }
    fn all(&self) -> Vec<String> {
        self.answers.lock().expect("lock").clone()
    }
}

fn answer(r: &Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(Error::StaleAttempt) => "stale".into(),
        Err(Error::Invalid { field, .. }) => format!("invalid {field}"),
        Err(e) => format!("error {e}"),
    }
}

fn engine(store: Arc<dyn Store>, kind: &str, orchestrator: impl Orchestrator) -> Engine {
    Engine::new(
        store,
        Arc::new(MemoryQueue::new(Duration::from_secs(1))),
        Arc::new(MemoryNotifier::default()),
        Registry::new().register(kind, orchestrator),
    )
}

/// Reports 20 steps back to back, then publishes its app.
struct Burst;

#[async_trait]
impl Orchestrator for Burst {
    async fn run(
        &self,
        _job: &Job,
        callbacks: &dyn JobCallbacks,
    ) -> std::result::Result<(), OrchestratorError> {
        for i in 0..20 {
            callbacks.step(Step::completed(format!("step {i}"))).await?;
        }
        callbacks
            .publish_app(NewApp {
                name: "app".into(),
                payload: json!({}),
            })
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_reported_during_a_write_share_the_next_and_keep_their_order() {
    // Every append takes 50 ms: the steps reported meanwhile wait for the
    // next, and the appends' times (one per append) are 50 ms apart.
    let slow = Arc::new(SlowStore::new(
        Arc::new(MemoryStore::new()),
        Duration::from_millis(50),
    ));
    let engine = engine(slow, "burst", Burst);
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(&owner, Submit::new("x"))
        .await
        .expect("submit");
    let events = watch_to_end(&engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;

    assert_gap_free(&events, 1);
    let steps: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Step(s) => Some(s.name.clone()),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("step {i}")).collect();
    assert_eq!(steps, expected, "every step, once, in the order reported");
    let app_at = events
        .iter()
        .position(|e| matches!(e.data, EventData::App { .. }))
        .expect("the app event");
    let last_step = events
        .iter()
        .rposition(|e| matches!(e.data, EventData::Step(_)))
        .expect("steps");
    assert!(last_step < app_at, "the app comes after every step");
    let appends = events
        .iter()
        .filter(|e| matches!(e.data, EventData::Step(_)))
        .map(|e| e.at)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(
        (1..20).contains(&appends),
        "20 steps reported back to back took {appends} appends"
    );
    let job = engine.get(&owner, job.id).await.expect("get");
    assert_eq!(job.status, JobStatus::Succeeded);
}

/// Reports a step whose name holds a NUL character, then a good one.
struct Nul(Arc<Seen>);

#[async_trait]
impl Orchestrator for Nul {
    async fn run(
        &self,
        _job: &Job,
        callbacks: &dyn JobCallbacks,
    ) -> std::result::Result<(), OrchestratorError> {
        let bad = callbacks.step(Step::completed("bad \u{0} step")).await;
        self.0.push(answer(&bad));
        let detail = Step {
            detail: Some(json!({"nested": ["fine", "not \u{0} fine"]})),
            ..Step::completed("detail")
        };
        self.0.push(answer(&callbacks.step(detail).await));
        self.0
            .push(answer(&callbacks.log(LogLevel::Info, "\u{0}").await));
        let good = callbacks.step(Step::completed("good")).await;
        self.0.push(answer(&good));
        callbacks
            .publish_app(NewApp {
                name: "app".into(),
                payload: json!({}),
            })
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_no_store_can_hold_is_refused_at_its_call() {
    let seen = Arc::new(Seen::default());
    let engine = engine(Arc::new(MemoryStore::new()), "nul", Nul(seen.clone()));
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(&owner, Submit::new("x"))
        .await
        .expect("submit");
    let events = watch_to_end(&engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    assert_eq!(
        seen.all(),
        ["invalid step", "invalid step", "invalid message", "ok"]
    );
    let steps: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Step(s) => Some(s.name.as_str()),
            EventData::Log(_) => Some("log"),
            _ => None,
        })
        .collect();
    assert_eq!(steps, ["good"], "the refused reports stored nothing");
    let job = engine.get(&owner, job.id).await.expect("get");
    assert_eq!(job.status, JobStatus::Succeeded);
}

/// Reports a step, then waits to be told its attempt was lost, then keeps
/// reporting until a call says so.
struct Outlived {
    seen: Arc<Seen>,
    lost: Arc<tokio::sync::Notify>,
    reported: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Orchestrator for Outlived {
    async fn run(
        &self,
        job: &Job,
        callbacks: &dyn JobCallbacks,
    ) -> std::result::Result<(), OrchestratorError> {
        if callbacks.attempt() > 1 {
            return Ok(());
        }
        let lost = self.lost.notified();
        tokio::pin!(lost);
        lost.as_mut().enable();
        callbacks.step(Step::completed("before")).await?;
        self.reported.notify_one();
        lost.await;
        for i in 0..50 {
            let r = callbacks.step(Step::completed(format!("after {i}"))).await;
            self.seen.push(answer(&r));
            if r.is_err() {
                return Err(r.expect_err("an error").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = job;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_after_the_attempt_was_lost_are_refused_and_never_stored() {
    let seen = Arc::new(Seen::default());
    let lost = Arc::new(tokio::sync::Notify::new());
    let reported = Arc::new(tokio::sync::Notify::new());
    let store = Arc::new(MemoryStore::new());
    let engine = engine(
        store.clone(),
        "outlived",
        Outlived {
            seen: seen.clone(),
            lost: lost.clone(),
            reported: reported.clone(),
        },
    );
    // No heartbeat in time and no recovery of its own: the test expires the
    // lease and recovers the attempt itself.
    let config = WorkerConfig {
        lease: Duration::from_millis(200),
        heartbeat: Duration::from_secs(60),
        recovery_every: None,
        ..fast_worker()
    };
    let worker = Worker::new(engine.clone(), config).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(&owner, Submit::new("x"))
        .await
        .expect("submit");
    tokio::time::timeout(Duration::from_secs(10), reported.notified())
        .await
        .expect("the first step");
    // The first attempt's lease runs out; recovery declares it lost.
    let mut recovered = RecoveryReport::default();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        recovered = recover_once(&engine, Duration::from_secs(60))
            .await
            .expect("recovery");
        if recovered.lost > 0 {
            break;
        }
    }
    assert_eq!(recovered.lost, 1, "the attempt was declared lost");
    lost.notify_one();
    let events = watch_to_end(&engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;

    let answers = seen.all();
    assert_eq!(
        answers.last().map(String::as_str),
        Some("stale"),
        "{answers:?}"
    );
    assert!(
        answers.len() <= 3,
        "the loss is known from the first write after it: {answers:?}"
    );
    let after: Vec<&JobEvent> = events
        .iter()
        .filter(|e| matches!(&e.data, EventData::Step(s) if s.name.starts_with("after")))
        .collect();
    assert!(
        after.is_empty(),
        "no report of the lost attempt was stored: {after:?}"
    );
    let job = engine.get(&owner, job.id).await.expect("get");
    assert_eq!(
        job.status,
        JobStatus::Succeeded,
        "the second attempt ran it"
    );
}
