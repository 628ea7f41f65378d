//! The [`Store`] checks of child jobs ([`Store::create_child`],
//! [`Store::children`]) and idempotent submissions
//! ([`Store::create_job_idempotent`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::store::new_job;
use super::unique;
use crate::{
    Created, Error, Fence, IdempotencyKey, JobId, JobQuery, JobStatus, NewJob, Outcome, Owner,
    Store,
};

const LEASE: Duration = Duration::from_secs(30);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn owner() -> Owner {
    Owner::new(unique("owner"))
}

fn child_of(fence: Fence, owner: &Owner, key: &str) -> NewJob {
    NewJob {
        parent_id: Some(fence.job_id),
        child_key: Some(key.to_owned()),
        ..new_job(owner)
    }
}

async fn running(store: &Arc<dyn Store>, id: JobId) -> Fence {
    store
        .claim(id, "w1", LEASE)
        .await
        .expect("claim")
        .expect("the job is claimable")
        .attempt
        .fence()
}

fn key(k: &str, request: serde_json::Value, ttl: Duration) -> IdempotencyKey {
    IdempotencyKey::new(k, &request, ttl).expect("a valid key")
}

/// A running attempt creates a child once per key: queued, of the parent's
/// owner, with its parent and key; the same key again (by this attempt, or
/// by the next attempt after a retry) answers that child and creates
/// nothing; a stale attempt is refused and creates nothing; `children`
/// lists them oldest first.
pub async fn check_child_once_per_key_across_attempts(store: Arc<dyn Store>) {
    let o = owner();
    let parent = store.create_job(new_job(&o)).await.expect("create").job.id;
    let first = running(&store, parent).await;

    let created = match store
        .create_child(first, child_of(first, &o, "frontend"))
        .await
        .expect("create_child")
    {
        Created::New(changed) => changed,
        other => panic!("the first child of a key is new: {other:?}"),
    };
    let child = created.job.clone();
    assert_eq!(child.status, JobStatus::Queued);
    assert_eq!(child.owner, o);
    assert_eq!(child.parent_id, Some(parent));
    assert_eq!(child.child_key.as_deref(), Some("frontend"));
    assert_eq!(created.events.len(), 1, "its queued event");
    assert_eq!(created.events[0].job_id, child.id);
    assert_eq!(
        store.get_job(child.id).await.expect("get"),
        Some(child.clone()),
        "stored as answered"
    );

    // The same key, same attempt: the existing child, even with other params.
    let again = NewJob {
        params: json!({"other": true}),
        ..child_of(first, &o, "frontend")
    };
    match store.create_child(first, again).await.expect("again") {
        Created::Existing(job) => assert_eq!(job.id, child.id),
        other => panic!("a key already used answers its child: {other:?}"),
    }

    // The attempt fails and is retried: attempt 2 re-submits the same key.
    store
        .finish(
            first,
            Outcome::Failed {
                error: crate::JobError::new("boom", "retry me"),
                retry_in: Some(Duration::ZERO),
            },
        )
        .await
        .expect("retry");
    // Attempt 1 is stale now: refused, nothing created.
    assert!(matches!(
        store
            .create_child(first, child_of(first, &o, "backend"))
            .await,
        Err(Error::StaleAttempt)
    ));
    let second = running(&store, parent).await;
    assert_eq!(second.attempt, 2);
    match store
        .create_child(second, child_of(second, &o, "frontend"))
        .await
        .expect("attempt 2")
    {
        Created::Existing(job) => assert_eq!(job.id, child.id, "attempt 1's child"),
        other => panic!("a retried attempt creates no duplicate: {other:?}"),
    }
    let backend = match store
        .create_child(second, child_of(second, &o, "backend"))
        .await
        .expect("a new key")
    {
        Created::New(changed) => changed.job,
        other => panic!("a new key creates a child: {other:?}"),
    };
    let children = store.children(parent).await.expect("children");
    let ids: Vec<JobId> = children.iter().map(|j| j.id).collect();
    assert_eq!(ids, vec![child.id, backend.id], "oldest first, once each");
    assert_eq!(store.children(child.id).await.expect("none"), vec![]);
    assert_eq!(store.children(JobId::new()).await.expect("unknown"), vec![]);

    // The parent ends: its attempt may create no more.
    store
        .finish(second, Outcome::Succeeded)
        .await
        .expect("finish");
    assert!(matches!(
        store
            .create_child(second, child_of(second, &o, "late"))
            .await,
        Err(Error::StaleAttempt)
    ));
    // A job that was never claimed has no attempt to fence.
    let idle = store.create_job(new_job(&o)).await.expect("create").job.id;
    let fake = Fence {
        job_id: idle,
        attempt: 1,
    };
    assert!(matches!(
        store.create_child(fake, child_of(fake, &o, "x")).await,
        Err(Error::StaleAttempt)
    ));
    let unknown = Fence {
        job_id: JobId::new(),
        attempt: 1,
    };
    assert!(matches!(
        store
            .create_child(unknown, child_of(unknown, &o, "x"))
            .await,
        Err(Error::StaleAttempt)
    ));
    assert_eq!(store.children(parent).await.expect("children").len(), 2);

    // A child must name the fence's job and carry a key.
    let third_party = store.create_job(new_job(&o)).await.expect("create").job.id;
    let f = running(&store, third_party).await;
    let wrong_parent = NewJob {
        parent_id: Some(parent),
        ..child_of(f, &o, "x")
    };
    assert!(matches!(
        store.create_child(f, wrong_parent).await,
        Err(Error::Invalid { .. })
    ));
    let no_key = NewJob {
        child_key: None,
        ..child_of(f, &o, "x")
    };
    assert!(matches!(
        store.create_child(f, no_key).await,
        Err(Error::Invalid { .. })
    ));
    assert_eq!(store.children(third_party).await.expect("none").len(), 0);
}

/// Concurrent submissions of one key by the running attempt create one
/// child; every caller gets it.
pub async fn check_concurrent_children_of_one_key_create_one(store: Arc<dyn Store>) {
    let o = owner();
    let parent = store.create_job(new_job(&o)).await.expect("create").job.id;
    let fence = running(&store, parent).await;
    let results = futures::future::join_all(
        (0..16).map(|_| store.create_child(fence, child_of(fence, &o, "one"))),
    )
    .await;
    let mut created = 0;
    let mut ids = HashSet::new();
    for r in results {
        match r.expect("create_child") {
            Created::New(changed) => {
                created += 1;
                ids.insert(changed.job.id);
            }
            Created::Existing(job) => {
                ids.insert(job.id);
            }
        }
    }
    assert_eq!(created, 1, "exactly one call creates the child");
    assert_eq!(ids.len(), 1, "every caller gets the same child");
    assert_eq!(store.children(parent).await.expect("children").len(), 1);
}

/// The same key and request answer the job the first use created; another
/// request with the key is refused; another owner's key is its own; nothing
/// refused is stored; an expired key creates a new job.
pub async fn check_idempotency_key_answers_its_job(store: Arc<dyn Store>) {
    let o = owner();
    let body = json!({"prompt": "make an app"});
    let k = key("key-1", body.clone(), DAY);
    let first = match store
        .create_job_idempotent(new_job(&o), &k)
        .await
        .expect("first")
    {
        Created::New(changed) => {
            assert_eq!(changed.events.len(), 1);
            changed.job
        }
        other => panic!("a fresh key creates: {other:?}"),
    };
    match store
        .create_job_idempotent(new_job(&o), &k)
        .await
        .expect("replay")
    {
        Created::Existing(job) => assert_eq!(job, first),
        other => panic!("a replay answers the first job: {other:?}"),
    }
    let other_body = key("key-1", json!({"prompt": "something else"}), DAY);
    assert!(matches!(
        store.create_job_idempotent(new_job(&o), &other_body).await,
        Err(Error::IdempotencyKeyReused)
    ));
    // Another owner: a key of its own.
    let other = owner();
    assert!(matches!(
        store.create_job_idempotent(new_job(&other), &k).await,
        Ok(Created::New(_))
    ));
    // A refused create keeps no key: the next use creates.
    let quota = key("key-quota", body.clone(), DAY);
    let full = NewJob {
        max_queued: Some(1),
        ..new_job(&o)
    };
    assert!(matches!(
        store.create_job_idempotent(full.clone(), &quota).await,
        Err(Error::LimitExceeded(_))
    ));
    assert!(matches!(
        store
            .create_job_idempotent(new_job(&o), &quota)
            .await
            .expect("the key stayed free"),
        Created::New(_)
    ));
    let listed = store
        .list_jobs(
            &o,
            &JobQuery {
                limit: 100,
                ..JobQuery::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(listed.len(), 2, "one job per key: {listed:?}");

    // An expired key is free again, for any request.
    let short = key("key-short", body.clone(), Duration::ZERO);
    let a = match store
        .create_job_idempotent(new_job(&o), &short)
        .await
        .expect("a")
    {
        Created::New(changed) => changed.job.id,
        other => panic!("{other:?}"),
    };
    let reused = key("key-short", json!({"prompt": "new"}), DAY);
    let b = match store
        .create_job_idempotent(new_job(&o), &reused)
        .await
        .expect("expired key reused")
    {
        Created::New(changed) => changed.job.id,
        other => panic!("an expired key creates anew: {other:?}"),
    };
    assert_ne!(a, b);
    match store
        .create_job_idempotent(new_job(&o), &reused)
        .await
        .expect("replay of the reused key")
    {
        Created::Existing(job) => assert_eq!(job.id, b),
        other => panic!("{other:?}"),
    }
}

/// Sixteen concurrent submissions with one key create one job, and every
/// caller gets it.
pub async fn check_concurrent_idempotent_submits_create_one(store: Arc<dyn Store>) {
    let o = owner();
    let k = key("concurrent", json!({"prompt": "once"}), DAY);
    let results =
        futures::future::join_all((0..16).map(|_| store.create_job_idempotent(new_job(&o), &k)))
            .await;
    let mut created = 0;
    let mut ids = HashSet::new();
    for r in results {
        match r.expect("create_job_idempotent") {
            Created::New(changed) => {
                created += 1;
                ids.insert(changed.job.id);
            }
            Created::Existing(job) => {
                ids.insert(job.id);
            }
        }
    }
    assert_eq!(created, 1, "exactly one call creates the job");
    assert_eq!(ids.len(), 1, "every caller gets the same job");
    let listed = store
        .list_jobs(
            &o,
            &JobQuery {
                limit: 100,
                ..JobQuery::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
}
