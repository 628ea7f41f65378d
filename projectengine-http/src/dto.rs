//! What goes over the wire: request and response bodies and query strings,
//! with their OpenAPI schemas. Core types stay free of HTTP concerns; these
//! mirror them.

use chrono::{DateTime, Utc};
use projectengine_core::{
    App, AppId, Artifact, Attempt, AttemptStatus, DeliveryId, DeliveryLog, DeliveryStatus,
    DeliveryTry, Destination, EventData, Job, JobError, JobEvent, JobId, JobStatus, Page,
    StepStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// A job submission.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// What to do (1 byte up to the configured limit of UTF-8, not only
    /// whitespace).
    #[schema(example = "build me a todo app", min_length = 1, pattern = "\\S")]
    pub prompt: String,
    /// Orchestrator kind; the default kind when absent. Must be registered.
    #[serde(default)]
    pub kind: Option<String>,
    /// Parameters for the orchestrator: a JSON object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    /// Higher runs first, within the configured bounds (default 0).
    #[serde(default, deserialize_with = "whole")]
    pub priority: Option<i32>,
    /// Attempts allowed, within the configured bounds.
    #[serde(default, deserialize_with = "whole")]
    pub max_attempts: Option<u32>,
    /// Per-attempt timeout in seconds, within the configured bounds.
    #[serde(default, deserialize_with = "whole")]
    pub timeout_s: Option<u64>,
    /// Not before this time (RFC 3339).
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    /// A URL to notify, signed per Standard Webhooks, when the job ends:
    /// `http` or `https`, at most 2048 bytes; a host that resolves to a
    /// private address is refused unless the deployment allows them.
    #[serde(default)]
    #[schema(example = "https://example.com/hooks/jobs", max_length = 2048)]
    pub webhook: Option<String>,
    /// A project of yours the job belongs to (1 to 64 printable bytes, no
    /// leading or trailing space); the job list filters by it.
    #[serde(default)]
    #[schema(example = "website", min_length = 1, max_length = 64)]
    pub project: Option<String>,
    /// Jobs of yours that must succeed before this one is queued (at most
    /// 64): it is `waiting` until then, and `cancelled` with
    /// `dependency_failed` if one fails or is cancelled. One that failed or
    /// was cancelled already refuses the submission (422).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub depends_on: Option<Vec<JobId>>,
    /// Hold a successful result in `awaiting_review` until a person approves
    /// it (`POST /api/jobs/{id}/approve/`) or rejects it with a comment
    /// (`POST /api/jobs/{id}/reject/`). Default false.
    #[serde(default)]
    pub review: bool,
    /// A concurrency key of yours (1 to 128 printable bytes): at most
    /// `concurrency_limit` of your jobs with this key run at once, across
    /// all workers; the others stay `queued` until one ends. Keys of
    /// different owners never share a count.
    #[serde(default)]
    #[schema(example = "website-deploys", min_length = 1, max_length = 128)]
    pub concurrency_key: Option<String>,
    /// How many of your jobs with `concurrency_key` may run at once (1 to
    /// 10 000); required with a key.
    #[serde(default, deserialize_with = "whole")]
    #[schema(example = 2, minimum = 1, maximum = 10000)]
    pub concurrency_limit: Option<u32>,
}

impl CreateJob {
    /// The submission this body asks for.
    pub fn into_submit(self) -> projectengine_core::Submit {
        projectengine_core::Submit {
            prompt: self.prompt,
            kind: self.kind,
            params: self.params.map(Value::Object),
            priority: self.priority,
            max_attempts: self.max_attempts,
            timeout: self.timeout_s.map(std::time::Duration::from_secs),
            run_at: self.run_at,
            webhook: self.webhook,
            review: self.review,
            project: self.project,
            depends_on: self.depends_on.unwrap_or_default(),
            concurrency_key: self.concurrency_key,
            concurrency_limit: self.concurrency_limit,
        }
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatusName {
    /// Waiting for a worker.
    Queued,
    /// Waiting for the jobs it depends on to succeed.
    Waiting,
    /// An attempt is running.
    Running,
    /// Its attempt succeeded; the result waits for a person's approval.
    AwaitingReview,
    /// Finished with success.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled by its owner.
    Cancelled,
}

/// How an attempt ended, or that it is running.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatusName {
    /// Holds the job's lease.
    Running,
    /// Succeeded.
    Succeeded,
    /// Failed.
    Failed,
    /// Cancelled, or released by a worker shutting down.
    Cancelled,
    /// Ran past the job's timeout.
    TimedOut,
    /// Its worker was lost.
    Lost,
}

/// Where a step is.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatusName {
    /// Begun.
    Started,
    /// Done.
    Completed,
    /// Failed.
    Failed,
}

/// An error recorded on a job or an attempt.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobErrorDto {
    /// Stable code, e.g. `timeout`, `orchestrator_error`, `lost`.
    pub code: String,
    /// Message.
    pub message: String,
}

impl From<JobError> for JobErrorDto {
    fn from(e: JobError) -> Self {
        Self {
            code: e.code,
            message: e.message,
        }
    }
}

/// A job.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobDto {
    /// Its id (UUID v7).
    #[schema(value_type = String, format = Uuid)]
    pub id: JobId,
    /// Orchestrator kind.
    pub kind: String,
    /// What to do.
    pub prompt: String,
    /// Parameters.
    #[schema(value_type = Object)]
    pub params: Value,
    /// Current status.
    #[schema(value_type = JobStatusName)]
    pub status: JobStatus,
    /// Current stage, free text.
    pub stage: Option<String>,
    /// Progress, 0–100.
    pub progress: u8,
    /// Priority.
    pub priority: i32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Per-attempt timeout in seconds.
    pub timeout_s: u64,
    /// Not run before this time.
    pub run_at: DateTime<Utc>,
    /// Number of the latest attempt (0 before the first).
    pub attempt: u32,
    /// Attempts that counted against `max_attempts`.
    pub attempts_used: u32,
    /// A cancel was asked for and not yet honoured.
    pub cancel_requested: bool,
    /// Why it failed, or why its last attempt failed.
    pub error: Option<JobErrorDto>,
    /// Submitted at.
    pub created_at: DateTime<Utc>,
    /// Latest attempt started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished at.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Seq of its latest event: pass it as `after` to stream only what follows.
    pub last_seq: u64,
    /// The URL notified when it ends, if it was submitted with one.
    pub webhook: Option<String>,
    /// Whether a successful result waits for a person's approval.
    pub review: bool,
    /// The latest reviewer's comment on a rejected result, if any.
    pub review_comment: Option<String>,
    /// The job whose attempt submitted this one as a child, if any.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<JobId>,
    /// A child's key among its parent's children (e.g. `frontend`).
    pub child_key: Option<String>,
    /// The project it belongs to, if any.
    pub project: Option<String>,
    /// The jobs it waits for (see `depends_on` at submission).
    #[schema(value_type = Vec<String>)]
    pub depends_on: Vec<JobId>,
    /// Its concurrency key, if any (see `concurrency_key` at submission).
    pub concurrency_key: Option<String>,
    /// The most of its owner's jobs with its key that run at once.
    pub concurrency_limit: Option<u32>,
}

impl From<Job> for JobDto {
    fn from(j: Job) -> Self {
        Self {
            id: j.id,
            timeout_s: j.timeout_ms / 1000,
            kind: j.kind,
            prompt: j.prompt,
            params: j.params,
            status: j.status,
            stage: j.stage,
            progress: j.progress,
            priority: j.priority,
            max_attempts: j.max_attempts,
            run_at: j.run_at,
            attempt: j.attempt,
            attempts_used: j.attempts_used,
            cancel_requested: j.cancel_requested,
            error: j.error.map(Into::into),
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            updated_at: j.updated_at,
            last_seq: j.last_seq,
            webhook: j.webhook,
            review: j.review,
            review_comment: j.review_comment,
            parent_id: j.parent_id,
            child_key: j.child_key,
            project: j.project,
            depends_on: j.depends_on,
            concurrency_key: j.concurrency_key,
            concurrency_limit: j.concurrency_limit,
        }
    }
}

/// A step the orchestrator reported, from the job's event log.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StepDto {
    /// Seq of the event that reported it.
    pub seq: u64,
    /// The attempt it belongs to.
    pub attempt: u32,
    /// When it was reported.
    pub at: DateTime<Utc>,
    /// What the step is.
    pub name: String,
    /// Where it is.
    #[schema(value_type = StepStatusName)]
    pub status: StepStatus,
    /// Anything shown with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

impl StepDto {
    /// The step of a `step` event.
    pub fn from_event(ev: &JobEvent) -> Option<Self> {
        match &ev.data {
            EventData::Step(step) => Some(Self {
                seq: ev.seq,
                attempt: ev.attempt,
                at: ev.at,
                name: step.name.clone(),
                status: step.status,
                detail: step.detail.clone(),
            }),
            _ => None,
        }
    }
}

/// One execution of a job.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AttemptDto {
    /// 1, 2, …
    pub number: u32,
    /// Its status.
    #[schema(value_type = AttemptStatusName)]
    pub status: AttemptStatus,
    /// Started at.
    pub started_at: DateTime<Utc>,
    /// Ended at.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub error: Option<JobErrorDto>,
}

impl From<Attempt> for AttemptDto {
    fn from(a: Attempt) -> Self {
        Self {
            number: a.number,
            status: a.status,
            started_at: a.started_at,
            finished_at: a.finished_at,
            error: a.error.map(Into::into),
        }
    }
}

/// A job with its steps, in order, and its attempts.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobDetail {
    /// The job.
    #[serde(flatten)]
    pub job: JobDto,
    /// Its steps, in seq order.
    pub steps: Vec<StepDto>,
    /// Its attempts, by number.
    pub attempts: Vec<AttemptDto>,
    /// The child jobs its attempts submitted, oldest first.
    pub children: Vec<JobDto>,
}

/// One entry of a job's event log: `{job_id, seq, attempt, at, type, data}`,
/// the same on REST, WebSocket and SSE.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EventDto {
    /// The job.
    #[schema(value_type = String, format = Uuid)]
    pub job_id: JobId,
    /// 1, 2, 3 … per job, without gaps.
    pub seq: u64,
    /// The attempt it belongs to (0 outside any attempt).
    pub attempt: u32,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// `status`, `stage`, `step`, `progress`, `log`, `app`, `artifact`, `error` or `cancel_requested`.
    #[serde(rename = "type")]
    #[schema(example = "step")]
    pub kind: String,
    /// The payload of the kind (absent for `cancel_requested`).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl From<&JobEvent> for EventDto {
    fn from(ev: &JobEvent) -> Self {
        // The payload exactly as the core serializes it (adjacently tagged).
        let data = serde_json::to_value(&ev.data)
            .ok()
            .and_then(|mut v| v.get_mut("data").map(Value::take))
            .unwrap_or(Value::Null);
        Self {
            job_id: ev.job_id,
            seq: ev.seq,
            attempt: ev.attempt,
            at: ev.at,
            kind: ev.data.kind().to_owned(),
            data,
        }
    }
}

/// A file a job left behind.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ArtifactDto {
    /// Its name, unique in the job: relative, `/`-separated.
    #[schema(example = "dist/index.html")]
    pub name: String,
    /// Its size, in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes, lowercase hex (also its `ETag`).
    pub sha256: String,
    /// Its media type.
    #[schema(example = "text/html")]
    pub content_type: String,
    /// The attempt that stored it.
    pub attempt: u32,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

impl From<Artifact> for ArtifactDto {
    fn from(a: Artifact) -> Self {
        Self {
            name: a.name,
            size: a.size,
            sha256: a.sha256,
            content_type: a.content_type,
            attempt: a.attempt,
            created_at: a.created_at,
        }
    }
}

/// A job's artifacts, by name.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ArtifactList {
    /// The artifacts.
    pub items: Vec<ArtifactDto>,
}

/// A page of a job's events.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// Events in seq order.
    pub items: Vec<EventDto>,
    /// Pass as `after` to read on: the seq of the last item (or the `after` given
    /// when there were none).
    pub next_after: u64,
}

/// A page of jobs.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// The jobs, in cursor order.
    pub items: Vec<JobDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl From<Page<Job>> for JobPage {
    fn from(p: Page<Job>) -> Self {
        Self {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }
    }
}

/// An App: the structured result a job published.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AppDto {
    /// Its id.
    #[schema(value_type = String, format = Uuid)]
    pub id: AppId,
    /// The job that produced it.
    #[schema(value_type = String, format = Uuid)]
    pub job_id: JobId,
    /// Display name.
    pub name: String,
    /// The artifact.
    pub payload: Value,
    /// Published at.
    pub created_at: DateTime<Utc>,
}

impl From<App> for AppDto {
    fn from(a: App) -> Self {
        Self {
            id: a.id,
            job_id: a.job_id,
            name: a.name,
            payload: a.payload,
            created_at: a.created_at,
        }
    }
}

/// A page of apps.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AppPage {
    /// The apps, oldest first.
    pub items: Vec<AppDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl From<Page<App>> for AppPage {
    fn from(p: Page<App>) -> Self {
        Self {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }
    }
}

/// Listing order.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Oldest first (default).
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// `GET /api/jobs/` parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListJobsQuery {
    /// Page size, up to the configured largest page (default 50; 0 means the
    /// default; more is taken as the largest page).
    #[param(minimum = 0, maximum = 18446744073709551615_u64)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<String>, format = Uuid)]
    pub cursor: Option<JobId>,
    /// Only jobs in this status.
    #[param(value_type = Option<JobStatusName>)]
    pub status: Option<JobStatus>,
    /// `asc` (default) or `desc`.
    #[param(value_type = Option<Order>)]
    pub order: Option<Order>,
    /// Only jobs of this project.
    pub project: Option<String>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
}

/// `GET /api/apps/` parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListAppsQuery {
    /// Page size, up to the configured largest page (default 50; 0 means the
    /// default; more is taken as the largest page).
    #[param(minimum = 0, maximum = 18446744073709551615_u64)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<String>, format = Uuid)]
    pub cursor: Option<AppId>,
}

/// `GET /api/jobs/{id}/events/` parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with a greater seq (default 0: from the start).
    #[param(minimum = 0, maximum = 18446744073709551615_u64)]
    pub after: Option<u64>,
    /// Page size, up to the configured largest page (default 50; 0 means the
    /// default; more is taken as the largest page).
    #[param(minimum = 0, maximum = 18446744073709551615_u64)]
    pub limit: Option<usize>,
}

/// Parameters of the live streams (WebSocket and SSE).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this seq (default 0). For SSE, `Last-Event-ID` wins.
    #[param(minimum = 0, maximum = 18446744073709551615_u64)]
    pub after: Option<u64>,
    /// The bearer token, for clients that cannot set headers.
    pub token: Option<String>,
}

/// The answer of `/health` and `/ready`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HealthDto {
    /// `ok`, or `unavailable`.
    #[schema(example = "ok")]
    pub status: String,
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use projectengine_core::{
        AppId, EventData, JobError, JobEvent, JobId, JobStatus, LogLevel, LogLine, Step,
    };
    use serde_json::json;

    use super::EventDto;

    /// The wire form is the core's serde form of [`JobEvent`], for every kind.
    #[test]
    fn event_dto_is_the_core_serde_form() {
        let kinds = vec![
            EventData::Status {
                status: JobStatus::Failed,
                error: Some(JobError::new("x", "y")),
                run_at: None,
            },
            EventData::Status {
                status: JobStatus::Queued,
                error: None,
                run_at: Some(Utc::now()),
            },
            EventData::Stage {
                stage: "PLANNING".into(),
            },
            EventData::Step(Step::started("write").detail(json!({"file": "a.rs"}))),
            EventData::Progress { progress: 40 },
            EventData::Log(LogLine {
                level: LogLevel::Warn,
                message: "hm".into(),
            }),
            EventData::App {
                app_id: AppId::new(),
                name: "app".into(),
            },
            EventData::Error(JobError::new("timeout", "too long")),
            EventData::CancelRequested,
        ];
        for (i, data) in kinds.into_iter().enumerate() {
            let ev = JobEvent {
                job_id: JobId::new(),
                seq: i as u64 + 1,
                attempt: 2,
                at: Utc::now(),
                data,
            };
            let core = serde_json::to_value(&ev).unwrap();
            let dto = serde_json::to_value(EventDto::from(&ev)).unwrap();
            assert_eq!(dto, core);
        }
    }
}

/// One Server-Sent Events message of `GET /api/jobs/{id}/stream/` (for the
/// documentation: the stream is `text/event-stream`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SseMessage {
    /// The event's seq: send it back as `Last-Event-ID` to resume.
    pub id: String,
    /// An [`EventDto`] as JSON (or `{"error": …}` in a final `error` event).
    pub data: String,
    /// `message`, or `error` for the last message of a stream the store could not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// A job's webhook deliveries, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// The deliveries: one per destination each time the job ended.
    pub items: Vec<DeliveryDto>,
}

/// Where a delivery goes.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DestinationName {
    /// The job's own `webhook` URL.
    Job,
    /// The deployment-wide URL.
    Deployment,
}

/// Where a delivery is.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatusName {
    /// Not delivered yet; due at `next_at`.
    Pending,
    /// A try got a 2xx answer.
    Delivered,
    /// Every try failed.
    Failed,
}

/// One notification of a job's end to one destination.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeliveryDto {
    /// Its id: the `webhook-id` header of every try.
    #[schema(value_type = String, format = Uuid)]
    pub id: DeliveryId,
    /// Where it goes.
    #[schema(value_type = DestinationName)]
    pub destination: Destination,
    /// The URL, for the job's own destination (the deployment's is not shown).
    pub url: Option<String>,
    /// The event type sent: `job.succeeded`, `job.failed` or `job.cancelled`.
    #[schema(example = "job.succeeded")]
    pub event: String,
    /// The terminal status it reports.
    #[schema(value_type = JobStatusName)]
    pub job_status: JobStatus,
    /// The job's error it reports.
    pub job_error: Option<JobErrorDto>,
    /// Where the delivery is.
    #[schema(value_type = DeliveryStatusName)]
    pub status: DeliveryStatus,
    /// When the next try is due, while pending.
    pub next_at: Option<DateTime<Utc>>,
    /// When it was written (as the job ended).
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Its tries, by number.
    pub tries: Vec<TryDto>,
}

/// One try of a delivery.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TryDto {
    /// 1, 2, 3 …
    pub number: u32,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The HTTP status answered, if an answer came.
    pub status_code: Option<u16>,
    /// How long it took, in milliseconds.
    pub latency_ms: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl From<DeliveryTry> for TryDto {
    fn from(t: DeliveryTry) -> Self {
        Self {
            number: t.number,
            at: t.at,
            status_code: t.status_code,
            latency_ms: t.latency_ms,
            error: t.error,
        }
    }
}

impl From<DeliveryLog> for DeliveryDto {
    fn from(log: DeliveryLog) -> Self {
        let d = log.delivery;
        Self {
            id: d.id,
            destination: d.destination,
            url: d.url,
            event: format!("job.{}", d.job_status),
            job_status: d.job_status,
            job_error: d.job_error.map(Into::into),
            next_at: (d.status == DeliveryStatus::Pending).then_some(d.next_at),
            status: d.status,
            created_at: d.created_at,
            updated_at: d.updated_at,
            tries: log.tries.into_iter().map(Into::into).collect(),
        }
    }
}

/// An optional whole number, also when written with a zero fraction (`66.0`),
/// as JSON Schema's `integer` allows.
fn whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let n: i128 = if let Some(i) = n.as_i64() {
        i.into()
    } else if let Some(u) = n.as_u64() {
        u.into()
    } else {
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e18 => f as i128,
            _ => return Err(D::Error::custom("must be a whole number")),
        }
    };
    T::try_from(n)
        .map(Some)
        .map_err(|_| D::Error::custom("is out of range"))
}

/// A kind of job this deployment runs.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct KindDto {
    /// Its name: a job's `kind`.
    #[schema(example = "stub")]
    pub name: String,
    /// Whether a job that names no kind gets this one.
    pub default: bool,
}

/// The kinds this deployment runs, by name.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct KindList {
    /// The kinds.
    pub items: Vec<KindDto>,
}

/// The depth of one queue.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct QueueDto {
    /// Its name (a kind's queue).
    #[schema(example = "stub")]
    pub name: String,
    /// Entries deliverable now.
    pub ready: u64,
    /// Entries waiting for their time.
    pub delayed: u64,
    /// Entries taken by a worker and not yet done.
    pub in_flight: u64,
}

/// The deployment's queues, by name.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// The queues.
    pub items: Vec<QueueDto>,
}

/// A job's children, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ChildList {
    /// The children.
    pub items: Vec<JobDto>,
}
