//! Jobs: create, read, list, claim, and the owner's cancel and retry.

use std::time::Duration;

use chrono::{DateTime, Utc};
use projectengine_core::transition::{self, CancelPlan};
use projectengine_core::workflow::{self, Project};
use projectengine_core::{
    Attempt, AttemptId, AttemptStatus, Changed, Claim, DeliveryId, Error, EventData, Job,
    JobDetail, JobId, JobQuery, JobStatus, NewJob, Owner, Result,
};
use sqlx::{PgConnection, PgPool};

use crate::error::{corrupt, map};
use crate::rows::{self, big};

const CREATE: &str = concat!(
    "WITH j AS (",
    " INSERT INTO jobs (id, owner, kind, queue, prompt, params, status, priority,",
    "   max_attempts, timeout_ms, run_at, created_at, updated_at, last_seq,",
    "   webhook, notify_deployment, trace_parent, project, depends_on, review, parent_id,",
    "   child_key, concurrency_key, concurrency_limit)",
    " VALUES ($1, $2, $3, $4, $5, $6, $14, $7, $8, $9, $10, now(), now(), 1, $11, $12, $13,",
    "   $15, $16, $17, $18, $19, $20, $21)",
    " RETURNING *",
    "), e AS (",
    " INSERT INTO job_events (job_id, seq, attempt, at, kind, data)",
    " SELECT id, last_seq, attempt, updated_at, 'status',",
    "   jsonb_build_object('status', status, 'run_at', ",
    rfc3339!("run_at"),
    ")",
    " FROM j",
    "), d AS (",
    " INSERT INTO job_dependencies (job_id, depends_on)",
    " SELECT j.id, unnest(j.depends_on) FROM j",
    ") SELECT * FROM j"
);

// Serializes an owner's quota-checked submissions until their transaction
// ends, so that counting and inserting are one step for that owner. The first
// key keeps these locks apart from any other advisory lock.
const LOCK_OWNER: &str = "SELECT pg_advisory_xact_lock(1701, hashtext($1))";

const COUNT_QUEUED: &str = "SELECT count(*) FROM jobs WHERE owner = $1 AND status = 'queued'";

/// Creates a job, its first event and its dependency rows in one statement;
/// with a quota, counts the owner's queued jobs first, under a lock held
/// until the caller's transaction ends; with dependencies, reads them first
/// under a share lock held as long (see [`crate::dependencies::found`]). In
/// both cases the caller must run it in a transaction.
pub(crate) async fn create(conn: &mut PgConnection, new: &NewJob) -> Result<Changed> {
    let timeout_ms =
        i64::try_from(new.timeout_ms).map_err(|_| Error::invalid("timeout_ms", "is too large"))?;
    if let Some(max) = new.max_queued {
        sqlx::query(LOCK_OWNER)
            .bind(&new.owner.0)
            .execute(&mut *conn)
            .await
            .map_err(map)?;
        let queued: i64 = sqlx::query_scalar(COUNT_QUEUED)
            .bind(&new.owner.0)
            .fetch_one(&mut *conn)
            .await
            .map_err(map)?;
        transition::check_quota(u64::try_from(queued).unwrap_or(0), Some(max))?;
    }
    let found = crate::dependencies::found(&mut *conn, &new.depends_on).await?;
    let plan = workflow::plan_create(new, &found)?;
    let depends_on: Vec<uuid::Uuid> = new.depends_on.iter().map(|id| id.0).collect();
    let row = sqlx::query(CREATE)
        .bind(new.id.0)
        .bind(&new.owner.0)
        .bind(&new.kind)
        .bind(&new.queue)
        .bind(&new.prompt)
        .bind(&new.params)
        .bind(new.priority)
        .bind(big(new.max_attempts))
        .bind(timeout_ms)
        .bind(new.run_at)
        .bind(new.webhook.as_deref())
        .bind(new.notify_deployment)
        .bind(&new.trace_parent)
        .bind(plan.status.as_str())
        .bind(new.project.as_deref())
        .bind(&depends_on)
        .bind(new.review)
        .bind(new.parent_id.map(|id| id.0))
        .bind(new.child_key.as_deref())
        .bind(new.concurrency_key.as_deref())
        .bind(
            new.concurrency_limit
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        )
        .fetch_one(conn)
        .await
        .map_err(map)?;
    let job = rows::job(&row)?;
    // The event as the statement wrote it: the run_at the database kept.
    let events = rows::appended(
        job.id,
        job.attempt,
        job.last_seq,
        job.updated_at,
        vec![EventData::Status {
            status: job.status,
            error: None,
            run_at: Some(job.run_at),
        }],
    );
    Ok(Changed::of(job, events))
}

/// The job, if it exists.
pub(crate) async fn get(pool: &PgPool, id: JobId) -> Result<Option<Job>> {
    sqlx::query("SELECT * FROM jobs WHERE id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .map(|row| rows::job(&row))
        .transpose()
}

// The job, its log and its attempts in one statement, the log and the
// attempts as JSON in the shapes `JobEvent` and `Attempt` deserialize from.
const DETAIL: &str = "\
SELECT j.*, \
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('job_id', e.job_id, 'seq', e.seq, \
      'attempt', e.attempt, 'at', e.at, 'type', e.kind) \
      || CASE WHEN e.data IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('data', e.data) END \
      ORDER BY e.seq), '[]'::jsonb) \
   FROM job_events e WHERE e.job_id = j.id) AS detail_events, \
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('id', a.id, 'job_id', a.job_id, \
      'number', a.number, 'worker_id', a.worker_id, 'status', a.status, \
      'lease_expires_at', a.lease_expires_at, 'started_at', a.started_at, \
      'finished_at', a.finished_at, 'error', CASE WHEN a.error_code IS NULL THEN NULL \
        ELSE jsonb_build_object('code', a.error_code, 'message', COALESCE(a.error_message, '')) END) \
      ORDER BY a.number), '[]'::jsonb) \
   FROM attempts a WHERE a.job_id = j.id) AS detail_attempts \
FROM jobs j WHERE j.id = $1";

/// The job with its log and its attempts, in one round trip.
pub(crate) async fn detail(pool: &PgPool, id: JobId) -> Result<Option<JobDetail>> {
    let Some(row) = sqlx::query(DETAIL)
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .map_err(map)?
    else {
        return Ok(None);
    };
    let decode = |column: &str| -> Result<serde_json::Value> {
        sqlx::Row::try_get(&row, column).map_err(map)
    };
    let events =
        serde_json::from_value(decode("detail_events")?).map_err(|e| corrupt("event log", e))?;
    let attempts =
        serde_json::from_value(decode("detail_attempts")?).map_err(|e| corrupt("attempt", e))?;
    Ok(Some(JobDetail {
        job: rows::job(&row)?,
        events,
        attempts,
    }))
}

/// One cursor page of an owner's jobs.
pub(crate) async fn list(pool: &PgPool, owner: &Owner, query: &JobQuery) -> Result<Vec<Job>> {
    let mut sql = String::from("SELECT * FROM jobs WHERE owner = $1");
    let mut n = 1;
    if query.cursor.is_some() {
        n += 1;
        let op = if query.newest_first { "<" } else { ">" };
        sql.push_str(&format!(" AND id {op} ${n}"));
    }
    if query.status.is_some() {
        n += 1;
        sql.push_str(&format!(" AND status = ${n}"));
    }
    if query.project.is_some() {
        n += 1;
        sql.push_str(&format!(" AND project = ${n}"));
    }
    if query.kind.is_some() {
        n += 1;
        sql.push_str(&format!(" AND kind = ${n}"));
    }
    let order = if query.newest_first { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY id {order} LIMIT ${}", n + 1));
    let mut q = sqlx::query(&sql).bind(&owner.0);
    if let Some(cursor) = query.cursor {
        q = q.bind(cursor.0);
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

// Executes the core's claim plan: compares the status with the plan's `$6`,
// writes its `$7`. SKIP LOCKED: a queued job whose row another transaction
// holds is being claimed or cancelled right now, so it is not claimable by
// this caller. A job with a concurrency key is claimed only when `$8` says
// its key was counted (see `claim_keyed`).
const CLAIM: &str = concat!(
    "WITH c AS (",
    " SELECT id FROM jobs WHERE id = $1 AND status = $6 AND run_at <= now()",
    "   AND (concurrency_key IS NULL OR $8)",
    " FOR UPDATE SKIP LOCKED",
    "), j AS (",
    " UPDATE jobs SET status = $7, attempt = attempt + 1,",
    "   attempts_used = attempts_used + 1, started_at = now(), cancel_requested = false,",
    "   last_seq = last_seq + jsonb_array_length($5), updated_at = now()",
    " FROM c WHERE jobs.id = c.id",
    " RETURNING jobs.*",
    "), a AS (",
    " INSERT INTO attempts (id, job_id, number, worker_id, status, lease_expires_at, started_at)",
    " SELECT $2, id, attempt, $3, 'running', now() + $4, now() FROM j",
    " RETURNING lease_expires_at",
    "), ",
    insert_events!("$5"),
    " SELECT j.*, a.lease_expires_at FROM j, a"
);

// A claimable job's concurrency key and limit, if it has one.
const KEYED: &str = "SELECT owner, concurrency_key, concurrency_limit FROM jobs \
WHERE id = $1 AND status = 'queued' AND run_at <= now() AND concurrency_key IS NOT NULL";

// Serializes the claims of one owner's key until their transaction ends, so
// that counting and claiming are one step. Not waited for: a claimer that
// finds the key's lock held answers "not claimable now" and is asked again a
// moment later, so claims never queue up behind each other (nor deadlock
// within a group commit). The first key keeps these locks apart from any
// other advisory lock of the store.
const LOCK_KEY: &str = "SELECT pg_try_advisory_xact_lock(1702, hashtext($1 || chr(31) || $2))";

const COUNT_RUNNING: &str = "SELECT count(*) FROM jobs \
WHERE owner = $1 AND concurrency_key = $2 AND status = 'running'";

/// Claims a queued, due job: job `running`, a new attempt, the `running`
/// event — in one statement, or, for a job with a concurrency key, in a
/// (sub)transaction that counts its key's running jobs first (see
/// [`projectengine_core::concurrency`]).
pub(crate) async fn claim(
    conn: &mut PgConnection,
    id: JobId,
    worker_id: &str,
    lease: Duration,
) -> Result<Option<Claim>> {
    if let Some(claim) = claim_row(&mut *conn, id, worker_id, lease, false).await? {
        return Ok(Some(claim));
    }
    let Some(row) = sqlx::query(KEYED)
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?
    else {
        return Ok(None);
    };
    let owner: String = rows::get(&row, "owner")?;
    let key: String = rows::get(&row, "concurrency_key")?;
    let limit: i32 = rows::get(&row, "concurrency_limit")?;
    let limit = rows::to_u32(limit.into(), "concurrency_limit")?;
    claim_keyed(conn, id, worker_id, lease, (&owner, &key, limit)).await
}

/// Claims a job with a concurrency key in a transaction of its own, or a
/// savepoint of the caller's: the key's lock, the count, then the claim;
/// the lock is held until the outermost transaction ends.
async fn claim_keyed(
    conn: &mut PgConnection,
    id: JobId,
    worker_id: &str,
    lease: Duration,
    (owner, key, limit): (&str, &str, u32),
) -> Result<Option<Claim>> {
    use sqlx::Connection;
    let mut tx = conn.begin().await.map_err(map)?;
    let locked: bool = sqlx::query_scalar(LOCK_KEY)
        .bind(owner)
        .bind(key)
        .fetch_one(&mut *tx)
        .await
        .map_err(map)?;
    let claim = if locked {
        let running: i64 = sqlx::query_scalar(COUNT_RUNNING)
            .bind(owner)
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
        if projectengine_core::concurrency::admits(u64::try_from(running).unwrap_or(0), limit) {
            claim_row(&mut tx, id, worker_id, lease, true).await?
        } else {
            None
        }
    } else {
        None
    };
    match claim {
        Some(claim) => {
            tx.commit().await.map_err(map)?;
            Ok(Some(claim))
        }
        None => {
            tx.rollback().await.map_err(map)?;
            Ok(None)
        }
    }
}

/// The claim statement; `keyed`: a job with a concurrency key may be
/// claimed (its key was counted).
async fn claim_row(
    conn: &mut PgConnection,
    id: JobId,
    worker_id: &str,
    lease: Duration,
    keyed: bool,
) -> Result<Option<Claim>> {
    let plan = transition::plan_claim();
    let attempt_id = AttemptId::new();
    let Some(row) = sqlx::query(CLAIM)
        .bind(id.0)
        .bind(attempt_id.0)
        .bind(worker_id)
        .bind(rows::interval(lease))
        .bind(rows::encode_events(&plan.events)?)
        .bind(plan.from.as_str())
        .bind(plan.to.as_str())
        .bind(keyed)
        .fetch_optional(conn)
        .await
        .map_err(map)?
    else {
        return Ok(None);
    };
    let job = rows::job(&row)?;
    let started_at = job.updated_at;
    let attempt = Attempt {
        id: attempt_id,
        job_id: job.id,
        number: job.attempt,
        worker_id: worker_id.to_owned(),
        status: AttemptStatus::Running,
        lease_expires_at: sqlx::Row::try_get(&row, "lease_expires_at").map_err(map)?,
        started_at,
        finished_at: None,
        error: None,
    };
    let events = rows::appended(job.id, job.attempt, job.last_seq, started_at, plan.events);
    Ok(Some(Claim {
        job,
        attempt,
        events,
    }))
}

// Locks the job for the owner's cancel, retry or review, with the database's clock.
const LOCK: &str = "SELECT *, now() AS db_now FROM jobs WHERE id = $1 FOR UPDATE";

/// The job, locked until the transaction ends, and the database's `now()`.
pub(crate) async fn lock(conn: &mut PgConnection, id: JobId) -> Result<(Job, DateTime<Utc>)> {
    let row = sqlx::query(LOCK)
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?
        .ok_or(Error::not_found("job"))?;
    let now = sqlx::Row::try_get(&row, "db_now").map_err(map)?;
    Ok((rows::job(&row)?, now))
}

// Executes a cancel plan on the locked job: `$2` the status written, `$3`
// whether it finishes the job, `$4` whether it requests the worker to stop,
// `$5` the events; `$7` and `$8` the ids of the webhook deliveries a cancel
// that ends the job writes. The compare on the status is kept though the row
// is locked.
const CANCEL: &str = concat!(
    "WITH j AS (",
    " UPDATE jobs SET status = $2,",
    "   finished_at = CASE WHEN $3 THEN now() ELSE finished_at END,",
    "   cancel_requested = cancel_requested OR $4,",
    "   last_seq = last_seq + jsonb_array_length($5), updated_at = now()",
    " WHERE id = $1 AND status = $6",
    " RETURNING *",
    "), ",
    insert_events!("$5"),
    ", ",
    insert_deliveries!("$7", "$8"),
    " SELECT * FROM j"
);

/// The owner's cancel: locks the job, plans with the core's
/// [`transition::plan_cancel`], and executes the plan.
pub(crate) async fn request_cancel(pool: &PgPool, id: JobId) -> Result<Changed> {
    let mut tx = pool.begin().await.map_err(map)?;
    let done = cancel_locked(&mut tx, id).await;
    crate::tx::settle(tx, done).await
}

async fn cancel_locked(tx: &mut PgConnection, id: JobId) -> Result<Changed> {
    let (job, now) = lock(&mut *tx, id).await?;
    let plan = transition::plan_cancel(&job)?;
    if plan == CancelPlan::Pending {
        return Ok(Changed::of(job, vec![]));
    }
    let mut planned = job.clone();
    plan.apply_to(&mut planned, now);
    let row = sqlx::query(CANCEL)
        .bind(id.0)
        .bind(planned.status.as_str())
        .bind(planned.finished_at.is_some())
        .bind(planned.cancel_requested)
        .bind(rows::encode_events(plan.events())?)
        .bind(plan.from().as_str())
        .bind(DeliveryId::new().0)
        .bind(DeliveryId::new().0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?
        .ok_or_else(|| Error::internal("the locked job did not take the cancel"))?;
    let mut changed = rows::changed(&row, plan.events().to_vec())?;
    changed.dependents = crate::dependencies::settle(&mut *tx, &changed.job).await?;
    Ok(changed)
}

/// Creates the jobs in one transaction, in order: all or none.
pub(crate) async fn create_all(pool: &PgPool, jobs: &[NewJob]) -> Result<Vec<Changed>> {
    let mut tx = pool.begin().await.map_err(map)?;
    let mut done = Ok(Vec::with_capacity(jobs.len()));
    for new in jobs {
        match create(&mut tx, new).await {
            Ok(changed) => {
                if let Ok(all) = &mut done {
                    all.push(changed);
                }
            }
            Err(e) => {
                done = Err(e);
                break;
            }
        }
    }
    crate::tx::settle(tx, done).await
}

// An owner's projects: their jobs counted per status.
const PROJECTS: &str = "\
SELECT project, status, count(*) AS n FROM jobs \
WHERE owner = $1 AND project IS NOT NULL GROUP BY project, status";

/// The owner's projects, by name, with their jobs counted per status.
pub(crate) async fn projects(pool: &PgPool, owner: &Owner) -> Result<Vec<Project>> {
    let rows = sqlx::query(PROJECTS)
        .bind(&owner.0)
        .fetch_all(pool)
        .await
        .map_err(map)?;
    let mut counts = Vec::with_capacity(rows.len());
    for row in &rows {
        let project: String = rows::get(row, "project")?;
        let status: String = rows::get(row, "status")?;
        let n: i64 = rows::get(row, "n")?;
        let status = JobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?;
        counts.push((project, status, rows::to_u64(n, "count")?));
    }
    Ok(Project::from_counts(counts))
}

// Executes a retry plan on the locked job: `$2` the status compared, `$3` the
// status written, `$4` the new `run_at`, `$5` the events.
const RETRY: &str = concat!(
    "WITH j AS (",
    " UPDATE jobs SET status = $3, attempts_used = 0, cancel_requested = false,",
    "   error_code = NULL, error_message = NULL, finished_at = NULL, run_at = $4,",
    "   last_seq = last_seq + jsonb_array_length($5), updated_at = now()",
    " WHERE id = $1 AND status = $2",
    " RETURNING *",
    "), ",
    insert_events!("$5"),
    " SELECT * FROM j"
);

/// The owner's retry: locks the job, plans with the core's
/// [`transition::plan_retry`] at the database's `now()`, and executes the plan.
pub(crate) async fn retry(pool: &PgPool, id: JobId) -> Result<Changed> {
    let mut tx = pool.begin().await.map_err(map)?;
    let done = retry_locked(&mut tx, id).await;
    crate::tx::settle(tx, done).await
}

async fn retry_locked(tx: &mut PgConnection, id: JobId) -> Result<Changed> {
    let (job, now) = lock(&mut *tx, id).await?;
    let plan = transition::plan_retry(&job, now)?;
    let row = sqlx::query(RETRY)
        .bind(id.0)
        .bind(plan.from.as_str())
        .bind(plan.to.as_str())
        .bind(plan.run_at)
        .bind(rows::encode_events(&plan.events)?)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?
        .ok_or_else(|| Error::internal("the locked job did not take the retry"))?;
    rows::changed(&row, plan.events)
}
