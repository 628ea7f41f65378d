//! Reads, on the pool of read-only connections: in WAL mode they never wait
//! for the writer, and see what it committed last.

use std::time::Duration;

use chrono::Utc;
use projectengine_core::{
    App, AppId, Artifact, Attempt, DeliveryLog, DueJob, Fence, Job, JobDetail, JobEvent, JobId,
    JobQuery, JobStatus, Owner, Project, Result,
};
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::error::{corrupt, map};
use crate::rows::{self, id_bytes, micros};

/// The job, if it exists.
pub(crate) async fn job(conn: &mut SqliteConnection, id: JobId) -> Result<Option<Job>> {
    sqlx::query("SELECT * FROM jobs WHERE id = ?")
        .bind(id_bytes(id.0))
        .fetch_optional(conn)
        .await
        .map_err(map)?
        .map(|row| rows::job(&row))
        .transpose()
}

/// The job's children, oldest first.
pub(crate) async fn children(pool: &SqlitePool, parent: JobId) -> Result<Vec<Job>> {
    sqlx::query("SELECT * FROM jobs WHERE parent_id = ? ORDER BY id")
        .bind(id_bytes(parent.0))
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(rows::job)
        .collect()
}

/// One cursor page of an owner's jobs.
pub(crate) async fn list_jobs(
    pool: &SqlitePool,
    owner: &Owner,
    query: &JobQuery,
) -> Result<Vec<Job>> {
    let mut sql = String::from("SELECT * FROM jobs WHERE owner = ?");
    if query.cursor.is_some() {
        sql.push_str(if query.newest_first {
            " AND id < ?"
        } else {
            " AND id > ?"
        });
    }
    if query.status.is_some() {
        sql.push_str(" AND status = ?");
    }
    if query.project.is_some() {
        sql.push_str(" AND project = ?");
    }
    if query.kind.is_some() {
        sql.push_str(" AND kind = ?");
    }
    let order = if query.newest_first { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY id {order} LIMIT ?"));
    let mut q = sqlx::query(&sql).bind(&owner.0);
    if let Some(cursor) = query.cursor {
        q = q.bind(id_bytes(cursor.0));
    }
    if let Some(status) = query.status {
        q = q.bind(status.as_str());
    }
    if let Some(project) = &query.project {
        q = q.bind(project);
    }
    if let Some(kind) = &query.kind {
        q = q.bind(kind);
    }
    q.bind(rows::limit(query.limit))
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(rows::job)
        .collect()
}

/// Events with `seq > after`, ascending, at most `limit`.
pub(crate) async fn events(
    conn: &mut SqliteConnection,
    id: JobId,
    after: u64,
    limit: usize,
) -> Result<Vec<JobEvent>> {
    let Ok(after) = i64::try_from(after) else {
        return Ok(vec![]);
    };
    sqlx::query(
        "SELECT job_id, seq, attempt, at, data FROM job_events \
         WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(id_bytes(id.0))
    .bind(after)
    .bind(rows::limit(limit))
    .fetch_all(conn)
    .await
    .map_err(map)?
    .iter()
    .map(rows::event)
    .collect()
}

/// The job's attempts, by number.
pub(crate) async fn attempts(conn: &mut SqliteConnection, id: JobId) -> Result<Vec<Attempt>> {
    sqlx::query("SELECT * FROM attempts WHERE job_id = ? ORDER BY number")
        .bind(id_bytes(id.0))
        .fetch_all(conn)
        .await
        .map_err(map)?
        .iter()
        .map(rows::attempt)
        .collect()
}

/// The job, its whole log and its attempts, from one read transaction (one
/// snapshot of the file).
pub(crate) async fn detail(pool: &SqlitePool, id: JobId) -> Result<Option<JobDetail>> {
    let mut tx = pool.begin().await.map_err(map)?;
    let Some(job) = job(&mut tx, id).await? else {
        return Ok(None);
    };
    let events = events(&mut tx, id, 0, usize::MAX).await?;
    let attempts = attempts(&mut tx, id).await?;
    tx.commit().await.map_err(map)?;
    Ok(Some(JobDetail {
        job,
        events,
        attempts,
    }))
}

/// The App, if it exists.
pub(crate) async fn app(pool: &SqlitePool, id: AppId) -> Result<Option<App>> {
    sqlx::query("SELECT * FROM apps WHERE id = ?")
        .bind(id_bytes(id.0))
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .map(|row| rows::app(&row))
        .transpose()
}

/// The App a job published, if any.
pub(crate) async fn app_by_job(pool: &SqlitePool, job_id: JobId) -> Result<Option<App>> {
    sqlx::query("SELECT * FROM apps WHERE job_id = ?")
        .bind(id_bytes(job_id.0))
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .map(|row| rows::app(&row))
        .transpose()
}

/// One cursor page of an owner's apps, in id order.
pub(crate) async fn list_apps(
    pool: &SqlitePool,
    owner: &Owner,
    cursor: Option<AppId>,
    limit: usize,
) -> Result<Vec<App>> {
    let query = match cursor {
        Some(cursor) => {
            sqlx::query("SELECT * FROM apps WHERE owner = ? AND id > ? ORDER BY id LIMIT ?")
                .bind(&owner.0)
                .bind(id_bytes(cursor.0))
        }
        None => {
            sqlx::query("SELECT * FROM apps WHERE owner = ? ORDER BY id LIMIT ?").bind(&owner.0)
        }
    };
    query
        .bind(rows::limit(limit))
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(rows::app)
        .collect()
}

/// Running attempts whose lease has expired, oldest expiry first.
pub(crate) async fn expired_leases(pool: &SqlitePool, limit: usize) -> Result<Vec<Fence>> {
    sqlx::query(
        "SELECT job_id, number FROM attempts \
         WHERE status = 'running' AND lease_expires_at <= ? \
         ORDER BY lease_expires_at LIMIT ?",
    )
    .bind(micros(Utc::now()))
    .bind(rows::limit(limit))
    .fetch_all(pool)
    .await
    .map_err(map)?
    .iter()
    .map(|row| {
        let number: i64 = row.try_get("number").map_err(map)?;
        let job_id: Vec<u8> = row.try_get("job_id").map_err(map)?;
        Ok(Fence {
            job_id: JobId(uuid::Uuid::from_slice(&job_id).map_err(|e| corrupt("id", e))?),
            attempt: u32::try_from(number).map_err(|_| corrupt("attempt number", number))?,
        })
    })
    .collect()
}

/// Queued jobs due at least `overdue` ago, oldest first.
pub(crate) async fn due_jobs(
    pool: &SqlitePool,
    overdue: Duration,
    limit: usize,
) -> Result<Vec<DueJob>> {
    let overdue = chrono::Duration::from_std(overdue).unwrap_or(chrono::Duration::MAX);
    let before = Utc::now()
        .checked_sub_signed(overdue)
        .map_or(i64::MIN, micros);
    sqlx::query(
        "SELECT id, queue, priority, run_at, owner FROM jobs WHERE status = 'queued' AND run_at <= ? \
         ORDER BY run_at, id LIMIT ?",
    )
    .bind(before)
    .bind(rows::limit(limit))
    .fetch_all(pool)
    .await
    .map_err(map)?
    .iter()
    .map(rows::due_job)
    .collect()
}

/// The job's artifacts, in the byte order of their names.
pub(crate) async fn artifacts(pool: &SqlitePool, job_id: JobId) -> Result<Vec<Artifact>> {
    sqlx::query("SELECT * FROM artifacts WHERE job_id = ? ORDER BY name")
        .bind(id_bytes(job_id.0))
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(rows::artifact)
        .collect()
}

/// The job's artifact of that name, if any.
pub(crate) async fn artifact(
    pool: &SqlitePool,
    job_id: JobId,
    name: &str,
) -> Result<Option<Artifact>> {
    sqlx::query("SELECT * FROM artifacts WHERE job_id = ? AND name = ?")
        .bind(id_bytes(job_id.0))
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .map(|row| rows::artifact(&row))
        .transpose()
}

/// A job's deliveries, oldest first, each with its tries by number, from one
/// read transaction.
pub(crate) async fn deliveries(pool: &SqlitePool, job_id: JobId) -> Result<Vec<DeliveryLog>> {
    let mut tx = pool.begin().await.map_err(map)?;
    let mut logs =
        sqlx::query("SELECT * FROM webhook_deliveries WHERE job_id = ? ORDER BY created_at, id")
            .bind(id_bytes(job_id.0))
            .fetch_all(&mut *tx)
            .await
            .map_err(map)?
            .iter()
            .map(|row| {
                Ok(DeliveryLog {
                    delivery: rows::delivery(row)?,
                    tries: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
    if !logs.is_empty() {
        let tries = sqlx::query(
            "SELECT t.* FROM webhook_tries t JOIN webhook_deliveries d ON d.id = t.delivery_id \
             WHERE d.job_id = ? ORDER BY t.delivery_id, t.number",
        )
        .bind(id_bytes(job_id.0))
        .fetch_all(&mut *tx)
        .await
        .map_err(map)?;
        for row in &tries {
            let of = rows::try_of(row)?;
            if let Some(log) = logs.iter_mut().find(|l| l.delivery.id == of) {
                log.tries.push(rows::delivery_try(row)?);
            }
        }
    }
    tx.commit().await.map_err(map)?;
    Ok(logs)
}

/// The owner's projects, by name, with their jobs counted per status.
pub(crate) async fn projects(pool: &SqlitePool, owner: &Owner) -> Result<Vec<Project>> {
    let rows = sqlx::query(
        "SELECT project, status, count(*) AS n FROM jobs \
         WHERE owner = ? AND project IS NOT NULL GROUP BY project, status",
    )
    .bind(&owner.0)
    .fetch_all(pool)
    .await
    .map_err(map)?;
    let mut counts = Vec::with_capacity(rows.len());
    for row in &rows {
        let project: String = row.try_get("project").map_err(map)?;
        let status: String = row.try_get("status").map_err(map)?;
        let n: i64 = row.try_get("n").map_err(map)?;
        let status = JobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?;
        counts.push((project, status, u64::try_from(n).unwrap_or(0)));
    }
    Ok(Project::from_counts(counts))
}
