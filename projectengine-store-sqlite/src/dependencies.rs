//! Dependencies: a new job's dependencies as they are, and the release or
//! cancel of a job's `waiting` dependents when it ends, in the write that
//! ends it (see `projectengine_core::workflow`). The writer holds SQLite's
//! write lock for the whole transaction, so nothing changes between these
//! reads and the writes that follow them.

use chrono::{DateTime, Utc};
use projectengine_core::transition;
use projectengine_core::workflow::FoundDependency;
use projectengine_core::{Changed, Job, JobId, JobStatus, Result};
use sqlx::SqliteConnection;

use crate::error::map;
use crate::rows::{self, id_bytes};
use crate::writes::{push_all, save, write_outbox};

/// A new job's dependencies as they are.
pub(crate) async fn found(
    conn: &mut SqliteConnection,
    ids: &[JobId],
) -> Result<Vec<FoundDependency>> {
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(job) = load(&mut *conn, *id).await? {
            found.push(FoundDependency {
                id: job.id,
                owner: job.owner,
                status: job.status,
            });
        }
    }
    Ok(found)
}

/// Records the edges of a new job's dependencies.
pub(crate) async fn insert(conn: &mut SqliteConnection, job: &Job) -> Result<()> {
    for dep in &job.depends_on {
        sqlx::query("INSERT INTO job_dependencies (job_id, depends_on) VALUES (?, ?)")
            .bind(id_bytes(job.id.0))
            .bind(id_bytes(dep.0))
            .execute(&mut *conn)
            .await
            .map_err(map)?;
    }
    Ok(())
}

async fn load(conn: &mut SqliteConnection, id: JobId) -> Result<Option<Job>> {
    sqlx::query("SELECT * FROM jobs WHERE id = ?")
        .bind(id_bytes(id.0))
        .fetch_optional(conn)
        .await
        .map_err(map)?
        .map(|row| rows::job(&row))
        .transpose()
}

/// The `waiting` dependents of a job, in id order.
async fn waiting_dependents(conn: &mut SqliteConnection, id: JobId) -> Result<Vec<Job>> {
    sqlx::query(
        "SELECT j.* FROM jobs j JOIN job_dependencies d ON d.job_id = j.id \
         WHERE d.depends_on = ? AND j.status = 'waiting' ORDER BY j.id",
    )
    .bind(id_bytes(id.0))
    .fetch_all(conn)
    .await
    .map_err(map)?
    .iter()
    .map(rows::job)
    .collect()
}

/// What `job`, just moved to its status in the writer's transaction, does
/// to its dependents: [`release`] on a success, [`cancel`] on a failure or
/// a cancel.
pub(crate) async fn settle(
    conn: &mut SqliteConnection,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<Vec<Changed>> {
    if transition::releases_dependents(job.status) {
        release(conn, job.id, now).await
    } else if transition::fails_dependents(job.status) {
        cancel(conn, job.id, job.status, now).await
    } else {
        Ok(Vec::new())
    }
}

/// Releases every `waiting` dependent of `id` (which has just succeeded in
/// the writer's transaction) whose dependencies have all succeeded:
/// `queued`, with its status event, as the core's
/// [`transition::plan_release`] plans it. The store's release function: a
/// transition that makes a job `succeeded` calls it in its transaction.
pub(crate) async fn release(
    conn: &mut SqliteConnection,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<Vec<Changed>> {
    let mut moved = Vec::new();
    for before in waiting_dependents(&mut *conn, id).await? {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM job_dependencies d JOIN jobs x ON x.id = d.depends_on \
             WHERE d.job_id = ? AND x.status <> 'succeeded'",
        )
        .bind(id_bytes(before.id.0))
        .fetch_one(&mut *conn)
        .await
        .map_err(map)?;
        if pending > 0 {
            continue;
        }
        let plan = transition::plan_release(&before, now)?;
        let mut job = before.clone();
        plan.apply_to(&mut job);
        let events = push_all(&mut job, &plan.events, now);
        save(&mut *conn, &before, &job, &events).await?;
        moved.push(Changed::of(job, events));
    }
    Ok(moved)
}

/// Cancels every `waiting` dependent of `id` (which has just ended with
/// `status` in the writer's transaction) with `dependency_failed`, and
/// theirs in turn, as the core's [`transition::plan_dependency_failed`]
/// plans it: each with its status event and its webhook outbox rows.
pub(crate) async fn cancel(
    conn: &mut SqliteConnection,
    id: JobId,
    status: JobStatus,
    now: DateTime<Utc>,
) -> Result<Vec<Changed>> {
    let mut moved = Vec::new();
    let mut ended = vec![(id, status)];
    while let Some((failed, failed_status)) = ended.pop() {
        for before in waiting_dependents(&mut *conn, failed).await? {
            let plan = transition::plan_dependency_failed(&before, failed, failed_status)?;
            let mut job = before.clone();
            plan.apply_to(&mut job, now);
            let events = push_all(&mut job, &plan.events, now);
            save(&mut *conn, &before, &job, &events).await?;
            write_outbox(&mut *conn, &job, now).await?;
            ended.push((job.id, job.status));
            moved.push(Changed::of(job, events));
        }
    }
    Ok(moved)
}
