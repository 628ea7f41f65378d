//! Running one claimed attempt to its outcome.

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::callbacks::AttemptCallbacks;
use super::WorkerConfig;
use crate::{Claim, Engine, Error, ErrorKind, JobError, JobStatus, Outcome};

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
    async move {
        let Some(registered) = engine.registry().get(&job.kind).cloned() else {
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
        let stop: Arc<Mutex<Option<Stop>>> = Arc::default();
        let set_stop = {
            let stop = stop.clone();
            let token = token.clone();
            move |why: Stop| {
                let mut s = stop.lock().unwrap_or_else(|p| p.into_inner());
                if s.is_none() {
                    *s = Some(why);
                }
                token.cancel();
            }
        };
        let callbacks = Arc::new(AttemptCallbacks::new(
            engine.clone(),
            fence,
            token.clone(),
            cfg.log_batch,
        ));
        let done = CancellationToken::new();

        // Heartbeat: renew the lease, deliver cancel requests, notice a lost lease.
        let heartbeat = {
            let engine = engine.clone();
            let done = done.clone();
            let set_stop = set_stop.clone();
            let (every, lease) = (cfg.heartbeat, cfg.lease);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = done.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    match engine.store().heartbeat(fence, lease).await {
                        Ok(hb) if hb.cancel_requested => set_stop(Stop::Cancel),
                        Ok(_) => {}
                        Err(Error::StaleAttempt) => {
                            set_stop(Stop::Lost);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
            })
        };
        let flusher = {
            let callbacks = callbacks.clone();
            let done = done.clone();
            let every = cfg.log_flush;
            tokio::spawn(async move { callbacks.flush_periodically(every, done).await })
        };
        // Timeout and shutdown only ask the orchestrator to stop.
        let watchdog = {
            let done = done.clone();
            let set_stop = set_stop.clone();
            let timeout = job.timeout();
            tokio::spawn(async move {
                tokio::select! {
                    _ = done.cancelled() => {}
                    _ = tokio::time::sleep(timeout) => set_stop(Stop::Timeout),
                    _ = release.cancelled() => set_stop(Stop::Shutdown),
                }
            })
        };

        let mut task = {
            let orchestrator = registered.orchestrator.clone();
            let callbacks = callbacks.clone();
            let job = job.clone();
            tokio::spawn(
                async move {
                    std::panic::AssertUnwindSafe(orchestrator.run(&job, &*callbacks))
                        .catch_unwind()
                        .await
                }
                .in_current_span(),
            )
        };
        let joined = tokio::select! {
            r = &mut task => Some(r),
            _ = token.cancelled() => {
                // Give the orchestrator its grace to return, then abort it.
                match tokio::time::timeout(cfg.cancel_grace, &mut task).await {
                    Ok(r) => Some(r),
                    Err(_) => {
                        tracing::warn!("orchestrator ignored its cancellation; aborting it");
                        task.abort();
                        None
                    }
                }
            }
        };
        done.cancel();
        let _ = tokio::join!(heartbeat, flusher, watchdog);
        let why = *stop.lock().unwrap_or_else(|p| p.into_inner());
        if why == Some(Stop::Lost) {
            tracing::warn!("attempt lost its lease; its outcome is not recorded");
            return;
        }
        let retry_in = Some(cfg.backoff.delay(fence.attempt));
        let result = match joined {
            Some(Ok(Ok(r))) => Some(r),
            Some(Ok(Err(panic))) => {
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
            // The task was aborted: only after a stop.
            Some(Err(_)) | None => None,
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
                    error: JobError::new(e.code, e.message),
                    retry_in,
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
        if let Err(e) = callbacks.flush().await {
            tracing::debug!(error = %e, "final log flush failed");
        }
        finish(engine, fence, outcome).await;
    }
    .instrument(span)
    .await
}

async fn finish(engine: &Engine, fence: crate::Fence, outcome: Outcome) {
    match engine.store().finish(fence, outcome).await {
        Ok(changed) => {
            tracing::debug!(status = %changed.job.status, "attempt finished");
            engine.publish(&changed.events).await;
            if changed.job.status == JobStatus::Queued {
                engine.wake(&changed.job).await;
            }
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
