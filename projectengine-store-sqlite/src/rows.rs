//! Rows to domain values, and domain values to SQLite parameters: ids are the
//! 16 bytes of their UUID, times microseconds since the epoch, JSON is text.

use chrono::{DateTime, Utc};
use projectengine_core::{
    App, AppId, Artifact, Attempt, AttemptId, AttemptStatus, DeliveryId, DeliveryStatus,
    DeliveryTry, Destination, DueJob, Error, EventData, Job, JobError, JobEvent, JobId, JobStatus,
    Owner, Result, WebhookDelivery,
};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use crate::error::{corrupt, map};

/// A time as stored: whole microseconds since the Unix epoch.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// `t` as it reads back once stored (to the microsecond), so what a write
/// answers equals what a later read returns.
pub(crate) fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    time(micros(t)).unwrap_or(t)
}

fn time(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt("time", v))
}

/// A page size or count as a SQL `LIMIT`.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A JSON value as stored.
pub(crate) fn json(v: &Value) -> String {
    v.to_string()
}

/// An event's data as stored.
pub(crate) fn event_data(data: &EventData) -> Result<String> {
    serde_json::to_string(data).map_err(|e| Error::internal(format!("encoding an event: {e}")))
}

fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(map)
}

fn uuid(row: &SqliteRow, column: &str) -> Result<Uuid> {
    let bytes: Vec<u8> = get(row, column)?;
    Uuid::from_slice(&bytes).map_err(|e| corrupt("id", e))
}

fn at(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>> {
    time(get(row, column)?)
}

fn at_opt(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    get::<Option<i64>>(row, column)?.map(time).transpose()
}

fn parse_json(row: &SqliteRow, column: &str) -> Result<Value> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|e| corrupt("JSON value", e))
}

fn number<T: TryFrom<i64>>(row: &SqliteRow, column: &'static str) -> Result<T> {
    let v: i64 = get(row, column)?;
    T::try_from(v).map_err(|_| corrupt(column, v))
}

fn job_error(row: &SqliteRow) -> Result<Option<JobError>> {
    let code: Option<String> = get(row, "error_code")?;
    let message: Option<String> = get(row, "error_message")?;
    Ok(code.map(|code| JobError {
        code,
        message: message.unwrap_or_default(),
    }))
}

/// A `jobs` row.
pub(crate) fn job(row: &SqliteRow) -> Result<Job> {
    let status: String = get(row, "status")?;
    Ok(Job {
        id: JobId(uuid(row, "id")?),
        owner: Owner(get(row, "owner")?),
        kind: get(row, "kind")?,
        queue: get(row, "queue")?,
        prompt: get(row, "prompt")?,
        params: parse_json(row, "params")?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?,
        stage: get(row, "stage")?,
        progress: number(row, "progress")?,
        priority: number(row, "priority")?,
        max_attempts: number(row, "max_attempts")?,
        timeout_ms: number(row, "timeout_ms")?,
        run_at: at(row, "run_at")?,
        attempt: number(row, "attempt")?,
        attempts_used: number(row, "attempts_used")?,
        cancel_requested: get(row, "cancel_requested")?,
        error: job_error(row)?,
        created_at: at(row, "created_at")?,
        started_at: at_opt(row, "started_at")?,
        finished_at: at_opt(row, "finished_at")?,
        updated_at: at(row, "updated_at")?,
        last_seq: number(row, "last_seq")?,
        webhook: get(row, "webhook")?,
        notify_deployment: get(row, "notify_deployment")?,
        trace_parent: get(row, "trace_parent")?,
        review: get(row, "review")?,
        review_comment: get(row, "review_comment")?,
        parent_id: get::<Option<Vec<u8>>>(row, "parent_id")?
            .map(|b| Uuid::from_slice(&b).map(JobId))
            .transpose()
            .map_err(|e| corrupt("id", e))?,
        child_key: get(row, "child_key")?,
        project: get(row, "project")?,
        depends_on: {
            let text: String = get(row, "depends_on")?;
            serde_json::from_str(&text).map_err(|e| corrupt("depends_on", e))?
        },
        concurrency_key: get(row, "concurrency_key")?,
        concurrency_limit: get::<Option<i64>>(row, "concurrency_limit")?
            .map(|n| u32::try_from(n).map_err(|_| corrupt("concurrency_limit", n)))
            .transpose()?,
    })
}

/// A due job's columns of a `jobs` row.
pub(crate) fn due_job(row: &SqliteRow) -> Result<DueJob> {
    Ok(DueJob {
        id: JobId(uuid(row, "id")?),
        queue: get(row, "queue")?,
        priority: number(row, "priority")?,
        run_at: at(row, "run_at")?,
        owner: Owner(get(row, "owner")?),
    })
}

/// An `attempts` row.
pub(crate) fn attempt(row: &SqliteRow) -> Result<Attempt> {
    let status: String = get(row, "status")?;
    Ok(Attempt {
        id: AttemptId(uuid(row, "id")?),
        job_id: JobId(uuid(row, "job_id")?),
        number: number(row, "number")?,
        worker_id: get(row, "worker_id")?,
        status: AttemptStatus::parse(&status).ok_or_else(|| corrupt("attempt status", &status))?,
        lease_expires_at: at(row, "lease_expires_at")?,
        started_at: at(row, "started_at")?,
        finished_at: at_opt(row, "finished_at")?,
        error: job_error(row)?,
    })
}

/// An `apps` row.
pub(crate) fn app(row: &SqliteRow) -> Result<App> {
    Ok(App {
        id: AppId(uuid(row, "id")?),
        job_id: JobId(uuid(row, "job_id")?),
        attempt: number(row, "attempt")?,
        owner: Owner(get(row, "owner")?),
        name: get(row, "name")?,
        payload: parse_json(row, "payload")?,
        created_at: at(row, "created_at")?,
    })
}

/// A `job_events` row.
pub(crate) fn event(row: &SqliteRow) -> Result<JobEvent> {
    let data: String = get(row, "data")?;
    Ok(JobEvent {
        job_id: JobId(uuid(row, "job_id")?),
        seq: number(row, "seq")?,
        attempt: number(row, "attempt")?,
        at: at(row, "at")?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("event", e))?,
    })
}

/// An `artifacts` row.
pub(crate) fn artifact(row: &SqliteRow) -> Result<Artifact> {
    Ok(Artifact {
        job_id: JobId(uuid(row, "job_id")?),
        name: get(row, "name")?,
        attempt: number(row, "attempt")?,
        size: number(row, "size")?,
        sha256: get(row, "sha256")?,
        content_type: get(row, "content_type")?,
        blob: get(row, "blob")?,
        created_at: at(row, "created_at")?,
    })
}

/// A `webhook_deliveries` row.
pub(crate) fn delivery(row: &SqliteRow) -> Result<WebhookDelivery> {
    let destination: String = get(row, "destination")?;
    let job_status: String = get(row, "job_status")?;
    let status: String = get(row, "status")?;
    Ok(WebhookDelivery {
        id: DeliveryId(uuid(row, "id")?),
        job_id: JobId(uuid(row, "job_id")?),
        destination: Destination::parse(&destination)
            .ok_or_else(|| corrupt("destination", &destination))?,
        url: get(row, "url")?,
        job_status: JobStatus::parse(&job_status)
            .ok_or_else(|| corrupt("job status", &job_status))?,
        job_error: job_error(row)?,
        occurred_at: at(row, "occurred_at")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| corrupt("delivery status", &status))?,
        tries: number(row, "tries")?,
        next_at: at(row, "next_at")?,
        created_at: at(row, "created_at")?,
        updated_at: at(row, "updated_at")?,
    })
}

/// The delivery id of a `webhook_tries` row.
pub(crate) fn try_of(row: &SqliteRow) -> Result<DeliveryId> {
    Ok(DeliveryId(uuid(row, "delivery_id")?))
}

/// A `webhook_tries` row.
pub(crate) fn delivery_try(row: &SqliteRow) -> Result<DeliveryTry> {
    Ok(DeliveryTry {
        number: number(row, "number")?,
        at: at(row, "at")?,
        status_code: get::<Option<i64>>(row, "status_code")?
            .map(|c| u16::try_from(c).map_err(|_| corrupt("status code", c)))
            .transpose()?,
        latency_ms: number(row, "latency_ms")?,
        error: get(row, "error")?,
    })
}

/// The bytes an id is stored as.
pub(crate) fn id_bytes(id: Uuid) -> Vec<u8> {
    id.as_bytes().to_vec()
}
