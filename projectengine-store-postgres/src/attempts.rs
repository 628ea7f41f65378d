//! Attempts: heartbeats, the end of an attempt, and the attempt history.

use std::time::Duration;

use chrono::{DateTime, Utc};
use projectengine_core::transition::{self, FinishPlan};
use projectengine_core::{
    Attempt, Changed, DeliveryId, Error, Fence, Heartbeat, JobError, JobId, Outcome, Result,
};
use sqlx::{PgConnection, PgPool, Row};

use crate::error::map;
use crate::rows::{self, big};

// The fence check and the lease write are one statement; the attempt row lock
// orders it against `finish`, so a lease is never extended after the attempt
// ended, and `Lost` never applies to a lease that was just extended.
const HEARTBEAT: &str = "\
UPDATE attempts a SET lease_expires_at = now() + $3 \
FROM jobs j \
WHERE a.job_id = $1 AND a.number = $2 AND a.status = 'running' \
  AND j.id = a.job_id AND j.status = 'running' AND j.attempt = $2 \
RETURNING a.lease_expires_at, j.cancel_requested";

/// Extends the lease and reports a pending cancel.
pub(crate) async fn heartbeat(pool: &PgPool, fence: Fence, lease: Duration) -> Result<Heartbeat> {
    let row = sqlx::query(HEARTBEAT)
        .bind(fence.job_id.0)
        .bind(big(fence.attempt))
        .bind(rows::interval(lease))
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .ok_or(Error::StaleAttempt)?;
    Ok(Heartbeat {
        cancel_requested: row.try_get("cancel_requested").map_err(map)?,
        lease_expires_at: row.try_get("lease_expires_at").map_err(map)?,
    })
}

// Locks the job and its running attempt, if the fence names them.
const LOCK: &str = "\
SELECT j.*, a.lease_expires_at, now() AS db_now \
FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.number = j.attempt \
WHERE j.id = $1 AND j.status = 'running' AND j.attempt = $2 AND a.status = 'running' \
FOR UPDATE OF j, a";

// Executes a finish plan; conditional on the fence (though a plan that read the
// job comes with the rows locked). `run_at` and `attempts_used` NULL are kept;
// `$8` says whether the job is finished now; `$16`, unless NULL, the job's
// `review` the plan was made for.
const APPLY: &str = concat!(
    "WITH j AS (",
    " UPDATE jobs SET status = $3, error_code = $4, error_message = $5,",
    "   run_at = COALESCE($6, run_at), attempts_used = COALESCE($7, attempts_used),",
    "   finished_at = CASE WHEN $8 THEN now() END,",
    "   cancel_requested = cancel_requested AND $3 <> 'queued',",
    "   last_seq = last_seq + jsonb_array_length($9), updated_at = now()",
    " WHERE id = $1 AND status = 'running' AND attempt = $2",
    "   AND ($16::boolean IS NULL OR review = $16)",
    "   AND EXISTS (SELECT 1 FROM attempts r",
    "     WHERE r.job_id = $1 AND r.number = $2 AND r.status = 'running')",
    // `Lost` needs the lease expired: checked under the lock, and again here.
    "   AND (NOT $13 OR EXISTS (SELECT 1 FROM attempts x",
    "     WHERE x.job_id = $1 AND x.number = $2 AND x.lease_expires_at <= now()))",
    " RETURNING *",
    "), a AS (",
    " UPDATE attempts SET status = $10, error_code = $11, error_message = $12,",
    "   finished_at = now()",
    " WHERE job_id = $1 AND number = $2 AND status = 'running' AND EXISTS (SELECT 1 FROM j)",
    "), ",
    insert_events!("$9"),
    // The outbox of a terminal state, in the same statement: `$14`, `$15`.
    ", ",
    insert_deliveries!("$14", "$15"),
    " SELECT * FROM j"
);

/// Ends the attempt. An outcome whose plan depends on the job (a failure, a
/// release, a lost lease) locks the job and its attempt, plans with the
/// core's [`transition::plan_finish`] at the database's `now()`, and writes:
/// two statements, which the caller runs in a transaction. Any other (a
/// success, an honoured cancel) is planned without reading and written in
/// one statement, conditional on the fence — and, for a success, on the
/// job's `review` (fixed at submission): a job held for review misses the
/// plain plan and takes [`transition::plan_finish_reviewed`]'s instead, with
/// a second conditional statement. Then the job's dependents are released or
/// cancelled ([`crate::dependencies::settle`]): the caller runs it all in a
/// transaction.
pub(crate) async fn finish(
    conn: &mut PgConnection,
    fence: Fence,
    outcome: &Outcome,
) -> Result<Changed> {
    let lost = matches!(outcome, Outcome::Lost);
    let unread = transition::plan_finish_unread(outcome);
    let mut changed = match unread {
        Some(plan) if matches!(outcome, Outcome::Succeeded) => {
            match apply(&mut *conn, fence, plan, lost, Some(false)).await {
                Err(Error::StaleAttempt) => {
                    let reviewed = transition::plan_finish_reviewed(outcome)
                        .ok_or_else(|| Error::internal("a success without a reviewed plan"))?;
                    apply(&mut *conn, fence, reviewed, lost, Some(true)).await?
                }
                done => done?,
            }
        }
        unread => {
            let plan = match unread {
                Some(plan) => plan,
                None => {
                    let row = sqlx::query(LOCK)
                        .bind(fence.job_id.0)
                        .bind(big(fence.attempt))
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(map)?
                        .ok_or(Error::StaleAttempt)?;
                    let job = rows::job(&row)?;
                    let now: DateTime<Utc> = row.try_get("db_now").map_err(map)?;
                    let lease_expires_at: DateTime<Utc> =
                        row.try_get("lease_expires_at").map_err(map)?;
                    transition::plan_finish(&job, lease_expires_at, outcome, now)?
                }
            };
            apply(&mut *conn, fence, plan, lost, None).await?
        }
    };
    changed.dependents = crate::dependencies::settle(conn, &changed.job).await?;
    Ok(changed)
}

/// Writes `plan` if `fence` still holds (and, for a lost attempt, its lease
/// has expired); otherwise `StaleAttempt`.
async fn apply(
    conn: &mut PgConnection,
    fence: Fence,
    plan: FinishPlan,
    lost: bool,
    review: Option<bool>,
) -> Result<Changed> {
    let (job_error_code, job_error_message) = split(plan.job_error);
    let (attempt_error_code, attempt_error_message) = split(plan.attempt_error);
    let row = sqlx::query(APPLY)
        .bind(fence.job_id.0)
        .bind(big(fence.attempt))
        .bind(plan.job_status.as_str())
        .bind(job_error_code)
        .bind(job_error_message)
        .bind(plan.run_at)
        .bind(plan.attempts_used.map(big))
        .bind(plan.finished)
        .bind(rows::encode_events(&plan.events)?)
        .bind(plan.attempt_status.as_str())
        .bind(attempt_error_code)
        .bind(attempt_error_message)
        .bind(lost)
        .bind(DeliveryId::new().0)
        .bind(DeliveryId::new().0)
        .bind(review)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?
        .ok_or(Error::StaleAttempt)?;
    rows::changed(&row, plan.events)
}

fn split(error: Option<JobError>) -> (Option<String>, Option<String>) {
    match error {
        Some(e) => (Some(e.code), Some(e.message)),
        None => (None, None),
    }
}

/// The job's attempts, by number.
pub(crate) async fn attempts(pool: &PgPool, id: JobId) -> Result<Vec<Attempt>> {
    sqlx::query("SELECT * FROM attempts WHERE job_id = $1 ORDER BY number")
        .bind(id.0)
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(rows::attempt)
        .collect()
}
