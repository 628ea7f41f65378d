//! Attempts: one execution of a job, and the fence that guards its writes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AttemptId, JobError, JobId};

/// How an attempt ended (or that it is still running).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptStatus {
    /// Holds the job's lease.
    Running,
    /// The orchestrator finished successfully.
    Succeeded,
    /// The orchestrator returned an error (or panicked).
    Failed,
    /// Cancelled by the owner, or released by a worker shutting down.
    Cancelled,
    /// Ran past the job's timeout.
    TimedOut,
    /// Its lease expired: the worker died or lost contact.
    Lost,
}

impl AttemptStatus {
    /// The snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Running => "running",
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Cancelled => "cancelled",
            AttemptStatus::TimedOut => "timed_out",
            AttemptStatus::Lost => "lost",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => AttemptStatus::Running,
            "succeeded" => AttemptStatus::Succeeded,
            "failed" => AttemptStatus::Failed,
            "cancelled" => AttemptStatus::Cancelled,
            "timed_out" => AttemptStatus::TimedOut,
            "lost" => AttemptStatus::Lost,
            _ => return None,
        })
    }
}

/// One execution of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// Its id.
    pub id: AttemptId,
    /// The job it runs.
    pub job_id: JobId,
    /// 1, 2, … per job.
    pub number: u32,
    /// The worker that claimed it.
    pub worker_id: String,
    /// Its status.
    pub status: AttemptStatus,
    /// The lease: after this time without a heartbeat, recovery declares it lost.
    pub lease_expires_at: DateTime<Utc>,
    /// When it was claimed.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub error: Option<JobError>,
}

impl Attempt {
    /// The fencing token for writes made on behalf of this attempt.
    pub fn fence(&self) -> Fence {
        Fence {
            job_id: self.job_id,
            attempt: self.number,
        }
    }
}

/// The fencing token: a write is accepted only while `attempt` is still the job's
/// running attempt; otherwise the store answers [`Error::StaleAttempt`](crate::Error::StaleAttempt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    /// The job.
    pub job_id: JobId,
    /// The attempt number that claims to hold the lease.
    pub attempt: u32,
}
