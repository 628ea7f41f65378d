//! The workflow checks: projects, dependencies and batches, on the
//! [`Store`] (listed in `store_suite!`) and through the [`Engine`](crate::Engine) with a
//! worker (listed in `engine_suite!`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::scenarios::{Backends, Harness};
use super::store::new_job;
use super::unique;
use crate::transition::DEPENDENCY_FAILED;
use crate::workflow::BatchJob;
use crate::{
    Changed, Error, EventData, JobError, JobEvent, JobId, JobQuery, JobStatus, NewJob, Outcome,
    Owner, Store, Submit,
};

const LEASE: Duration = Duration::from_secs(30);

fn owner() -> Owner {
    Owner::new(unique("owner"))
}

fn after(owner: &Owner, deps: &[JobId]) -> NewJob {
    NewJob {
        depends_on: deps.to_vec(),
        ..new_job(owner)
    }
}

async fn create(store: &Arc<dyn Store>, new: NewJob) -> crate::Job {
    store.create_job(new).await.expect("create_job").job
}

async fn status(store: &Arc<dyn Store>, id: JobId) -> JobStatus {
    store
        .get_job(id)
        .await
        .expect("get")
        .expect("exists")
        .status
}

/// Claims the job and ends its attempt with `outcome`.
async fn run(store: &Arc<dyn Store>, id: JobId, outcome: Outcome) -> Changed {
    let claim = store
        .claim(id, "w1", LEASE)
        .await
        .expect("claim")
        .expect("the job is claimable");
    store
        .finish(claim.attempt.fence(), outcome)
        .await
        .expect("finish")
}

fn fatal() -> Outcome {
    Outcome::Failed {
        error: JobError::new("boom", "it broke"),
        retry_in: None,
    }
}

fn ids(changes: &[Changed]) -> BTreeSet<JobId> {
    changes.iter().map(|c| c.job.id).collect()
}

fn statuses(events: &[JobEvent]) -> Vec<JobStatus> {
    events.iter().filter_map(JobEvent::status).collect()
}

/// Checks that every change in `moved` carries its job's last events, in
/// its log at the seqs given, and that the job is as answered.
async fn assert_logged(store: &Arc<dyn Store>, moved: &[Changed]) {
    for c in moved {
        assert!(
            !c.events.is_empty(),
            "{:?} moved without an event",
            c.job.id
        );
        assert!(c.dependents.is_empty(), "dependents are a flat list");
        let log = store.events(c.job.id, 0, 1000).await.expect("events");
        assert_eq!(
            &log[log.len() - c.events.len()..],
            &c.events[..],
            "the answer's events are the log's last"
        );
        assert_eq!(c.events.last().map(|e| e.seq), Some(c.job.last_seq));
        let stored = store.get_job(c.job.id).await.expect("get").expect("exists");
        assert_eq!(stored.status, c.job.status);
    }
}

/// A diamond (A; B and C after A; D after B and C) runs in order: only A is
/// claimable at first, A's success releases B and C (and only them), B's
/// success releases nothing while C runs, C's releases D. Each release is a
/// `queued` status event after the first `waiting` one.
pub async fn check_diamond_runs_in_order(store: Arc<dyn Store>) {
    let o = owner();
    let a = create(&store, new_job(&o)).await;
    assert_eq!(a.status, JobStatus::Queued);
    assert!(a.depends_on.is_empty());
    let b = create(&store, after(&o, &[a.id])).await;
    let c = create(&store, after(&o, &[a.id])).await;
    let d = create(&store, after(&o, &[b.id, c.id])).await;
    for j in [&b, &c, &d] {
        assert_eq!(j.status, JobStatus::Waiting);
        let log = store.events(j.id, 0, 10).await.expect("events");
        assert_eq!(statuses(&log), [JobStatus::Waiting]);
    }
    assert_eq!(d.depends_on, vec![b.id, c.id]);
    let stored = store.get_job(d.id).await.expect("get").expect("exists");
    assert_eq!(stored.depends_on, vec![b.id, c.id], "depends_on is kept");
    for j in [&b, &c, &d] {
        assert!(
            store
                .claim(j.id, "w1", LEASE)
                .await
                .expect("claim")
                .is_none(),
            "a waiting job is not claimable"
        );
    }
    let due: BTreeSet<JobId> = store
        .due_jobs(Duration::ZERO, 10_000)
        .await
        .expect("due")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(due.contains(&a.id) && !due.contains(&b.id) && !due.contains(&d.id));

    let done = run(&store, a.id, Outcome::Succeeded).await;
    assert_eq!(done.job.status, JobStatus::Succeeded);
    assert_eq!(ids(&done.dependents), BTreeSet::from([b.id, c.id]));
    for moved in &done.dependents {
        assert_eq!(moved.job.status, JobStatus::Queued);
        assert!(moved.job.run_at <= chrono::Utc::now());
        assert_eq!(statuses(&moved.events), [JobStatus::Queued]);
    }
    assert_logged(&store, &done.dependents).await;
    assert_eq!(status(&store, d.id).await, JobStatus::Waiting);

    let done = run(&store, b.id, Outcome::Succeeded).await;
    assert!(done.dependents.is_empty(), "D still waits for C");
    assert_eq!(status(&store, d.id).await, JobStatus::Waiting);
    let done = run(&store, c.id, Outcome::Succeeded).await;
    assert_eq!(ids(&done.dependents), BTreeSet::from([d.id]));
    assert_logged(&store, &done.dependents).await;
    let done = run(&store, d.id, Outcome::Succeeded).await;
    assert!(done.dependents.is_empty());
    let log = store.events(d.id, 0, 100).await.expect("events");
    assert_eq!(
        statuses(&log),
        [
            JobStatus::Waiting,
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded
        ]
    );
}

/// A failed job cancels exactly its waiting descendants, transitively, with
/// `dependency_failed`, each with its status event and its webhook outbox
/// rows; other jobs stay as they were. An owner's cancel of a waiting job
/// cancels its own descendants the same way; a retry of the failed job
/// brings none of them back.
pub async fn check_failed_dependency_cancels_its_descendants(store: Arc<dyn Store>) {
    let o = owner();
    let a = create(&store, new_job(&o)).await;
    let x = create(&store, new_job(&o)).await;
    let b = create(
        &store,
        NewJob {
            webhook: Some("https://example.com/hook".into()),
            ..after(&o, &[a.id])
        },
    )
    .await;
    let c = create(&store, after(&o, &[b.id])).await;
    let d = create(&store, after(&o, &[a.id, x.id])).await;
    let y = create(&store, after(&o, &[x.id])).await;
    let z = create(&store, after(&o, &[y.id])).await;

    let failed = run(&store, a.id, fatal()).await;
    assert_eq!(failed.job.status, JobStatus::Failed);
    assert_eq!(ids(&failed.dependents), BTreeSet::from([b.id, c.id, d.id]));
    assert_logged(&store, &failed.dependents).await;
    for moved in &failed.dependents {
        assert_eq!(moved.job.status, JobStatus::Cancelled);
        assert!(moved.job.finished_at.is_some());
        let error = moved.job.error.as_ref().expect("an error");
        assert_eq!(error.code, DEPENDENCY_FAILED);
        match &moved.events[..] {
            [JobEvent {
                data:
                    EventData::Status {
                        status: JobStatus::Cancelled,
                        error: Some(e),
                        ..
                    },
                ..
            }] => assert_eq!(e.code, DEPENDENCY_FAILED),
            other => panic!("expected one cancelled status event, got {other:?}"),
        }
    }
    let hooks = store.deliveries(b.id).await.expect("deliveries");
    assert_eq!(hooks.len(), 1, "a cancelled dependent fires its webhook");
    assert_eq!(hooks[0].delivery.job_status, JobStatus::Cancelled);
    assert_eq!(status(&store, x.id).await, JobStatus::Queued);
    assert_eq!(status(&store, y.id).await, JobStatus::Waiting);
    assert_eq!(status(&store, z.id).await, JobStatus::Waiting);

    // The owner's cancel of a waiting job cancels its descendants.
    let cancelled = store.request_cancel(y.id).await.expect("cancel");
    assert_eq!(cancelled.job.status, JobStatus::Cancelled);
    assert_eq!(ids(&cancelled.dependents), BTreeSet::from([z.id]));
    assert_logged(&store, &cancelled.dependents).await;
    assert_eq!(status(&store, x.id).await, JobStatus::Queued);

    // A retry of the failed dependency brings no dependent back.
    let retried = store.retry(a.id).await.expect("retry");
    assert_eq!(retried.job.status, JobStatus::Queued);
    assert!(retried.dependents.is_empty());
    let done = run(&store, a.id, Outcome::Succeeded).await;
    assert!(
        done.dependents.is_empty(),
        "cancelled dependents stay cancelled"
    );
    assert_eq!(status(&store, b.id).await, JobStatus::Cancelled);
}

/// At creation, dependencies are checked in the store: an unknown job,
/// another owner's, or one that failed or was cancelled is
/// [`Invalid`](Error::Invalid) `depends_on`, and nothing is created; a
/// dependency that succeeded already counts as done (the job is `queued`).
pub async fn check_dependencies_are_checked_at_creation(store: Arc<dyn Store>) {
    let o = owner();
    let foreign = create(&store, new_job(&owner())).await;
    let failed = create(&store, new_job(&o)).await;
    run(&store, failed.id, fatal()).await;
    let cancelled = create(&store, new_job(&o)).await;
    store.request_cancel(cancelled.id).await.expect("cancel");
    for bad in [JobId::new(), foreign.id, failed.id, cancelled.id] {
        let new = after(&o, &[bad]);
        let id = new.id;
        match store.create_job(new).await {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "depends_on"),
            other => panic!("depends_on {bad}: expected Invalid, got {other:?}"),
        }
        assert!(store.get_job(id).await.expect("get").is_none());
    }
    let done = create(&store, new_job(&o)).await;
    run(&store, done.id, Outcome::Succeeded).await;
    let j = create(&store, after(&o, &[done.id])).await;
    assert_eq!(j.status, JobStatus::Queued);
    let log = store.events(j.id, 0, 10).await.expect("events");
    assert_eq!(statuses(&log), [JobStatus::Queued]);
    assert!(store
        .claim(j.id, "w1", LEASE)
        .await
        .expect("claim")
        .is_some());
}

/// Jobs whose dependencies end at the same time: two dependencies of one
/// job succeeding concurrently release it exactly once, and a job created
/// while its dependency succeeds is never left waiting.
pub async fn check_concurrent_ends_release_once(store: Arc<dyn Store>) {
    let o = owner();
    for _ in 0..8 {
        let a = create(&store, new_job(&o)).await;
        let b = create(&store, new_job(&o)).await;
        let c = create(&store, after(&o, &[a.id, b.id])).await;
        let fa = store
            .claim(a.id, "w1", LEASE)
            .await
            .expect("claim")
            .expect("a");
        let fb = store
            .claim(b.id, "w2", LEASE)
            .await
            .expect("claim")
            .expect("b");
        let (ra, rb) = tokio::join!(
            store.finish(fa.attempt.fence(), Outcome::Succeeded),
            store.finish(fb.attempt.fence(), Outcome::Succeeded),
        );
        let released: Vec<JobId> = ra
            .expect("finish a")
            .dependents
            .into_iter()
            .chain(rb.expect("finish b").dependents)
            .map(|c| c.job.id)
            .collect();
        assert_eq!(released, vec![c.id], "released once, by the second success");
        let log = store.events(c.id, 0, 10).await.expect("events");
        assert_eq!(statuses(&log), [JobStatus::Waiting, JobStatus::Queued]);

        let d = create(&store, new_job(&o)).await;
        let fd = store
            .claim(d.id, "w1", LEASE)
            .await
            .expect("claim")
            .expect("d");
        let late = after(&o, &[d.id]);
        let (finished, created) = tokio::join!(
            store.finish(fd.attempt.fence(), Outcome::Succeeded),
            store.create_job(late),
        );
        let created = created.expect("create");
        let finished = finished.expect("finish");
        let now = status(&store, created.job.id).await;
        assert_eq!(now, JobStatus::Queued, "never left waiting");
        let by_finish = finished
            .dependents
            .iter()
            .any(|c| c.job.id == created.job.id);
        assert_eq!(
            by_finish,
            created.job.status == JobStatus::Waiting,
            "released by the finish exactly when it was created waiting"
        );
    }
}

/// `create_jobs` creates a whole batch in order (a job may depend on an
/// earlier one), or nothing when one of them is refused.
pub async fn check_create_jobs_is_all_or_none(store: Arc<dyn Store>) {
    let o = owner();
    let first = new_job(&o);
    let second = after(&o, &[first.id]);
    let bad = after(&o, &[create(&store, new_job(&owner())).await.id]);
    let batch = vec![first.clone(), second.clone(), bad.clone()];
    match store.create_jobs(batch).await {
        Err(Error::Invalid { field, .. }) => assert_eq!(field, "depends_on"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    for id in [first.id, second.id, bad.id] {
        assert!(
            store.get_job(id).await.expect("get").is_none(),
            "nothing created"
        );
    }
    let dup = vec![first.clone(), first.clone()];
    assert!(matches!(
        store.create_jobs(dup).await,
        Err(Error::Conflict(_))
    ));
    assert!(store.get_job(first.id).await.expect("get").is_none());

    let made = store
        .create_jobs(vec![first.clone(), second.clone()])
        .await
        .expect("create_jobs");
    assert_eq!(made.len(), 2);
    assert_eq!(made[0].job.id, first.id);
    assert_eq!(made[0].job.status, JobStatus::Queued);
    assert_eq!(made[1].job.status, JobStatus::Waiting);
    assert_eq!(made[1].events.len(), 1);
    let done = run(&store, first.id, Outcome::Succeeded).await;
    assert_eq!(ids(&done.dependents), BTreeSet::from([second.id]));
}

/// Jobs list by project and by kind (with status too); `projects` counts an
/// owner's jobs per project and status, and sees no one else's.
pub async fn check_projects_and_list_filters(store: Arc<dyn Store>) {
    let o = owner();
    let in_project = |project: &str, kind: &str| NewJob {
        project: Some(project.into()),
        kind: kind.into(),
        ..new_job(&o)
    };
    let a1 = create(&store, in_project("alpha", "build")).await;
    let a2 = create(&store, in_project("alpha", "test")).await;
    // A waiting job of the project.
    let a3 = NewJob {
        project: Some("alpha".into()),
        ..after(&o, &[a1.id])
    };
    let a3 = create(&store, a3).await;
    let b1 = create(&store, in_project("beta", "build")).await;
    run(&store, b1.id, Outcome::Succeeded).await;
    create(
        &store,
        NewJob {
            project: Some("alpha".into()),
            ..new_job(&owner())
        },
    )
    .await;
    assert_eq!(a1.project.as_deref(), Some("alpha"));

    let list = |q: JobQuery| {
        let store = store.clone();
        let o = o.clone();
        async move {
            store
                .list_jobs(&o, &JobQuery { limit: 100, ..q })
                .await
                .expect("list")
                .into_iter()
                .map(|j| j.id)
                .collect::<Vec<_>>()
        }
    };
    let alpha = list(JobQuery {
        project: Some("alpha".into()),
        ..JobQuery::default()
    })
    .await;
    assert_eq!(alpha, vec![a1.id, a2.id, a3.id]);
    let build = list(JobQuery {
        kind: Some("build".into()),
        ..JobQuery::default()
    })
    .await;
    assert_eq!(build, vec![a1.id, b1.id]);
    let alpha_build = list(JobQuery {
        project: Some("alpha".into()),
        kind: Some("build".into()),
        newest_first: true,
        ..JobQuery::default()
    })
    .await;
    assert_eq!(alpha_build, vec![a1.id]);
    let alpha_waiting = list(JobQuery {
        project: Some("alpha".into()),
        status: Some(JobStatus::Waiting),
        ..JobQuery::default()
    })
    .await;
    assert_eq!(alpha_waiting, vec![a3.id]);
    let none = list(JobQuery {
        project: Some("gamma".into()),
        ..JobQuery::default()
    })
    .await;
    assert!(none.is_empty());

    let projects = store.projects(&o).await.expect("projects");
    let got: Vec<(String, u64, HashMap<String, u64>)> = projects
        .into_iter()
        .map(|p| (p.name, p.total, p.counts.into_iter().collect()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "alpha".to_owned(),
                3,
                HashMap::from([("queued".to_owned(), 2), ("waiting".to_owned(), 1)])
            ),
            (
                "beta".to_owned(),
                1,
                HashMap::from([("succeeded".to_owned(), 1)])
            ),
        ]
    );
    assert!(store.projects(&owner()).await.expect("projects").is_empty());
}

/// Through the engine and a worker: a diamond submitted as one batch, by
/// local references, runs in dependency order (each job starts after every
/// job it depends on succeeded), and a dependency's fatal failure cancels
/// its dependents.
pub async fn check_batch_diamond_runs_in_order(backends: Backends) {
    let h = Harness::new(backends, 1, Duration::from_millis(20));
    let job = |r: &str| BatchJob::new(r, Submit::new(format!("step {r}")).kind(h.kind.clone()));
    let jobs = h
        .engine
        .submit_batch(
            &h.owner,
            vec![
                job("d").after(["b", "c"]),
                job("b").after(["a"]),
                job("a"),
                job("c").after(["a"]),
            ],
        )
        .await
        .expect("batch");
    let [d, b, a, c] = &jobs[..] else {
        panic!("four jobs, got {jobs:?}")
    };
    assert_eq!(a.status, JobStatus::Queued);
    for j in [b, c, d] {
        assert_eq!(j.status, JobStatus::Waiting);
    }
    assert_eq!(
        d.depends_on.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([b.id, c.id])
    );
    let worker = h.worker();
    let mut runs = HashMap::new();
    for j in &jobs {
        let done = h.wait_for(j.id, JobStatus::Succeeded).await;
        let attempts = h.engine.attempts(&h.owner, j.id).await.expect("attempts");
        assert_eq!(attempts.len(), 1);
        runs.insert(
            j.id,
            (attempts[0].started_at, done.finished_at.expect("finished")),
        );
    }
    let starts_after = |later: JobId, earlier: JobId| {
        assert!(
            runs[&later].0 >= runs[&earlier].1,
            "{later} started before {earlier} finished"
        );
    };
    starts_after(b.id, a.id);
    starts_after(c.id, a.id);
    starts_after(d.id, b.id);
    starts_after(d.id, c.id);
    let events = h.watch_all(d.id, 0).await;
    assert_eq!(
        statuses(&events),
        [
            JobStatus::Waiting,
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded
        ]
    );

    // A fatal failure cancels the dependents, which a watcher sees end.
    let failing = h
        .engine
        .submit(
            &h.owner,
            // Due a moment later, so that it cannot have failed before its
            // dependent is submitted (which would refuse the submission).
            Submit::new("fails")
                .kind(h.kind.clone())
                .params(json!({"fail": "fatal"}))
                .run_at(chrono::Utc::now() + chrono::Duration::milliseconds(500)),
        )
        .await
        .expect("submit");
    let dependent = h
        .engine
        .submit(
            &h.owner,
            Submit::new("never")
                .kind(h.kind.clone())
                .depends_on([failing.id]),
        )
        .await
        .expect("submit");
    assert_eq!(dependent.status, JobStatus::Waiting);
    let events = h.watch_all(dependent.id, 0).await;
    assert_eq!(
        statuses(&events),
        [JobStatus::Waiting, JobStatus::Cancelled]
    );
    let job = h.engine.get(&h.owner, dependent.id).await.expect("get");
    assert_eq!(
        job.error.map(|e| e.code).as_deref(),
        Some(DEPENDENCY_FAILED)
    );
    worker.shutdown().await;
}

/// A batch with a cycle, an unknown reference, a foreign or unknown job
/// id, or one bad item creates nothing, and its error names the item.
pub async fn check_bad_batch_creates_nothing(backends: Backends) {
    let h = Harness::new(backends, 1, Duration::ZERO);
    let foreign = h.other_owner().submit(json!({})).await;
    let job = |r: &str| BatchJob::new(r, Submit::new(format!("step {r}")).kind(h.kind.clone()));
    let cases: Vec<(Vec<BatchJob>, &str)> = vec![
        (
            vec![job("a"), job("b").after(["a", "c"]), job("c").after(["b"])],
            "cycle",
        ),
        (vec![job("a"), job("b").after(["nope"])], "item 1 (`b`)"),
        (
            vec![job("a"), job("b").after([foreign.id.to_string()])],
            "item 1 (`b`)",
        ),
        (
            vec![job("a").after([JobId::new().to_string()]), job("b")],
            "item 0 (`a`)",
        ),
        (
            vec![
                job("a"),
                BatchJob::new("b", Submit::new("").kind(h.kind.clone())),
            ],
            "item 1 (`b`)",
        ),
        (vec![job("a"), job("a")], "same reference"),
        (vec![], "at least one"),
    ];
    for (batch, names) in cases {
        match h.engine.submit_batch(&h.owner, batch).await {
            Err(Error::Invalid { field, reason }) => {
                assert_eq!(field, "jobs");
                assert!(reason.contains(names), "{reason:?} should name {names}");
            }
            other => panic!("expected Invalid naming {names}, got {other:?}"),
        }
        let page = h
            .engine
            .list(&h.owner, JobQuery::default())
            .await
            .expect("list");
        assert!(page.items.is_empty(), "nothing created: {:?}", page.items);
    }
}
