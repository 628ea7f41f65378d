//! The concurrency-key checks of the [`Store`] suite.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::store::new_job;
use super::unique;
use crate::{JobId, JobStatus, NewJob, Outcome, Owner, Store};

const LEASE: Duration = Duration::from_secs(30);

fn keyed(owner: &Owner, key: &str, limit: u32) -> NewJob {
    NewJob {
        concurrency_key: Some(key.into()),
        concurrency_limit: Some(limit),
        ..new_job(owner)
    }
}

async fn create(store: &Arc<dyn Store>, new: NewJob) -> JobId {
    store.create_job(new).await.expect("create_job").job.id
}

/// A job is not claimed while its limit of the owner's jobs with its key
/// run, and is once one of them ends; another owner's key of the same name,
/// and jobs without a key, are not held back; the key and limit are stored.
pub async fn check_concurrency_key_holds_back_the_next_job(store: Arc<dyn Store>) {
    let (a, b) = (Owner::new(unique("owner")), Owner::new(unique("owner")));
    let key = unique("key");
    let first = create(&store, keyed(&a, &key, 2)).await;
    let second = create(&store, keyed(&a, &key, 2)).await;
    let third = create(&store, keyed(&a, &key, 2)).await;
    let others = create(&store, keyed(&b, &key, 2)).await;
    let free = create(&store, new_job(&a)).await;
    let job = store.get_job(first).await.expect("get").expect("exists");
    assert_eq!(job.concurrency_key.as_deref(), Some(key.as_str()));
    assert_eq!(job.concurrency_limit, Some(2));

    let one = store.claim(first, "w1", LEASE).await.expect("claim");
    let one = one.expect("the first job of the key is claimable");
    assert!(store
        .claim(second, "w2", LEASE)
        .await
        .expect("claim")
        .is_some());
    assert!(
        store
            .claim(third, "w3", LEASE)
            .await
            .expect("claim")
            .is_none(),
        "a third job of a key limited to 2 must not run"
    );
    let held = store.get_job(third).await.expect("get").expect("exists");
    assert_eq!(
        held.status,
        JobStatus::Queued,
        "a held-back job stays queued"
    );
    assert!(
        store
            .claim(others, "w4", LEASE)
            .await
            .expect("claim")
            .is_some(),
        "another owner's key of the same name has its own count"
    );
    assert!(
        store
            .claim(free, "w5", LEASE)
            .await
            .expect("claim")
            .is_some(),
        "a job without a key is not held back"
    );

    store
        .finish(one.attempt.fence(), Outcome::Succeeded)
        .await
        .expect("finish");
    assert!(
        store
            .claim(third, "w3", LEASE)
            .await
            .expect("claim")
            .is_some(),
        "once one of the key's jobs ended, the next may run"
    );
}

/// 32 claimers race over 24 jobs of one key limited to 2, each holding a
/// claimed job a moment before it ends it: never more than 2 run at once,
/// and every job runs once.
pub async fn check_concurrency_limit_is_exact(store: Arc<dyn Store>) {
    const JOBS: usize = 24;
    const LIMIT: u32 = 2;
    let owner = Owner::new(unique("owner"));
    let key = unique("key");
    let mut ids = Vec::new();
    for _ in 0..JOBS {
        ids.push(create(&store, keyed(&owner, &key, LIMIT)).await);
    }
    let ids = Arc::new(ids);
    // Raised after a claim returns and lowered before the job's end is
    // written: never more than the store counts as running.
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|w| {
            let (store, ids) = (store.clone(), ids.clone());
            let (running, most, done) = (running.clone(), most.clone(), done.clone());
            tokio::spawn(async move {
                let mut k = w;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while done.load(Ordering::SeqCst) < JOBS {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "the jobs of one key did not all run within a minute"
                    );
                    let id = ids[k % ids.len()];
                    k += 1;
                    let Some(claim) = store
                        .claim(id, &format!("w{w}"), LEASE)
                        .await
                        .expect("claim")
                    else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    store
                        .finish(claim.attempt.fence(), Outcome::Succeeded)
                        .await
                        .expect("finish");
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a claimer failed");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= LIMIT as usize,
        "{most} jobs of a key limited to {LIMIT} ran at once"
    );
    assert_eq!(most, LIMIT as usize, "32 claimers must fill the limit");
    for id in ids.iter() {
        let job = store.get_job(*id).await.expect("get").expect("exists");
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(job.attempt, 1, "every job runs once");
    }
}
