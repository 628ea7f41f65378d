//! [`RemoteCallbacks`]: [`JobCallbacks`] over the agent protocol, and the
//! run of one claimed attempt.
//!
//! Reports are queued and sent behind the orchestrator by a flusher task, as
//! numbered batches in the order reported (a batch retried after a lost
//! answer keeps its number, so the server applies it once). A heartbeat task
//! renews the lease and fires the cancellation token on the owner's cancel
//! or a lost lease. `publish_app`, `put_artifact` and the end of the attempt
//! wait until every earlier report is sent.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use projectengine_core::{
    App, Artifact, ArtifactBody, CancellationToken, Error, ErrorKind, EventData, Job, JobCallbacks,
    LogLevel, LogLine, NewApp, Orchestrator, Result, Step,
};
use tokio::sync::Notify;

use crate::client::{Client, Finish, RunContext};
use crate::{AgentError, Workspace};

/// How long the flusher waits after a report for more to send with it.
const LINGER: Duration = Duration::from_millis(20);

/// Why the attempt was told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Cancel,
    Lost,
    Timeout,
}

#[derive(Default)]
struct State {
    queued: Vec<EventData>,
    next_batch: u64,
    failed: Option<Failure>,
    stop: Option<Stop>,
}

#[derive(Clone)]
enum Failure {
    Stale,
    Other(String),
}

impl Failure {
    fn error(&self) -> Error {
        match self {
            Failure::Stale => Error::StaleAttempt,
            Failure::Other(m) => Error::unavailable(format!(
                "an earlier report of this attempt could not be sent: {m}"
            )),
        }
    }
}

struct Inner {
    client: Client,
    job: Job,
    attempt: u32,
    token: String,
    cancel: CancellationToken,
    state: Mutex<State>,
    /// Held while a batch is being sent, so batches go out in order.
    sending: tokio::sync::Mutex<()>,
    wake: Notify,
}

/// The callbacks of one remote attempt.
pub struct RemoteCallbacks {
    inner: Arc<Inner>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self, why: Stop) {
        let mut state = self.state();
        if state.stop.is_none() {
            state.stop = Some(why);
        }
        drop(state);
        self.cancel.cancel();
    }

    /// Sends everything queued, batch after batch.
    async fn flush(&self) -> Result<()> {
        let _sending = self.sending.lock().await;
        loop {
            let (batch, events) = {
                let mut state = self.state();
                if let Some(f) = &state.failed {
                    return Err(f.error());
                }
                if state.queued.is_empty() {
                    return Ok(());
                }
                state.next_batch += 1;
                (state.next_batch, std::mem::take(&mut state.queued))
            };
            match self.client.events(&self.token, batch, &events).await {
                Ok(_) => {}
                Err(e) => {
                    let failure = match e {
                        AgentError::StaleAttempt => Failure::Stale,
                        other => Failure::Other(other.to_string()),
                    };
                    if matches!(failure, Failure::Stale) {
                        self.stop(Stop::Lost);
                    }
                    let mut state = self.state();
                    state.queued.clear();
                    state.failed = Some(failure.clone());
                    return Err(failure.error());
                }
            }
        }
    }
}

impl RemoteCallbacks {
    fn report(&self, data: EventData) -> Result<()> {
        let mut state = self.inner.state();
        if let Some(f) = &state.failed {
            return Err(f.error());
        }
        state.queued.push(data);
        drop(state);
        self.inner.wake.notify_one();
        Ok(())
    }
}

fn no_nul(field: &'static str, s: &str) -> Result<()> {
    if s.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}

#[async_trait]
impl JobCallbacks for RemoteCallbacks {
    async fn stage(&self, stage: &str) -> Result<()> {
        no_nul("stage", stage)?;
        self.report(EventData::Stage {
            stage: stage.to_owned(),
        })
    }

    async fn step(&self, step: Step) -> Result<()> {
        no_nul("step", &step.name)?;
        self.report(EventData::Step(step))
    }

    async fn progress(&self, percent: u8) -> Result<()> {
        if percent > 100 {
            return Err(Error::invalid("progress", "must be between 0 and 100"));
        }
        self.report(EventData::Progress { progress: percent })
    }

    async fn log(&self, level: LogLevel, message: &str) -> Result<()> {
        no_nul("message", message)?;
        self.report(EventData::Log(LogLine {
            level,
            message: message.to_owned(),
        }))
    }

    async fn publish_app(&self, app: NewApp) -> Result<App> {
        self.inner.flush().await?;
        let i = &self.inner;
        let reply = i
            .client
            .app(&i.token, &app.name, &app.payload)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(App {
            id: reply.id,
            job_id: reply.job_id,
            attempt: i.attempt,
            owner: i.job.owner.clone(),
            name: reply.name,
            payload: reply.payload,
            created_at: reply.created_at,
        })
    }

    async fn put_artifact(
        &self,
        name: &str,
        content_type: &str,
        body: ArtifactBody,
    ) -> Result<Artifact> {
        self.inner.flush().await?;
        let i = &self.inner;
        let reply = i
            .client
            .put_artifact(&i.token, name, content_type, body)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(Artifact {
            job_id: i.job.id,
            name: reply.name,
            attempt: reply.attempt,
            size: reply.size,
            sha256: reply.sha256,
            content_type: reply.content_type,
            blob: String::new(),
            created_at: reply.created_at,
        })
    }

    fn cancellation(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    fn review_comment(&self) -> Option<&str> {
        self.inner.job.review_comment.as_deref()
    }

    async fn submit_child(&self, key: &str, spec: projectengine_core::Submit) -> Result<Job> {
        self.inner.flush().await?;
        let i = &self.inner;
        let reply = i
            .client
            .submit_child(&i.token, key, &spec)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(reply.job)
    }
}

impl RemoteCallbacks {
    /// A failed call: a stale attempt stops the run.
    fn failed(&self, e: AgentError) -> Error {
        if matches!(e, AgentError::StaleAttempt) {
            self.inner.stop(Stop::Lost);
            self.inner.state().failed = Some(Failure::Stale);
        }
        e.into()
    }
}

/// How a remote attempt ended, for the agent's caller.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AttemptEnd {
    /// The outcome was reported.
    Finished(Finish),
    /// The attempt lost its lease: nothing more of it was written.
    Lost,
    /// Reporting the outcome failed; the lease will expire and recovery
    /// requeues the job.
    Unreported(String),
}

/// Runs one claimed attempt of `orchestrator` to its end, heartbeating and
/// sending its reports meanwhile, then reports the outcome.
///
/// With `allowed_roots`, the orchestrator runs with a
/// [`Workspace::current`] whose writable roots are those of the job's
/// policy inside them; its checks are reported as `fs_audit` events.
pub async fn run_attempt(
    client: &Client,
    context: RunContext,
    orchestrator: &dyn Orchestrator,
    cancel_grace: Duration,
    allowed_roots: Option<&[PathBuf]>,
) -> AttemptEnd {
    let asked: Vec<PathBuf> = context
        .policy
        .writable_roots
        .iter()
        .map(PathBuf::from)
        .collect();
    let heartbeat_every = Duration::from_secs_f64(context.heartbeat_s.clamp(0.05, 3600.0));
    let timeout = context.job.timeout();
    let inner = Arc::new(Inner {
        client: client.clone(),
        attempt: context.attempt,
        token: context.attempt_token,
        job: context.job,
        cancel: CancellationToken::new(),
        state: Mutex::new(State::default()),
        sending: tokio::sync::Mutex::new(()),
        wake: Notify::new(),
    });
    let done = CancellationToken::new();
    let flusher = tokio::spawn({
        let inner = inner.clone();
        let done = done.clone();
        async move {
            loop {
                tokio::select! {
                    _ = inner.wake.notified() => {}
                    _ = done.cancelled() => return,
                }
                tokio::time::sleep(LINGER).await;
                if inner.flush().await.is_err() {
                    return;
                }
            }
        }
    });
    let heartbeat = tokio::spawn({
        let inner = inner.clone();
        let done = done.clone();
        async move {
            let mut tick = tokio::time::interval(heartbeat_every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = done.cancelled() => return,
                }
                match inner.client.heartbeat(&inner.token).await {
                    Ok(hb) if hb.cancel_requested => inner.stop(Stop::Cancel),
                    Ok(_) => {}
                    Err(AgentError::StaleAttempt) => {
                        inner.stop(Stop::Lost);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        }
    });
    let callbacks = RemoteCallbacks {
        inner: inner.clone(),
    };
    let workspace = allowed_roots.map(|allowed| {
        let sink = inner.clone();
        Arc::new(
            Workspace::new(allowed, &asked).with_sink(Box::new(move |record| {
                sink.state().queued.push(EventData::FsAudit(record));
                sink.wake.notify_one();
            })),
        )
    });
    let run = async {
        let run = orchestrator.run(&inner.job, &callbacks);
        match workspace {
            Some(ws) => Workspace::scope(ws, run).await,
            None => run.await,
        }
    };
    // Boxed, so that an orchestrator dropped after its grace period is
    // dropped before the outcome is reported.
    let mut run = Box::pin(std::panic::AssertUnwindSafe(run).catch_unwind());
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let result = loop {
        tokio::select! {
            r = &mut run => break Some(r),
            _ = &mut deadline, if !inner.cancel.is_cancelled() => inner.stop(Stop::Timeout),
            _ = inner.cancel.cancelled() => {
                // Stopped: the orchestrator gets its grace period to return.
                match tokio::time::timeout(cancel_grace, &mut run).await {
                    Ok(r) => break Some(r),
                    Err(_) => break None,
                }
            }
        }
    };
    drop(run);
    let stop = inner.state().stop;
    let flushed = inner.flush().await;
    done.cancel();
    let _ = flusher.await;
    heartbeat.abort();
    if stop == Some(Stop::Lost) || matches!(flushed, Err(Error::StaleAttempt)) {
        tracing::warn!("attempt lost its lease; its outcome is not reported");
        return AttemptEnd::Lost;
    }
    let retryable = |code: &str, message: String| Finish::Retryable {
        code: code.to_owned(),
        message,
        retry_after: None,
    };
    let finish = match (result, stop) {
        (Some(Ok(Ok(()))), _) => match flushed {
            Ok(()) => Finish::Succeeded,
            Err(e) => retryable("reports_not_saved", e.to_string()),
        },
        (Some(Err(_panic)), _) => retryable("panic", "the orchestrator panicked".to_owned()),
        (_, Some(Stop::Cancel)) => Finish::Cancelled,
        (_, Some(Stop::Timeout)) => retryable("timeout", "the attempt ran past its timeout".into()),
        (Some(Ok(Err(e))), _) => match e.kind {
            ErrorKind::Stale => return AttemptEnd::Lost,
            ErrorKind::Retryable => Finish::Retryable {
                code: e.code,
                message: e.message,
                retry_after: e.retry_after,
            },
            ErrorKind::Cancelled => Finish::Cancelled,
            _ => Finish::Fatal {
                code: e.code,
                message: e.message,
            },
        },
        (None, _) => retryable("aborted", "the orchestrator was aborted".to_owned()),
    };
    match client.finish(&inner.token, &finish).await {
        Ok(_) => AttemptEnd::Finished(finish),
        Err(AgentError::StaleAttempt) => AttemptEnd::Lost,
        Err(e) => AttemptEnd::Unreported(e.to_string()),
    }
}
