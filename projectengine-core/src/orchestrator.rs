//! The plug-in API: [`Orchestrator`], the [`JobCallbacks`] it reports through, and
//! the [`Registry`] that maps a job's kind to one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::{App, Artifact, ArtifactBody, Error, Job, LogLevel, NewApp, Result, Step, Submit};

/// Runs one attempt of a job.
///
/// # Contract
/// - Report through `callbacks`; each report is persisted before it is published.
/// - Honour `callbacks.cancellation()`: when it fires (owner's cancel, timeout,
///   worker shutdown, lost lease), return soon, e.g. with [`OrchestratorError::cancelled`].
///   An orchestrator that does not is aborted after a grace period.
/// - Return `Ok(())` on success. Publish the App before returning, with
///   [`JobCallbacks::publish_app`].
/// - A callback that fails with [`Error::StaleAttempt`] means this attempt lost
///   its lease: stop at once (`?` converts it).
/// - A panic fails the attempt, not the worker.
#[async_trait]
pub trait Orchestrator: Send + Sync + 'static {
    /// Runs the job to completion, reporting as it goes.
    async fn run(&self, job: &Job, callbacks: &dyn JobCallbacks) -> Result<(), OrchestratorError>;
}

/// What an orchestrator can do while it runs.
///
/// Reports (stage, step, progress, log) are written behind the orchestrator:
/// a call checks its input, queues the report and returns without waiting for
/// the store. When the orchestrator next yields (its future is pending: it
/// awaits a timer, I/O, or [`JobCallbacks::publish_app`]), the worker writes
/// what it reported meanwhile as one append, in the order reported; whatever is
/// reported while that write is in flight goes into the next one. Each report
/// is published only once it is durable. Log lines may wait longer: see
/// [`JobCallbacks::log`]. A call waits for the store only when thousands of
/// reports are already queued.
///
/// [`JobCallbacks::publish_app`] waits until every earlier report is written,
/// and so does the end of the attempt: a run that returns `Ok(())` succeeds
/// only once all its reports are stored (if they cannot be, the attempt fails
/// with `reports_not_saved`).
///
/// Every write is fenced by the attempt. Once a write failed, nothing more of
/// the attempt is written and every later call answers that failure:
/// [`Error::StaleAttempt`] when the attempt lost its lease,
/// [`Error::Unavailable`] when the store failed. The calls whose reports that
/// write held had already answered `Ok(())`.
#[async_trait]
pub trait JobCallbacks: Send + Sync {
    /// Enters a stage (free text, e.g. `PLANNING`). A NUL character is
    /// [`Error::Invalid`].
    async fn stage(&self, stage: &str) -> Result<()>;

    /// Reports a step. A NUL character in its name or detail is
    /// [`Error::Invalid`].
    async fn step(&self, step: Step) -> Result<()>;

    /// Reports progress, 0–100 (more is [`Error::Invalid`]).
    async fn progress(&self, percent: u8) -> Result<()>;

    /// Logs a line. A NUL character in `message` is [`Error::Invalid`].
    ///
    /// Unlike the other reports, a line alone does not make the worker write
    /// when the orchestrator yields: it waits for company. It is written with
    /// the attempt's next write (any other report, [`JobCallbacks::publish_app`],
    /// the end of the attempt), once
    /// [`WorkerConfig::log_batch`](crate::WorkerConfig::log_batch) lines are
    /// queued (at the next yield), and in any case at the worker's next
    /// [`WorkerConfig::log_flush`](crate::WorkerConfig::log_flush) tick. Lines
    /// are published once durable, like every report.
    async fn log(&self, level: LogLevel, message: &str) -> Result<()>;

    /// Publishes the job's App. A job publishes at most one.
    async fn publish_app(&self, app: NewApp) -> Result<App>;

    /// Stores a file of this attempt under `name` (relative, `/`-separated:
    /// see [`artifact::validate_name`](crate::artifact::validate_name)), with
    /// its media type, and appends an `artifact` event. `body` may be bytes or
    /// a stream, uploaded as it comes. A name already stored (by this attempt
    /// or an earlier one) is replaced. Like
    /// [`JobCallbacks::publish_app`], it waits until every earlier report is
    /// written. Past the size limits it is
    /// [`Error::LimitExceeded`]; once the attempt lost its lease (or ended),
    /// [`Error::StaleAttempt`] — and then nothing of the upload is visible.
    async fn put_artifact(
        &self,
        name: &str,
        content_type: &str,
        body: ArtifactBody,
    ) -> Result<Artifact>;

    /// Fires when the attempt must stop: cancel, timeout, shutdown or lost lease.
    fn cancellation(&self) -> &CancellationToken;

    /// The number of this attempt (1, 2, …).
    fn attempt(&self) -> u32;

    /// The latest reviewer's comment on a rejected result of this job
    /// ([`Job::review_comment`](crate::Job::review_comment)): what this
    /// attempt is asked to change. `None` until a reviewer rejected one.
    fn review_comment(&self) -> Option<&str>;
    /// Submits a child job of this job under `key` (e.g. `frontend`): a job
    /// of the same owner, validated like any submission, queued and run like
    /// any other, whose [`Job::parent_id`] is this job. The key is the
    /// child's identity among this job's children: the first call with a key
    /// creates the child, and any later call with it — by this attempt or,
    /// after a retry, by a later one — answers that same child, so a retried
    /// attempt never creates its children twice (see
    /// [`children`](crate::children)). Like
    /// [`JobCallbacks::publish_app`], it waits until every earlier report is
    /// written. Once the attempt lost its lease,
    /// [`Error::StaleAttempt`], and nothing is created.
    ///
    /// The provided implementation refuses with [`Error::Invalid`] naming
    /// `child`, for callbacks that cannot submit jobs.
    async fn submit_child(&self, key: &str, spec: Submit) -> Result<Job> {
        let _ = (key, spec);
        Err(Error::invalid(
            "child",
            "these callbacks cannot submit child jobs",
        ))
    }
}

/// Whether retrying may help after an [`OrchestratorError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Transient: the job is retried with backoff while attempts remain.
    Retryable,
    /// Permanent: the job fails now.
    Fatal,
    /// The orchestrator stopped because its cancellation token fired.
    Cancelled,
    /// The attempt lost its lease; its outcome is no longer its own to report.
    Stale,
}

/// Why an orchestrator's run did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrchestratorError {
    /// Retry, or not.
    pub kind: ErrorKind,
    /// A stable code, recorded on the job (`orchestrator_error` by default).
    pub code: String,
    /// A message, recorded on the job.
    pub message: String,
    /// For a [`ErrorKind::Retryable`] error: retry no sooner than this (a
    /// provider's `Retry-After`, say); the worker waits the longer of it and
    /// its own backoff. `None`: the backoff alone.
    pub retry_after: Option<Duration>,
}

impl OrchestratorError {
    /// A transient error: retry with backoff.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Retryable, "orchestrator_error", message)
    }

    /// A permanent error: fail the job now.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fatal, "orchestrator_error", message)
    }

    /// Stopped because the cancellation token fired.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "cancelled", "cancelled")
    }

    /// An error with an explicit kind and code.
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// Asks for the retry to wait at least `delay`.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Replaces the code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = code.into();
        self
    }
}

impl fmt::Display for OrchestratorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for OrchestratorError {}

impl From<Error> for OrchestratorError {
    fn from(e: Error) -> Self {
        match e {
            Error::StaleAttempt => Self::new(ErrorKind::Stale, "stale_attempt", e.to_string()),
            Error::Unavailable { .. } => {
                Self::new(ErrorKind::Retryable, "unavailable", e.to_string())
            }
            other => Self::new(ErrorKind::Fatal, other.code(), other.to_string()),
        }
    }
}

/// An orchestrator registered under a kind, with the named queue its jobs use.
#[derive(Clone)]
pub struct Registered {
    /// The plug-in.
    pub orchestrator: Arc<dyn Orchestrator>,
    /// The named queue for jobs of this kind.
    pub queue: String,
    /// Run by remote agents over the agent protocol, never by an in-process
    /// worker (see [`Registry::register_remote`]).
    pub remote: bool,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("queue", &self.queue)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// Orchestrators by kind. The first registered kind is the default unless
/// [`Registry::set_default`] says otherwise.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    kinds: BTreeMap<String, Registered>,
    default_kind: Option<String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `orchestrator` for `kind`; its jobs go through the queue named
    /// like the kind.
    pub fn register(self, kind: impl Into<String>, orchestrator: impl Orchestrator) -> Self {
        let kind = kind.into();
        let queue = kind.clone();
        self.register_in(kind, queue, orchestrator)
    }

    /// Registers `orchestrator` for `kind`, routing its jobs through `queue`.
    pub fn register_in(
        mut self,
        kind: impl Into<String>,
        queue: impl Into<String>,
        orchestrator: impl Orchestrator,
    ) -> Self {
        let kind = kind.into();
        if self.default_kind.is_none() {
            self.default_kind = Some(kind.clone());
        }
        self.kinds.insert(
            kind,
            Registered {
                orchestrator: Arc::new(orchestrator),
                queue: queue.into(),
                remote: false,
            },
        );
        self
    }

    /// Registers `kind` with no in-process orchestrator: its jobs, in the
    /// queue named like the kind, wait for remote agents to claim them over
    /// the agent protocol. In-process workers do not serve its queue.
    pub fn register_remote(mut self, kind: impl Into<String>) -> Self {
        let kind = kind.into();
        if self.default_kind.is_none() {
            self.default_kind = Some(kind.clone());
        }
        self.kinds.insert(
            kind.clone(),
            Registered {
                orchestrator: Arc::new(RemoteOnly),
                queue: kind,
                remote: true,
            },
        );
        self
    }

    /// Makes `kind` the one used when a submission names none.
    pub fn set_default(mut self, kind: impl Into<String>) -> Self {
        self.default_kind = Some(kind.into());
        self
    }

    /// The kind used when a submission names none.
    pub fn default_kind(&self) -> Option<&str> {
        self.default_kind.as_deref()
    }

    /// The orchestrator of a kind.
    pub fn get(&self, kind: &str) -> Option<&Registered> {
        self.kinds.get(kind)
    }

    /// Every registered kind.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Every named queue used by a registered kind, without repeats.
    pub fn queues(&self) -> Vec<String> {
        let mut q: Vec<String> = self.kinds.values().map(|r| r.queue.clone()).collect();
        q.sort();
        q.dedup();
        q
    }

    /// The named queues an in-process worker serves: those of kinds not
    /// registered as remote, without repeats.
    pub fn local_queues(&self) -> Vec<String> {
        let mut q: Vec<String> = self
            .kinds
            .values()
            .filter(|r| !r.remote)
            .map(|r| r.queue.clone())
            .collect();
        q.sort();
        q.dedup();
        q
    }
}

/// The orchestrator of a remote kind: an in-process worker told to run one
/// of its jobs (a queue configured by hand) fails it, plainly.
struct RemoteOnly;

#[async_trait]
impl Orchestrator for RemoteOnly {
    async fn run(&self, job: &Job, _: &dyn JobCallbacks) -> Result<(), OrchestratorError> {
        Err(
            OrchestratorError::fatal(format!("kind `{}` runs on remote agents only", job.kind))
                .with_code("remote_kind"),
        )
    }
}
