//! Jobs, their status machine, and what a submission carries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{JobId, Owner};

/// Where a job is in its life.
///
/// `queued → running → succeeded | failed | cancelled`; `running → queued` (a
/// retry, or its worker was lost); `queued → cancelled`. Workflows add two
/// states: `waiting → queued | cancelled` (a job held until its dependencies
/// succeed, or cancelled when one of them does not), and
/// `running → awaiting_review → succeeded | queued | failed | cancelled` (a
/// result held for a person's approval; a rejection runs it again or fails it).
/// The terminal states are final for workers and recovery; only an owner's
/// explicit [retry] reopens a `failed` or `cancelled` job. [`JobStatus::can_become`] is the table; the
/// planners of [`transition`](crate::transition) check every move against it,
/// and stores only execute their plans.
///
/// [retry]: crate::Engine::retry
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobStatus {
    /// Waiting for a worker (possibly until `run_at`).
    Queued,
    /// Held until every job it depends on has succeeded; then `queued`.
    Waiting,
    /// An attempt is running.
    Running,
    /// Its attempt succeeded and the result waits for a person's approval.
    AwaitingReview,
    /// Finished with success; an App may have been published.
    Succeeded,
    /// Finished with an error after its attempts were spent, or a fatal error.
    Failed,
    /// Cancelled by its owner.
    Cancelled,
}

impl JobStatus {
    /// Whether the job is finished (succeeded, failed or cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// The transition table: may a job go from `self` to `to`?
    ///
    /// `failed → queued` and `cancelled → queued` are allowed only as an owner's
    /// explicit retry; adapters use [`JobStatus::can_become`] for everything else.
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, to),
            (Queued, Running)
                | (Queued, Cancelled)
                | (Waiting, Queued)
                | (Waiting, Cancelled)
                | (Running, AwaitingReview)
                | (AwaitingReview, Succeeded)
                | (AwaitingReview, Queued)
                | (AwaitingReview, Failed)
                | (AwaitingReview, Cancelled)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Running, Queued)
        )
    }

    /// The statuses from which an owner's retry may start a job again.
    pub fn can_retry(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Cancelled)
    }

    /// The snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Waiting => "waiting",
            JobStatus::AwaitingReview => "awaiting_review",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "waiting" => JobStatus::Waiting,
            "awaiting_review" => JobStatus::AwaitingReview,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error recorded on a job or an attempt: a stable code and a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Machine-readable code, e.g. `timeout`, `orchestrator_error`, `lost`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl JobError {
    /// A new error.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// A job: one request to run an orchestrator, and everything known about its run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id (UUID v7).
    pub id: JobId,
    /// Who submitted it.
    pub owner: Owner,
    /// Selects the orchestrator.
    pub kind: String,
    /// The named queue its wake-ups go through (chosen from the kind).
    pub queue: String,
    /// What to do, in the submitter's words.
    pub prompt: String,
    /// Free-form parameters for the orchestrator (a JSON object).
    pub params: Value,
    /// Current status.
    pub status: JobStatus,
    /// Current stage, free text (e.g. `PLANNING`).
    pub stage: Option<String>,
    /// Progress, 0–100.
    pub progress: u8,
    /// Higher runs first.
    pub priority: i32,
    /// How many attempts may be spent before the job fails.
    pub max_attempts: u32,
    /// How long one attempt may run, in milliseconds.
    pub timeout_ms: u64,
    /// Not run before this time.
    pub run_at: DateTime<Utc>,
    /// Number of the latest attempt (0 before the first). This is the fencing token.
    pub attempt: u32,
    /// Attempts that count against `max_attempts` (a graceful-shutdown release does not).
    pub attempts_used: u32,
    /// The owner asked to cancel the running attempt.
    pub cancel_requested: bool,
    /// Why it failed (or why the last attempt failed).
    pub error: Option<JobError>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The seq of its latest event.
    pub last_seq: u64,
    /// The job's own webhook URL, notified when it ends (see
    /// [`webhook`](crate::WebhookDelivery)).
    #[serde(default)]
    pub webhook: Option<String>,
    /// Whether it notifies the deployment-wide webhook URL when it ends;
    /// decided at submission (see [`Webhooks`](crate::Webhooks) for why).
    #[serde(default)]
    pub notify_deployment: bool,
    /// The trace context of the request that submitted it (a W3C
    /// `traceparent`), which its attempts' spans continue; see
    /// [`crate::trace`].
    #[serde(default)]
    pub trace_parent: Option<String>,
    /// Whether a successful attempt waits in `awaiting_review` for a
    /// person's approval instead of succeeding at once (see
    /// [`Engine::approve`](crate::Engine::approve) and
    /// [`Engine::reject`](crate::Engine::reject)).
    #[serde(default)]
    pub review: bool,
    /// The latest reviewer's comment on a rejected result: what the next
    /// attempt is asked to change. Its orchestrator reads it here (and
    /// through [`JobCallbacks::review_comment`](crate::JobCallbacks::review_comment)).
    #[serde(default)]
    pub review_comment: Option<String>,
    /// The job whose running attempt submitted this one as a child (see
    /// [`JobCallbacks::submit_child`](crate::JobCallbacks::submit_child)).
    #[serde(default)]
    pub parent_id: Option<JobId>,
    /// A child's key, unique among its parent's children.
    #[serde(default)]
    pub child_key: Option<String>,
    /// The project of its owner it belongs to, if any (see [`crate::workflow`]).
    #[serde(default)]
    pub project: Option<String>,
    /// The jobs (of the same owner) that must succeed before it is queued;
    /// while one has not, it is [`JobStatus::Waiting`].
    #[serde(default)]
    pub depends_on: Vec<JobId>,
    /// Its concurrency key: at most [`Job::concurrency_limit`] of the
    /// owner's jobs with this key run at once (see [`crate::concurrency`]).
    #[serde(default)]
    pub concurrency_key: Option<String>,
    /// The limit that goes with [`Job::concurrency_key`].
    #[serde(default)]
    pub concurrency_limit: Option<u32>,
}

impl Job {
    /// The per-attempt timeout as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// A validated submission, as handed to [`Store::create_job`](crate::Store::create_job).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// The id to create it with.
    pub id: JobId,
    /// Its owner.
    pub owner: Owner,
    /// Orchestrator kind.
    pub kind: String,
    /// Named queue.
    pub queue: String,
    /// Prompt.
    pub prompt: String,
    /// Parameters (a JSON object).
    pub params: Value,
    /// Priority.
    pub priority: i32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Per-attempt timeout in milliseconds.
    pub timeout_ms: u64,
    /// Not before.
    pub run_at: DateTime<Utc>,
    /// The owner's quota of queued jobs: the store refuses the job with
    /// [`LimitExceeded`](crate::Error::LimitExceeded) when the owner has this
    /// many `queued` jobs already, counted atomically with the insert (`None`:
    /// no quota).
    #[serde(default)]
    pub max_queued: Option<u32>,
    /// The job's own webhook URL (checked by the engine).
    #[serde(default)]
    pub webhook: Option<String>,
    /// Whether the job notifies the deployment-wide webhook URL when it ends.
    #[serde(default)]
    pub notify_deployment: bool,
    /// The submitter's trace context (a W3C `traceparent`), kept on the job
    /// for its attempts; see [`crate::trace`].
    #[serde(default)]
    pub trace_parent: Option<String>,
    /// Whether a successful attempt waits for review ([`Job::review`]).
    #[serde(default)]
    pub review: bool,
    /// The parent job of a child job; set by
    /// [`Engine::submit_child`](crate::Engine::submit_child) only.
    #[serde(default)]
    pub parent_id: Option<JobId>,
    /// A child's key among its parent's children (set with `parent_id`).
    #[serde(default)]
    pub child_key: Option<String>,
    /// The owner's project it belongs to (checked by the engine with
    /// [`workflow::check_project`](crate::workflow::check_project)).
    #[serde(default)]
    pub project: Option<String>,
    /// The owner's jobs it waits for; the store checks them atomically with
    /// the insert (see [`workflow::plan_create`](crate::workflow::plan_create)).
    #[serde(default)]
    pub depends_on: Vec<JobId>,
    /// Its concurrency key (checked by the engine with
    /// [`concurrency::check`](crate::concurrency::check)); the store claims
    /// it only while fewer than `concurrency_limit` of the owner's jobs with
    /// this key run.
    #[serde(default)]
    pub concurrency_key: Option<String>,
    /// The limit that goes with `concurrency_key`.
    #[serde(default)]
    pub concurrency_limit: Option<u32>,
}

/// What to list: filters and a cursor page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs with ids strictly after this one (ascending order), or before it
    /// when [`JobQuery::newest_first`] is set.
    pub cursor: Option<JobId>,
    /// Page size (the engine clamps it to 1..=500).
    pub limit: usize,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// Only jobs of this project.
    pub project: Option<String>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
}

/// One page of a cursor-paged listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in cursor order.
    pub items: Vec<T>,
    /// Pass this as the cursor to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}
