//! The artifact checks of the [`Store`] suite: metadata made visible by a
//! fenced write, unique by name, within the job's byte limit.

use std::sync::Arc;
use std::time::Duration;

use super::store::new_job;
use super::unique;
use crate::{ArtifactStored, Error, EventData, Fence, JobId, NewArtifact, Outcome, Owner, Store};

const LEASE: Duration = Duration::from_secs(30);

fn artifact(name: &str, size: u64, max_job_bytes: Option<u64>) -> NewArtifact {
    NewArtifact {
        name: name.into(),
        content_type: "text/plain".into(),
        size,
        sha256: format!("{size:064x}"),
        blob: unique("blob"),
        max_job_bytes,
    }
}

async fn running(store: &Arc<dyn Store>) -> Fence {
    let id = store
        .create_job(new_job(&Owner::new(unique("owner"))))
        .await
        .expect("create_job")
        .job
        .id;
    store
        .claim(id, "w1", LEASE)
        .await
        .expect("claim")
        .expect("claimable")
        .attempt
        .fence()
}

/// A stored artifact is listed and found by name, with the attempt that
/// stored it, and its `artifact` event follows the job's log without a gap.
pub async fn check_artifact_is_listed_with_its_event(store: Arc<dyn Store>) {
    let fence = running(&store).await;
    let before = store.get_job(fence.job_id).await.unwrap().unwrap().last_seq;
    let saved = store
        .put_artifact(fence, artifact("dist/b.txt", 12, None))
        .await
        .expect("put_artifact");
    assert_eq!(saved.replaced, None);
    assert_eq!(saved.artifact.attempt, fence.attempt);
    assert_eq!(saved.artifact.size, 12);
    assert_eq!(saved.events.len(), 1);
    assert_eq!(saved.events[0].seq, before + 1);
    assert_eq!(
        saved.events[0].data,
        EventData::Artifact(Box::new(ArtifactStored {
            name: "dist/b.txt".into(),
            size: 12,
            sha256: format!("{:064x}", 12),
            content_type: "text/plain".into(),
        }))
    );
    store
        .put_artifact(fence, artifact("a.txt", 3, None))
        .await
        .expect("put_artifact");
    let listed = store.artifacts(fence.job_id).await.expect("artifacts");
    let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a.txt", "dist/b.txt"], "listed by name");
    let found = store
        .artifact(fence.job_id, "dist/b.txt")
        .await
        .expect("artifact")
        .expect("found");
    assert_eq!(found, saved.artifact);
    assert_eq!(store.artifact(fence.job_id, "nope").await.unwrap(), None);
    assert!(store.artifacts(JobId::new()).await.unwrap().is_empty());
    let log = store.events(fence.job_id, 0, 100).await.unwrap();
    assert_eq!(log.last().unwrap().seq, before + 2);
}

/// A stale attempt's artifact is refused and leaves nothing visible, and so
/// is one written after the attempt ended.
pub async fn check_artifact_is_fenced(store: Arc<dyn Store>) {
    let id = store
        .create_job(new_job(&Owner::new(unique("owner"))))
        .await
        .unwrap()
        .job
        .id;
    let first = store
        .claim(id, "w1", Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap()
        .attempt
        .fence();
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.finish(first, Outcome::Lost).await.expect("lost");
    let second = store
        .claim(id, "w2", LEASE)
        .await
        .unwrap()
        .unwrap()
        .attempt
        .fence();
    let before = store.get_job(id).await.unwrap().unwrap();
    assert!(matches!(
        store.put_artifact(first, artifact("a", 1, None)).await,
        Err(Error::StaleAttempt)
    ));
    assert_eq!(store.get_job(id).await.unwrap().unwrap(), before);
    assert!(store.artifacts(id).await.unwrap().is_empty());
    store
        .finish(second, Outcome::Succeeded)
        .await
        .expect("finish");
    let done = store.get_job(id).await.unwrap().unwrap();
    assert!(matches!(
        store.put_artifact(second, artifact("late", 1, None)).await,
        Err(Error::StaleAttempt)
    ));
    assert_eq!(store.get_job(id).await.unwrap().unwrap(), done);
    assert!(store.artifacts(id).await.unwrap().is_empty());
}

/// A name is unique in its job: a later attempt's artifact replaces an
/// earlier attempt's, and the answer names the one replaced.
pub async fn check_artifact_replaces_by_name(store: Arc<dyn Store>) {
    let id = store
        .create_job(new_job(&Owner::new(unique("owner"))))
        .await
        .unwrap()
        .job
        .id;
    let first = store
        .claim(id, "w1", LEASE)
        .await
        .unwrap()
        .unwrap()
        .attempt
        .fence();
    let old = store
        .put_artifact(first, artifact("out.bin", 10, None))
        .await
        .unwrap()
        .artifact;
    store
        .finish(
            first,
            Outcome::Failed {
                error: crate::JobError::new("x", "y"),
                retry_in: Some(Duration::ZERO),
            },
        )
        .await
        .unwrap();
    let second = store
        .claim(id, "w1", LEASE)
        .await
        .unwrap()
        .unwrap()
        .attempt
        .fence();
    let saved = store
        .put_artifact(second, artifact("out.bin", 20, None))
        .await
        .unwrap();
    assert_eq!(saved.replaced.as_ref(), Some(&old));
    let listed = store.artifacts(id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attempt, 2);
    assert_eq!(listed[0].size, 20);
    assert_eq!(listed[0].blob, saved.artifact.blob);
}

/// The job's byte limit counts its other artifacts (not the one a write
/// replaces); past it the write is `LimitExceeded` and changes nothing, and
/// concurrent writes never pass it together.
pub async fn check_artifact_job_bytes_are_exact(store: Arc<dyn Store>) {
    let fence = running(&store).await;
    let limit = Some(100);
    store
        .put_artifact(fence, artifact("a", 60, limit))
        .await
        .unwrap();
    let before = store.get_job(fence.job_id).await.unwrap().unwrap();
    assert!(matches!(
        store.put_artifact(fence, artifact("b", 41, limit)).await,
        Err(Error::LimitExceeded(_))
    ));
    assert_eq!(store.get_job(fence.job_id).await.unwrap().unwrap(), before);
    // Replacing `a` counts only the new size.
    store
        .put_artifact(fence, artifact("a", 90, limit))
        .await
        .expect("a replacement counts only its own size");
    store
        .put_artifact(fence, artifact("b", 10, limit))
        .await
        .expect("exactly at the limit");

    let fence = running(&store).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put_artifact(fence, artifact(&format!("f{i}"), 10, Some(50)))
                    .await
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => stored += 1,
            Err(Error::LimitExceeded(_)) => {}
            Err(e) => panic!("beyond the limit must be LimitExceeded, not {e:?}"),
        }
    }
    assert_eq!(stored, 5, "16 writes of 10 bytes under a limit of 50");
    let total: u64 = store
        .artifacts(fence.job_id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.size)
        .sum();
    assert_eq!(total, 50);
}
