//! What recovery looks for: expired leases and stranded due jobs.

use std::time::Duration;

use projectengine_core::{DueJob, Fence, JobId, Owner, Result};
use sqlx::{PgPool, Row};

use crate::error::{corrupt, map};
use crate::rows;

/// Running attempts whose lease has expired, oldest expiry first.
pub(crate) async fn expired_leases(pool: &PgPool, limit: usize) -> Result<Vec<Fence>> {
    sqlx::query(
        "SELECT job_id, number FROM attempts \
         WHERE status = 'running' AND lease_expires_at <= now() \
         ORDER BY lease_expires_at LIMIT $1",
    )
    .bind(rows::limit(limit))
    .fetch_all(pool)
    .await
    .map_err(map)?
    .iter()
    .map(|row| {
        let number: i64 = row.try_get("number").map_err(map)?;
        Ok(Fence {
            job_id: JobId(row.try_get("job_id").map_err(map)?),
            attempt: u32::try_from(number).map_err(|_| corrupt("attempt number", number))?,
        })
    })
    .collect()
}

/// Queued jobs due at least `overdue` ago, oldest first.
pub(crate) async fn due_jobs(
    pool: &PgPool,
    overdue: Duration,
    limit: usize,
) -> Result<Vec<DueJob>> {
    sqlx::query(
        "SELECT id, queue, priority, run_at, owner FROM jobs \
         WHERE status = 'queued' AND run_at <= now() - $1 \
         ORDER BY run_at, id LIMIT $2",
    )
    .bind(rows::interval(overdue))
    .bind(rows::limit(limit))
    .fetch_all(pool)
    .await
    .map_err(map)?
    .iter()
    .map(|row| {
        Ok(DueJob {
            id: JobId(row.try_get("id").map_err(map)?),
            queue: row.try_get("queue").map_err(map)?,
            priority: row.try_get("priority").map_err(map)?,
            run_at: row.try_get("run_at").map_err(map)?,
            owner: Owner(row.try_get("owner").map_err(map)?),
        })
    })
    .collect()
}
