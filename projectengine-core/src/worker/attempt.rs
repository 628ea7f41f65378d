//! Running one claimed attempt to its outcome.

use std::any::Any;
use std::future::Future;
use std::pin::pin;

use futures::FutureExt;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::callbacks::AttemptCallbacks;
use super::WorkerConfig;
use crate::metrics::RunningAttempt;
use crate::{
    Claim, Engine, Error, ErrorKind, Job, JobError, OrchestratorError, Outcome, Registered,
};

/// Why an attempt was told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Cancel,
    Timeout,
    Shutdown,
    Lost,
}

pub(crate) async fn run(
    engine: &Engine,
    cfg: &WorkerConfig,
    claim: Claim,
    release: CancellationToken,
) {
    let job = claim.job;
    let fence = claim.attempt.fence();
    let span =
        tracing::info_span!("attempt", job_id = %job.id, attempt = fence.attempt, kind = %job.kind);
    if let (Some(propagator), Some(parent)) = (engine.trace_propagator(), &job.trace_parent) {
        propagator.attach(&span, parent);
    }
    async move {
        let _running = RunningAttempt::start(engine.metrics().kind(&job.kind));
        let Some(registered) = engine.registry().get(&job.kind) else {
            let outcome = Outcome::Failed {
                error: JobError::new(
                    "unknown_kind",
                    format!("no orchestrator for kind `{}`", job.kind),
                ),
                retry_in: None,
            };
            finish(engine, fence, outcome).await;
            return;
        };
        let token = CancellationToken::new();
        let callbacks = AttemptCallbacks::new(
            engine.clone(),
            &job.kind,
            fence,
            token.clone(),
            cfg.log_batch,
            job.review_comment.clone(),
        );
        let (joined, why) =
            supervise(engine, cfg, &job, registered, &callbacks, &token, &release).await;
        if why == Some(Stop::Lost) {
            tracing::warn!("attempt lost its lease; its outcome is not recorded");
            return;
        }
        let retry_in = Some(cfg.backoff.delay(fence.attempt));
        let result = match joined {
            Some(Ok(r)) => Some(r),
            Some(Err(panic)) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the orchestrator panicked".to_owned());
                tracing::error!(panic = %msg, "orchestrator panicked");
                let outcome = Outcome::Failed {
                    error: JobError::new("panic", msg),
                    retry_in,
                };
                let _ = callbacks.flush().await;
                finish(engine, fence, outcome).await;
                return;
            }
            // Aborted after ignoring a stop for its grace period.
            None => None,
        };
        let outcome = match (result, why) {
            (Some(Ok(())), _) => Outcome::Succeeded,
            (_, Some(Stop::Cancel)) => Outcome::Cancelled,
            (_, Some(Stop::Timeout)) => Outcome::TimedOut { retry_in },
            (_, Some(Stop::Shutdown)) => Outcome::Released,
            (Some(Err(e)), _) => match e.kind {
                ErrorKind::Stale => {
                    tracing::warn!("attempt lost its lease; its outcome is not recorded");
                    return;
                }
                ErrorKind::Retryable => Outcome::Failed {
                    // No sooner than the orchestrator asked.
                    retry_in: retry_in
                        .map(|backoff| e.retry_after.map_or(backoff, |at| at.max(backoff))),
                    error: JobError::new(e.code, e.message),
                },
                ErrorKind::Cancelled => Outcome::Cancelled,
                _ => Outcome::Failed {
                    error: JobError::new(e.code, e.message),
                    retry_in: None,
                },
            },
            (None, _) => Outcome::Failed {
                error: JobError::new("aborted", "the orchestrator was aborted"),
                retry_in,
            },
        };
        let outcome = match callbacks.flush().await {
            Ok(()) => outcome,
            Err(Error::StaleAttempt) => {
                tracing::warn!("attempt lost its lease; its outcome is not recorded");
                return;
            }
            // Reports are missing from the log: not a success to record.
            Err(e) if outcome == Outcome::Succeeded => Outcome::Failed {
                error: JobError::new("reports_not_saved", e.to_string()),
                retry_in,
            },
            Err(e) => {
                tracing::debug!(error = %e, "the attempt's last reports could not be saved");
                outcome
            }
        };
        finish(engine, fence, outcome).await;
    }
    .instrument(span)
    .await
}

type RunResult = Result<Result<(), OrchestratorError>, Box<dyn Any + Send>>;

/// Drives the orchestrator, and meanwhile renews the lease, flushes logs, and
/// stops it on cancel, timeout, shutdown or a lost lease — all in this one task.
/// Answers the orchestrator's result (`None` when it had to be dropped after
/// ignoring a stop for `cancel_grace`) and why it was stopped.
async fn supervise(
    engine: &Engine,
    cfg: &WorkerConfig,
    job: &Job,
    registered: &Registered,
    callbacks: &AttemptCallbacks,
    token: &CancellationToken,
    release: &CancellationToken,
) -> (Option<RunResult>, Option<Stop>) {
    let fence = callbacks.fence();
    let mut orchestrator = pin!(std::panic::AssertUnwindSafe(
        registered.orchestrator.run(job, callbacks)
    )
    .catch_unwind());
    // Whenever the orchestrator yields, what it reported meanwhile is written.
    let mut run = pin!(std::future::poll_fn(|cx| {
        let polled = orchestrator.as_mut().poll(cx);
        if polled.is_pending() {
            callbacks.yielded();
        }
        polled
    }));
    // The timers count from here. `biased`: an orchestrator that finishes in
    // its first poll returns before any timer is polled, so none is armed.
    let now = Instant::now();
    let mut heartbeat = interval_at(now + cfg.heartbeat, cfg.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut flush = interval_at(now + cfg.log_flush, cfg.log_flush);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut deadline = pin!(match now.checked_add(job.timeout()) {
        Some(at) => tokio::time::sleep_until(at),
        None => tokio::time::sleep(job.timeout()),
    });
    let mut grace = pin!(tokio::time::sleep(std::time::Duration::MAX));
    let mut why: Option<Stop> = None;
    let stop = |reason: Stop,
                why: &mut Option<Stop>,
                grace: &mut std::pin::Pin<&mut tokio::time::Sleep>| {
        if why.is_none() {
            *why = Some(reason);
            token.cancel();
            grace.as_mut().reset(Instant::now() + cfg.cancel_grace);
        }
    };
    loop {
        tokio::select! {
            biased;
            r = &mut run => return (Some(r), why),
            _ = heartbeat.tick() => match engine.store().heartbeat(fence, cfg.lease).await {
                Ok(hb) if hb.cancel_requested => stop(Stop::Cancel, &mut why, &mut grace),
                Ok(_) => {}
                Err(Error::StaleAttempt) => stop(Stop::Lost, &mut why, &mut grace),
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            },
            _ = flush.tick() => {
                if let Err(Error::StaleAttempt) = callbacks.flush_soon() {
                    stop(Stop::Lost, &mut why, &mut grace);
                }
            }
            _ = &mut deadline, if why.is_none() => stop(Stop::Timeout, &mut why, &mut grace),
            _ = release.cancelled(), if why.is_none() => stop(Stop::Shutdown, &mut why, &mut grace),
            _ = &mut grace, if why.is_some() => {
                tracing::warn!("orchestrator ignored its cancellation; dropping it");
                return (None, why);
            }
        }
    }
}

async fn finish(engine: &Engine, fence: crate::Fence, outcome: Outcome) {
    let span = tracing::info_span!("finish", outcome = outcome_name(&outcome));
    finish_in(engine, fence, outcome).instrument(span).await;
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed { .. } => "failed",
        Outcome::TimedOut { .. } => "timed_out",
        Outcome::Cancelled => "cancelled",
        Outcome::Released => "released",
        Outcome::Lost => "lost",
    }
}

async fn finish_in(engine: &Engine, fence: crate::Fence, outcome: Outcome) {
    match engine.store().finish(fence, outcome).await {
        Ok(changed) => {
            tracing::debug!(status = %changed.job.status, "attempt finished");
            engine.announce(&changed).await;
        }
        Err(Error::StaleAttempt) => {
            tracing::warn!("attempt was no longer the job's running attempt; outcome dropped")
        }
        Err(e) => {
            // The lease will expire and recovery requeues the job.
            tracing::error!(error = %e, "recording the attempt's outcome failed");
        }
    }
}
