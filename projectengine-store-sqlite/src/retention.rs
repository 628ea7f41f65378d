//! Retention: deletes finished jobs and everything they left, in the
//! writer's transaction.

use chrono::{DateTime, Utc};
use projectengine_core::retention::Purged;
use projectengine_core::{JobId, Result};
use sqlx::{Row, SqliteConnection};

use crate::error::map;
use crate::rows::{id_bytes, micros};

// The oldest finished jobs without a pending delivery or a stored child.
const VICTIMS: &str = "\
SELECT id FROM jobs j
WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?
  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                  WHERE d.job_id = j.id AND d.status = 'pending')
  AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = j.id)
ORDER BY finished_at, id
LIMIT ?";

/// Deletes at most `limit` jobs finished before `before` (see
/// [`projectengine_core::Store::purge_finished`]); the delete of a job
/// cascades to its events, attempts, app, artifacts, deliveries and
/// dependency rows.
pub(crate) async fn purge_finished(
    conn: &mut SqliteConnection,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Purged>> {
    let victims: Vec<Vec<u8>> = sqlx::query_scalar(VICTIMS)
        .bind(micros(before))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await
        .map_err(map)?;
    let mut purged = Vec::with_capacity(victims.len());
    for id in victims {
        let job_id = uuid::Uuid::from_slice(&id)
            .map(JobId)
            .map_err(|e| crate::error::corrupt("id", e))?;
        let blobs = sqlx::query("SELECT blob FROM artifacts WHERE job_id = ?")
            .bind(id_bytes(job_id.0))
            .fetch_all(&mut *conn)
            .await
            .map_err(map)?
            .iter()
            .map(|row| row.try_get("blob").map_err(map))
            .collect::<Result<Vec<String>>>()?;
        sqlx::query("DELETE FROM idempotency_keys WHERE job_id = ?")
            .bind(id_bytes(job_id.0))
            .execute(&mut *conn)
            .await
            .map_err(map)?;
        sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(id_bytes(job_id.0))
            .execute(&mut *conn)
            .await
            .map_err(map)?;
        purged.push(Purged { job_id, blobs });
    }
    Ok(purged)
}
