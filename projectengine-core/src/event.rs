//! The step log: every change of a job is an event with a per-job, gap-free seq.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AppId, JobError, JobId, JobStatus};

/// One entry of a job's event log.
///
/// Serialized as `{"job_id", "seq", "attempt", "at", "type", "data"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub job_id: JobId,
    /// 1, 2, 3 … per job, without gaps, assigned by the store.
    pub seq: u64,
    /// The attempt it belongs to (0 for events outside any attempt).
    pub attempt: u32,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub data: EventData,
}

impl JobEvent {
    /// The status this event moved the job to, if it is a status event.
    pub fn status(&self) -> Option<JobStatus> {
        match &self.data {
            EventData::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether this event moved the job to a terminal status.
    pub fn is_terminal(&self) -> bool {
        self.status().is_some_and(JobStatus::is_terminal)
    }
}

/// The kind and payload of an event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventData {
    /// The job's status changed.
    Status {
        /// The new status.
        status: JobStatus,
        /// Why (the error of a failure, or of the attempt before a retry).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<JobError>,
        /// For `queued` after a retry: when it will run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_at: Option<DateTime<Utc>>,
    },
    /// The orchestrator entered a stage.
    Stage {
        /// Free text, e.g. `PLANNING`.
        stage: String,
    },
    /// A step of the orchestrator.
    Step(Step),
    /// Progress, 0–100.
    Progress {
        /// Percent.
        progress: u8,
    },
    /// A log line.
    Log(LogLine),
    /// The App was published.
    App {
        /// Its id.
        app_id: AppId,
        /// Its name.
        name: String,
    },
    /// An artifact was stored (or replaced one of the same name). Boxed: it
    /// is rare, and would otherwise make every event bigger.
    Artifact(Box<ArtifactStored>),
    /// An attempt failed (the job may still be retried).
    Error(JobError),
    /// The owner asked to cancel the running attempt.
    CancelRequested,
    /// An agent checked a file access against its writable roots.
    FsAudit(FsAudit),
}

/// What a file-access check decided, recorded as an `fs_audit` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsAudit {
    /// The path as asked for.
    pub path: String,
    /// The operation.
    pub op: FsOp,
    /// Whether it was allowed.
    pub allowed: bool,
}

/// A file operation an agent checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsOp {
    /// Reading.
    Read,
    /// Writing (creating or changing).
    Write,
    /// Deleting.
    Delete,
}

impl FsOp {
    /// The snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FsOp::Read => "read",
            FsOp::Write => "write",
            FsOp::Delete => "delete",
        }
    }
}

impl EventData {
    /// The snake_case name of the kind, as in JSON's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::Status { .. } => "status",
            EventData::Stage { .. } => "stage",
            EventData::Step(_) => "step",
            EventData::Progress { .. } => "progress",
            EventData::Log(_) => "log",
            EventData::App { .. } => "app",
            EventData::Artifact(_) => "artifact",
            EventData::Error(_) => "error",
            EventData::CancelRequested => "cancel_requested",
            EventData::FsAudit(_) => "fs_audit",
        }
    }
}

/// What an `artifact` event says of the artifact stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactStored {
    /// Its name.
    pub name: String,
    /// Its size, in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Its media type.
    pub content_type: String,
}

/// A step an orchestrator reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What the step is, e.g. `write models.rs`.
    pub name: String,
    /// Where the step is.
    pub status: StepStatus,
    /// Anything the orchestrator wants to show with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

impl Step {
    /// A step that started.
    pub fn started(name: impl Into<String>) -> Self {
        Self::with_status(name, StepStatus::Started)
    }

    /// A step that completed.
    pub fn completed(name: impl Into<String>) -> Self {
        Self::with_status(name, StepStatus::Completed)
    }

    /// A step that failed.
    pub fn failed(name: impl Into<String>) -> Self {
        Self::with_status(name, StepStatus::Failed)
    }

    fn with_status(name: impl Into<String>, status: StepStatus) -> Self {
        Self {
            name: name.into(),
            status,
            detail: None,
        }
    }

    /// Attaches a detail.
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

impl From<&str> for Step {
    fn from(name: &str) -> Self {
        Step::completed(name)
    }
}

/// Where a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepStatus {
    /// Begun.
    Started,
    /// Done.
    Completed,
    /// Failed.
    Failed,
}

/// A log line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

/// Severity of a [`LogLine`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogLevel {
    /// Debugging detail.
    Debug,
    /// Normal information.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}
