//! Assertions every crate's tests share: gap-free seqs, waiting for a status,
//! watching a job to its end, polling until a condition holds.
//!
//! Each one fails loudly when the thing it checks did not happen: an empty
//! event list is not gap-free, a wait that runs out of time panics with what it
//! last saw, and a job that ends in another terminal status than the one
//! awaited fails at once instead of at the deadline.

use std::future::Future;
use std::ops::RangeInclusive;
use std::time::Duration;

use futures::StreamExt;

use crate::{Engine, Job, JobEvent, JobId, JobStatus, Owner};

/// How often the polling helpers look again.
const POLL: Duration = Duration::from_millis(20);

/// The seqs of `events`, in their order.
pub fn seqs(events: &[JobEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// Asserts `seqs` are exactly `expected`, in order: each once, none missing.
///
/// An empty `expected` (such as `5..=4`) asserts there are none.
#[track_caller]
pub fn assert_seqs(seqs: &[u64], expected: RangeInclusive<u64>) {
    let want: Vec<u64> = expected.clone().collect();
    assert_eq!(seqs, want, "seqs must be {expected:?}, each once, in order");
}

/// Asserts `seqs` are `first, first + 1, …`: at least one, each once, in
/// order, none missing. For events held in another shape (JSON over HTTP).
#[track_caller]
pub fn assert_gap_free_seqs(seqs: &[u64], first: u64) {
    assert!(
        !seqs.is_empty(),
        "expected events from seq {first}, got none"
    );
    assert_seqs(seqs, first..=first + seqs.len() as u64 - 1);
}

/// Asserts the events are seq `first, first + 1, …`: at least one, each once,
/// in order, none missing.
#[track_caller]
pub fn assert_gap_free(events: &[JobEvent], first: u64) {
    assert_gap_free_seqs(&seqs(events), first);
}

/// Polls `check` every 20 ms until it answers `Some`, and returns that;
/// panics naming `what` if `limit` passes first.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never within {limit:?}: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the job has `status` and returns it; panics if `limit` passes
/// first, or at once if the job ends in another terminal status.
pub async fn wait_for_status(
    engine: &Engine,
    owner: &Owner,
    id: JobId,
    status: JobStatus,
    limit: Duration,
) -> Job {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let job = engine.get(owner, id).await.expect("get the job");
        if job.status == status {
            return job;
        }
        assert!(
            !job.status.is_terminal(),
            "job {id} ended {} while waiting for {status}: {:?}",
            job.status,
            job.error
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} still {} after {limit:?}, waiting for {status}",
            job.status
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every job in `ids` has succeeded; panics at once if one ends
/// otherwise, or with the jobs still pending when `limit` passes.
pub async fn wait_all_succeeded(engine: &Engine, owner: &Owner, ids: &[JobId], limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut pending = Vec::new();
        for &id in ids {
            let job = engine.get(owner, id).await.expect("get the job");
            match job.status {
                JobStatus::Succeeded => {}
                s if s.is_terminal() => panic!("job {id} ended {s}: {:?}", job.error),
                s => pending.push((id, s)),
            }
        }
        if pending.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} jobs not done after {limit:?}: {pending:?}",
            pending.len(),
            ids.len()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Every event of the job after `after`, from [`Engine::watch`] until the
/// stream ends (after the terminal event); panics if it has not ended within
/// `limit`, or on an error item.
///
/// Watching a finished job from its last seq yields no events: callers that
/// expect some assert so, e.g. with [`assert_gap_free`].
pub async fn watch_to_end(
    engine: &Engine,
    owner: &Owner,
    id: JobId,
    after: u64,
    limit: Duration,
) -> Vec<JobEvent> {
    let stream = engine.watch(owner, id, after).await.expect("watch");
    tokio::time::timeout(
        limit,
        stream
            .map(|e| e.expect("a watched event"))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap_or_else(|_| panic!("the watch of job {id} did not end within {limit:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_free_seqs_pass() {
        assert_gap_free_seqs(&[1, 2, 3], 1);
        assert_gap_free_seqs(&[4], 4);
        let last_seq = 4;
        assert_seqs(&[], 5..=last_seq);
    }

    #[test]
    #[should_panic(expected = "got none")]
    fn no_events_are_not_gap_free() {
        assert_gap_free_seqs(&[], 1);
    }

    #[test]
    #[should_panic(expected = "each once")]
    fn a_gap_fails() {
        assert_gap_free_seqs(&[1, 3], 1);
    }

    #[test]
    #[should_panic(expected = "each once")]
    fn a_duplicate_fails() {
        assert_gap_free_seqs(&[1, 1, 2], 1);
    }

    #[test]
    #[should_panic(expected = "each once")]
    fn a_wrong_start_fails() {
        assert_gap_free_seqs(&[2, 3], 1);
    }
}
