//! The review gate's checks: the [`Store`] suite's (a reviewed success
//! waits, approve, reject, their outbox, one decision wins) and an engine
//! scenario (a rejected result's next attempt sees the comment).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::scenarios::{Backends, Harness};
use super::store::new_job;
use super::unique;
use crate::review::REJECTED;
use crate::{
    AttemptStatus, Error, EventData, Fence, JobError, JobId, JobStatus, NewApp, NewJob, Outcome,
    Owner, ReviewDecision, Store, Submit,
};

const LEASE: Duration = Duration::from_secs(30);
const HOOK: &str = "https://hooks.example.com/review";

fn reviewed(max_attempts: u32) -> NewJob {
    let mut job = new_job(&Owner::new(unique("owner")));
    job.review = true;
    job.max_attempts = max_attempts;
    job
}

/// Claims `id` and returns the new attempt's fence.
async fn claim(store: &Arc<dyn Store>, id: JobId) -> Fence {
    store
        .claim(id, "w1", LEASE)
        .await
        .expect("claim")
        .expect("claimable")
        .attempt
        .fence()
}

/// Creates `new`, runs one attempt to success (with an App), and returns
/// the job's id.
async fn awaiting(store: &Arc<dyn Store>, new: NewJob) -> JobId {
    let id = store.create_job(new).await.expect("create").job.id;
    succeed(store, id).await;
    id
}

/// Claims `id` and ends its attempt with an App and a success.
async fn succeed(store: &Arc<dyn Store>, id: JobId) {
    let fence = claim(store, id).await;
    store
        .save_app(
            fence,
            NewApp {
                name: "result".into(),
                payload: json!({"attempt": fence.attempt}),
            },
        )
        .await
        .expect("save app");
    let changed = store
        .finish(fence, Outcome::Succeeded)
        .await
        .expect("finish");
    assert_eq!(changed.job.status, JobStatus::AwaitingReview);
}

fn reject(comment: &str) -> ReviewDecision {
    ReviewDecision::reject(comment).expect("a valid comment")
}

/// A job submitted with review whose attempt succeeds waits in
/// `awaiting_review` — attempt `succeeded`, not finished, its App visible —
/// and an approval makes it `succeeded`, once. A job without review still
/// succeeds at once.
pub async fn check_reviewed_success_waits_for_approval(store: Arc<dyn Store>) {
    let plain = store
        .create_job(new_job(&Owner::new(unique("owner"))))
        .await
        .expect("create")
        .job;
    assert!(!plain.review);
    let f = claim(&store, plain.id).await;
    let done = store.finish(f, Outcome::Succeeded).await.expect("finish");
    assert_eq!(done.job.status, JobStatus::Succeeded);

    let created = store.create_job(reviewed(3)).await.expect("create").job;
    assert!(created.review);
    assert_eq!(created.review_comment, None);
    let fence = claim(&store, created.id).await;
    store
        .save_app(
            fence,
            NewApp {
                name: "result".into(),
                payload: json!({}),
            },
        )
        .await
        .expect("save app");
    let held = store
        .finish(fence, Outcome::Succeeded)
        .await
        .expect("finish");
    assert_eq!(held.job.status, JobStatus::AwaitingReview);
    assert_eq!(held.job.finished_at, None);
    assert!(held.job.review);
    assert_eq!(held.events.len(), 1);
    assert_eq!(held.events[0].status(), Some(JobStatus::AwaitingReview));
    assert_eq!(held.events[0].seq, held.job.last_seq);
    let attempts = store.attempts(created.id).await.expect("attempts");
    assert_eq!(attempts[0].status, AttemptStatus::Succeeded);
    assert!(store.app_by_job(created.id).await.expect("app").is_some());
    // The fence is spent: the attempt can no longer write.
    assert!(matches!(
        store.finish(fence, Outcome::Succeeded).await,
        Err(Error::StaleAttempt)
    ));
    let read = store.get_job(created.id).await.expect("get").expect("job");
    assert_eq!(read, held.job);

    let approved = store
        .review(created.id, ReviewDecision::Approve)
        .await
        .expect("approve");
    assert_eq!(approved.job.status, JobStatus::Succeeded);
    assert!(approved.job.finished_at.is_some());
    assert_eq!(approved.job.error, None);
    assert_eq!(
        approved.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [held.job.last_seq + 1]
    );
    assert_eq!(approved.events[0].status(), Some(JobStatus::Succeeded));
    assert_eq!(
        store.get_job(created.id).await.expect("get").expect("job"),
        approved.job
    );
    // Decided: another decision is a conflict and changes nothing.
    for decision in [ReviewDecision::Approve, reject("too late")] {
        assert!(matches!(
            store.review(created.id, decision).await,
            Err(Error::Conflict(_))
        ));
    }
    let after = store.get_job(created.id).await.expect("get").expect("job");
    assert_eq!(after, approved.job);
    // A job that is not awaiting review cannot be reviewed; an unknown one
    // is not found.
    assert!(matches!(
        store.review(plain.id, ReviewDecision::Approve).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.review(JobId::new(), ReviewDecision::Approve).await,
        Err(Error::NotFound { .. })
    ));
}

/// A rejection with attempts left queues the job again, due now, with the
/// comment on the job (and as the error `rejected` of its status event); the
/// next claim carries the comment. A rejection with the attempts spent
/// fails the job with the error `rejected`.
pub async fn check_rejection_queues_with_the_comment_then_fails(store: Arc<dyn Store>) {
    let id = awaiting(&store, reviewed(2)).await;
    let before = store.get_job(id).await.expect("get").expect("job");
    let queued = store
        .review(id, reject("make it blue"))
        .await
        .expect("reject");
    let job = &queued.job;
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.review_comment.as_deref(), Some("make it blue"));
    assert_eq!(
        job.error,
        Some(JobError::new(REJECTED, "make it blue")),
        "the job's error says why it runs again"
    );
    assert_eq!(job.finished_at, None);
    assert!(job.run_at <= Utc::now());
    assert_eq!(job.attempts_used, 1, "a rejection spends no attempt itself");
    assert_eq!(queued.events.len(), 1);
    assert_eq!(queued.events[0].seq, before.last_seq + 1);
    match &queued.events[0].data {
        EventData::Status {
            status,
            error: Some(error),
            run_at: Some(_),
        } => {
            assert_eq!(*status, JobStatus::Queued);
            assert_eq!(error, &JobError::new(REJECTED, "make it blue"));
        }
        other => panic!("expected a queued status event with the comment, got {other:?}"),
    }
    assert_eq!(
        store.get_job(id).await.expect("get").expect("job"),
        queued.job
    );

    // The next attempt's claim carries the comment.
    let claimed = store
        .claim(id, "w2", LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(claimed.attempt.number, 2);
    assert_eq!(claimed.job.review_comment.as_deref(), Some("make it blue"));
    let fence = claimed.attempt.fence();
    let held = store
        .finish(fence, Outcome::Succeeded)
        .await
        .expect("finish");
    assert_eq!(held.job.status, JobStatus::AwaitingReview);

    // Both attempts spent: the rejection fails the job.
    let failed = store
        .review(id, reject("still wrong"))
        .await
        .expect("reject");
    assert_eq!(failed.job.status, JobStatus::Failed);
    assert_eq!(
        failed.job.error,
        Some(JobError::new(REJECTED, "still wrong"))
    );
    assert_eq!(failed.job.review_comment.as_deref(), Some("still wrong"));
    assert!(failed.job.finished_at.is_some());
    assert_eq!(failed.events[0].status(), Some(JobStatus::Failed));
    assert_eq!(
        store.get_job(id).await.expect("get").expect("job"),
        failed.job
    );
    let log = store.events(id, 0, 1000).await.expect("events");
    assert_eq!(
        log.iter().filter_map(|e| e.status()).collect::<Vec<_>>(),
        [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::AwaitingReview,
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::AwaitingReview,
            JobStatus::Failed,
        ]
    );
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "gap-free: {log:?}");
    }
}

/// The webhook outbox of the review gate: `awaiting_review` writes one
/// delivery per destination, an approval one `succeeded` delivery (so the
/// job's success is reported once), a rejection that queues the job none,
/// one that fails it a `failed` delivery, and a cancel of a job awaiting
/// review a `cancelled` one.
pub async fn check_review_writes_the_outbox(store: Arc<dyn Store>) {
    // What was reported to where, in a stable order: the tests compare
    // counts, not the order of deliveries written together.
    let statuses = |logs: Vec<crate::DeliveryLog>| {
        let mut got = logs
            .into_iter()
            .map(|l| (l.delivery.job_status, l.delivery.destination))
            .collect::<Vec<_>>();
        got.sort_by_key(|(s, d)| (s.as_str(), d.as_str()));
        got
    };
    let sorted = |mut want: Vec<(JobStatus, crate::Destination)>| {
        want.sort_by_key(|(s, d)| (s.as_str(), d.as_str()));
        want
    };
    use crate::Destination::{Deployment, Job};

    let mut new = reviewed(3);
    new.webhook = Some(HOOK.to_owned());
    let id = awaiting(&store, new).await;
    let logs = store.deliveries(id).await.expect("deliveries");
    assert_eq!(logs.len(), 1, "{logs:?}");
    let held = store.get_job(id).await.expect("get").expect("job");
    assert_eq!(logs[0].delivery.url.as_deref(), Some(HOOK));
    assert_eq!(logs[0].delivery.occurred_at, held.updated_at);
    store
        .review(id, ReviewDecision::Approve)
        .await
        .expect("approve");
    let logs = store.deliveries(id).await.expect("deliveries");
    let job = store.get_job(id).await.expect("get").expect("job");
    let success = logs
        .iter()
        .find(|l| l.delivery.job_status == JobStatus::Succeeded)
        .expect("a succeeded delivery");
    assert_eq!(
        success.delivery.occurred_at,
        job.finished_at.expect("finished")
    );
    assert_eq!(
        statuses(logs),
        sorted(vec![
            (JobStatus::AwaitingReview, Job),
            (JobStatus::Succeeded, Job)
        ])
    );

    // Both destinations; a rejection that queues writes none, the one that
    // fails writes one per destination.
    let mut new = reviewed(2);
    new.webhook = Some(HOOK.to_owned());
    new.notify_deployment = true;
    let id = awaiting(&store, new).await;
    store.review(id, reject("again")).await.expect("reject");
    assert_eq!(store.deliveries(id).await.expect("deliveries").len(), 2);
    succeed(&store, id).await;
    store.review(id, reject("no")).await.expect("reject");
    let logs = store.deliveries(id).await.expect("deliveries");
    for l in logs
        .iter()
        .filter(|l| l.delivery.job_status == JobStatus::Failed)
    {
        assert_eq!(l.delivery.job_error, Some(JobError::new(REJECTED, "no")));
    }
    assert_eq!(
        statuses(logs),
        sorted(vec![
            (JobStatus::AwaitingReview, Job),
            (JobStatus::AwaitingReview, Deployment),
            (JobStatus::AwaitingReview, Job),
            (JobStatus::AwaitingReview, Deployment),
            (JobStatus::Failed, Job),
            (JobStatus::Failed, Deployment),
        ])
    );

    // An owner's cancel of a job awaiting review ends it.
    let mut new = reviewed(3);
    new.webhook = Some(HOOK.to_owned());
    let id = awaiting(&store, new).await;
    let cancelled = store.request_cancel(id).await.expect("cancel");
    assert_eq!(cancelled.job.status, JobStatus::Cancelled);
    assert_eq!(
        statuses(store.deliveries(id).await.expect("deliveries")),
        sorted(vec![
            (JobStatus::AwaitingReview, Job),
            (JobStatus::Cancelled, Job)
        ])
    );

    // A job without destinations writes none.
    let id = awaiting(&store, reviewed(3)).await;
    store
        .review(id, ReviewDecision::Approve)
        .await
        .expect("approve");
    assert!(store.deliveries(id).await.expect("deliveries").is_empty());
}

/// Of concurrent decisions on one job, exactly one applies: the others are
/// conflicts, and the log has one event for it.
pub async fn check_concurrent_decisions_apply_once(store: Arc<dyn Store>) {
    for round in 0..4 {
        let id = awaiting(&store, reviewed(3)).await;
        let before = store.get_job(id).await.expect("get").expect("job");
        let decisions = (0..6).map(|i| {
            let store = store.clone();
            let decision = if (i + round) % 2 == 0 {
                ReviewDecision::Approve
            } else {
                reject(&format!("reviewer {i}"))
            };
            tokio::spawn(async move { store.review(id, decision).await })
        });
        let mut applied = Vec::new();
        for handle in decisions.collect::<Vec<_>>() {
            match handle.await.expect("join") {
                Ok(changed) => applied.push(changed),
                Err(Error::Conflict(_)) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(applied.len(), 1, "exactly one decision applies");
        let job = store.get_job(id).await.expect("get").expect("job");
        assert_eq!(job, applied[0].job);
        assert_eq!(job.last_seq, before.last_seq + 1);
        let log = store.events(id, 0, 1000).await.expect("events");
        assert_eq!(log.len() as u64, job.last_seq);
    }
}

/// End to end on an engine with a worker: a rejected result's next attempt
/// sees the reviewer's comment through its callbacks (the stub puts it in
/// its App), an approval makes the job `succeeded`; a watcher sees every
/// transition; a rerun of the finished job is a new job with its spec.
pub async fn check_reject_then_approve_through_the_engine(backends: Backends) {
    let h = Harness::new(backends, 1, Duration::ZERO);
    let worker = h.worker();
    let submit = Submit::new("review me")
        .params(json!({"steps": 1}))
        .max_attempts(2)
        .review(true);
    let job = h.engine.submit(&h.owner, submit).await.expect("submit");
    assert!(job.review);
    h.wait_for(job.id, JobStatus::AwaitingReview).await;
    let first = h.engine.app_by_job(&h.owner, job.id).await.expect("app");
    assert_eq!(first.payload.get("review_comment"), None);

    // Another owner can neither see nor decide.
    let stranger = Owner::new(unique("stranger"));
    assert!(matches!(
        h.engine.approve(&stranger, job.id).await,
        Err(Error::NotFound { .. })
    ));
    // A blank comment is refused, and changes nothing.
    assert!(matches!(
        h.engine.reject(&h.owner, job.id, " ").await,
        Err(Error::Invalid {
            field: "comment",
            ..
        })
    ));
    // Not finished: no rerun.
    assert!(matches!(
        h.engine.rerun(&h.owner, job.id).await,
        Err(Error::Conflict(_))
    ));

    let queued = h
        .engine
        .reject(&h.owner, job.id, "use the brand colours")
        .await
        .expect("reject");
    assert_eq!(queued.status, JobStatus::Queued);
    let held = h.wait_for(job.id, JobStatus::AwaitingReview).await;
    assert_eq!(held.attempt, 2);
    let second = h.engine.app_by_job(&h.owner, job.id).await.expect("app");
    assert_eq!(second.attempt, 2);
    assert_eq!(
        second.payload.get("review_comment"),
        Some(&json!("use the brand colours")),
        "the new attempt saw the comment"
    );
    let approved = h.engine.approve(&h.owner, job.id).await.expect("approve");
    assert_eq!(approved.status, JobStatus::Succeeded);

    let events = h.watch_all(job.id, 0).await;
    super::assert::assert_gap_free(&events, 1);
    assert_eq!(
        events.iter().filter_map(|e| e.status()).collect::<Vec<_>>(),
        [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::AwaitingReview,
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::AwaitingReview,
            JobStatus::Succeeded,
        ]
    );
    assert!(events.iter().any(|e| matches!(
        &e.data,
        EventData::Log(line) if line.message == "review comment: use the brand colours"
    )));

    let rerun = h.engine.rerun(&h.owner, job.id).await.expect("rerun");
    assert_ne!(rerun.id, job.id);
    assert_eq!(rerun.status, JobStatus::Queued);
    assert_eq!(
        (
            &rerun.kind,
            &rerun.prompt,
            &rerun.params,
            rerun.priority,
            rerun.max_attempts,
            rerun.timeout_ms,
            rerun.review,
        ),
        (
            &job.kind,
            &job.prompt,
            &job.params,
            job.priority,
            job.max_attempts,
            job.timeout_ms,
            job.review,
        )
    );
    assert_eq!(
        (rerun.attempts_used, rerun.review_comment.clone()),
        (0, None)
    );
    h.wait_for(rerun.id, JobStatus::AwaitingReview).await;
    let first_of_rerun = h.engine.app_by_job(&h.owner, rerun.id).await.expect("app");
    assert_eq!(first_of_rerun.payload.get("review_comment"), None);
    worker.shutdown().await;
}
