//! The review gate: a reviewer's decision on a job `awaiting_review`.

use projectengine_core::transition::{self, ReviewPlan};
use projectengine_core::{Changed, DeliveryId, Error, JobId, JobStatus, Result, ReviewDecision};
use sqlx::{PgConnection, PgPool};

use crate::error::map;
use crate::rows;

// Executes a review plan on the locked job: `$2` the status compared, `$3`
// the status written, `$4` the error afterwards, `$6` the new `run_at`
// (NULL keeps it), `$7` whether it finishes the job, `$8` the review
// comment, `$9` the events; `$10` and `$11` the ids of the webhook
// deliveries the new state writes.
const REVIEW: &str = concat!(
    "WITH j AS (",
    " UPDATE jobs SET status = $3, error_code = $4, error_message = $5,",
    "   run_at = COALESCE($6, run_at),",
    "   finished_at = CASE WHEN $7 THEN now() ELSE finished_at END,",
    "   cancel_requested = false, review_comment = $8,",
    "   last_seq = last_seq + jsonb_array_length($9), updated_at = now()",
    " WHERE id = $1 AND status = $2",
    " RETURNING *",
    "), ",
    insert_events!("$9"),
    ", ",
    insert_deliveries!("$10", "$11"),
    " SELECT * FROM j"
);

/// A reviewer's decision: locks the job, plans with the core's
/// [`transition::plan_review`] at the database's `now()`, and executes the
/// plan, in one transaction.
pub(crate) async fn review(pool: &PgPool, id: JobId, decision: ReviewDecision) -> Result<Changed> {
    let mut tx = pool.begin().await.map_err(map)?;
    let done = match decision {
        ReviewDecision::Approve => approve(&mut tx, id).await,
        other => decide(&mut tx, id, &other).await,
    };
    crate::tx::settle(tx, done).await
}

/// The approval's transaction: the job `succeeded`, its events and its
/// outbox, and the jobs that wait for it released (by [`decide`]).
async fn approve(tx: &mut PgConnection, id: JobId) -> Result<Changed> {
    let changed = decide(&mut *tx, id, &ReviewDecision::Approve).await?;
    debug_assert_eq!(changed.job.status, JobStatus::Succeeded);
    Ok(changed)
}

/// Plans `decision` on the locked job and writes it; then its dependents are
/// released (an approval) or cancelled (a final rejection), on `tx`.
async fn decide(tx: &mut PgConnection, id: JobId, decision: &ReviewDecision) -> Result<Changed> {
    let (job, now) = crate::jobs::lock(&mut *tx, id).await?;
    let plan: ReviewPlan = transition::plan_review(&job, decision, now)?;
    let (code, message) = match plan.error {
        Some(e) => (Some(e.code), Some(e.message)),
        None => (None, None),
    };
    let row = sqlx::query(REVIEW)
        .bind(id.0)
        .bind(plan.from.as_str())
        .bind(plan.to.as_str())
        .bind(code)
        .bind(message)
        .bind(plan.run_at)
        .bind(plan.finished)
        .bind(plan.review_comment.as_deref())
        .bind(rows::encode_events(&plan.events)?)
        .bind(DeliveryId::new().0)
        .bind(DeliveryId::new().0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?
        .ok_or_else(|| Error::internal("the locked job did not take the review"))?;
    let mut changed = rows::changed(&row, plan.events)?;
    changed.dependents = crate::dependencies::settle(&mut *tx, &changed.job).await?;
    Ok(changed)
}
