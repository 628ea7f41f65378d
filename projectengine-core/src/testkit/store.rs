//! The [`Store`] suite.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::unique;
use crate::{
    AttemptStatus, Claim, Error, EventData, Fence, JobError, JobId, JobQuery, JobStatus, LogLevel,
    LogLine, NewApp, NewJob, Outcome, Owner, Step, Store,
};

const LEASE: Duration = Duration::from_secs(30);

/// A valid submission for `owner`, due now.
pub fn new_job(owner: &Owner) -> NewJob {
    NewJob {
        id: JobId::new(),
        owner: owner.clone(),
        kind: "stub".into(),
        queue: "stub".into(),
        prompt: "make an app".into(),
        params: json!({"k": 1}),
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

fn owner() -> Owner {
    Owner::new(unique("owner"))
}

async fn create(store: &Arc<dyn Store>, new: NewJob) -> JobId {
    store.create_job(new).await.expect("create_job").job.id
}

async fn claim(store: &Arc<dyn Store>, id: JobId) -> Claim {
    store
        .claim(id, "w1", LEASE)
        .await
        .expect("claim")
        .expect("the job is claimable")
}

fn assert_seqs(events: &[crate::JobEvent], from: u64) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, from + i as u64, "seq must be gap-free: {events:?}");
    }
}

/// Creating stores the job as given (its trace context included), queued,
/// with a `queued` event of seq 1; a duplicate id conflicts; an unknown id is
/// `None`.
pub async fn check_create_and_get(store: Arc<dyn Store>) {
    let o = owner();
    let plain = store.create_job(new_job(&o)).await.expect("create").job;
    assert_eq!(plain.trace_parent, None);
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let new = NewJob {
        trace_parent: Some(parent.into()),
        ..new_job(&o)
    };
    let changed = store.create_job(new.clone()).await.expect("create");
    let job = changed.job;
    assert_eq!(job.id, new.id);
    assert_eq!(job.owner, o);
    assert_eq!(job.prompt, new.prompt);
    assert_eq!(job.params, new.params);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!((job.attempt, job.attempts_used, job.last_seq), (0, 0, 1));
    assert_eq!(changed.events.len(), 1);
    assert_eq!(changed.events[0].seq, 1);
    assert_eq!(changed.events[0].status(), Some(JobStatus::Queued));
    let got = store.get_job(job.id).await.expect("get").expect("exists");
    assert_eq!(got.id, job.id);
    assert_eq!(got.status, JobStatus::Queued);
    assert_eq!(got.max_attempts, 3);
    assert_eq!(got.timeout_ms, 60_000);
    assert_eq!(got.trace_parent.as_deref(), Some(parent));
    assert!(matches!(
        store.create_job(new).await,
        Err(Error::Conflict(_))
    ));
    assert!(store.get_job(JobId::new()).await.expect("get").is_none());
    assert!(store
        .claim(JobId::new(), "w", LEASE)
        .await
        .expect("claim")
        .is_none());
    assert!(matches!(
        store.request_cancel(JobId::new()).await,
        Err(Error::NotFound { .. })
    ));
}

/// Of 32 concurrent claimers of one job, exactly one gets it.
pub async fn check_claim_is_exclusive(store: Arc<dyn Store>) {
    let id = create(&store, new_job(&owner())).await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.claim(id, &format!("w{i}"), LEASE).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.expect("join").expect("claim").is_some() {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one claimer may win");
    let job = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.attempt, 1);
    assert_eq!(store.attempts(id).await.expect("attempts").len(), 1);
}

/// 32 concurrent claimers racing over 100 jobs claim each exactly once.
pub async fn check_claims_spread_over_many_jobs(store: Arc<dyn Store>) {
    let o = owner();
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(create(&store, new_job(&o)).await);
    }
    let ids = Arc::new(ids);
    let tasks: Vec<_> = (0..32)
        .map(|w| {
            let (store, ids) = (store.clone(), ids.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for k in 0..ids.len() {
                    let id = ids[(k + w * 3) % ids.len()];
                    if store
                        .claim(id, &format!("w{w}"), LEASE)
                        .await
                        .expect("claim")
                        .is_some()
                    {
                        mine.push(id);
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(all.len(), 100, "every job claimed once, no job twice");
    assert_eq!(unique.len(), 100);
}

/// A job whose `run_at` is in the future is not claimable yet.
pub async fn check_claim_waits_for_run_at(store: Arc<dyn Store>) {
    let mut new = new_job(&owner());
    new.run_at = Utc::now() + chrono::Duration::milliseconds(400);
    let id = create(&store, new).await;
    assert!(store.claim(id, "w", LEASE).await.expect("claim").is_none());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(store.claim(id, "w", LEASE).await.expect("claim").is_some());
}

/// Concurrent appends by the running attempt get seqs without gaps or repeats.
pub async fn check_seq_gap_free_under_concurrent_appends(store: Arc<dyn Store>) {
    let id = create(&store, new_job(&owner())).await;
    let fence = claim(&store, id).await.attempt.fence();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..25 {
                    let batch = if i % 5 == 0 {
                        vec![log(&format!("{t}.{i}a")), log(&format!("{t}.{i}b"))]
                    } else {
                        vec![log(&format!("{t}.{i}"))]
                    };
                    let evs = store.append(fence, batch).await.expect("append");
                    assert_seqs(&evs, evs[0].seq);
                    seqs.extend(evs.iter().map(|e| e.seq));
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.expect("join"));
    }
    seqs.sort_unstable();
    let n = 16 * 25 + 16 * 5;
    // 1 = queued, 2 = running.
    assert_eq!(seqs, (3..3 + n as u64).collect::<Vec<_>>());
    let events = store.events(id, 0, 10_000).await.expect("events");
    assert_seqs(&events, 1);
    assert_eq!(events.len(), n + 2);
    let job = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(job.last_seq, n as u64 + 2);
}

fn log(msg: &str) -> EventData {
    EventData::Log(LogLine {
        level: LogLevel::Info,
        message: msg.to_owned(),
    })
}

/// One append of several events keeps their order and updates stage and progress.
pub async fn check_append_batch_in_order(store: Arc<dyn Store>) {
    let id = create(&store, new_job(&owner())).await;
    let fence = claim(&store, id).await.attempt.fence();
    let batch = vec![
        EventData::Stage {
            stage: "PLANNING".into(),
        },
        log("thinking"),
        EventData::Step(Step::completed("plan").detail(json!({"files": 3}))),
        EventData::Progress { progress: 40 },
    ];
    let evs = store.append(fence, batch.clone()).await.expect("append");
    assert_eq!(evs.len(), 4);
    assert_seqs(&evs, 3);
    for (e, d) in evs.iter().zip(&batch) {
        assert_eq!(&e.data, d);
        assert_eq!(e.attempt, 1);
        assert_eq!(e.job_id, id);
    }
    let job = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(job.stage.as_deref(), Some("PLANNING"));
    assert_eq!(job.progress, 40);
    assert_eq!(job.last_seq, 6);
    assert_eq!(store.events(id, 2, 100).await.expect("events"), evs);
}

/// Numbered batches apply once each, in order, per attempt: a repeated
/// number changes nothing, a skipped one is refused, a new attempt counts
/// from 1, and a stale attempt's batch is refused.
pub async fn check_numbered_batches_apply_once(store: Arc<dyn Store>) {
    let id = create(&store, new_job(&owner())).await;
    let first = claim(&store, id).await.attempt.fence();
    let one = store
        .append_batch(first, 1, vec![log("a"), log("b")])
        .await
        .expect("batch 1");
    let one = one.expect("batch 1 is new");
    assert_seqs(&one, 3);
    assert_eq!(
        store
            .append_batch(first, 1, vec![log("a"), log("b")])
            .await
            .expect("batch 1 again"),
        None,
        "a repeated batch changes nothing"
    );
    assert!(matches!(
        store.append_batch(first, 3, vec![log("c")]).await,
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        store.append_batch(first, 0, vec![log("c")]).await,
        Err(Error::Invalid { .. })
    ));
    let two = store
        .append_batch(first, 2, vec![EventData::Progress { progress: 30 }])
        .await
        .expect("batch 2")
        .expect("batch 2 is new");
    assert_seqs(&two, 5);
    let job = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(job.last_seq, 5);
    assert_eq!(job.progress, 30);

    store
        .finish(first, Outcome::Released)
        .await
        .expect("released");
    let second = claim(&store, id).await.attempt.fence();
    assert!(matches!(
        store.append_batch(first, 3, vec![log("late")]).await,
        Err(Error::StaleAttempt)
    ));
    let fresh = store
        .append_batch(second, 1, vec![log("again")])
        .await
        .expect("a new attempt counts from 1");
    assert_eq!(fresh.map(|e| e.len()), Some(1));
    let events = store.events(id, 0, 100).await.expect("events");
    assert_eq!(
        events.iter().filter(|e| e.data == log("late")).count(),
        0,
        "nothing of the stale attempt is stored"
    );
}

/// Status and app events, and progress over 100, are refused and change nothing.
pub async fn check_append_refuses_bad_events(store: Arc<dyn Store>) {
    let id = create(&store, new_job(&owner())).await;
    let fence = claim(&store, id).await.attempt.fence();
    let status = EventData::Status {
        status: JobStatus::Succeeded,
        error: None,
        run_at: None,
    };
    assert!(matches!(
        store.append(fence, vec![log("ok"), status]).await,
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        store
            .append(fence, vec![EventData::Progress { progress: 101 }])
            .await,
        Err(Error::Invalid { .. })
    ));
    let job = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.last_seq, 2, "a refused batch appends nothing");
    assert_eq!(store.events(id, 0, 100).await.expect("events").len(), 2);
}

/// Once an attempt is no longer the running one, every fenced write is refused.
pub async fn check_stale_attempt_is_refused(store: Arc<dyn Store>) {
    let id = create(&store, new_job(&owner())).await;
    let first = store
        .claim(id, "w1", Duration::from_millis(100))
        .await
        .expect("claim")
        .expect("claimable")
        .attempt
        .fence();
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.finish(first, Outcome::Lost).await.expect("lost");
    let second = claim(&store, id).await.attempt.fence();
    assert_eq!(second.attempt, 2);
    let before = store.get_job(id).await.expect("get").expect("exists");
    assert!(matches!(
        store.append(first, vec![log("late")]).await,
        Err(Error::StaleAttempt)
    ));
    assert!(matches!(
        store.heartbeat(first, LEASE).await,
        Err(Error::StaleAttempt)
    ));
    assert!(matches!(
        store
            .save_app(
                first,
                NewApp {
                    name: "x".into(),
                    payload: json!({})
                }
            )
            .await,
        Err(Error::StaleAttempt)
    ));
    assert!(matches!(
        store.finish(first, Outcome::Succeeded).await,
        Err(Error::StaleAttempt)
    ));
    let bogus = Fence {
        job_id: id,
        attempt: 7,
    };
    assert!(matches!(
        store.append(bogus, vec![log("x")]).await,
        Err(Error::StaleAttempt)
    ));
    let after = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(before, after, "refused writes change nothing");
    store
        .append(second, vec![log("mine")])
        .await
        .expect("the live attempt writes");
    store
        .finish(second, Outcome::Succeeded)
        .await
        .expect("finish");
    let attempts = store.attempts(id).await.expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, AttemptStatus::Lost);
    assert_eq!(attempts[1].status, AttemptStatus::Succeeded);
}

/// `Outcome::Lost` is refused while the lease still holds.
pub async fn check_lost_needs_an_expired_lease(store: Arc<dyn Store>) {
    let id = create(&store, new_job(&owner())).await;
    let fence = claim(&store, id).await.attempt.fence();
    assert!(matches!(
        store.finish(fence, Outcome::Lost).await,
        Err(Error::Conflict(_))
    ));
    assert!(store
        .expired_leases(100)
        .await
        .expect("expired")
        .iter()
        .all(|f| f.job_id != id));
    let job = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(job.status, JobStatus::Running);
}

/// A succeeded job cannot be claimed, written, cancelled, retried or finished again.
pub async fn check_terminal_states_are_final(store: Arc<dyn Store>) {
    let id = create(&store, new_job(&owner())).await;
    let fence = claim(&store, id).await.attempt.fence();
    let done = store
        .finish(fence, Outcome::Succeeded)
        .await
        .expect("finish");
    assert_eq!(done.job.status, JobStatus::Succeeded);
    assert!(done.job.finished_at.is_some());
    assert!(done.events.last().is_some_and(|e| e.is_terminal()));
    assert!(store.claim(id, "w2", LEASE).await.expect("claim").is_none());
    assert!(matches!(
        store.append(fence, vec![log("x")]).await,
        Err(Error::StaleAttempt)
    ));
    assert!(matches!(
        store.finish(fence, Outcome::Succeeded).await,
        Err(Error::StaleAttempt)
    ));
    assert!(matches!(
        store.request_cancel(id).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(store.retry(id).await, Err(Error::Conflict(_))));
    let job = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.last_seq, done.job.last_seq);
}

/// Cancel: a queued job at once; a running one by request, honoured by its worker.
pub async fn check_cancel_queued_and_running(store: Arc<dyn Store>) {
    let o = owner();
    let queued = create(&store, new_job(&o)).await;
    let c = store.request_cancel(queued).await.expect("cancel");
    assert_eq!(c.job.status, JobStatus::Cancelled);
    assert_eq!(c.events.len(), 1);
    assert_eq!(c.events[0].status(), Some(JobStatus::Cancelled));
    assert!(store
        .claim(queued, "w", LEASE)
        .await
        .expect("claim")
        .is_none());

    let running = create(&store, new_job(&o)).await;
    let fence = claim(&store, running).await.attempt.fence();
    assert!(
        !store
            .heartbeat(fence, LEASE)
            .await
            .expect("hb")
            .cancel_requested
    );
    let c = store.request_cancel(running).await.expect("cancel");
    assert_eq!(c.job.status, JobStatus::Running);
    assert!(c.job.cancel_requested);
    assert_eq!(c.events.len(), 1);
    assert_eq!(c.events[0].data, EventData::CancelRequested);
    let again = store.request_cancel(running).await.expect("cancel twice");
    assert!(again.events.is_empty(), "a second request appends nothing");
    assert!(
        store
            .heartbeat(fence, LEASE)
            .await
            .expect("hb")
            .cancel_requested
    );
    let done = store
        .finish(fence, Outcome::Cancelled)
        .await
        .expect("finish");
    assert_eq!(done.job.status, JobStatus::Cancelled);
    let attempts = store.attempts(running).await.expect("attempts");
    assert_eq!(attempts[0].status, AttemptStatus::Cancelled);
}

/// A retryable failure requeues with the delay while attempts remain; then the
/// job fails.
pub async fn check_retry_with_attempts_then_failed(store: Arc<dyn Store>) {
    let mut new = new_job(&owner());
    new.max_attempts = 2;
    let id = create(&store, new).await;
    let err = JobError::new("boom", "it broke");
    let fence = claim(&store, id).await.attempt.fence();
    let before = Utc::now();
    let c = store
        .finish(
            fence,
            Outcome::Failed {
                error: err.clone(),
                retry_in: Some(Duration::from_millis(300)),
            },
        )
        .await
        .expect("finish");
    assert_eq!(c.job.status, JobStatus::Queued);
    assert!(c.job.run_at >= before + chrono::Duration::milliseconds(250));
    assert_eq!(c.job.error.as_ref(), Some(&err));
    assert!(c
        .events
        .iter()
        .any(|e| e.data == EventData::Error(err.clone())));
    assert_eq!(
        c.events.last().and_then(|e| e.status()),
        Some(JobStatus::Queued)
    );
    assert!(
        store.claim(id, "w", LEASE).await.expect("claim").is_none(),
        "not before its delay"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fence = claim(&store, id).await.attempt.fence();
    assert_eq!(fence.attempt, 2);
    let c = store
        .finish(
            fence,
            Outcome::Failed {
                error: err.clone(),
                retry_in: Some(Duration::ZERO),
            },
        )
        .await
        .expect("finish");
    assert_eq!(c.job.status, JobStatus::Failed, "attempts are spent");
    assert_eq!(c.job.error, Some(err));
    assert_eq!(c.job.attempts_used, 2);
    let attempts = store.attempts(id).await.expect("attempts");
    assert!(attempts.iter().all(|a| a.status == AttemptStatus::Failed));
}

/// A graceful-shutdown release queues the job again without spending an attempt.
pub async fn check_released_attempt_is_not_spent(store: Arc<dyn Store>) {
    let mut new = new_job(&owner());
    new.max_attempts = 1;
    let id = create(&store, new).await;
    let fence = claim(&store, id).await.attempt.fence();
    let c = store
        .finish(fence, Outcome::Released)
        .await
        .expect("release");
    assert_eq!(c.job.status, JobStatus::Queued);
    assert_eq!(c.job.attempts_used, 0);
    let again = claim(&store, id).await;
    assert_eq!(again.attempt.number, 2);
    let c = store
        .finish(
            again.attempt.fence(),
            Outcome::TimedOut {
                retry_in: Some(Duration::ZERO),
            },
        )
        .await
        .expect("finish");
    assert_eq!(
        c.job.status,
        JobStatus::Failed,
        "the one real attempt is spent"
    );
    assert_eq!(
        c.job.error.as_ref().map(|e| e.code.as_str()),
        Some("timeout")
    );
    let attempts = store.attempts(id).await.expect("attempts");
    assert_eq!(attempts[0].status, AttemptStatus::Cancelled);
    assert_eq!(attempts[1].status, AttemptStatus::TimedOut);
}

/// Expired leases are listed; `Lost` requeues, or cancels when a cancel was
/// pending, or fails when the attempts are spent.
pub async fn check_lost_attempts_are_recovered(store: Arc<dyn Store>) {
    let o = owner();
    let short = Duration::from_millis(100);
    let requeued = create(&store, new_job(&o)).await;
    let cancelled = create(&store, new_job(&o)).await;
    let mut spent = new_job(&o);
    spent.max_attempts = 1;
    let spent = create(&store, spent).await;
    let mut fences = Vec::new();
    for id in [requeued, cancelled, spent] {
        fences.push(
            store
                .claim(id, "dead", short)
                .await
                .expect("claim")
                .expect("claimable")
                .attempt
                .fence(),
        );
    }
    store.request_cancel(cancelled).await.expect("cancel");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expired: HashSet<Fence> = store
        .expired_leases(1000)
        .await
        .expect("expired")
        .into_iter()
        .collect();
    for f in &fences {
        assert!(expired.contains(f), "{f:?} has an expired lease");
    }
    let statuses: Vec<JobStatus> = {
        let mut v = Vec::new();
        for f in &fences {
            v.push(
                store
                    .finish(*f, Outcome::Lost)
                    .await
                    .expect("lost")
                    .job
                    .status,
            );
        }
        v
    };
    assert_eq!(
        statuses,
        [JobStatus::Queued, JobStatus::Cancelled, JobStatus::Failed]
    );
    let job = store.get_job(requeued).await.expect("get").expect("exists");
    assert_eq!(job.error.as_ref().map(|e| e.code.as_str()), Some("lost"));
    assert!(!job.cancel_requested);
    assert!(matches!(
        store.finish(fences[0], Outcome::Lost).await,
        Err(Error::StaleAttempt)
    ));
    let attempts = store.attempts(requeued).await.expect("attempts");
    assert_eq!(attempts[0].status, AttemptStatus::Lost);
    let left: Vec<Fence> = store.expired_leases(1000).await.expect("expired");
    assert!(fences.iter().all(|f| !left.contains(f)));
}

/// The owner's retry reopens a failed or cancelled job with a new budget.
pub async fn check_owner_retry(store: Arc<dyn Store>) {
    let mut new = new_job(&owner());
    new.max_attempts = 1;
    let id = create(&store, new).await;
    assert!(
        matches!(store.retry(id).await, Err(Error::Conflict(_))),
        "a queued job is not retried"
    );
    let fence = claim(&store, id).await.attempt.fence();
    assert!(
        matches!(store.retry(id).await, Err(Error::Conflict(_))),
        "nor a running one"
    );
    let err = JobError::new("x", "y");
    store
        .finish(
            fence,
            Outcome::Failed {
                error: err,
                retry_in: None,
            },
        )
        .await
        .expect("finish");
    let c = store.retry(id).await.expect("retry");
    assert_eq!(c.job.status, JobStatus::Queued);
    assert_eq!(c.job.attempts_used, 0);
    assert!(c.job.error.is_none());
    assert_eq!(c.events.len(), 1);
    let again = claim(&store, id).await;
    assert_eq!(again.attempt.number, 2);
    assert!(matches!(store.app_by_job(JobId::new()).await, Ok(None)));
}

/// A job saves one App, fenced, visible by id, by job and in the owner's list;
/// a later attempt's App replaces it.
pub async fn check_app_once_per_job(store: Arc<dyn Store>) {
    let o = owner();
    let id = create(&store, new_job(&o)).await;
    let fence = claim(&store, id).await.attempt.fence();
    let payload = json!({"files": {"main.rs": "fn main() {}"}});
    let (app, evs) = store
        .save_app(
            fence,
            NewApp {
                name: "todo".into(),
                payload: payload.clone(),
            },
        )
        .await
        .expect("save");
    assert_eq!(
        (app.job_id, &app.owner, app.name.as_str(), app.attempt),
        (id, &o, "todo", 1)
    );
    assert_eq!(app.payload, payload);
    assert_eq!(evs.len(), 1);
    assert_eq!(
        evs[0].data,
        EventData::App {
            app_id: app.id,
            name: "todo".into()
        }
    );
    assert!(matches!(
        store
            .save_app(
                fence,
                NewApp {
                    name: "again".into(),
                    payload: json!({})
                }
            )
            .await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store.get_app(app.id).await.expect("get").as_ref(),
        Some(&app)
    );
    assert_eq!(
        store.app_by_job(id).await.expect("by job").as_ref(),
        Some(&app)
    );
    assert_eq!(
        store.list_apps(&o, None, 10).await.expect("list"),
        vec![app.clone()]
    );
    assert!(store
        .list_apps(&owner(), None, 10)
        .await
        .expect("list")
        .is_empty());
    // A later attempt (the first one's outcome was lost) replaces the app, same id.
    store
        .finish(
            fence,
            Outcome::Failed {
                error: JobError::new("e", "m"),
                retry_in: Some(Duration::ZERO),
            },
        )
        .await
        .expect("finish");
    let second = claim(&store, id).await.attempt.fence();
    let (newer, _) = store
        .save_app(
            second,
            NewApp {
                name: "todo v2".into(),
                payload: json!(2),
            },
        )
        .await
        .expect("a later attempt republishes");
    assert_eq!(
        (newer.id, newer.attempt, newer.name.as_str()),
        (app.id, 2, "todo v2")
    );
    assert_eq!(
        store.app_by_job(id).await.expect("by job"),
        Some(newer.clone())
    );
    assert_eq!(
        store.list_apps(&o, None, 10).await.expect("list"),
        vec![newer]
    );
}

/// Cursor pages of an owner's jobs cover every job once, in id order, both ways,
/// filtered by status, and never show another owner's.
pub async fn check_job_pages_complete_and_disjoint(store: Arc<dyn Store>) {
    let (a, b) = (owner(), owner());
    let mut ids = Vec::new();
    for i in 0..23 {
        ids.push(create(&store, new_job(&a)).await);
        if i % 4 == 0 {
            create(&store, new_job(&b)).await;
        }
    }
    for id in ids.iter().take(5) {
        store.request_cancel(*id).await.expect("cancel");
    }
    for newest_first in [false, true] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let q = JobQuery {
                cursor,
                limit: 7,
                newest_first,
                ..JobQuery::default()
            };
            let page = store.list_jobs(&a, &q).await.expect("list");
            assert!(page.len() <= 7);
            if page.is_empty() {
                break;
            }
            assert!(page.iter().all(|j| j.owner == a));
            cursor = page.last().map(|j| j.id);
            seen.extend(page.into_iter().map(|j| j.id));
        }
        let mut expected = ids.clone();
        if newest_first {
            expected.reverse();
        }
        assert_eq!(
            seen, expected,
            "every job once, in order (newest_first: {newest_first})"
        );
    }
    let q = JobQuery {
        status: Some(JobStatus::Cancelled),
        limit: 100,
        ..JobQuery::default()
    };
    let cancelled = store.list_jobs(&a, &q).await.expect("list");
    assert_eq!(
        cancelled.iter().map(|j| j.id).collect::<Vec<_>>(),
        ids[..5].to_vec()
    );
    let q = JobQuery {
        limit: 100,
        ..JobQuery::default()
    };
    assert_eq!(store.list_jobs(&b, &q).await.expect("list").len(), 6);
}

/// Cursor pages of an owner's apps cover every app once, in id order.
pub async fn check_app_pages_complete_and_disjoint(store: Arc<dyn Store>) {
    let o = owner();
    let mut apps = Vec::new();
    for i in 0..9 {
        let id = create(&store, new_job(&o)).await;
        let fence = claim(&store, id).await.attempt.fence();
        let (app, _) = store
            .save_app(
                fence,
                NewApp {
                    name: format!("a{i}"),
                    payload: json!(i),
                },
            )
            .await
            .expect("save");
        apps.push(app.id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_apps(&o, cursor, 4).await.expect("list");
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|a| a.id);
        seen.extend(page.into_iter().map(|a| a.id));
    }
    assert_eq!(seen, apps);
}

/// `events(after, limit)` pages through the log.
pub async fn check_events_after(store: Arc<dyn Store>) {
    let id = create(&store, new_job(&owner())).await;
    let fence = claim(&store, id).await.attempt.fence();
    store
        .append(fence, (0..10).map(|i| log(&i.to_string())).collect())
        .await
        .expect("append");
    let all = store.events(id, 0, 1000).await.expect("events");
    assert_eq!(all.len(), 12);
    assert_seqs(&all, 1);
    let page = store.events(id, 4, 3).await.expect("events");
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6, 7]);
    assert!(store.events(id, 12, 10).await.expect("events").is_empty());
    assert!(store
        .events(JobId::new(), 0, 10)
        .await
        .expect("events")
        .is_empty());
}

/// Due jobs are the queued ones whose time has come, long enough ago.
pub async fn check_due_jobs(store: Arc<dyn Store>) {
    let o = owner();
    let due = create(&store, new_job(&o)).await;
    let mut later = new_job(&o);
    later.run_at = Utc::now() + chrono::Duration::seconds(60);
    let later = create(&store, later).await;
    let running = create(&store, new_job(&o)).await;
    claim(&store, running).await;
    let listed: Vec<JobId> = store
        .due_jobs(Duration::ZERO, 10_000)
        .await
        .expect("due")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(listed.contains(&due));
    assert!(!listed.contains(&later));
    assert!(!listed.contains(&running));
    let overdue: Vec<JobId> = store
        .due_jobs(Duration::from_secs(3600), 10_000)
        .await
        .expect("due")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(!overdue.contains(&due), "not an hour overdue yet");
    let entry = store
        .due_jobs(Duration::ZERO, 10_000)
        .await
        .expect("due")
        .into_iter()
        .find(|d| d.id == due)
        .expect("listed");
    assert_eq!(
        entry.owner, o,
        "a due job names its owner (its fairness group)"
    );
}

/// The event log alone tells the job's status, stage, progress and attempt.
pub async fn check_events_rebuild_the_job(store: Arc<dyn Store>) {
    let id = create(&store, new_job(&owner())).await;
    let fence = claim(&store, id).await.attempt.fence();
    store
        .append(
            fence,
            vec![
                EventData::Stage {
                    stage: "BUILD".into(),
                },
                EventData::Progress { progress: 70 },
            ],
        )
        .await
        .expect("append");
    store
        .finish(
            fence,
            Outcome::Failed {
                error: JobError::new("e", "m"),
                retry_in: Some(Duration::ZERO),
            },
        )
        .await
        .expect("finish");
    let fence = claim(&store, id).await.attempt.fence();
    store
        .finish(fence, Outcome::Succeeded)
        .await
        .expect("finish");
    let job = store.get_job(id).await.expect("get").expect("exists");
    let events = store.events(id, 0, 1000).await.expect("events");
    let (mut status, mut stage, mut progress, mut attempt) = (None, None, 0, 0);
    for e in &events {
        attempt = attempt.max(e.attempt);
        match &e.data {
            EventData::Status { status: s, .. } => status = Some(*s),
            EventData::Stage { stage: s } => stage = Some(s.clone()),
            EventData::Progress { progress: p } => progress = *p,
            _ => {}
        }
    }
    assert_eq!(status, Some(job.status));
    assert_eq!(stage, job.stage);
    assert_eq!(progress, job.progress);
    assert_eq!(attempt, job.attempt);
    assert_eq!(events.last().map(|e| e.seq), Some(job.last_seq));
}

/// `job_detail` answers what `get_job`, `events` and `attempts` answer, read
/// together; `None` for an unknown id.
pub async fn check_job_detail_reads_job_log_and_attempts(store: Arc<dyn Store>) {
    let id = create(&store, new_job(&owner())).await;
    let first = claim(&store, id).await.attempt.fence();
    store
        .append(
            first,
            vec![
                EventData::Stage {
                    stage: "PLANNING".into(),
                },
                EventData::Step(crate::Step::completed("one")),
            ],
        )
        .await
        .expect("append");
    store
        .finish(
            first,
            Outcome::Failed {
                error: crate::JobError::new("boom", "it broke"),
                retry_in: Some(Duration::ZERO),
            },
        )
        .await
        .expect("finish");
    let second = claim(&store, id).await.attempt.fence();
    store
        .save_app(
            second,
            crate::NewApp {
                name: "app".into(),
                payload: json!({"files": {"a.rs": "fn main() {}"}}),
            },
        )
        .await
        .expect("save_app");
    let detail = store
        .job_detail(id)
        .await
        .expect("job_detail")
        .expect("the job exists");
    assert_eq!(
        Some(&detail.job),
        store.get_job(id).await.expect("get_job").as_ref()
    );
    assert_eq!(
        detail.events,
        store.events(id, 0, 1000).await.expect("events")
    );
    assert_eq!(detail.events.len(), 8, "{:?}", detail.events);
    assert_seqs(&detail.events, 1);
    assert_eq!(detail.attempts, store.attempts(id).await.expect("attempts"));
    assert_eq!(detail.attempts.len(), 2);
    assert_eq!(
        detail.attempts[0].error.as_ref().map(|e| e.code.as_str()),
        Some("boom")
    );
    assert_eq!(store.job_detail(JobId::new()).await.expect("unknown"), None);
}

/// An owner's quota of queued jobs is exact under concurrency: of 32
/// concurrent submissions against a quota of 10, exactly 10 are stored and the
/// others are `LimitExceeded`, storing nothing. Another owner has a quota of
/// its own; a queued job that leaves the queue (claimed, cancelled) frees room.
pub async fn check_queued_quota_is_exact(store: Arc<dyn Store>) {
    const QUOTA: u32 = 10;
    let o = owner();
    let with_quota = |o: &Owner| NewJob {
        max_queued: Some(QUOTA),
        webhook: None,
        notify_deployment: false,
        ..new_job(o)
    };
    let results =
        futures::future::join_all((0..32).map(|_| store.create_job(with_quota(&o)))).await;
    let mut admitted = Vec::new();
    for r in results {
        match r {
            Ok(changed) => admitted.push(changed.job.id),
            Err(Error::LimitExceeded(_)) => {}
            Err(e) => panic!("a submission beyond the quota must be LimitExceeded, not {e:?}"),
        }
    }
    assert_eq!(
        admitted.len(),
        QUOTA as usize,
        "exactly the quota is admitted"
    );
    let query = JobQuery {
        limit: 100,
        ..JobQuery::default()
    };
    let stored = store.list_jobs(&o, &query).await.expect("list");
    assert_eq!(
        stored.len(),
        QUOTA as usize,
        "refused submissions store nothing"
    );

    // Full: one more is refused; another owner is not.
    assert!(matches!(
        store.create_job(with_quota(&o)).await,
        Err(Error::LimitExceeded(_))
    ));
    store
        .create_job(with_quota(&owner()))
        .await
        .expect("another owner has a quota of its own");
    // Without a quota, the owner may still submit.
    store.create_job(new_job(&o)).await.expect("no quota");

    // Two jobs leave `queued`: one claimed, one cancelled; the one submitted
    // without a quota still counts. Room for exactly one.
    claim(&store, admitted[0]).await;
    store.request_cancel(admitted[1]).await.expect("cancel");
    store
        .create_job(with_quota(&o))
        .await
        .expect("a job that left the queue frees room");
    assert!(matches!(
        store.create_job(with_quota(&o)).await,
        Err(Error::LimitExceeded(_))
    ));
}
