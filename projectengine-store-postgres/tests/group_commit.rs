//! Group commit on the real server: concurrent writes share transactions, and
//! one bad write in a batch fails alone.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use projectengine_core::{
    Error, EventData, Fence, JobId, LogLevel, LogLine, NewJob, Outcome, Owner, Store,
};
use projectengine_store_postgres::{GroupCommit, PgStore};

const LEASE: Duration = Duration::from_secs(30);
const JOBS: usize = 48;

fn new_job() -> NewJob {
    projectengine_core::testkit::store::new_job(&Owner::new("o"))
}

fn log(message: &str) -> EventData {
    EventData::Log(LogLine {
        level: LogLevel::Info,
        message: message.to_owned(),
    })
}

/// `JOBS` running jobs, created and claimed concurrently.
async fn running(store: &Arc<dyn Store>) -> Vec<Fence> {
    let created = join_all((0..JOBS).map(|_| store.create_job(new_job()))).await;
    let ids: Vec<JobId> = created
        .into_iter()
        .map(|c| c.expect("create").job.id)
        .collect();
    let claims = join_all(ids.iter().map(|id| store.claim(*id, "w", LEASE))).await;
    claims
        .into_iter()
        .map(|c| c.expect("claim").expect("claimable").attempt.fence())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_of_many_jobs_share_transactions() {
    let Some(store) = support::fresh(8).await else {
        return;
    };
    assert_eq!(store.group_commit(), GroupCommit::default());
    let store: Arc<dyn Store> = Arc::new(store);
    let fences = running(&store).await;
    let appended = join_all(
        fences
            .iter()
            .map(|f| store.append(*f, vec![log("a"), log("b")])),
    )
    .await;
    // `at` is the transaction's start (`now()`): writes that share a
    // transaction share it. Separate transactions would give each job its own.
    let mut jobs_per_at: HashMap<_, BTreeSet<JobId>> = HashMap::new();
    for (fence, events) in fences.iter().zip(appended) {
        let events = events.expect("append");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].seq, 3, "after `queued` and `running`");
        assert_eq!(events[1].seq, 4);
        for e in &events {
            jobs_per_at.entry(e.at).or_default().insert(fence.job_id);
        }
        let stored = store.events(fence.job_id, 0, 100).await.expect("events");
        assert_eq!(stored.len(), 4, "every answered write is stored");
    }
    let transactions = jobs_per_at.len();
    let largest = jobs_per_at.values().map(BTreeSet::len).max().unwrap_or(0);
    assert!(
        transactions < JOBS && largest > 1,
        "{JOBS} concurrent appends took {transactions} transactions (at most {largest} jobs in one)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_the_database_refuses_fails_alone() {
    let Some(store) = support::fresh(8).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let fences = running(&store).await;
    // PostgreSQL cannot hold a NUL character in JSON: that statement errors,
    // which aborts a shared transaction. The others must still land.
    let bad = JOBS / 2;
    let appended = join_all(fences.iter().enumerate().map(|(i, f)| {
        let message = if i == bad { "nul \u{0}" } else { "fine" };
        store.append(*f, vec![log(message)])
    }))
    .await;
    for (i, (fence, result)) in fences.iter().zip(appended).enumerate() {
        let stored = store.events(fence.job_id, 0, 100).await.expect("events");
        if i == bad {
            assert!(
                matches!(result, Err(Error::Invalid { .. })),
                "the bad write: {result:?}"
            );
            assert_eq!(stored.len(), 2, "the bad write stored nothing");
        } else {
            let events = result.expect("a good write beside a bad one");
            assert_eq!(events[0].seq, 3);
            assert_eq!(stored.len(), 3, "job {i}: its write is stored once");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_fences_in_a_batch_are_refused_and_the_rest_commit() {
    let Some(store) = support::fresh(8).await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let fences = running(&store).await;
    let stale = |i: usize| i.is_multiple_of(3);
    let writes = fences.iter().enumerate().map(|(i, f)| {
        let store = store.clone();
        let fence = if stale(i) {
            Fence {
                job_id: f.job_id,
                attempt: f.attempt + 1,
            }
        } else {
            *f
        };
        async move {
            if i.is_multiple_of(2) {
                store.append(fence, vec![log("x")]).await.map(|e| e.len())
            } else {
                store
                    .finish(fence, Outcome::Succeeded)
                    .await
                    .map(|c| c.events.len())
            }
        }
    });
    let results = join_all(writes).await;
    for (i, (fence, result)) in fences.iter().zip(results).enumerate() {
        let stored = store.events(fence.job_id, 0, 100).await.expect("events");
        if stale(i) {
            assert!(
                matches!(result, Err(Error::StaleAttempt)),
                "write {i}: {result:?}"
            );
            assert_eq!(stored.len(), 2, "a stale write stores nothing");
        } else {
            assert_eq!(result.expect("a current write"), 1);
            assert_eq!(stored.len(), 3, "job {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_grouping_writes_still_answer() {
    let Some(schema) = support::Schema::new().await else {
        return;
    };
    let grouped = schema.store(4).await;
    grouped.migrate().await.expect("migrate");
    let store: Arc<dyn Store> = Arc::new(PgStore::with_group_commit(
        grouped.pool().clone(),
        GroupCommit::off(),
    ));
    let fences = running(&store).await;
    let finished = join_all(fences.iter().map(|f| store.finish(*f, Outcome::Succeeded))).await;
    for changed in finished {
        let changed = changed.expect("finish");
        assert_eq!(changed.job.last_seq, 3);
    }
}
