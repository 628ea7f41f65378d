//! The [`JobCallbacks`] a worker hands to an orchestrator: persist, then publish.
//!
//! Reports are written behind: a call queues its event and returns. As soon
//! as the orchestrator yields (its future returns `Pending`: it waits for a
//! timer, for I/O, or in [`JobCallbacks::publish_app`]), what it reported is
//! written — by a flusher task, or by `publish_app` itself — in one write;
//! everything reported while a write is in flight goes in the next. So an
//! orchestrator never waits for a commit to report its next step, every event
//! is durable before it is published, and the attempt's events keep the order
//! in which they were reported. `publish_app` and the end of the attempt wait
//! until everything reported before them is written. Log lines alone do not
//! call for a write: they go with the next one, at the first yield once
//! `log_batch` of them wait, or on the supervisor's `log_flush` tick.
//!
//! What no store may be able to hold (a NUL character) is refused at the call
//! that reported it. A write that fails stops the attempt's writes: the calls
//! that follow answer its error ([`Error::StaleAttempt`] once the attempt lost
//! its lease).

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    App, Artifact, ArtifactBody, Engine, Error, EventData, Fence, Job, JobCallbacks, LogLevel,
    LogLine, NewApp, Result, Step, Submit,
};

/// Reports waiting beyond this many make the reporter wait for a write.
const MAX_QUEUED: usize = 4096;

/// Callbacks of one attempt.
pub(crate) struct AttemptCallbacks {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    kind: String,
    fence: Fence,
    token: CancellationToken,
    /// Log lines wait for company until this many are queued (or the
    /// supervisor's flush tick, or any other report).
    log_batch: usize,
    state: Mutex<State>,
    /// Told whenever the flusher stops: its queue is empty, or a write failed.
    idle: Notify,
    /// Fired when the callbacks are dropped: the flusher stops writing.
    closed: CancellationToken,
    /// The attempt's span (current when the callbacks were made), which the
    /// flusher task's writes are children of.
    span: tracing::Span,
    /// The job's latest reviewer's comment, as claimed.
    review_comment: Option<String>,
}

#[derive(Default)]
struct State {
    queued: Vec<EventData>,
    /// Something queued must be written when the orchestrator yields (a
    /// report other than a log line, or a full batch of log lines).
    urgent: bool,
    /// A write is in flight (by the flusher task, or inline).
    flushing: bool,
    failed: Option<Failure>,
}

/// The first failed write, answered to every later call.
enum Failure {
    Stale,
    Other(String),
}

impl Failure {
    fn error(&self) -> Error {
        match self {
            Failure::Stale => Error::StaleAttempt,
            Failure::Other(message) => Error::unavailable(format!(
                "an earlier report of this attempt could not be saved: {message}"
            )),
        }
    }
}

impl Drop for AttemptCallbacks {
    fn drop(&mut self) {
        self.inner.closed.cancel();
    }
}

impl AttemptCallbacks {
    pub(crate) fn new(
        engine: Engine,
        kind: &str,
        fence: Fence,
        token: CancellationToken,
        log_batch: usize,
        review_comment: Option<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                review_comment,
                kind: kind.to_owned(),
                fence,
                token,
                log_batch: log_batch.max(1),
                state: Mutex::new(State::default()),
                idle: Notify::new(),
                closed: CancellationToken::new(),
                span: tracing::Span::current(),
            }),
        }
    }

    /// Queues `data`, to be written when the orchestrator yields (a log line:
    /// with the next write, or once `log_batch` lines wait).
    async fn report(&self, data: EventData, urgent: bool) -> Result<()> {
        storable(&data)?;
        {
            let mut state = self.inner.state();
            if let Some(failed) = &state.failed {
                return Err(failed.error());
            }
            state.queued.push(data);
            if urgent || state.queued.len() >= self.inner.log_batch {
                state.urgent = true;
            }
            if state.queued.len() < MAX_QUEUED {
                return Ok(());
            }
        }
        // Far ahead of the store: wait for the writes to catch up.
        self.flush().await
    }

    /// Writes everything reported so far, and waits until it is written:
    /// inline when no write is in flight, else after the flusher.
    pub(crate) async fn flush(&self) -> Result<()> {
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let write_here = {
                let mut state = self.inner.state();
                if let Some(failed) = &state.failed {
                    return Err(failed.error());
                }
                if !state.flushing && state.queued.is_empty() {
                    return Ok(());
                }
                // No write in flight: this caller writes.
                !std::mem::replace(&mut state.flushing, true)
            };
            if write_here {
                Inner::flusher(self.inner.clone()).await;
            } else {
                idle.await;
            }
        }
    }

    /// The orchestrator yielded: starts writing what must not wait.
    pub(crate) fn yielded(&self) {
        let mut state = self.inner.state();
        if state.urgent {
            Inner::start(&self.inner, &mut state);
        }
    }

    /// Starts writing queued log lines, without waiting; `StaleAttempt` once a
    /// write found the attempt lost.
    pub(crate) fn flush_soon(&self) -> Result<()> {
        let mut state = self.inner.state();
        if let Some(Failure::Stale) = state.failed {
            return Err(Error::StaleAttempt);
        }
        Inner::start(&self.inner, &mut state);
        Ok(())
    }

    /// The attempt these callbacks write for.
    pub(crate) fn fence(&self) -> Fence {
        self.inner.fence
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the flusher if something waits and none runs.
    fn start(this: &Arc<Self>, state: &mut State) {
        if !state.flushing && !state.queued.is_empty() && state.failed.is_none() {
            state.flushing = true;
            let span = this.span.clone();
            tokio::spawn(Self::flusher(this.clone()).instrument(span));
        }
    }

    /// Writes and publishes what is queued, batch after batch, until nothing
    /// is; the caller set `flushing`, which this clears when it ends or is
    /// dropped.
    async fn flusher(this: Arc<Self>) {
        /// Ends the flush however the future ends, waking who waits for it.
        struct Done<'a>(&'a Inner);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.state().flushing = false;
                self.0.idle.notify_waiters();
            }
        }
        let _done = Done(&this);
        loop {
            let batch = {
                let mut state = this.state();
                if state.queued.is_empty() || state.failed.is_some() {
                    return;
                }
                state.urgent = false;
                std::mem::take(&mut state.queued)
            };
            let span = tracing::info_span!("report", events = batch.len());
            let written = tokio::select! {
                r = this.engine.store().append(this.fence, batch).instrument(span) => r,
                _ = this.closed.cancelled() => return,
            };
            match written {
                Ok(events) => this.engine.publish(&this.kind, &events).await,
                Err(e) => {
                    tracing::debug!(error = %e, "writing the attempt's reports failed");
                    let mut state = this.state();
                    state.failed = Some(match e {
                        Error::StaleAttempt => Failure::Stale,
                        other => Failure::Other(other.to_string()),
                    });
                    state.queued.clear();
                }
            }
        }
    }
}

/// Refuses, at the call, what no store may be able to hold: the call that
/// reported it is the one to hear of it, not a later one.
fn storable(data: &EventData) -> Result<()> {
    fn nul_in(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(nul_in),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || nul_in(v)),
            _ => false,
        }
    }
    let (field, bad) = match data {
        EventData::Stage { stage } => ("stage", stage.contains('\0')),
        EventData::Step(step) => (
            "step",
            step.name.contains('\0') || step.detail.as_ref().is_some_and(nul_in),
        ),
        EventData::Log(line) => ("message", line.message.contains('\0')),
        _ => ("", false),
    };
    if bad {
        return Err(Error::invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}

#[async_trait]
impl JobCallbacks for AttemptCallbacks {
    async fn stage(&self, stage: &str) -> Result<()> {
        let data = EventData::Stage {
            stage: stage.to_owned(),
        };
        self.report(data, true).await
    }

    async fn step(&self, step: Step) -> Result<()> {
        self.report(EventData::Step(step), true).await
    }

    async fn progress(&self, percent: u8) -> Result<()> {
        if percent > 100 {
            return Err(Error::invalid("progress", "must be between 0 and 100"));
        }
        self.report(EventData::Progress { progress: percent }, true)
            .await
    }

    async fn log(&self, level: LogLevel, message: &str) -> Result<()> {
        let line = EventData::Log(LogLine {
            level,
            message: message.to_owned(),
        });
        self.report(line, false).await
    }

    async fn publish_app(&self, app: NewApp) -> Result<App> {
        self.flush().await?;
        let inner = &self.inner;
        async move {
            let (app, events) = inner.engine.store().save_app(inner.fence, app).await?;
            inner.engine.publish(&inner.kind, &events).await;
            Ok(app)
        }
        .instrument(tracing::info_span!("publish_app"))
        .await
    }

    async fn put_artifact(
        &self,
        name: &str,
        content_type: &str,
        body: ArtifactBody,
    ) -> Result<Artifact> {
        self.flush().await?;
        let inner = &self.inner;
        inner
            .engine
            .put_artifact(&inner.kind, inner.fence, name, content_type, body)
            .await
    }

    fn cancellation(&self) -> &CancellationToken {
        &self.inner.token
    }

    fn attempt(&self) -> u32 {
        self.inner.fence.attempt
    }

    fn review_comment(&self) -> Option<&str> {
        self.inner.review_comment.as_deref()
    }

    async fn submit_child(&self, key: &str, spec: Submit) -> Result<Job> {
        self.flush().await?;
        let inner = &self.inner;
        let submitted = inner
            .engine
            .submit_child(inner.fence, key, spec)
            .instrument(tracing::info_span!("submit_child", key))
            .await;
        let submitted = match submitted {
            Ok(s) => s,
            Err(Error::StaleAttempt) => {
                let mut state = inner.state();
                state.failed.get_or_insert(Failure::Stale);
                state.queued.clear();
                return Err(Error::StaleAttempt);
            }
            Err(e) => return Err(e),
        };
        let job = submitted.job();
        let line = if submitted.created() {
            format!("child job `{key}` submitted: {}", job.id)
        } else {
            format!("child job `{key}` exists already: {}", job.id)
        };
        self.log(LogLevel::Info, &line).await?;
        Ok(submitted.into_job())
    }
}
