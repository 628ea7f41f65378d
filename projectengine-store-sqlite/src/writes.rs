//! The writes, each run by the writer inside the batch's transaction (under
//! a savepoint of its own): read the job, plan the change with the core's
//! [`transition`] planners, then write the planned job with a
//! compare-and-set on the state the plan started from, and append its events.
//!
//! The writer is the only connection that writes, and it holds SQLite's write
//! lock for the whole transaction (`BEGIN IMMEDIATE`), so nothing can change
//! the job between the read and the write; the compare-and-set still guards
//! every write, and a miss is a bug that rolls the write back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use projectengine_core::artifact::check_job_bytes;
use projectengine_core::transition::{self, lease_until, CancelPlan};
use projectengine_core::workflow;
use projectengine_core::{
    App, AppId, Artifact, ArtifactStored, Attempt, AttemptId, AttemptStatus, Changed, Claim,
    Created, DeliveryId, DeliveryNext, Destination, Error, EventData, Fence, Heartbeat,
    IdempotencyKey, Job, JobEvent, JobId, NewApp, NewArtifact, NewJob, NewTry, Outcome, Result,
    SavedArtifact, WebhookDelivery,
};
use sqlx::{Row, SqliteConnection};

use crate::error::map;
use crate::rows::{self, id_bytes, micros, truncate};

/// Longest lease a write accepts: far beyond any real one, and small enough
/// that `now + lease` stays a valid time.
const MAX_LEASE: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// The job, read inside the writer's transaction.
pub(crate) async fn load(conn: &mut SqliteConnection, id: JobId) -> Result<Option<Job>> {
    sqlx::query("SELECT * FROM jobs WHERE id = ?")
        .bind(id_bytes(id.0))
        .fetch_optional(conn)
        .await
        .map_err(map)?
        .map(|row| rows::job(&row))
        .transpose()
}

/// The job and the running attempt `fence` names, or `StaleAttempt`.
async fn fenced(conn: &mut SqliteConnection, fence: Fence) -> Result<(Job, Attempt)> {
    let job = load(conn, fence.job_id)
        .await?
        .filter(|job| transition::holds(job, fence))
        .ok_or(Error::StaleAttempt)?;
    let attempt = sqlx::query("SELECT * FROM attempts WHERE job_id = ? AND number = ?")
        .bind(id_bytes(fence.job_id.0))
        .bind(i64::from(fence.attempt))
        .fetch_optional(conn)
        .await
        .map_err(map)?
        .map(|row| rows::attempt(&row))
        .transpose()?
        .filter(|a| a.status == AttemptStatus::Running)
        .ok_or(Error::StaleAttempt)?;
    Ok((job, attempt))
}

/// Appends `data` to `job`'s log: the next seq, under its current attempt.
fn push(job: &mut Job, data: EventData, now: DateTime<Utc>) -> JobEvent {
    job.last_seq += 1;
    job.updated_at = now;
    JobEvent {
        job_id: job.id,
        seq: job.last_seq,
        attempt: job.attempt,
        at: now,
        data,
    }
}

pub(crate) fn push_all(job: &mut Job, events: &[EventData], now: DateTime<Utc>) -> Vec<JobEvent> {
    events.iter().map(|d| push(job, d.clone(), now)).collect()
}

// Writes every field a plan may change, if the job is still in the state the
// plan started from (status, attempt and last seq).
const SAVE: &str = "\
UPDATE jobs SET status = ?, stage = ?, progress = ?, run_at = ?, attempt = ?, \
  attempts_used = ?, cancel_requested = ?, error_code = ?, error_message = ?, \
  started_at = ?, finished_at = ?, updated_at = ?, last_seq = ? \
WHERE id = ? AND status = ? AND attempt = ? AND last_seq = ?";

/// Writes `after` over `before` (compare-and-set) and inserts `events`.
pub(crate) async fn save(
    conn: &mut SqliteConnection,
    before: &Job,
    after: &Job,
    events: &[JobEvent],
) -> Result<()> {
    let (code, message) = split(after.error.as_ref());
    let written = sqlx::query(SAVE)
        .bind(after.status.as_str())
        .bind(after.stage.as_deref())
        .bind(i64::from(after.progress))
        .bind(micros(after.run_at))
        .bind(i64::from(after.attempt))
        .bind(i64::from(after.attempts_used))
        .bind(after.cancel_requested)
        .bind(code)
        .bind(message)
        .bind(after.started_at.map(micros))
        .bind(after.finished_at.map(micros))
        .bind(micros(after.updated_at))
        .bind(seq(after.last_seq)?)
        .bind(id_bytes(before.id.0))
        .bind(before.status.as_str())
        .bind(i64::from(before.attempt))
        .bind(seq(before.last_seq)?)
        .execute(&mut *conn)
        .await
        .map_err(map)?
        .rows_affected();
    if written != 1 {
        return Err(Error::internal(
            "the job changed while the SQLite writer held it",
        ));
    }
    insert_events(conn, events).await
}

async fn insert_events(conn: &mut SqliteConnection, events: &[JobEvent]) -> Result<()> {
    for e in events {
        sqlx::query(
            "INSERT INTO job_events (job_id, seq, attempt, at, data) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id_bytes(e.job_id.0))
        .bind(seq(e.seq)?)
        .bind(i64::from(e.attempt))
        .bind(micros(e.at))
        .bind(rows::event_data(&e.data)?)
        .execute(&mut *conn)
        .await
        .map_err(map)?;
    }
    Ok(())
}

fn seq(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::internal("a seq past i64"))
}

fn split(error: Option<&projectengine_core::JobError>) -> (Option<&str>, Option<&str>) {
    match error {
        Some(e) => (Some(e.code.as_str()), Some(e.message.as_str())),
        None => (None, None),
    }
}

/// Creates a `queued` job and its first event; with a quota, counts the
/// owner's queued jobs in the same transaction.
pub(crate) async fn create(
    conn: &mut SqliteConnection,
    new: &NewJob,
    now: DateTime<Utc>,
) -> Result<Changed> {
    let timeout_ms =
        i64::try_from(new.timeout_ms).map_err(|_| Error::invalid("timeout_ms", "is too large"))?;
    if load(conn, new.id).await?.is_some() {
        return Err(Error::conflict("a job with this id exists"));
    }
    if new.max_queued.is_some() {
        let queued: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE owner = ? AND status = 'queued'")
                .bind(&new.owner.0)
                .fetch_one(&mut *conn)
                .await
                .map_err(map)?;
        transition::check_quota(u64::try_from(queued).unwrap_or(0), new.max_queued)?;
    }
    let found = crate::dependencies::found(&mut *conn, &new.depends_on).await?;
    let plan = workflow::plan_create(new, &found)?;
    let mut job = Job {
        id: new.id,
        owner: new.owner.clone(),
        kind: new.kind.clone(),
        queue: new.queue.clone(),
        prompt: new.prompt.clone(),
        params: new.params.clone(),
        status: plan.status,
        stage: None,
        progress: 0,
        priority: new.priority,
        max_attempts: new.max_attempts,
        timeout_ms: new.timeout_ms,
        run_at: truncate(new.run_at),
        attempt: 0,
        attempts_used: 0,
        cancel_requested: false,
        error: None,
        created_at: now,
        started_at: None,
        finished_at: None,
        updated_at: now,
        last_seq: 0,
        webhook: new.webhook.clone(),
        notify_deployment: new.notify_deployment,
        trace_parent: new.trace_parent.clone(),
        review: new.review,
        review_comment: None,
        parent_id: new.parent_id,
        child_key: new.child_key.clone(),
        project: new.project.clone(),
        depends_on: new.depends_on.clone(),
        concurrency_key: new.concurrency_key.clone(),
        concurrency_limit: new.concurrency_limit,
    };
    // The plan's event, with the run_at as stored.
    let first = EventData::Status {
        status: plan.status,
        error: None,
        run_at: Some(job.run_at),
    };
    let event = push(&mut job, first, now);
    let depends_on = serde_json::to_string(&job.depends_on)
        .map_err(|e| Error::internal(format!("encoding depends_on: {e}")))?;
    sqlx::query(
        "INSERT INTO jobs (id, owner, kind, queue, prompt, params, status, priority, \
         max_attempts, timeout_ms, run_at, created_at, updated_at, last_seq, webhook, \
         notify_deployment, trace_parent, review, parent_id, child_key, project, depends_on, \
         concurrency_key, concurrency_limit) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id_bytes(job.id.0))
    .bind(&job.owner.0)
    .bind(&job.kind)
    .bind(&job.queue)
    .bind(&job.prompt)
    .bind(rows::json(&job.params))
    .bind(job.status.as_str())
    .bind(job.priority)
    .bind(i64::from(job.max_attempts))
    .bind(timeout_ms)
    .bind(micros(job.run_at))
    .bind(micros(now))
    .bind(micros(now))
    .bind(seq(job.last_seq)?)
    .bind(job.webhook.as_deref())
    .bind(job.notify_deployment)
    .bind(job.trace_parent.as_deref())
    .bind(job.review)
    .bind(job.parent_id.map(|id| id_bytes(id.0)))
    .bind(job.child_key.as_deref())
    .bind(job.project.as_deref())
    .bind(depends_on)
    .bind(job.concurrency_key.as_deref())
    .bind(job.concurrency_limit.map(i64::from))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    crate::dependencies::insert(&mut *conn, &job).await?;
    let events = vec![event];
    insert_events(conn, &events).await?;
    Ok(Changed::of(job, events))
}

/// Claims a queued, due job: job `running`, a new attempt, the `running` event.
pub(crate) async fn claim(
    conn: &mut SqliteConnection,
    id: JobId,
    worker_id: &str,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Claim>> {
    let Some(before) = load(conn, id).await? else {
        return Ok(None);
    };
    if !transition::claimable(&before, now) {
        return Ok(None);
    }
    if let (Some(key), Some(limit)) = (&before.concurrency_key, before.concurrency_limit) {
        // The single writer makes the count and the claim one step.
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs \
             WHERE owner = ? AND concurrency_key = ? AND status = 'running'",
        )
        .bind(&before.owner.0)
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(map)?;
        if !projectengine_core::concurrency::admits(u64::try_from(running).unwrap_or(0), limit) {
            return Ok(None);
        }
    }
    let plan = transition::plan_claim();
    let mut job = before.clone();
    plan.apply_to(&mut job, now);
    let events = push_all(&mut job, &plan.events, now);
    let attempt = Attempt {
        id: AttemptId::new(),
        job_id: id,
        number: job.attempt,
        worker_id: worker_id.to_owned(),
        status: AttemptStatus::Running,
        lease_expires_at: truncate(lease_until(now, lease.min(MAX_LEASE))),
        started_at: now,
        finished_at: None,
        error: None,
    };
    save(conn, &before, &job, &events).await?;
    sqlx::query(
        "INSERT INTO attempts (job_id, number, id, worker_id, status, lease_expires_at, started_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id_bytes(id.0))
    .bind(i64::from(attempt.number))
    .bind(id_bytes(attempt.id.0))
    .bind(&attempt.worker_id)
    .bind(attempt.status.as_str())
    .bind(micros(attempt.lease_expires_at))
    .bind(micros(now))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(Some(Claim {
        job,
        attempt,
        events,
    }))
}

/// Appends a running attempt's progress events (checked by the caller).
pub(crate) async fn append(
    conn: &mut SqliteConnection,
    fence: Fence,
    events: &[EventData],
    now: DateTime<Utc>,
) -> Result<Vec<JobEvent>> {
    let (before, _) = fenced(conn, fence).await?;
    if events.is_empty() {
        return Ok(vec![]);
    }
    let mut job = before.clone();
    for data in events {
        match data {
            EventData::Stage { stage } => job.stage = Some(stage.clone()),
            EventData::Progress { progress } => job.progress = *progress,
            _ => {}
        }
    }
    let appended = push_all(&mut job, events, now);
    save(conn, &before, &job, &appended).await?;
    Ok(appended)
}

/// Appends a remote attempt's numbered batch once (see
/// [`Store::append_batch`](projectengine_core::Store::append_batch)).
pub(crate) async fn append_batch(
    conn: &mut SqliteConnection,
    fence: Fence,
    batch: u64,
    events: &[EventData],
    now: DateTime<Utc>,
) -> Result<Option<Vec<JobEvent>>> {
    fenced(conn, fence).await?;
    let last: i64 =
        sqlx::query_scalar("SELECT last_batch FROM attempts WHERE job_id = ? AND number = ?")
            .bind(id_bytes(fence.job_id.0))
            .bind(i64::from(fence.attempt))
            .fetch_one(&mut *conn)
            .await
            .map_err(map)?;
    let last = u64::try_from(last).unwrap_or(0);
    transition::check_batch(last, batch)?;
    if batch <= last {
        return Ok(None);
    }
    let appended = append(conn, fence, events, now).await?;
    sqlx::query("UPDATE attempts SET last_batch = ? WHERE job_id = ? AND number = ?")
        .bind(i64::try_from(batch).map_err(|_| Error::invalid("batch", "is too large"))?)
        .bind(id_bytes(fence.job_id.0))
        .bind(i64::from(fence.attempt))
        .execute(&mut *conn)
        .await
        .map_err(map)?;
    Ok(Some(appended))
}

/// Extends the running attempt's lease and reports a pending cancel.
pub(crate) async fn heartbeat(
    conn: &mut SqliteConnection,
    fence: Fence,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Heartbeat> {
    let (job, _) = fenced(conn, fence).await?;
    let mut beat = transition::plan_heartbeat(&job, now, lease.min(MAX_LEASE));
    beat.lease_expires_at = truncate(beat.lease_expires_at);
    let written = sqlx::query(
        "UPDATE attempts SET lease_expires_at = ? \
         WHERE job_id = ? AND number = ? AND status = 'running'",
    )
    .bind(micros(beat.lease_expires_at))
    .bind(id_bytes(fence.job_id.0))
    .bind(i64::from(fence.attempt))
    .execute(&mut *conn)
    .await
    .map_err(map)?
    .rows_affected();
    if written != 1 {
        return Err(Error::StaleAttempt);
    }
    Ok(beat)
}

/// Ends the running attempt with `outcome`, as the core's
/// [`transition::plan_finish`] plans it.
pub(crate) async fn finish(
    conn: &mut SqliteConnection,
    fence: Fence,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<Changed> {
    let (before, attempt) = fenced(conn, fence).await?;
    let plan = transition::plan_finish(&before, attempt.lease_expires_at, outcome, now)?;
    let mut job = before.clone();
    plan.apply_to(&mut job, now);
    let events = push_all(&mut job, &plan.events, now);
    save(conn, &before, &job, &events).await?;
    let (code, message) = split(plan.attempt_error.as_ref());
    let written = sqlx::query(
        "UPDATE attempts SET status = ?, error_code = ?, error_message = ?, finished_at = ? \
         WHERE job_id = ? AND number = ? AND status = 'running'",
    )
    .bind(plan.attempt_status.as_str())
    .bind(code)
    .bind(message)
    .bind(micros(now))
    .bind(id_bytes(fence.job_id.0))
    .bind(i64::from(fence.attempt))
    .execute(&mut *conn)
    .await
    .map_err(map)?
    .rows_affected();
    if written != 1 {
        return Err(Error::internal(
            "the attempt changed while the SQLite writer held it",
        ));
    }
    write_outbox(conn, &job, now).await?;
    let dependents = crate::dependencies::settle(conn, &job, now).await?;
    Ok(Changed {
        job,
        events,
        dependents,
    })
}

/// Saves the job's App (a later attempt's replaces an earlier one's, keeping
/// its id) and appends the `app` event.
pub(crate) async fn save_app(
    conn: &mut SqliteConnection,
    fence: Fence,
    new: &NewApp,
    now: DateTime<Utc>,
) -> Result<(App, Vec<JobEvent>)> {
    let (before, _) = fenced(conn, fence).await?;
    let existing = sqlx::query("SELECT id, attempt FROM apps WHERE job_id = ?")
        .bind(id_bytes(fence.job_id.0))
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?;
    let app_id = match existing {
        Some(row) => {
            let attempt: i64 = row.try_get("attempt").map_err(map)?;
            if attempt == i64::from(fence.attempt) {
                return Err(Error::conflict(
                    "this attempt already published the job's app",
                ));
            }
            let bytes: Vec<u8> = row.try_get("id").map_err(map)?;
            AppId(uuid::Uuid::from_slice(&bytes).map_err(|e| crate::error::corrupt("app id", e))?)
        }
        None => AppId::new(),
    };
    let app = App {
        id: app_id,
        job_id: fence.job_id,
        attempt: fence.attempt,
        owner: before.owner.clone(),
        name: new.name.clone(),
        payload: new.payload.clone(),
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO apps (id, job_id, attempt, owner, name, payload, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt, \
           owner = excluded.owner, name = excluded.name, payload = excluded.payload, \
           created_at = excluded.created_at",
    )
    .bind(id_bytes(app.id.0))
    .bind(id_bytes(app.job_id.0))
    .bind(i64::from(app.attempt))
    .bind(&app.owner.0)
    .bind(&app.name)
    .bind(rows::json(&app.payload))
    .bind(micros(now))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    let mut job = before.clone();
    let event = push(
        &mut job,
        EventData::App {
            app_id,
            name: app.name.clone(),
        },
        now,
    );
    let events = vec![event];
    save(conn, &before, &job, &events).await?;
    Ok((app, events))
}

/// The owner's cancel, as the core's [`transition::plan_cancel`] plans it.
pub(crate) async fn request_cancel(
    conn: &mut SqliteConnection,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<Changed> {
    let before = load(conn, id).await?.ok_or(Error::not_found("job"))?;
    let plan = transition::plan_cancel(&before)?;
    if plan == CancelPlan::Pending {
        return Ok(Changed::of(before, vec![]));
    }
    let mut job = before.clone();
    plan.apply_to(&mut job, now);
    let events = push_all(&mut job, plan.events(), now);
    save(conn, &before, &job, &events).await?;
    write_outbox(conn, &job, now).await?;
    let dependents = crate::dependencies::settle(conn, &job, now).await?;
    Ok(Changed {
        job,
        events,
        dependents,
    })
}

/// The owner's retry, as the core's [`transition::plan_retry`] plans it.
pub(crate) async fn retry(
    conn: &mut SqliteConnection,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<Changed> {
    let before = load(conn, id).await?.ok_or(Error::not_found("job"))?;
    let plan = transition::plan_retry(&before, now)?;
    let mut job = before.clone();
    plan.apply_to(&mut job);
    let events = push_all(&mut job, &plan.events, now);
    save(conn, &before, &job, &events).await?;
    Ok(Changed::of(job, events))
}

/// Writes the outbox rows of a job that a transition just left as `job`, in
/// the transition's transaction: nothing unless it ended and has destinations.
pub(crate) async fn write_outbox(
    conn: &mut SqliteConnection,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<()> {
    let (code, message) = split(job.error.as_ref());
    for destination in transition::webhook_destinations(job) {
        let url = match destination {
            Destination::Job => job.webhook.as_deref(),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, job_id, destination, url, job_status, \
             error_code, error_message, occurred_at, status, tries, next_at, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
        )
        .bind(id_bytes(DeliveryId::new().0))
        .bind(id_bytes(job.id.0))
        .bind(destination.as_str())
        .bind(url)
        .bind(job.status.as_str())
        .bind(code)
        .bind(message)
        .bind(micros(job.finished_at.unwrap_or(now)))
        .bind(micros(now))
        .bind(micros(now))
        .bind(micros(now))
        .execute(&mut *conn)
        .await
        .map_err(map)?;
    }
    Ok(())
}

/// Makes an uploaded artifact visible (fenced), within the job's byte
/// limit, and appends the `artifact` event. The writer holds the write lock,
/// so the byte count stays true until the commit.
pub(crate) async fn put_artifact(
    conn: &mut SqliteConnection,
    fence: Fence,
    new: &NewArtifact,
    now: DateTime<Utc>,
) -> Result<SavedArtifact> {
    let size =
        i64::try_from(new.size).map_err(|_| Error::invalid("size", "is beyond any limit"))?;
    let (before, _) = fenced(conn, fence).await?;
    let others: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(size), 0) FROM artifacts WHERE job_id = ? AND name <> ?",
    )
    .bind(id_bytes(fence.job_id.0))
    .bind(&new.name)
    .fetch_one(&mut *conn)
    .await
    .map_err(map)?;
    check_job_bytes(
        u64::try_from(others).unwrap_or(0),
        new.size,
        new.max_job_bytes,
    )?;
    let replaced = sqlx::query("SELECT * FROM artifacts WHERE job_id = ? AND name = ?")
        .bind(id_bytes(fence.job_id.0))
        .bind(&new.name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?
        .map(|row| rows::artifact(&row))
        .transpose()?;
    let artifact = Artifact {
        job_id: fence.job_id,
        name: new.name.clone(),
        attempt: fence.attempt,
        size: new.size,
        sha256: new.sha256.clone(),
        content_type: new.content_type.clone(),
        blob: new.blob.clone(),
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO artifacts (job_id, name, attempt, size, sha256, content_type, blob, \
         created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (job_id, name) DO UPDATE SET attempt = excluded.attempt, \
           size = excluded.size, sha256 = excluded.sha256, \
           content_type = excluded.content_type, blob = excluded.blob, \
           created_at = excluded.created_at",
    )
    .bind(id_bytes(fence.job_id.0))
    .bind(&artifact.name)
    .bind(i64::from(artifact.attempt))
    .bind(size)
    .bind(&artifact.sha256)
    .bind(&artifact.content_type)
    .bind(&artifact.blob)
    .bind(micros(now))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    let mut job = before.clone();
    let event = push(
        &mut job,
        EventData::Artifact(Box::new(ArtifactStored {
            name: new.name.clone(),
            size: new.size,
            sha256: new.sha256.clone(),
            content_type: new.content_type.clone(),
        })),
        now,
    );
    let events = vec![event];
    save(conn, &before, &job, &events).await?;
    Ok(SavedArtifact {
        artifact,
        replaced,
        events,
    })
}

/// Claims up to `limit` due deliveries, earliest first, hiding each until
/// `visibility` from now. The writer is the only connection that writes, so
/// no other claim can take the same rows.
pub(crate) async fn claim_deliveries(
    conn: &mut SqliteConnection,
    limit: usize,
    visibility: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<WebhookDelivery>> {
    let until = truncate(lease_until(now, visibility.min(MAX_LEASE)));
    let due = sqlx::query(
        "SELECT * FROM webhook_deliveries WHERE status = 'pending' AND next_at <= ? \
         ORDER BY next_at, id LIMIT ?",
    )
    .bind(micros(now))
    .bind(rows::limit(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map)?
    .iter()
    .map(rows::delivery)
    .collect::<Result<Vec<_>>>()?;
    let mut claimed = Vec::with_capacity(due.len());
    for mut d in due {
        let written = sqlx::query(
            "UPDATE webhook_deliveries SET next_at = ?, updated_at = ? \
             WHERE id = ? AND status = 'pending' AND next_at = ?",
        )
        .bind(micros(until))
        .bind(micros(now))
        .bind(id_bytes(d.id.0))
        .bind(micros(d.next_at))
        .execute(&mut *conn)
        .await
        .map_err(map)?
        .rows_affected();
        if written != 1 {
            return Err(Error::internal(
                "a delivery changed while the SQLite writer held it",
            ));
        }
        d.next_at = until;
        d.updated_at = now;
        claimed.push(d);
    }
    Ok(claimed)
}

/// Records a try of a claimed delivery and its next state, if the delivery
/// is still pending with the tries its claim saw.
pub(crate) async fn record_delivery_try(
    conn: &mut SqliteConnection,
    id: DeliveryId,
    claimed_tries: u32,
    attempt: &NewTry,
    next: DeliveryNext,
    now: DateTime<Utc>,
) -> Result<WebhookDelivery> {
    let mut d = sqlx::query("SELECT * FROM webhook_deliveries WHERE id = ?")
        .bind(id_bytes(id.0))
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?
        .map(|row| rows::delivery(&row))
        .transpose()?
        .ok_or(Error::not_found("delivery"))?;
    transition::check_delivery_try(d.status, d.tries, claimed_tries)?;
    d.tries += 1;
    d.status = transition::delivery_status_after(next);
    if let DeliveryNext::Retry { after } = next {
        d.next_at = truncate(lease_until(now, after.min(MAX_LEASE)));
    }
    d.updated_at = now;
    let written = sqlx::query(
        "UPDATE webhook_deliveries SET tries = ?, status = ?, next_at = ?, updated_at = ? \
         WHERE id = ? AND status = 'pending' AND tries = ?",
    )
    .bind(i64::from(d.tries))
    .bind(d.status.as_str())
    .bind(micros(d.next_at))
    .bind(micros(now))
    .bind(id_bytes(id.0))
    .bind(i64::from(claimed_tries))
    .execute(&mut *conn)
    .await
    .map_err(map)?
    .rows_affected();
    if written != 1 {
        return Err(Error::internal(
            "a delivery changed while the SQLite writer held it",
        ));
    }
    let latency_ms = i64::try_from(attempt.latency.as_millis()).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO webhook_tries (delivery_id, number, at, status_code, latency_ms, error) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(id_bytes(id.0))
    .bind(i64::from(d.tries))
    .bind(micros(now))
    .bind(attempt.status_code.map(i64::from))
    .bind(latency_ms)
    .bind(attempt.error.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(d)
}

/// Creates the child `new` of the job whose running attempt is `fence`, or
/// answers the child of its key.
pub(crate) async fn create_child(
    conn: &mut SqliteConnection,
    fence: Fence,
    new: &NewJob,
    now: DateTime<Utc>,
) -> Result<Created> {
    let key = projectengine_core::children::check_child(fence, new)?;
    fenced(conn, fence).await?;
    let existing = sqlx::query("SELECT * FROM jobs WHERE parent_id = ? AND child_key = ?")
        .bind(id_bytes(fence.job_id.0))
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?;
    if let Some(row) = existing {
        return Ok(Created::Existing(rows::job(&row)?));
    }
    Ok(Created::New(create(conn, new, now).await?))
}

/// Creates `new` under the owner's idempotency key, or answers the job the
/// key created. The writer holds the database's write lock, so the read of
/// the key and the write of the key and the job are one step.
pub(crate) async fn create_job_idempotent(
    conn: &mut SqliteConnection,
    new: &NewJob,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<Created> {
    let kept = sqlx::query(
        "SELECT k.request_hash, j.* FROM idempotency_keys k JOIN jobs j ON j.id = k.job_id \
         WHERE k.owner = ? AND k.key = ? AND k.expires_at > ?",
    )
    .bind(&new.owner.0)
    .bind(&key.key)
    .bind(micros(now))
    .fetch_optional(&mut *conn)
    .await
    .map_err(map)?;
    if let Some(row) = kept {
        let hash: String = row.try_get("request_hash").map_err(map)?;
        if hash != key.request_hash {
            return Err(Error::IdempotencyKeyReused);
        }
        return Ok(Created::Existing(rows::job(&row)?));
    }
    // Drop a few expired keys as we go (this one too, if it expired).
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE (owner, key) IN (SELECT owner, key \
         FROM idempotency_keys WHERE expires_at <= ? ORDER BY expires_at LIMIT 8) \
         OR (owner = ? AND key = ?)",
    )
    .bind(micros(now))
    .bind(&new.owner.0)
    .bind(&key.key)
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    let changed = create(conn, new, now).await?;
    let ttl = chrono::Duration::from_std(key.ttl.min(MAX_LEASE)).unwrap_or(chrono::Duration::MAX);
    sqlx::query(
        "INSERT INTO idempotency_keys (owner, key, request_hash, job_id, expires_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&new.owner.0)
    .bind(&key.key)
    .bind(&key.request_hash)
    .bind(id_bytes(changed.job.id.0))
    .bind(micros(now + ttl))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(Created::New(changed))
}
