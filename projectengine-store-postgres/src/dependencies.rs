//! Dependencies: a new job's dependencies read under a share lock, and the
//! release or cancel of a job's `waiting` dependents when it ends, in the
//! transaction that ends it (see `projectengine_core::workflow`).
//!
//! Why the locks: a new job reads its dependencies `FOR SHARE`, so a
//! dependency cannot end between that read and the insert's commit (its
//! `UPDATE` waits), and a dependency that ended before is read as ended. A
//! job that ends locks its `waiting` dependents (`FOR UPDATE`) before a new
//! statement — a new snapshot, under READ COMMITTED — checks their other
//! dependencies: two dependencies of one job that succeed at once are
//! serialized on the dependent's row, and the second sees the first's
//! success.

use chrono::{DateTime, Utc};
use projectengine_core::transition;
use projectengine_core::workflow::FoundDependency;
use projectengine_core::{Changed, DeliveryId, Error, Job, JobId, JobStatus, Owner, Result};
use sqlx::{PgConnection, Row};

use crate::error::{corrupt, map};
use crate::rows;

const FOUND: &str = "SELECT id, owner, status FROM jobs WHERE id = ANY($1) ORDER BY id FOR SHARE";

/// A new job's dependencies as they are, share-locked until the caller's
/// transaction ends.
pub(crate) async fn found(conn: &mut PgConnection, ids: &[JobId]) -> Result<Vec<FoundDependency>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    sqlx::query(FOUND)
        .bind(&ids)
        .fetch_all(conn)
        .await
        .map_err(map)?
        .iter()
        .map(|row| {
            let status: String = rows::get(row, "status")?;
            Ok(FoundDependency {
                id: JobId(rows::get(row, "id")?),
                owner: Owner(rows::get(row, "owner")?),
                status: JobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?,
            })
        })
        .collect()
}

/// What `job`, just moved to its status in the caller's transaction, does
/// to its dependents: [`release`] on a success, [`cancel`] on a failure or
/// a cancel.
pub(crate) async fn settle(conn: &mut PgConnection, job: &Job) -> Result<Vec<Changed>> {
    if transition::releases_dependents(job.status) {
        release(conn, job.id).await
    } else if transition::fails_dependents(job.status) {
        cancel(conn, job.id, job.status).await
    } else {
        Ok(Vec::new())
    }
}

// The jobs that depend on a job: an index lookup, empty for most jobs. (A
// job cannot gain a dependent while its end is being written: a submission
// that names it waits for its row lock, then sees it finished.)
const DEPENDENTS: &str = "SELECT job_id FROM job_dependencies WHERE depends_on = $1";

// Of those, the ones still waiting, locked in id order (every writer locks
// them in the same order), with the database's clock. Looked up by id: the
// plan cannot fall back to reading every job, whatever the statistics said
// when the connection prepared it.
const LOCK_DEPENDENTS: &str = "\
SELECT j.*, now() AS db_now FROM jobs j \
WHERE j.id = ANY($1) AND j.status = 'waiting' \
ORDER BY j.id FOR UPDATE OF j";

async fn lock_dependents(
    conn: &mut PgConnection,
    id: JobId,
) -> Result<(Vec<Job>, Option<DateTime<Utc>>)> {
    let dependents: Vec<uuid::Uuid> = sqlx::query_scalar(DEPENDENTS)
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(map)?;
    if dependents.is_empty() {
        return Ok((Vec::new(), None));
    }
    let rows = sqlx::query(LOCK_DEPENDENTS)
        .bind(&dependents)
        .fetch_all(&mut *conn)
        .await
        .map_err(map)?;
    let now = match rows.first() {
        Some(row) => Some(row.try_get("db_now").map_err(map)?),
        None => None,
    };
    let jobs = rows.iter().map(rows::job).collect::<Result<Vec<_>>>()?;
    Ok((jobs, now))
}

// Of the given jobs, those whose every dependency has succeeded.
const READY: &str = "\
SELECT d.job_id FROM job_dependencies d JOIN jobs x ON x.id = d.depends_on \
WHERE d.job_id = ANY($1) GROUP BY d.job_id HAVING bool_and(x.status = 'succeeded')";

// Executes a release plan: `$2` the status compared, `$3` written, `$4` the
// new `run_at`, `$5` the events.
const RELEASE: &str = concat!(
    "WITH j AS (",
    " UPDATE jobs SET status = $3, run_at = $4,",
    "   last_seq = last_seq + jsonb_array_length($5), updated_at = now()",
    " WHERE id = $1 AND status = $2",
    " RETURNING *",
    "), ",
    insert_events!("$5"),
    " SELECT * FROM j"
);

/// Releases every `waiting` dependent of `id` (which has just succeeded in
/// the caller's transaction) whose dependencies have all succeeded:
/// `queued`, with its status event, as the core's
/// [`transition::plan_release`] plans it. The store's release function: a
/// transition that makes a job `succeeded` calls it in its transaction.
pub(crate) async fn release(conn: &mut PgConnection, id: JobId) -> Result<Vec<Changed>> {
    let (waiting, now) = lock_dependents(&mut *conn, id).await?;
    let Some(now) = now else {
        return Ok(Vec::new());
    };
    let ids: Vec<uuid::Uuid> = waiting.iter().map(|j| j.id.0).collect();
    let ready: Vec<uuid::Uuid> = sqlx::query_scalar(READY)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(map)?;
    let mut moved = Vec::new();
    for job in waiting.iter().filter(|j| ready.contains(&j.id.0)) {
        let plan = transition::plan_release(job, now)?;
        let row = sqlx::query(RELEASE)
            .bind(job.id.0)
            .bind(plan.from.as_str())
            .bind(plan.to.as_str())
            .bind(plan.run_at)
            .bind(rows::encode_events(&plan.events)?)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?
            .ok_or_else(|| Error::internal("a locked dependent did not take its release"))?;
        moved.push(rows::changed(&row, plan.events)?);
    }
    Ok(moved)
}

// Executes a dependency-failed plan: `$2` the status compared, `$3`
// written, `$4` and `$5` the error, `$6` the events, `$7` and `$8` the ids
// of the webhook deliveries the terminal state writes.
const CANCEL: &str = concat!(
    "WITH j AS (",
    " UPDATE jobs SET status = $3, error_code = $4, error_message = $5, finished_at = now(),",
    "   last_seq = last_seq + jsonb_array_length($6), updated_at = now()",
    " WHERE id = $1 AND status = $2",
    " RETURNING *",
    "), ",
    insert_events!("$6"),
    ", ",
    insert_deliveries!("$7", "$8"),
    " SELECT * FROM j"
);

/// Cancels every `waiting` dependent of `id` (which has just ended with
/// `status` in the caller's transaction) with `dependency_failed`, and
/// theirs in turn, as the core's [`transition::plan_dependency_failed`]
/// plans it: each with its status event and its webhook outbox rows.
pub(crate) async fn cancel(
    conn: &mut PgConnection,
    id: JobId,
    status: JobStatus,
) -> Result<Vec<Changed>> {
    let mut moved = Vec::new();
    let mut ended = vec![(id, status)];
    while let Some((failed, failed_status)) = ended.pop() {
        let (waiting, _) = lock_dependents(&mut *conn, failed).await?;
        for job in waiting {
            let plan = transition::plan_dependency_failed(&job, failed, failed_status)?;
            let row = sqlx::query(CANCEL)
                .bind(job.id.0)
                .bind(plan.from.as_str())
                .bind(plan.to.as_str())
                .bind(&plan.error.code)
                .bind(&plan.error.message)
                .bind(rows::encode_events(&plan.events)?)
                .bind(DeliveryId::new().0)
                .bind(DeliveryId::new().0)
                .fetch_optional(&mut *conn)
                .await
                .map_err(map)?
                .ok_or_else(|| Error::internal("a locked dependent did not take its cancel"))?;
            let changed = rows::changed(&row, plan.events)?;
            ended.push((changed.job.id, changed.job.status));
            moved.push(changed);
        }
    }
    Ok(moved)
}
