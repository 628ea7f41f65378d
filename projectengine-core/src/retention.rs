//! Retention: finished jobs older than a chosen age are deleted, with
//! everything they left, so that the store stops growing.
//!
//! A worker with [`WorkerConfig::retention`](crate::WorkerConfig::retention)
//! set deletes, every [`Retention::every`], the jobs that finished (succeeded,
//! failed or cancelled) more than [`Retention::after`] ago — with their
//! events, attempts, App, artifacts (records and blobs), webhook deliveries
//! and idempotency keys — in batches of [`Retention::batch`], each batch a
//! short transaction of its own, so no lock is held for long and every worker
//! may run it at once. Kept, whatever their age: a job that has not finished;
//! one with a webhook delivery still pending (it goes once the delivery is
//! done); one whose child jobs are still stored (they go first). A job that
//! is gone answers 404 like a job that never was; a later submission that
//! names it in `depends_on` is refused as unknown.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Job, JobId};

/// When and how finished jobs are deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// A job finished longer ago than this is deleted.
    pub after: Duration,
    /// How often a worker looks for such jobs.
    pub every: Duration,
    /// The most jobs one transaction deletes.
    pub batch: usize,
}

impl Retention {
    /// Deletes jobs finished more than `after` ago, looking once a minute,
    /// 500 jobs per transaction.
    pub fn after(after: Duration) -> Self {
        Self {
            after,
            every: Duration::from_secs(60),
            batch: 500,
        }
    }
}

/// A deleted job, and the artifact blobs its records named (for the engine
/// to delete from the artifact store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purged {
    /// The job.
    pub job_id: JobId,
    /// Its artifacts' blobs.
    pub blobs: Vec<String>,
}

/// Whether `job` has finished before `before` (the rule every store applies,
/// along with the pending deliveries and children it checks itself).
pub fn finished_before(job: &Job, before: DateTime<Utc>) -> bool {
    job.status.is_terminal() && job.finished_at.is_some_and(|at| at < before)
}

impl crate::Engine {
    /// Deletes at most `limit` jobs that finished before `before`, with
    /// everything they left (see [`Store::purge_finished`](crate::Store::purge_finished)),
    /// then their artifacts' blobs; answers how many jobs went. A blob whose
    /// delete fails is logged and left behind; no visible artifact names it.
    pub async fn purge_finished(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> crate::Result<usize> {
        let purged = self.store().purge_finished(before, limit).await?;
        for job in &purged {
            for blob in &job.blobs {
                self.artifact_store().delete(blob).await;
            }
        }
        if !purged.is_empty() {
            tracing::info!(jobs = purged.len(), %before, "finished jobs deleted");
        }
        Ok(purged.len())
    }
}

/// Deletes, every `retention.every` until `stop` fires, the jobs finished
/// longer than `retention.after` ago, a batch at a time until none is left.
pub(crate) async fn run(
    engine: crate::Engine,
    retention: Retention,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(retention.every.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let age = chrono::Duration::from_std(retention.after).unwrap_or(chrono::Duration::MAX);
    let batch = retention.batch.max(1);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(before) = Utc::now().checked_sub_signed(age) else {
            continue;
        };
        loop {
            if stop.is_cancelled() {
                return;
            }
            match engine.purge_finished(before, batch).await {
                Ok(n) if n == batch => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "deleting finished jobs failed; trying again later");
                    break;
                }
            }
        }
    }
}
