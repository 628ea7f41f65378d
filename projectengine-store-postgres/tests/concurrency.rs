//! Races on the real server: gap-free seqs, exclusive claims, and fenced
//! writes that never overlap.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use projectengine_core::testkit::assert::{assert_seqs, seqs as seqs_of};
use projectengine_core::{
    AttemptStatus, Error, EventData, Fence, JobId, JobStatus, LogLevel, LogLine, NewApp, NewJob,
    Outcome, Owner, Store,
};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(30);

fn new_job(owner: &Owner) -> NewJob {
    NewJob {
        id: JobId::new(),
        owner: owner.clone(),
        kind: "stub".into(),
        queue: "q".into(),
        prompt: "p".into(),
        params: json!({}),
        priority: 0,
        max_attempts: 3,
        timeout_ms: 60_000,
        run_at: Utc::now(),
        max_queued: None,
        webhook: None,
        notify_deployment: false,
        trace_parent: None,
        review: false,
        parent_id: None,
        child_key: None,
        project: None,
        depends_on: Vec::new(),
        concurrency_key: None,
        concurrency_limit: None,
    }
}

fn log(message: String) -> EventData {
    EventData::Log(LogLine {
        level: LogLevel::Info,
        message,
    })
}

async fn running_job(store: &Arc<dyn Store>, lease: Duration) -> Fence {
    let id = store
        .create_job(new_job(&Owner::new("o")))
        .await
        .expect("create")
        .job
        .id;
    store
        .claim(id, "w", lease)
        .await
        .expect("claim")
        .expect("claimable")
        .attempt
        .fence()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_concurrent_appends_get_seqs_without_gaps() {
    let Some(store) = support::fresh(24).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let fence = running_job(&store, LEASE).await;
    let tasks = (0..2000).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let evs = store
                .append(fence, vec![log(format!("line {i}"))])
                .await
                .expect("append by the running attempt");
            assert_eq!(evs.len(), 1);
            (evs[0].seq, i)
        })
    });
    let mut seqs = Vec::new();
    for r in join_all(tasks).await {
        seqs.push(r.expect("join"));
    }
    let mut got: Vec<u64> = seqs.iter().map(|(s, _)| *s).collect();
    got.sort_unstable();
    // 1 = queued, 2 = running, then the 2 000 appends.
    assert_eq!(got, (3..=2002).collect::<Vec<_>>());
    let events = store.events(fence.job_id, 0, 10_000).await.expect("events");
    assert_seqs(&seqs_of(&events), 1..=2002);
    // Each append's line is stored under the seq it was told.
    for (seq, i) in seqs {
        assert_eq!(
            events[seq as usize - 1].data,
            log(format!("line {i}")),
            "seq {seq}"
        );
    }
    let job = store
        .get_job(fence.job_id)
        .await
        .expect("get")
        .expect("job");
    assert_eq!(job.last_seq, 2002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_claimers_claim_five_hundred_jobs_each_once() {
    let Some(store) = support::fresh(24).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let owner = Owner::new("o");
    let mut ids = Vec::new();
    for _ in 0..500 {
        ids.push(
            store
                .create_job(new_job(&owner))
                .await
                .expect("create")
                .job
                .id,
        );
    }
    let ids = Arc::new(ids);
    let claimers = (0..32).map(|w| {
        let (store, ids) = (store.clone(), ids.clone());
        tokio::spawn(async move {
            let mut mine = Vec::new();
            for k in 0..ids.len() {
                let id = ids[(k + w * 17) % ids.len()];
                if let Some(c) = store
                    .claim(id, &format!("w{w}"), LEASE)
                    .await
                    .expect("claim")
                {
                    assert_eq!(c.attempt.worker_id, format!("w{w}"));
                    mine.push(id);
                }
            }
            mine
        })
    });
    let mut all = Vec::new();
    for r in join_all(claimers).await {
        all.extend(r.expect("join"));
    }
    let unique: HashSet<JobId> = all.iter().copied().collect();
    assert_eq!(all.len(), 500, "no job claimed twice");
    assert_eq!(unique, ids.iter().copied().collect());
    for id in ids.iter().step_by(25) {
        assert_eq!(store.attempts(*id).await.expect("attempts").len(), 1);
        assert_eq!(store.events(*id, 0, 10).await.expect("events").len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_recoveries_declare_an_attempt_lost_once() {
    let Some(store) = support::fresh(16).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let fence = running_job(&store, Duration::from_millis(20)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tries = (0..12).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.finish(fence, Outcome::Lost).await })
    });
    let mut won = 0;
    for r in join_all(tries).await {
        match r.expect("join") {
            Ok(c) => {
                won += 1;
                assert_eq!(c.job.status, JobStatus::Queued);
            }
            Err(Error::StaleAttempt) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(won, 1);
    let events = store.events(fence.job_id, 0, 100).await.expect("events");
    assert_eq!(
        events.len(),
        4,
        "queued, running, error, queued: {events:?}"
    );
    let attempts = store.attempts(fence.job_id).await.expect("attempts");
    assert_eq!(attempts[0].status, AttemptStatus::Lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_heartbeat_and_a_recovery_never_both_win() {
    let Some(store) = support::fresh(8).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let mut lost_won = 0;
    for _ in 0..30 {
        let fence = running_job(&store, Duration::ZERO).await;
        let (hb, lost) = tokio::join!(
            store.heartbeat(fence, LEASE),
            store.finish(fence, Outcome::Lost)
        );
        match (hb, lost) {
            (Ok(_), Err(Error::Conflict(_))) => {
                let job = store
                    .get_job(fence.job_id)
                    .await
                    .expect("get")
                    .expect("job");
                assert_eq!(job.status, JobStatus::Running);
            }
            (Err(Error::StaleAttempt), Ok(c)) => {
                lost_won += 1;
                assert_eq!(c.job.status, JobStatus::Queued);
            }
            other => panic!("heartbeat and recovery both won or both lost: {other:?}"),
        }
    }
    eprintln!("recovery won {lost_won} of 30 races");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_of_an_attempt_publish_one_app() {
    let Some(store) = support::fresh(16).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let fence = running_job(&store, LEASE).await;
    let saves = (0..12).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .save_app(
                    fence,
                    NewApp {
                        name: format!("app {i}"),
                        payload: json!(i),
                    },
                )
                .await
        })
    });
    let mut saved = Vec::new();
    for r in join_all(saves).await {
        match r.expect("join") {
            Ok((app, _)) => saved.push(app),
            Err(Error::Conflict(m)) => {
                assert_eq!(m, "this attempt already published the job's app")
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(saved.len(), 1);
    assert_eq!(
        store.app_by_job(fence.job_id).await.expect("by job"),
        Some(saved[0].clone())
    );
    let events = store.events(fence.job_id, 0, 100).await.expect("events");
    assert_eq!(events.iter().filter(|e| e.data.kind() == "app").count(), 1);
    assert_seqs(&seqs_of(&events), 1..=3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cancels_request_once() {
    let Some(store) = support::fresh(16).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let fence = running_job(&store, LEASE).await;
    let cancels = (0..16).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.request_cancel(fence.job_id).await })
    });
    let mut with_event = 0;
    for r in join_all(cancels).await {
        let c = r.expect("join").expect("cancel");
        assert!(c.job.cancel_requested);
        with_event += c.events.len();
    }
    assert_eq!(with_event, 1);
    let events = store.events(fence.job_id, 0, 100).await.expect("events");
    assert_eq!(
        events.last().map(|e| &e.data),
        Some(&EventData::CancelRequested)
    );
    assert_seqs(&seqs_of(&events), 1..=3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_racing_a_finish_land_before_it_or_are_refused() {
    let Some(store) = support::fresh(16).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let fence = running_job(&store, LEASE).await;
    let appends: Vec<_> = (0..400)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append(fence, vec![log(format!("{i}"))]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let done = store
        .finish(fence, Outcome::Succeeded)
        .await
        .expect("finish");
    let terminal = done.events.last().expect("terminal event").seq;
    let mut accepted = BTreeSet::new();
    for r in join_all(appends).await {
        match r.expect("join") {
            Ok(evs) => {
                accepted.insert(evs[0].seq);
            }
            Err(Error::StaleAttempt) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(
        accepted.iter().all(|s| *s < terminal),
        "nothing after the end"
    );
    assert_eq!(accepted.len() as u64, terminal - 3);
    let events = store.events(fence.job_id, 0, 1000).await.expect("events");
    assert_seqs(&seqs_of(&events), 1..=terminal);
    assert!(events.last().is_some_and(|e| e.is_terminal()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_racing_cancels_leave_a_consistent_job() {
    let Some(store) = support::fresh(16).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let owner = Owner::new("o");
    for _ in 0..40 {
        let id = store
            .create_job(new_job(&owner))
            .await
            .expect("create")
            .job
            .id;
        let (claim, cancel) = tokio::join!(store.claim(id, "w", LEASE), store.request_cancel(id));
        let claimed = claim.expect("claim").is_some();
        let cancel = cancel.expect("cancel");
        let job = store.get_job(id).await.expect("get").expect("job");
        if claimed {
            assert_eq!(job.status, JobStatus::Running);
            assert!(job.cancel_requested);
        } else {
            assert_eq!(job.status, JobStatus::Cancelled);
            assert_eq!(cancel.job.status, JobStatus::Cancelled);
        }
        let events = store.events(id, 0, 10).await.expect("events");
        assert_seqs(&seqs_of(&events), 1..=job.last_seq);
        // queued, running, cancel_requested; or queued, cancelled.
        assert_eq!(events.len(), if claimed { 3 } else { 2 });
    }
}
