//! Schedules: their settings (writes through the writer), their reads, and
//! firing a tick in one write.

use chrono::{DateTime, Utc};
use projectengine_core::schedule::{
    Fired, NewSchedule, Schedule, ScheduleFire, ScheduleId, ScheduleRun, ScheduleSettings,
    SkipReason,
};
use projectengine_core::{Error, JobId, JobStatus, MisfirePolicy, OverlapPolicy, Owner, Result};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};
use uuid::Uuid;

use crate::error::{corrupt, map};
use crate::rows::{id_bytes, limit, micros};

fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(map)
}

fn uuid_opt(row: &SqliteRow, column: &str) -> Result<Option<Uuid>> {
    get::<Option<Vec<u8>>>(row, column)?
        .map(|b| Uuid::from_slice(&b).map_err(|e| corrupt("id", e)))
        .transpose()
}

fn time(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt("time", v))
}

fn schedule(row: &SqliteRow) -> Result<Schedule> {
    let overlap: String = get(row, "overlap")?;
    let misfire: String = get(row, "misfire")?;
    let template: String = get(row, "template")?;
    let revision: i64 = get(row, "revision")?;
    Ok(Schedule {
        id: ScheduleId(uuid_opt(row, "id")?.ok_or_else(|| corrupt("id", "null"))?),
        owner: Owner(get(row, "owner")?),
        name: get(row, "name")?,
        cron: get(row, "cron")?,
        timezone: get(row, "timezone")?,
        template: serde_json::from_str(&template).map_err(|e| corrupt("schedule template", e))?,
        overlap: OverlapPolicy::parse(&overlap).ok_or_else(|| corrupt("overlap", &overlap))?,
        misfire: MisfirePolicy::parse(&misfire).ok_or_else(|| corrupt("misfire", &misfire))?,
        enabled: get(row, "enabled")?,
        next_fire_at: get::<Option<i64>>(row, "next_fire_at")?
            .map(time)
            .transpose()?,
        last_job_id: uuid_opt(row, "last_job_id")?.map(JobId),
        revision: u64::try_from(revision).map_err(|_| corrupt("revision", revision))?,
        created_at: time(get(row, "created_at")?)?,
        updated_at: time(get(row, "updated_at")?)?,
    })
}

fn run(row: &SqliteRow) -> Result<ScheduleRun> {
    let skipped: Option<String> = get(row, "skipped")?;
    Ok(ScheduleRun {
        schedule_id: ScheduleId(
            uuid_opt(row, "schedule_id")?.ok_or_else(|| corrupt("id", "null"))?,
        ),
        tick: time(get(row, "tick")?)?,
        job_id: uuid_opt(row, "job_id")?.map(JobId),
        skipped: skipped
            .map(|s| SkipReason::parse(&s).ok_or_else(|| corrupt("skip reason", &s)))
            .transpose()?,
        fired_at: time(get(row, "fired_at")?)?,
    })
}

fn template(s: &ScheduleSettings) -> Result<String> {
    serde_json::to_string(&s.template).map_err(|e| Error::internal(format!("template: {e}")))
}

async fn load(conn: &mut SqliteConnection, id: ScheduleId) -> Result<Option<Schedule>> {
    sqlx::query("SELECT * FROM schedules WHERE id = ?")
        .bind(id_bytes(id.0))
        .fetch_optional(conn)
        .await
        .map_err(map)?
        .map(|r| schedule(&r))
        .transpose()
}

pub(crate) async fn create(
    conn: &mut SqliteConnection,
    new: &NewSchedule,
    now: DateTime<Utc>,
) -> Result<Schedule> {
    if load(conn, new.id).await?.is_some() {
        return Err(Error::conflict("a schedule with this id exists"));
    }
    let s = &new.settings;
    sqlx::query(
        "INSERT INTO schedules (id, owner, name, cron, timezone, template, overlap, misfire, \
         enabled, next_fire_at, last_job_id, revision, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 1, ?, ?)",
    )
    .bind(id_bytes(new.id.0))
    .bind(&new.owner.0)
    .bind(&s.name)
    .bind(&s.cron)
    .bind(&s.timezone)
    .bind(template(s)?)
    .bind(s.overlap.as_str())
    .bind(s.misfire.as_str())
    .bind(s.enabled)
    .bind(s.next_fire_at.map(micros))
    .bind(micros(now))
    .bind(micros(now))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    load(conn, new.id)
        .await?
        .ok_or_else(|| Error::internal("a created schedule is gone"))
}

pub(crate) async fn update(
    conn: &mut SqliteConnection,
    id: ScheduleId,
    revision: u64,
    s: &ScheduleSettings,
    now: DateTime<Utc>,
) -> Result<Schedule> {
    let revision = i64::try_from(revision).map_err(|_| Error::conflict("unknown revision"))?;
    let done = sqlx::query(
        "UPDATE schedules SET name = ?, cron = ?, timezone = ?, template = ?, overlap = ?, \
         misfire = ?, enabled = ?, next_fire_at = ?, revision = revision + 1, updated_at = ? \
         WHERE id = ? AND revision = ?",
    )
    .bind(&s.name)
    .bind(&s.cron)
    .bind(&s.timezone)
    .bind(template(s)?)
    .bind(s.overlap.as_str())
    .bind(s.misfire.as_str())
    .bind(s.enabled)
    .bind(s.next_fire_at.map(micros))
    .bind(micros(now))
    .bind(id_bytes(id.0))
    .bind(revision)
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    let current = load(conn, id)
        .await?
        .ok_or_else(|| Error::not_found("schedule"))?;
    if done.rows_affected() == 0 {
        return Err(Error::conflict("the schedule changed meanwhile"));
    }
    Ok(current)
}

pub(crate) async fn delete(conn: &mut SqliteConnection, id: ScheduleId) -> Result<()> {
    sqlx::query("DELETE FROM schedule_runs WHERE schedule_id = ?")
        .bind(id_bytes(id.0))
        .execute(&mut *conn)
        .await
        .map_err(map)?;
    let done = sqlx::query("DELETE FROM schedules WHERE id = ?")
        .bind(id_bytes(id.0))
        .execute(&mut *conn)
        .await
        .map_err(map)?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("schedule"));
    }
    Ok(())
}

/// Fires one tick. The writer runs it alone in its savepoint, so what it
/// reads cannot change before it writes; an `AlreadyFired` writes nothing.
pub(crate) async fn fire(
    conn: &mut SqliteConnection,
    fire: &ScheduleFire,
    now: DateTime<Utc>,
) -> Result<Fired> {
    let Some(schedule) = load(conn, fire.schedule_id).await? else {
        return Ok(Fired::AlreadyFired);
    };
    if !schedule.enabled || schedule.next_fire_at != Some(fire.expected_next_fire_at) {
        return Ok(Fired::AlreadyFired);
    }
    let fired: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM schedule_runs WHERE schedule_id = ? AND tick = ?")
            .bind(id_bytes(fire.schedule_id.0))
            .bind(micros(fire.tick))
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
    if fired.is_some() {
        return Ok(Fired::AlreadyFired);
    }
    let mut job = fire.job.clone();
    if let Ok(new) = &job {
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM jobs WHERE id = ?")
            .bind(id_bytes(new.id.0))
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        if exists.is_some() {
            return Ok(Fired::AlreadyFired);
        }
    }
    if let (Ok(_), true, Some(last)) = (&job, fire.skip_if_running, schedule.last_job_id) {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?")
            .bind(id_bytes(last.0))
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        if status
            .as_deref()
            .and_then(JobStatus::parse)
            .is_some_and(|s| !s.is_terminal())
        {
            job = Err(SkipReason::Overlap);
        }
    }
    let outcome = match job {
        Ok(new) => Ok(crate::writes::create(conn, &new, now).await?),
        Err(reason) => Err(reason),
    };
    let job_id = outcome.as_ref().ok().map(|c| c.job.id);
    sqlx::query(
        "UPDATE schedules SET next_fire_at = ?, last_job_id = COALESCE(?, last_job_id) \
         WHERE id = ? AND next_fire_at = ?",
    )
    .bind(fire.next_fire_at.map(micros))
    .bind(job_id.map(|j| id_bytes(j.0)))
    .bind(id_bytes(fire.schedule_id.0))
    .bind(micros(fire.expected_next_fire_at))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    sqlx::query(
        "INSERT INTO schedule_runs (schedule_id, tick, job_id, skipped, fired_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id_bytes(fire.schedule_id.0))
    .bind(micros(fire.tick))
    .bind(job_id.map(|j| id_bytes(j.0)))
    .bind(outcome.as_ref().err().map(|r| r.as_str()))
    .bind(micros(now))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(match outcome {
        Ok(changed) => Fired::Job(changed),
        Err(reason) => Fired::Skipped(reason),
    })
}

pub(crate) async fn get_one(pool: &SqlitePool, id: ScheduleId) -> Result<Option<Schedule>> {
    let mut conn = pool.acquire().await.map_err(map)?;
    load(&mut conn, id).await
}

pub(crate) async fn list(
    pool: &SqlitePool,
    owner: &Owner,
    cursor: Option<ScheduleId>,
    n: usize,
) -> Result<Vec<Schedule>> {
    sqlx::query(
        "SELECT * FROM schedules WHERE owner = ? AND (? IS NULL OR id > ?) ORDER BY id LIMIT ?",
    )
    .bind(&owner.0)
    .bind(cursor.map(|c| id_bytes(c.0)))
    .bind(cursor.map(|c| id_bytes(c.0)))
    .bind(limit(n))
    .fetch_all(pool)
    .await
    .map_err(map)?
    .iter()
    .map(schedule)
    .collect()
}

pub(crate) async fn due(pool: &SqlitePool, n: usize) -> Result<Vec<Schedule>> {
    sqlx::query(
        "SELECT * FROM schedules WHERE enabled AND next_fire_at IS NOT NULL \
         AND next_fire_at <= ? ORDER BY next_fire_at, id LIMIT ?",
    )
    .bind(micros(Utc::now()))
    .bind(limit(n))
    .fetch_all(pool)
    .await
    .map_err(map)?
    .iter()
    .map(schedule)
    .collect()
}

pub(crate) async fn runs(
    pool: &SqlitePool,
    id: ScheduleId,
    before: Option<DateTime<Utc>>,
    n: usize,
) -> Result<Vec<ScheduleRun>> {
    sqlx::query(
        "SELECT * FROM schedule_runs WHERE schedule_id = ? AND (? IS NULL OR tick < ?) \
         ORDER BY tick DESC LIMIT ?",
    )
    .bind(id_bytes(id.0))
    .bind(before.map(micros))
    .bind(before.map(micros))
    .bind(limit(n))
    .fetch_all(pool)
    .await
    .map_err(map)?
    .iter()
    .map(run)
    .collect()
}
