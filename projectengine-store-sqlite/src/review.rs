//! The review gate: a reviewer's decision on a job `awaiting_review`, run by
//! the writer inside its batch's transaction like every other write.

use chrono::{DateTime, Utc};
use projectengine_core::transition;
use projectengine_core::{Changed, Error, JobId, JobStatus, Result, ReviewDecision};
use sqlx::SqliteConnection;

use crate::error::map;
use crate::rows::id_bytes;
use crate::writes::{load, push_all, save, write_outbox};

/// A reviewer's decision, as the core's [`transition::plan_review`] plans it.
pub(crate) async fn review(
    conn: &mut SqliteConnection,
    id: JobId,
    decision: &ReviewDecision,
    now: DateTime<Utc>,
) -> Result<Changed> {
    match decision {
        ReviewDecision::Approve => approve(conn, id, now).await,
        other => decide(conn, id, other, now).await,
    }
}

/// The approval's write: the job `succeeded`, its events and its outbox; the
/// jobs that wait for it are released in the same transaction (by
/// [`decide`]).
async fn approve(conn: &mut SqliteConnection, id: JobId, now: DateTime<Utc>) -> Result<Changed> {
    let changed = decide(&mut *conn, id, &ReviewDecision::Approve, now).await?;
    debug_assert_eq!(changed.job.status, JobStatus::Succeeded);
    Ok(changed)
}

/// Plans `decision` on the job and writes it (compare-and-set on the state
/// the plan started from), with the comment, the events and the outbox.
async fn decide(
    conn: &mut SqliteConnection,
    id: JobId,
    decision: &ReviewDecision,
    now: DateTime<Utc>,
) -> Result<Changed> {
    let before = load(&mut *conn, id).await?.ok_or(Error::not_found("job"))?;
    let plan = transition::plan_review(&before, decision, now)?;
    let mut job = before.clone();
    plan.apply_to(&mut job, now);
    let events = push_all(&mut job, &plan.events, now);
    save(&mut *conn, &before, &job, &events).await?;
    sqlx::query("UPDATE jobs SET review_comment = ? WHERE id = ?")
        .bind(job.review_comment.as_deref())
        .bind(id_bytes(id.0))
        .execute(&mut *conn)
        .await
        .map_err(map)?;
    write_outbox(&mut *conn, &job, now).await?;
    // An approval releases the job's dependents; a final rejection cancels
    // them.
    let dependents = crate::dependencies::settle(conn, &job, now).await?;
    Ok(Changed {
        job,
        events,
        dependents,
    })
}
