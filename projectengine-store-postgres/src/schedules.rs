//! Schedules: their settings, and firing a tick in one transaction.

use chrono::{DateTime, Utc};
use projectengine_core::schedule::{
    Fired, NewSchedule, Schedule, ScheduleFire, ScheduleId, ScheduleRun, ScheduleSettings,
    SkipReason,
};
use projectengine_core::{Error, JobId, JobStatus, MisfirePolicy, OverlapPolicy, Owner, Result};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool};

use crate::error::{corrupt, map};
use crate::rows::{get, limit, to_u64};

fn schedule(row: &PgRow) -> Result<Schedule> {
    let overlap: String = get(row, "overlap")?;
    let misfire: String = get(row, "misfire")?;
    let template: serde_json::Value = get(row, "template")?;
    Ok(Schedule {
        id: ScheduleId(get(row, "id")?),
        owner: Owner(get(row, "owner")?),
        name: get(row, "name")?,
        cron: get(row, "cron")?,
        timezone: get(row, "timezone")?,
        template: serde_json::from_value(template).map_err(|e| corrupt("schedule template", e))?,
        overlap: OverlapPolicy::parse(&overlap).ok_or_else(|| corrupt("overlap", &overlap))?,
        misfire: MisfirePolicy::parse(&misfire).ok_or_else(|| corrupt("misfire", &misfire))?,
        enabled: get(row, "enabled")?,
        next_fire_at: get(row, "next_fire_at")?,
        last_job_id: get::<Option<uuid::Uuid>>(row, "last_job_id")?.map(JobId),
        revision: to_u64(get(row, "revision")?, "revision")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn run(row: &PgRow) -> Result<ScheduleRun> {
    let skipped: Option<String> = get(row, "skipped")?;
    Ok(ScheduleRun {
        schedule_id: ScheduleId(get(row, "schedule_id")?),
        tick: get(row, "tick")?,
        job_id: get::<Option<uuid::Uuid>>(row, "job_id")?.map(JobId),
        skipped: skipped
            .map(|s| SkipReason::parse(&s).ok_or_else(|| corrupt("skip reason", &s)))
            .transpose()?,
        fired_at: get(row, "fired_at")?,
    })
}

fn template(s: &ScheduleSettings) -> Result<serde_json::Value> {
    serde_json::to_value(&s.template).map_err(|e| Error::internal(format!("template: {e}")))
}

pub(crate) async fn create(pool: &PgPool, new: NewSchedule) -> Result<Schedule> {
    let s = &new.settings;
    let row = sqlx::query(
        "INSERT INTO schedules (id, owner, name, cron, timezone, template, overlap, misfire, \
         enabled, next_fire_at, last_job_id, revision, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, 1, now(), now()) RETURNING *",
    )
    .bind(new.id.0)
    .bind(&new.owner.0)
    .bind(&s.name)
    .bind(&s.cron)
    .bind(&s.timezone)
    .bind(template(s)?)
    .bind(s.overlap.as_str())
    .bind(s.misfire.as_str())
    .bind(s.enabled)
    .bind(s.next_fire_at)
    .fetch_one(pool)
    .await
    .map_err(map)?;
    schedule(&row)
}

pub(crate) async fn get_one(pool: &PgPool, id: ScheduleId) -> Result<Option<Schedule>> {
    sqlx::query("SELECT * FROM schedules WHERE id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .map(|r| schedule(&r))
        .transpose()
}

pub(crate) async fn list(
    pool: &PgPool,
    owner: &Owner,
    cursor: Option<ScheduleId>,
    n: usize,
) -> Result<Vec<Schedule>> {
    sqlx::query(
        "SELECT * FROM schedules WHERE owner = $1 AND ($2::uuid IS NULL OR id > $2) \
         ORDER BY id LIMIT $3",
    )
    .bind(&owner.0)
    .bind(cursor.map(|c| c.0))
    .bind(limit(n))
    .fetch_all(pool)
    .await
    .map_err(map)?
    .iter()
    .map(schedule)
    .collect()
}

pub(crate) async fn update(
    pool: &PgPool,
    id: ScheduleId,
    revision: u64,
    s: ScheduleSettings,
) -> Result<Schedule> {
    let revision = i64::try_from(revision).map_err(|_| Error::conflict("unknown revision"))?;
    // One statement: the update happens only from the revision read, and
    // the answer tells a missing schedule from a changed one.
    let row = sqlx::query(
        "WITH u AS (UPDATE schedules SET name = $3, cron = $4, timezone = $5, template = $6, \
         overlap = $7, misfire = $8, enabled = $9, next_fire_at = $10, \
         revision = revision + 1, updated_at = now() \
         WHERE id = $1 AND revision = $2 RETURNING *) \
         SELECT u.*, true AS updated FROM u \
         UNION ALL SELECT s.*, false FROM schedules s WHERE s.id = $1 AND NOT EXISTS (SELECT 1 FROM u)",
    )
    .bind(id.0)
    .bind(revision)
    .bind(&s.name)
    .bind(&s.cron)
    .bind(&s.timezone)
    .bind(template(&s)?)
    .bind(s.overlap.as_str())
    .bind(s.misfire.as_str())
    .bind(s.enabled)
    .bind(s.next_fire_at)
    .fetch_optional(pool)
    .await
    .map_err(map)?
    .ok_or_else(|| Error::not_found("schedule"))?;
    if !get::<bool>(&row, "updated")? {
        return Err(Error::conflict("the schedule changed meanwhile"));
    }
    schedule(&row)
}

pub(crate) async fn delete(pool: &PgPool, id: ScheduleId) -> Result<()> {
    let done = sqlx::query("DELETE FROM schedules WHERE id = $1")
        .bind(id.0)
        .execute(pool)
        .await
        .map_err(map)?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("schedule"));
    }
    Ok(())
}

pub(crate) async fn due(pool: &PgPool, n: usize) -> Result<Vec<Schedule>> {
    sqlx::query(
        "SELECT * FROM schedules WHERE enabled AND next_fire_at <= now() \
         ORDER BY next_fire_at, id LIMIT $1",
    )
    .bind(limit(n))
    .fetch_all(pool)
    .await
    .map_err(map)?
    .iter()
    .map(schedule)
    .collect()
}

pub(crate) async fn runs(
    pool: &PgPool,
    id: ScheduleId,
    before: Option<DateTime<Utc>>,
    n: usize,
) -> Result<Vec<ScheduleRun>> {
    sqlx::query(
        "SELECT * FROM schedule_runs WHERE schedule_id = $1 \
         AND ($2::timestamptz IS NULL OR tick < $2) ORDER BY tick DESC LIMIT $3",
    )
    .bind(id.0)
    .bind(before)
    .bind(limit(n))
    .fetch_all(pool)
    .await
    .map_err(map)?
    .iter()
    .map(run)
    .collect()
}

/// Fires one tick in one transaction; any refusal rolls all of it back.
pub(crate) async fn fire(pool: &PgPool, fire: ScheduleFire) -> Result<Fired> {
    let mut tx = pool.begin().await.map_err(map)?;
    let done = fire_in(&mut tx, fire).await;
    match done {
        Ok(Some(fired)) => crate::tx::settle(tx, Ok(fired)).await,
        Ok(None) => {
            tx.rollback().await.map_err(map)?;
            Ok(Fired::AlreadyFired)
        }
        Err(e) => crate::tx::settle(tx, Err(e)).await,
    }
}

/// `None`: the tick was fired already (or the schedule moved on); the
/// caller rolls back.
async fn fire_in(tx: &mut PgConnection, fire: ScheduleFire) -> Result<Option<Fired>> {
    // The compare-and-set: of concurrent firers of a tick, one moves
    // `next_fire_at`; the others wait for its row lock, then match nothing.
    let Some(row) = sqlx::query(
        "UPDATE schedules SET next_fire_at = $3 \
         WHERE id = $1 AND enabled AND next_fire_at = $2 RETURNING last_job_id",
    )
    .bind(fire.schedule_id.0)
    .bind(fire.expected_next_fire_at)
    .bind(fire.next_fire_at)
    .fetch_optional(&mut *tx)
    .await
    .map_err(map)?
    else {
        return Ok(None);
    };
    let last: Option<uuid::Uuid> = get(&row, "last_job_id")?;
    let mut job = fire.job;
    if let (Ok(_), true, Some(last)) = (&job, fire.skip_if_running, last) {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(last)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map)?;
        let running = status
            .as_deref()
            .and_then(JobStatus::parse)
            .is_some_and(|s| !s.is_terminal());
        if running {
            job = Err(SkipReason::Overlap);
        }
    }
    let outcome = match job {
        Ok(new) => match crate::jobs::create(&mut *tx, &new).await {
            Ok(changed) => Ok(changed),
            // The tick's job exists: the tick was fired.
            Err(Error::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e),
        },
        Err(reason) => Err(reason),
    };
    let job_id = outcome.as_ref().ok().map(|c| c.job.id.0);
    let inserted = sqlx::query(
        "INSERT INTO schedule_runs (schedule_id, tick, job_id, skipped, fired_at) \
         VALUES ($1, $2, $3, $4, now()) ON CONFLICT DO NOTHING",
    )
    .bind(fire.schedule_id.0)
    .bind(fire.tick)
    .bind(job_id)
    .bind(outcome.as_ref().err().map(|r| r.as_str()))
    .execute(&mut *tx)
    .await
    .map_err(map)?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }
    if let Some(job_id) = job_id {
        sqlx::query("UPDATE schedules SET last_job_id = $2 WHERE id = $1")
            .bind(fire.schedule_id.0)
            .bind(job_id)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
    }
    Ok(Some(match outcome {
        Ok(changed) => Fired::Job(changed),
        Err(reason) => Fired::Skipped(reason),
    }))
}
