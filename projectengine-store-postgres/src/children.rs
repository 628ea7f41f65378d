//! Child jobs and idempotent submissions: creates that may find their job
//! existing.

use projectengine_core::children::check_child;
use projectengine_core::{Created, Error, Fence, IdempotencyKey, Job, JobId, NewJob, Result};
use sqlx::{PgConnection, PgPool, Row};

use crate::error::map;
use crate::jobs;
use crate::rows::{self, big};

// The fence check takes the parent's row lock, which serializes the
// children of one parent (so the lookup of a key below stays true until the
// commit) and orders them with the attempt's end.
const LOCK_PARENT: &str =
    "SELECT 1 FROM jobs WHERE id = $1 AND status = 'running' AND attempt = $2 FOR UPDATE";

const CHILD: &str = "SELECT * FROM jobs WHERE parent_id = $1 AND child_key = $2";

const CHILDREN: &str = "SELECT * FROM jobs WHERE parent_id = $1 ORDER BY id";

/// Creates the child `new` of the job whose running attempt is `fence`, or
/// answers the child of its key.
pub(crate) async fn create_child(pool: &PgPool, fence: Fence, new: NewJob) -> Result<Created> {
    let key = check_child(fence, &new)?.to_owned();
    let mut tx = pool.begin().await.map_err(map)?;
    let done = create_child_locked(&mut tx, fence, &key, &new).await;
    crate::tx::settle(tx, done).await
}

async fn create_child_locked(
    tx: &mut PgConnection,
    fence: Fence,
    key: &str,
    new: &NewJob,
) -> Result<Created> {
    sqlx::query(LOCK_PARENT)
        .bind(fence.job_id.0)
        .bind(big(fence.attempt))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?
        .ok_or(Error::StaleAttempt)?;
    let existing = sqlx::query(CHILD)
        .bind(fence.job_id.0)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
    if let Some(row) = existing {
        return Ok(Created::Existing(rows::job(&row)?));
    }
    Ok(Created::New(jobs::create(tx, new).await?))
}

/// The job's children, oldest first.
pub(crate) async fn children(pool: &PgPool, parent: JobId) -> Result<Vec<Job>> {
    sqlx::query(CHILDREN)
        .bind(parent.0)
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(rows::job)
        .collect()
}

// Drops a few expired keys, skipping those another transaction holds.
const PURGE: &str = "\
DELETE FROM idempotency_keys WHERE (owner, key) IN ( \
  SELECT owner, key FROM idempotency_keys WHERE expires_at <= now() \
  ORDER BY expires_at LIMIT 8 FOR UPDATE SKIP LOCKED)";

// Takes the key when it is free: absent, or expired (then it is rewritten).
// A live key of a concurrent transaction makes this wait for its end; a
// live key answers no row.
const TAKE: &str = "\
INSERT INTO idempotency_keys (owner, key, request_hash, job_id, expires_at) \
VALUES ($1, $2, $3, $4, now() + $5) \
ON CONFLICT (owner, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, \
  job_id = EXCLUDED.job_id, expires_at = EXCLUDED.expires_at \
WHERE idempotency_keys.expires_at <= now() \
RETURNING job_id";

const KEPT: &str = "\
SELECT k.request_hash, j.* FROM idempotency_keys k JOIN jobs j ON j.id = k.job_id \
WHERE k.owner = $1 AND k.key = $2";

/// Creates `new` under the owner's idempotency key, or answers the job the
/// key created.
pub(crate) async fn create_job_idempotent(
    pool: &PgPool,
    new: NewJob,
    key: &IdempotencyKey,
) -> Result<Created> {
    let mut tx = pool.begin().await.map_err(map)?;
    let done = create_idempotent_in(&mut tx, &new, key).await;
    crate::tx::settle(tx, done).await
}

async fn create_idempotent_in(
    tx: &mut PgConnection,
    new: &NewJob,
    key: &IdempotencyKey,
) -> Result<Created> {
    sqlx::query(PURGE).execute(&mut *tx).await.map_err(map)?;
    let taken = sqlx::query(TAKE)
        .bind(&new.owner.0)
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(new.id.0)
        .bind(rows::interval(key.ttl))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
    if taken.is_some() {
        return Ok(Created::New(jobs::create(tx, new).await?));
    }
    // The key is live: a new statement sees it committed.
    let row = sqlx::query(KEPT)
        .bind(&new.owner.0)
        .bind(&key.key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?
        .ok_or_else(|| Error::unavailable("the idempotency key changed meanwhile; try again"))?;
    let hash: String = row.try_get("request_hash").map_err(map)?;
    if hash != key.request_hash {
        return Err(Error::IdempotencyKeyReused);
    }
    Ok(Created::Existing(rows::job(&row)?))
}
