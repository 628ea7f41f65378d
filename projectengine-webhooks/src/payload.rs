//! The JSON body of a completion webhook.

use chrono::{DateTime, Utc};
use projectengine_core::{App, AppId, Artifact, Job, JobError, JobId, JobStatus, WebhookDelivery};
use serde::{Deserialize, Serialize};

/// The body of a completion webhook, in the Standard Webhooks envelope:
/// `type`, `timestamp` and `data`.
///
/// ```json
/// {"type": "job.succeeded", "timestamp": "2026-01-01T12:00:00Z",
///  "data": {"job_id": "…", "status": "succeeded", "error": null,
///           "app_id": "…", "kind": "stub", "created_at": "…",
///           "started_at": "…", "finished_at": "…",
///           "artifacts": [{"name": "dist/index.html", "size": 512,
///                          "sha256": "…", "content_type": "text/html"}]}}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// `job.succeeded`, `job.failed`, `job.cancelled`, or
    /// `job.awaiting_review` for a result held for a person's approval.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the job reached its terminal status.
    pub timestamp: DateTime<Utc>,
    /// What happened.
    pub data: JobEnded,
}

/// The `data` of a [`Payload`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobEnded {
    /// The job.
    pub job_id: JobId,
    /// Its terminal status.
    pub status: JobStatus,
    /// Its error, for a failed job (or the last attempt's, for a cancelled one).
    pub error: Option<JobError>,
    /// The App it published, if any.
    pub app_id: Option<AppId>,
    /// Its kind.
    pub kind: String,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When its last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its terminal status.
    pub finished_at: DateTime<Utc>,
    /// The job's artifacts, by name (download each at
    /// `/api/jobs/{job_id}/artifacts/{name}`).
    pub artifacts: Vec<ArtifactRef>,
}

/// An artifact, as a webhook names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// Its name in the job.
    pub name: String,
    /// Its size, in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Its media type.
    pub content_type: String,
}

impl From<&Artifact> for ArtifactRef {
    fn from(a: &Artifact) -> Self {
        Self {
            name: a.name.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
            content_type: a.content_type.clone(),
        }
    }
}

/// The event type of a status a webhook reports: `job.succeeded`,
/// `job.failed`, `job.cancelled`, `job.awaiting_review` (and `job.<status>`
/// for any other).
pub fn event_type(status: JobStatus) -> String {
    format!("job.{status}")
}

impl Payload {
    /// The body of `delivery`, for `job` as it is now, its `app` and its
    /// `artifacts`. The
    /// status, error and time are the delivery's: the state it reports,
    /// even if an owner's retry has reopened the job since.
    pub fn new(
        delivery: &WebhookDelivery,
        job: &Job,
        app: Option<&App>,
        artifacts: &[Artifact],
    ) -> Self {
        Self {
            kind: event_type(delivery.job_status),
            timestamp: delivery.occurred_at,
            data: JobEnded {
                job_id: delivery.job_id,
                status: delivery.job_status,
                error: delivery.job_error.clone(),
                app_id: app.map(|a| a.id),
                kind: job.kind.clone(),
                created_at: job.created_at,
                started_at: job.started_at,
                finished_at: delivery.occurred_at,
                artifacts: artifacts.iter().map(ArtifactRef::from).collect(),
            },
        }
    }
}
