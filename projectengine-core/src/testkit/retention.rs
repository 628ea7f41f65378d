//! The retention checks of the [`Store`] suite.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::store::new_job;
use super::unique;
use crate::{
    Created, DeliveryNext, Fence, IdempotencyKey, JobError, JobId, NewApp, NewArtifact, NewJob,
    NewTry, Outcome, Owner, Store,
};

const LEASE: Duration = Duration::from_secs(30);

async fn claim(store: &Arc<dyn Store>, id: JobId) -> Fence {
    store
        .claim(id, "w1", LEASE)
        .await
        .expect("claim")
        .expect("claimable")
        .attempt
        .fence()
}

async fn running(store: &Arc<dyn Store>, new: NewJob) -> Fence {
    let id = store.create_job(new).await.expect("create").job.id;
    claim(store, id).await
}

fn created(c: Created) -> JobId {
    match c {
        Created::New(changed) => changed.job.id,
        Created::Existing(job) => panic!("{} existed already", job.id),
    }
}

async fn gone(store: &Arc<dyn Store>, id: JobId) -> bool {
    store.get_job(id).await.expect("get").is_none()
}

/// Deletes finished jobs oldest first, a batch at a time, with their log,
/// attempts, App, artifacts (answering the blobs) and idempotency keys;
/// keeps every job that has not finished or that finished after the cutoff,
/// one whose webhook delivery is pending (until it is delivered), and a
/// parent until its child is gone.
pub async fn check_retention_deletes_only_old_finished_jobs(store: Arc<dyn Store>) {
    let o = Owner::new(unique("owner"));
    // Finished first: a success with an App and an artifact.
    let first = running(&store, new_job(&o)).await;
    store
        .save_app(
            first,
            NewApp {
                name: "app".into(),
                payload: json!({"ok": true}),
            },
        )
        .await
        .expect("save_app");
    let blob = unique("blob");
    store
        .put_artifact(
            first,
            NewArtifact {
                name: "dist/index.html".into(),
                content_type: "text/html".into(),
                size: 3,
                sha256: format!("{:064x}", 3),
                blob: blob.clone(),
                max_job_bytes: None,
            },
        )
        .await
        .expect("put_artifact");
    store
        .finish(first, Outcome::Succeeded)
        .await
        .expect("finish");
    // Finished second: a fatal failure.
    let second = running(&store, new_job(&o)).await;
    let failure = Outcome::Failed {
        error: JobError::new("orchestrator_error", "no"),
        retry_in: None,
    };
    store.finish(second, failure).await.expect("finish");
    // Finished third: submitted with an idempotency key.
    let request = json!({"prompt": "once"});
    let key = IdempotencyKey::new("retained-key", &request, Duration::from_secs(3600))
        .expect("a valid key");
    let keyed = created(
        store
            .create_job_idempotent(new_job(&o), &key)
            .await
            .expect("create"),
    );
    let keyed_fence = claim(&store, keyed).await;
    store
        .finish(keyed_fence, Outcome::Succeeded)
        .await
        .expect("finish");
    // A finished job whose webhook has not been delivered yet.
    let hooked = running(
        &store,
        NewJob {
            webhook: Some("https://hooks.example.com/jobs".into()),
            ..new_job(&o)
        },
    )
    .await;
    store
        .finish(hooked, Outcome::Succeeded)
        .await
        .expect("finish");
    // A finished parent whose child is still queued.
    let parent = running(&store, new_job(&o)).await;
    let child = NewJob {
        parent_id: Some(parent.job_id),
        child_key: Some("part".into()),
        ..new_job(&o)
    };
    let child = created(
        store
            .create_child(parent, child)
            .await
            .expect("create_child"),
    );
    store
        .finish(parent, Outcome::Succeeded)
        .await
        .expect("finish");
    // Not finished: queued, and running.
    let queued = store.create_job(new_job(&o)).await.expect("create").job.id;
    let busy = running(&store, new_job(&o)).await;

    // Nothing finished an hour ago.
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    assert!(store
        .purge_finished(hour_ago, 100)
        .await
        .expect("purge")
        .is_empty());

    // Every job above finished before this.
    let later = Utc::now() + chrono::Duration::seconds(5);
    let batch = store.purge_finished(later, 2).await.expect("purge");
    let ids: Vec<JobId> = batch.iter().map(|p| p.job_id).collect();
    assert_eq!(
        ids,
        [first.job_id, second.job_id],
        "oldest first, `limit` at most"
    );
    assert_eq!(batch[0].blobs, [blob], "the artifact's blob is answered");
    assert!(batch[1].blobs.is_empty());
    for id in ids {
        assert!(gone(&store, id).await, "a purged job is gone");
        assert!(store.events(id, 0, 100).await.expect("events").is_empty());
        assert!(store.attempts(id).await.expect("attempts").is_empty());
        assert!(store.artifacts(id).await.expect("artifacts").is_empty());
        assert!(store.app_by_job(id).await.expect("app").is_none());
    }
    let rest = store.purge_finished(later, 100).await.expect("purge");
    let rest: Vec<JobId> = rest.iter().map(|p| p.job_id).collect();
    assert_eq!(
        rest,
        [keyed],
        "pending deliveries, parents and unfinished jobs stay"
    );
    for kept in [hooked.job_id, parent.job_id, child, queued, busy.job_id] {
        assert!(!gone(&store, kept).await, "{kept} must be kept");
    }
    // The key went with its job: it now makes a new one.
    let again = store
        .create_job_idempotent(new_job(&o), &key)
        .await
        .expect("create");
    assert!(
        matches!(again, Created::New(_)),
        "a purged job's idempotency key is free again"
    );

    // Once its delivery is done, the hooked job goes.
    let deliveries = store.deliveries(hooked.job_id).await.expect("deliveries");
    assert_eq!(deliveries.len(), 1);
    let delivery = deliveries[0].delivery.id;
    let claimed = store
        .claim_deliveries(1000, Duration::from_secs(60))
        .await
        .expect("claim deliveries");
    assert!(claimed.iter().any(|d| d.id == delivery));
    let done = NewTry {
        status_code: Some(200),
        latency: Duration::from_millis(5),
        error: None,
    };
    store
        .record_delivery_try(delivery, 0, done, DeliveryNext::Delivered)
        .await
        .expect("record");
    // The child ends: it goes first, then its parent.
    let child_fence = claim(&store, child).await;
    store
        .finish(child_fence, Outcome::Succeeded)
        .await
        .expect("finish");
    let later = Utc::now() + chrono::Duration::seconds(5);
    let next = store.purge_finished(later, 100).await.expect("purge");
    let next: Vec<JobId> = next.iter().map(|p| p.job_id).collect();
    assert!(next.contains(&hooked.job_id) && next.contains(&child));
    assert!(
        !next.contains(&parent.job_id),
        "a parent waits for its child to go"
    );
    let last = store.purge_finished(later, 100).await.expect("purge");
    let last: Vec<JobId> = last.iter().map(|p| p.job_id).collect();
    assert!(last.contains(&parent.job_id), "then the parent goes");
    assert!(!last.contains(&queued) && !last.contains(&busy.job_id));
    assert!(!gone(&store, queued).await && !gone(&store, busy.job_id).await);
}
