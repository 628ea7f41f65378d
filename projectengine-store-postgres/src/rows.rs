//! Rows to domain values and domain values to SQL parameters.

use std::time::Duration;

use chrono::{DateTime, Utc};
use projectengine_core::{
    App, AppId, Attempt, AttemptId, AttemptStatus, Changed, Error, EventData, Job, JobError,
    JobEvent, JobId, JobStatus, Owner, Result,
};
use serde_json::Value;
use sqlx::postgres::types::PgInterval;
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::error::{corrupt, map};

/// Longest lease or age a query accepts: far beyond any real one, and small
/// enough that `now() ± it` stays inside PostgreSQL's timestamp range.
const MAX_INTERVAL: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// A duration as an interval, whole microseconds, clamped to a century.
pub(crate) fn interval(d: Duration) -> PgInterval {
    let micros = d.min(MAX_INTERVAL).as_micros();
    PgInterval {
        months: 0,
        days: 0,
        microseconds: i64::try_from(micros).unwrap_or(i64::MAX),
    }
}

/// A page size or count as a SQL `LIMIT`.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(map)
}

pub(crate) fn to_u32(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt(what, v))
}

pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(what, v))
}

fn job_error(row: &PgRow) -> Result<Option<JobError>> {
    let code: Option<String> = get(row, "error_code")?;
    let message: Option<String> = get(row, "error_message")?;
    Ok(code.map(|code| JobError {
        code,
        message: message.unwrap_or_default(),
    }))
}

/// A `jobs` row.
pub(crate) fn job(row: &PgRow) -> Result<Job> {
    let status: String = get(row, "status")?;
    let progress: i16 = get(row, "progress")?;
    Ok(Job {
        id: JobId(get(row, "id")?),
        owner: Owner(get(row, "owner")?),
        kind: get(row, "kind")?,
        queue: get(row, "queue")?,
        prompt: get(row, "prompt")?,
        params: get(row, "params")?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?,
        stage: get(row, "stage")?,
        progress: u8::try_from(progress).map_err(|_| corrupt("progress", progress))?,
        priority: get(row, "priority")?,
        max_attempts: to_u32(get(row, "max_attempts")?, "max_attempts")?,
        timeout_ms: to_u64(get(row, "timeout_ms")?, "timeout_ms")?,
        run_at: get(row, "run_at")?,
        attempt: to_u32(get(row, "attempt")?, "attempt")?,
        attempts_used: to_u32(get(row, "attempts_used")?, "attempts_used")?,
        cancel_requested: get(row, "cancel_requested")?,
        error: job_error(row)?,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        updated_at: get(row, "updated_at")?,
        last_seq: to_u64(get(row, "last_seq")?, "last_seq")?,
        webhook: get(row, "webhook")?,
        notify_deployment: get(row, "notify_deployment")?,
        trace_parent: get(row, "trace_parent")?,
        review: get(row, "review")?,
        review_comment: get(row, "review_comment")?,
        parent_id: get::<Option<uuid::Uuid>>(row, "parent_id")?.map(JobId),
        child_key: get(row, "child_key")?,
        project: get(row, "project")?,
        depends_on: get::<Vec<uuid::Uuid>>(row, "depends_on")?
            .into_iter()
            .map(JobId)
            .collect(),
        concurrency_key: get(row, "concurrency_key")?,
        concurrency_limit: get::<Option<i32>>(row, "concurrency_limit")?
            .map(|n| to_u32(i64::from(n), "concurrency_limit"))
            .transpose()?,
    })
}

/// An `attempts` row.
pub(crate) fn attempt(row: &PgRow) -> Result<Attempt> {
    let status: String = get(row, "status")?;
    Ok(Attempt {
        id: AttemptId(get(row, "id")?),
        job_id: JobId(get(row, "job_id")?),
        number: to_u32(get(row, "number")?, "attempt number")?,
        worker_id: get(row, "worker_id")?,
        status: AttemptStatus::parse(&status).ok_or_else(|| corrupt("attempt status", &status))?,
        lease_expires_at: get(row, "lease_expires_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        error: job_error(row)?,
    })
}

/// An `apps` row.
pub(crate) fn app(row: &PgRow) -> Result<App> {
    Ok(App {
        id: AppId(get(row, "id")?),
        job_id: JobId(get(row, "job_id")?),
        attempt: to_u32(get(row, "attempt")?, "attempt")?,
        owner: Owner(get(row, "owner")?),
        name: get(row, "name")?,
        payload: get(row, "payload")?,
        created_at: get(row, "created_at")?,
    })
}

/// A `job_events` row: `kind` and `data` are the serde tag and content of
/// [`EventData`].
pub(crate) fn event(row: &PgRow) -> Result<JobEvent> {
    let kind: String = get(row, "kind")?;
    let data: Option<Value> = get(row, "data")?;
    let mut tagged = serde_json::Map::new();
    tagged.insert("type".to_owned(), Value::String(kind));
    if let Some(data) = data {
        tagged.insert("data".to_owned(), data);
    }
    Ok(JobEvent {
        job_id: JobId(get(row, "job_id")?),
        seq: to_u64(get(row, "seq")?, "seq")?,
        attempt: to_u32(get(row, "attempt")?, "attempt")?,
        at: get(row, "at")?,
        data: serde_json::from_value(Value::Object(tagged)).map_err(|e| corrupt("event", e))?,
    })
}

/// Events as the JSON array the insert CTE reads: `[{"type", "data"}, …]`.
pub(crate) fn encode_events(events: &[EventData]) -> Result<Value> {
    serde_json::to_value(events).map_err(|e| Error::internal(format!("encoding events: {e}")))
}

/// The events a write appended, numbered up to `last_seq` (the job's new one).
pub(crate) fn appended(
    job_id: JobId,
    attempt: u32,
    last_seq: u64,
    at: DateTime<Utc>,
    events: Vec<EventData>,
) -> Vec<JobEvent> {
    let first = last_seq + 1 - events.len() as u64;
    events
        .into_iter()
        .zip(first..)
        .map(|(data, seq)| JobEvent {
            job_id,
            seq,
            attempt,
            at,
            data,
        })
        .collect()
}

/// The job a write returned (`row`), with the `events` it appended at its
/// `updated_at`, ending at its `last_seq`.
pub(crate) fn changed(row: &PgRow, events: Vec<EventData>) -> Result<Changed> {
    let job = job(row)?;
    let events = appended(job.id, job.attempt, job.last_seq, job.updated_at, events);
    Ok(Changed::of(job, events))
}

/// A u32 as the bigint column that holds it.
pub(crate) fn big(v: u32) -> i64 {
    i64::from(v)
}
