//! The event log: fenced appends with gap-free seqs, and reads after a seq.

use projectengine_core::{Error, EventData, Fence, JobEvent, JobId, Result};
use sqlx::{PgConnection, PgPool, Row};

use crate::error::map;
use crate::rows::{self, big};

// The fence check, the seq assignment and the inserts are one statement: the
// row lock the UPDATE takes on the job serializes concurrent appenders, and
// each gets the seqs just below the `last_seq` it wrote.
const APPEND: &str = concat!(
    "WITH j AS (",
    " UPDATE jobs SET last_seq = last_seq + jsonb_array_length($3),",
    "   stage = COALESCE($4, stage), progress = COALESCE($5, progress), updated_at = now()",
    " WHERE id = $1 AND status = 'running' AND attempt = $2",
    " RETURNING id, attempt, last_seq, updated_at",
    "), ",
    insert_events!("$3"),
    " SELECT last_seq, updated_at FROM j"
);

/// Appends an attempt's progress events in one statement.
pub(crate) async fn append(
    conn: &mut PgConnection,
    fence: Fence,
    events: &[EventData],
) -> Result<Vec<JobEvent>> {
    projectengine_core::transition::check_appendable(events)?;
    let mut stage = None;
    let mut progress = None;
    for data in events {
        match data {
            EventData::Stage { stage: s } => stage = Some(s.as_str()),
            EventData::Progress { progress: p } => progress = Some(i16::from(*p)),
            _ => {}
        }
    }
    if events.is_empty() {
        return fenced(conn, fence).await.map(|()| vec![]);
    }
    let row = sqlx::query(APPEND)
        .bind(fence.job_id.0)
        .bind(big(fence.attempt))
        .bind(rows::encode_events(events)?)
        .bind(stage)
        .bind(progress)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?
        .ok_or(Error::StaleAttempt)?;
    let last_seq: i64 = row.try_get("last_seq").map_err(map)?;
    let at = row.try_get("updated_at").map_err(map)?;
    let last_seq = u64::try_from(last_seq).map_err(|_| Error::internal("negative last_seq"))?;
    Ok(rows::appended(
        fence.job_id,
        fence.attempt,
        last_seq,
        at,
        events.to_vec(),
    ))
}

/// `Ok` while `fence` names the job's running attempt, else `StaleAttempt`.
async fn fenced(conn: &mut PgConnection, fence: Fence) -> Result<()> {
    sqlx::query("SELECT 1 FROM jobs WHERE id = $1 AND status = 'running' AND attempt = $2")
        .bind(fence.job_id.0)
        .bind(big(fence.attempt))
        .fetch_optional(conn)
        .await
        .map_err(map)?
        .map(|_| ())
        .ok_or(Error::StaleAttempt)
}

/// Events with `seq > after`, ascending, at most `limit`.
pub(crate) async fn list(
    pool: &PgPool,
    id: JobId,
    after: u64,
    limit: usize,
) -> Result<Vec<JobEvent>> {
    let Ok(after) = i64::try_from(after) else {
        return Ok(vec![]);
    };
    sqlx::query(
        "SELECT job_id, seq, attempt, at, kind, data FROM job_events \
         WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(id.0)
    .bind(after)
    .bind(rows::limit(limit))
    .fetch_all(pool)
    .await
    .map_err(map)?
    .iter()
    .map(rows::event)
    .collect()
}

/// Locks the job while `fence` is its running attempt (the job first, as
/// every write of a job does, so that no two writes wait for each other).
const LOCK_JOB: &str =
    "SELECT 1 FROM jobs WHERE id = $1 AND status = 'running' AND attempt = $2 FOR UPDATE";

/// The running attempt's last applied batch (its job locked by the caller).
const LAST_BATCH: &str = "\
SELECT last_batch FROM attempts WHERE job_id = $1 AND number = $2 AND status = 'running'";

/// Appends the attempt's numbered batch once (see `Store::append_batch`):
/// the attempt's row is locked, its last batch checked and moved, and the
/// events appended, in one transaction.
pub(crate) async fn append_batch(
    pool: &PgPool,
    fence: Fence,
    batch: u64,
    events: Vec<EventData>,
) -> Result<Option<Vec<JobEvent>>> {
    projectengine_core::transition::check_appendable(&events)?;
    let wanted = i64::try_from(batch).map_err(|_| Error::invalid("batch", "is too large"))?;
    let mut tx = pool.begin().await.map_err(map)?;
    sqlx::query(LOCK_JOB)
        .bind(fence.job_id.0)
        .bind(big(fence.attempt))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?
        .ok_or(Error::StaleAttempt)?;
    let last: i64 = sqlx::query(LAST_BATCH)
        .bind(fence.job_id.0)
        .bind(big(fence.attempt))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?
        .ok_or(Error::StaleAttempt)?
        .try_get("last_batch")
        .map_err(map)?;
    let last = u64::try_from(last).unwrap_or(0);
    projectengine_core::transition::check_batch(last, batch)?;
    if batch <= last {
        return Ok(None);
    }
    sqlx::query("UPDATE attempts SET last_batch = $3 WHERE job_id = $1 AND number = $2")
        .bind(fence.job_id.0)
        .bind(big(fence.attempt))
        .bind(wanted)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
    let appended = append(&mut tx, fence, &events).await?;
    tx.commit().await.map_err(map)?;
    Ok(Some(appended))
}
