//! Recovery: expired leases are declared lost, stranded due jobs pushed again.
//! Safe to run in every worker at once: each step is a compare-and-set.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{Engine, Error, Outcome, QueueEntry, Result};

/// What one recovery pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Attempts declared lost.
    pub lost: usize,
    /// Due jobs pushed to the queue again.
    pub pushed: usize,
}

/// One recovery pass: every expired lease → attempt `lost` → job queued again
/// (or failed, or cancelled); every queued job overdue by `overdue` → pushed.
pub async fn recover_once(engine: &Engine, overdue: Duration) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    for fence in engine.store().expired_leases(256).await? {
        match engine.store().finish(fence, Outcome::Lost).await {
            Ok(changed) => {
                report.lost += 1;
                tracing::warn!(job_id = %fence.job_id, attempt = fence.attempt, status = %changed.job.status, "attempt lost: its lease expired");
                engine.announce(&changed).await;
            }
            // Another worker recovered it, or the lease was renewed meanwhile.
            Err(Error::StaleAttempt | Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    for due in engine.store().due_jobs(overdue, 1000).await? {
        let entry = QueueEntry {
            job_id: due.id,
            priority: due.priority,
            not_before: None,
            group: engine.queue_group(&due.owner),
        };
        if engine.queue().push(&due.queue, entry).await? {
            report.pushed += 1;
        }
    }
    Ok(report)
}

/// Runs [`recover_once`] every `every` until `stop` fires.
pub(crate) async fn run(
    engine: Engine,
    every: Duration,
    overdue: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first pass, at the worker's start, pushes every due job however
    // recently it came due: the queue may be new (an in-memory queue after a
    // restart holds nothing), and pushing an id already queued is a no-op.
    let mut overdue_now = Duration::ZERO;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pass = recover_once(&engine, overdue_now).await;
        overdue_now = overdue;
        match pass {
            Ok(r) if r.pushed > 0 => tracing::info!(
                pushed = r.pushed,
                lost = r.lost,
                "recovery pushed due jobs again"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "recovery pass failed; will try again"),
        }
    }
}
