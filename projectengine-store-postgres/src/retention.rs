//! Retention: deletes finished jobs and everything they left.

use chrono::{DateTime, Utc};
use projectengine_core::retention::Purged;
use projectengine_core::{JobId, Result};
use sqlx::{PgPool, Row};

use crate::error::map;
use crate::rows;

// One statement: the oldest finished jobs without a pending delivery or a
// stored child, locked (skipping those another transaction holds: a retry,
// a review, another worker's purge); their idempotency keys; their blobs,
// read before the delete; then the jobs, whose delete cascades to events,
// attempts, apps, artifacts, deliveries and dependency rows.
const PURGE: &str = "\
WITH victims AS (
    SELECT id FROM jobs j
    WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < $1
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                      WHERE d.job_id = j.id AND d.status = 'pending')
      AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = j.id)
    ORDER BY finished_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), keys AS (
    DELETE FROM idempotency_keys k USING victims v WHERE k.job_id = v.id
), blobs AS (
    SELECT a.job_id, array_agg(a.blob) AS blobs
    FROM artifacts a JOIN victims v ON a.job_id = v.id
    GROUP BY a.job_id
), gone AS (
    DELETE FROM jobs j USING victims v WHERE j.id = v.id RETURNING j.id
)
SELECT gone.id, coalesce(blobs.blobs, '{}') AS blobs
FROM gone LEFT JOIN blobs ON blobs.job_id = gone.id";

/// Deletes at most `limit` jobs finished before `before` (see
/// [`projectengine_core::Store::purge_finished`]).
pub(crate) async fn purge_finished(
    pool: &PgPool,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Purged>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    sqlx::query(PURGE)
        .bind(before)
        .bind(rows::limit(limit))
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(|row| {
            Ok(Purged {
                job_id: JobId(row.try_get("id").map_err(map)?),
                blobs: row.try_get("blobs").map_err(map)?,
            })
        })
        .collect()
}
