//! The single writer on a real file: concurrent writes share transactions,
//! a refused write in a batch fails alone, a lock held by another process is
//! waited for up to the busy timeout, and what was answered survives a reopen.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use projectengine_core::{
    Error, EventData, Fence, JobId, JobStatus, LogLevel, LogLine, NewJob, Outcome, Owner, Store,
};
use projectengine_store_sqlite::{SqliteConfig, SqliteStore};
use sqlx::{Connection, SqliteConnection};
use support::TempDir;

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

/// A connection of its own to the store's file, as another process would have.
async fn other_connection(url: &str) -> SqliteConnection {
    SqliteConnection::connect(url)
        .await
        .expect("a second connection to the file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_transactions() {
    let test = support::fresh().await;
    let store: Arc<dyn Store> = Arc::new(test.store.clone());
    let fences = running(&store).await;
    let before = test.write_stats();
    let appended = join_all(
        fences
            .iter()
            .map(|f| store.append(*f, vec![log("a"), log("b")])),
    )
    .await;
    // The writes of a transaction share its time: separate transactions
    // would give each write its own.
    let mut times = std::collections::BTreeSet::new();
    for (fence, events) in fences.iter().zip(appended) {
        let events = events.expect("append");
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4],
            "after `queued` and `running`"
        );
        times.insert(events[0].at);
        let stored = store.events(fence.job_id, 0, 100).await.expect("events");
        assert_eq!(stored.len(), 4, "every answered write is stored");
    }
    let stats = test.write_stats();
    let (writes, commits) = (stats.writes - before.writes, stats.commits - before.commits);
    assert_eq!(writes, JOBS as u64, "one write per append");
    assert!(
        commits < writes / 2 && times.len() as u64 == commits,
        "{writes} concurrent appends took {commits} transactions at {} times",
        times.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_the_database_refuses_fails_alone() {
    let test = support::fresh().await;
    let store: Arc<dyn Store> = Arc::new(test.store.clone());
    let fences = running(&store).await;
    // Another connection makes the database refuse one event: the job's row
    // is written before the event, so the refusal must undo that write too.
    let mut other = other_connection(&test.url).await;
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON job_events \
         WHEN NEW.data LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poisoned event'); END",
    )
    .execute(&mut other)
    .await
    .expect("create the trigger");
    let bad = JOBS / 2;
    let before = test.write_stats();
    let appended = join_all(fences.iter().enumerate().map(|(i, f)| {
        let message = if i == bad { "poison" } else { "fine" };
        store.append(*f, vec![log(message)])
    }))
    .await;
    for (i, (fence, result)) in fences.iter().zip(appended).enumerate() {
        let stored = store.events(fence.job_id, 0, 100).await.expect("events");
        let job = store
            .get_job(fence.job_id)
            .await
            .expect("get")
            .expect("job");
        if i == bad {
            assert!(
                matches!(result, Err(Error::Invalid { .. })),
                "the refused write: {result:?}"
            );
            assert_eq!(stored.len(), 2, "the refused write stored no event");
            assert_eq!(job.last_seq, 2, "nor changed the job");
        } else {
            let events = result.expect("a good write beside a refused one");
            assert_eq!(events[0].seq, 3);
            assert_eq!(stored.len(), 3, "job {i}: its write is stored once");
            assert_eq!(job.last_seq, 3);
        }
    }
    let commits = test.write_stats().commits - before.commits;
    assert!(
        commits < JOBS as u64,
        "the writes shared transactions ({commits} for {JOBS})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_fences_in_a_batch_are_refused_and_the_rest_commit() {
    let test = support::fresh().await;
    let store: Arc<dyn Store> = Arc::new(test.store.clone());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_elsewhere_is_waited_for_then_refused() {
    let config = SqliteConfig {
        busy_timeout: Duration::from_millis(300),
        ..SqliteConfig::default()
    };
    let test = support::fresh_with(config).await;
    let store: Arc<dyn Store> = Arc::new(test.store.clone());
    let job = store.create_job(new_job()).await.expect("create").job;

    // Another process takes the write lock and keeps it past the timeout.
    let mut other = other_connection(&test.url).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("lock the file");
    let started = std::time::Instant::now();
    let refused = store.request_cancel(job.id).await;
    assert!(
        matches!(refused, Err(Error::Unavailable { .. })),
        "a write past the busy timeout: {refused:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it waited for the lock first ({:?})",
        started.elapsed()
    );
    // Reads do not wait for a writer in WAL mode.
    let read = store.get_job(job.id).await.expect("read").expect("job");
    assert_eq!(
        read.status,
        JobStatus::Queued,
        "the refused write changed nothing"
    );

    // A lock released within the timeout is waited for, and the write lands.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sqlx::query("ROLLBACK")
            .execute(&mut other)
            .await
            .expect("release the lock");
        other
    });
    let cancelled = store
        .request_cancel(job.id)
        .await
        .expect("cancel after the wait");
    assert_eq!(cancelled.job.status, JobStatus::Cancelled);
    let _ = release.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_writes_survive_a_reopen() {
    let dir = TempDir::new();
    let url = dir.url("jobs.db");
    let (job, fence) = {
        let store = SqliteStore::open(&url).await.expect("open");
        let job = store.create_job(new_job()).await.expect("create").job;
        let claim = store
            .claim(job.id, "w", LEASE)
            .await
            .expect("claim")
            .expect("claimable");
        let fence = claim.attempt.fence();
        store
            .append(fence, vec![log("before the reopen")])
            .await
            .expect("append");
        (job, fence)
    };
    // Opened again (migrations already applied), on the same file.
    let store = SqliteStore::open(&url).await.expect("reopen");
    let stored = store.get_job(job.id).await.expect("get").expect("the job");
    assert_eq!((stored.status, stored.last_seq), (JobStatus::Running, 3));
    let changed = store
        .finish(fence, Outcome::Succeeded)
        .await
        .expect("finish");
    assert_eq!(changed.events[0].seq, 4);
    let seqs: Vec<u64> = store
        .events(job.id, 0, 100)
        .await
        .expect("events")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);

    // The file is in WAL mode; the writer syncs every commit (FULL).
    let mut other = other_connection(&url).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut other)
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn in_memory_and_malformed_urls_are_refused() {
    for url in ["sqlite::memory:", "sqlite://file.db?mode=memory"] {
        let refused = SqliteStore::open(url).await;
        assert!(
            matches!(
                refused,
                Err(Error::Invalid {
                    field: "database_url",
                    ..
                })
            ),
            "{url}: {refused:?}"
        );
    }
    let dir = TempDir::new();
    let refused = SqliteStore::open(&format!("{}?mode=nonsense", dir.url("x.db"))).await;
    assert!(
        matches!(
            refused,
            Err(Error::Invalid {
                field: "database_url",
                ..
            })
        ),
        "{refused:?}"
    );
    // A directory that does not exist cannot hold the file.
    let missing = dir.path().join("no/such/dir/jobs.db");
    let refused = SqliteStore::open(&format!("sqlite://{}", missing.display())).await;
    assert!(refused.is_err(), "{refused:?}");
}
