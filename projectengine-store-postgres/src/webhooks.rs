//! The webhook outbox: claims of due deliveries, their tries, a job's list.
//! (The rows themselves are written by the terminal transitions, see the
//! `insert_deliveries!` CTE.)

use std::time::Duration;

use projectengine_core::transition;
use projectengine_core::{
    DeliveryId, DeliveryLog, DeliveryNext, DeliveryStatus, DeliveryTry, Destination, Error,
    JobError, JobId, JobStatus, NewTry, Result, WebhookDelivery,
};
use sqlx::postgres::PgRow;
use sqlx::PgPool;

use crate::error::{corrupt, map};
use crate::rows::{self, get, to_u32, to_u64};

// SKIP LOCKED: a delivery another dispatcher is claiming right now is not
// this one's; the update moves `next_at` past the visibility timeout, so it
// is not due again until then.
const CLAIM: &str = "\
WITH c AS (\
  SELECT id FROM webhook_deliveries \
  WHERE status = 'pending' AND next_at <= now() \
  ORDER BY next_at, id LIMIT $1 FOR UPDATE SKIP LOCKED\
) \
UPDATE webhook_deliveries d SET next_at = now() + $2, updated_at = now() \
FROM c WHERE d.id = c.id RETURNING d.*";

/// Claims up to `limit` due deliveries, hiding them for `visibility`.
pub(crate) async fn claim(
    pool: &PgPool,
    limit: usize,
    visibility: Duration,
) -> Result<Vec<WebhookDelivery>> {
    let mut claimed = sqlx::query(CLAIM)
        .bind(rows::limit(limit))
        .bind(rows::interval(visibility))
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(delivery)
        .collect::<Result<Vec<_>>>()?;
    // UPDATE … RETURNING keeps no order.
    claimed.sort_by_key(|d| (d.next_at, d.id));
    Ok(claimed)
}

// Conditional on the delivery being pending with the tries its claim saw; the
// try row is inserted by the same statement, numbered by the new `tries`.
const RECORD: &str = "\
WITH d AS (\
  UPDATE webhook_deliveries SET tries = tries + 1, status = $3, \
    next_at = CASE WHEN $3 = 'pending' THEN now() + $4 ELSE next_at END, \
    updated_at = now() \
  WHERE id = $1 AND status = 'pending' AND tries = $2 \
  RETURNING *\
), t AS (\
  INSERT INTO webhook_tries (delivery_id, number, at, status_code, latency_ms, error) \
  SELECT id, tries, updated_at, $5, $6, $7 FROM d\
) SELECT * FROM d";

/// Records a try of a claimed delivery and its next state.
pub(crate) async fn record_try(
    pool: &PgPool,
    id: DeliveryId,
    claimed_tries: u32,
    attempt: NewTry,
    next: DeliveryNext,
) -> Result<WebhookDelivery> {
    let status = transition::delivery_status_after(next);
    let after = match next {
        DeliveryNext::Retry { after } => after,
        _ => Duration::ZERO,
    };
    let latency_ms = i64::try_from(attempt.latency.as_millis()).unwrap_or(i64::MAX);
    let row = sqlx::query(RECORD)
        .bind(id.0)
        .bind(rows::big(claimed_tries))
        .bind(status.as_str())
        .bind(rows::interval(after))
        .bind(attempt.status_code.map(i32::from))
        .bind(latency_ms)
        .bind(attempt.error)
        .fetch_optional(pool)
        .await
        .map_err(map)?;
    if let Some(row) = row {
        return delivery(&row);
    }
    // Refused: say why, from the row as it is.
    let current = sqlx::query("SELECT * FROM webhook_deliveries WHERE id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .ok_or(Error::not_found("delivery"))?;
    let current = delivery(&current)?;
    transition::check_delivery_try(current.status, current.tries, claimed_tries)?;
    Err(Error::conflict(
        "the delivery changed while the try was recorded",
    ))
}

/// A job's deliveries, oldest first, with their tries.
pub(crate) async fn list(pool: &PgPool, job_id: JobId) -> Result<Vec<DeliveryLog>> {
    let deliveries =
        sqlx::query("SELECT * FROM webhook_deliveries WHERE job_id = $1 ORDER BY created_at, id")
            .bind(job_id.0)
            .fetch_all(pool)
            .await
            .map_err(map)?;
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let tries = sqlx::query(
        "SELECT t.* FROM webhook_tries t JOIN webhook_deliveries d ON d.id = t.delivery_id \
         WHERE d.job_id = $1 ORDER BY t.delivery_id, t.number",
    )
    .bind(job_id.0)
    .fetch_all(pool)
    .await
    .map_err(map)?;
    let mut logs: Vec<DeliveryLog> = deliveries
        .iter()
        .map(|row| {
            Ok(DeliveryLog {
                delivery: delivery(row)?,
                tries: Vec::new(),
            })
        })
        .collect::<Result<_>>()?;
    for row in &tries {
        let of = DeliveryId(get(row, "delivery_id")?);
        if let Some(log) = logs.iter_mut().find(|l| l.delivery.id == of) {
            log.tries.push(delivery_try(row)?);
        }
    }
    Ok(logs)
}

/// A `webhook_deliveries` row.
fn delivery(row: &PgRow) -> Result<WebhookDelivery> {
    let destination: String = get(row, "destination")?;
    let job_status: String = get(row, "job_status")?;
    let status: String = get(row, "status")?;
    let error_code: Option<String> = get(row, "error_code")?;
    let error_message: Option<String> = get(row, "error_message")?;
    Ok(WebhookDelivery {
        id: DeliveryId(get(row, "id")?),
        job_id: JobId(get(row, "job_id")?),
        destination: Destination::parse(&destination)
            .ok_or_else(|| corrupt("destination", &destination))?,
        url: get(row, "url")?,
        job_status: JobStatus::parse(&job_status)
            .ok_or_else(|| corrupt("job status", &job_status))?,
        job_error: error_code.map(|code| JobError {
            code,
            message: error_message.unwrap_or_default(),
        }),
        occurred_at: get(row, "occurred_at")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| corrupt("delivery status", &status))?,
        tries: to_u32(get(row, "tries")?, "tries")?,
        next_at: get(row, "next_at")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// A `webhook_tries` row.
fn delivery_try(row: &PgRow) -> Result<DeliveryTry> {
    let status_code: Option<i32> = get(row, "status_code")?;
    Ok(DeliveryTry {
        number: to_u32(get(row, "number")?, "try number")?,
        at: get(row, "at")?,
        status_code: status_code
            .map(|c| u16::try_from(c).map_err(|_| corrupt("status code", c)))
            .transpose()?,
        latency_ms: to_u64(get(row, "latency_ms")?, "latency_ms")?,
        error: get(row, "error")?,
    })
}
