//! Apps: the fenced save, and reads.

use projectengine_core::{
    App, AppId, Error, EventData, Fence, JobEvent, JobId, NewApp, Owner, Result,
};
use sqlx::{PgConnection, PgPool, Row};

use crate::error::map;
use crate::rows::{self, big};

/// How often a save tries again when the job changed between its conditional
/// write and the read that explains why the write did nothing.
const RACE_RETRIES: usize = 8;

// One statement. `l` checks the fence and locks the job row, so saves of a
// job are serialized and each sees the app the previous one committed; the
// upsert replaces an earlier attempt's app (keeping its id) and does nothing
// when this attempt published already, and then neither the job nor the log
// changes. The `app` event is built here because a replaced app keeps its id.
const SAVE: &str = "\
WITH l AS ( \
  SELECT id, owner FROM jobs WHERE id = $1 AND status = 'running' AND attempt = $2 \
  FOR UPDATE \
), a AS ( \
  INSERT INTO apps (id, job_id, attempt, owner, name, payload, created_at) \
  SELECT $3, l.id, $2, l.owner, $4, $5, now() FROM l \
  ON CONFLICT (job_id) DO UPDATE SET attempt = EXCLUDED.attempt, owner = EXCLUDED.owner, \
    name = EXCLUDED.name, payload = EXCLUDED.payload, created_at = EXCLUDED.created_at \
  WHERE apps.attempt < EXCLUDED.attempt \
  RETURNING * \
), j AS ( \
  UPDATE jobs SET last_seq = last_seq + 1, updated_at = now() \
  FROM a WHERE jobs.id = a.job_id \
  RETURNING jobs.id, jobs.attempt, jobs.last_seq, jobs.updated_at, a.id AS app_id \
), e AS ( \
  INSERT INTO job_events (job_id, seq, attempt, at, kind, data) \
  SELECT id, last_seq, attempt, updated_at, 'app', \
    jsonb_build_object('app_id', app_id, 'name', $4::text) \
  FROM j \
) \
SELECT a.*, j.last_seq FROM a, j";

// Why a save did nothing: the fence first, then this attempt's app.
const WHY_NOT: &str = "\
SELECT status = 'running' AND attempt = $2 AS fenced, \
       EXISTS (SELECT 1 FROM apps WHERE job_id = $1 AND attempt = $2) AS published \
FROM jobs WHERE id = $1";

/// Saves the job's App (a later attempt's replaces an earlier one's) and
/// appends the `app` event.
pub(crate) async fn save(
    conn: &mut PgConnection,
    fence: Fence,
    new: &NewApp,
) -> Result<(App, Vec<JobEvent>)> {
    for _ in 0..RACE_RETRIES {
        let row = sqlx::query(SAVE)
            .bind(fence.job_id.0)
            .bind(big(fence.attempt))
            .bind(AppId::new().0)
            .bind(&new.name)
            .bind(&new.payload)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?;
        if let Some(row) = row {
            let app = rows::app(&row)?;
            let last_seq: i64 = row.try_get("last_seq").map_err(map)?;
            let last_seq =
                u64::try_from(last_seq).map_err(|_| Error::internal("negative last_seq"))?;
            let event = EventData::App {
                app_id: app.id,
                name: app.name.clone(),
            };
            let events = rows::appended(
                fence.job_id,
                fence.attempt,
                last_seq,
                app.created_at,
                vec![event],
            );
            return Ok((app, events));
        }
        let why = sqlx::query(WHY_NOT)
            .bind(fence.job_id.0)
            .bind(big(fence.attempt))
            .fetch_optional(&mut *conn)
            .await
            .map_err(map)?
            .ok_or(Error::StaleAttempt)?;
        if !why.try_get::<bool, _>("fenced").map_err(map)? {
            return Err(Error::StaleAttempt);
        }
        if why.try_get::<bool, _>("published").map_err(map)? {
            return Err(Error::conflict(
                "this attempt already published the job's app",
            ));
        }
    }
    Err(Error::conflict("the job kept changing; try again"))
}

/// The App, if it exists.
pub(crate) async fn get(pool: &PgPool, id: AppId) -> Result<Option<App>> {
    sqlx::query("SELECT * FROM apps WHERE id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .map(|row| rows::app(&row))
        .transpose()
}

/// The App a job published, if any.
pub(crate) async fn by_job(pool: &PgPool, job_id: JobId) -> Result<Option<App>> {
    sqlx::query("SELECT * FROM apps WHERE job_id = $1")
        .bind(job_id.0)
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .map(|row| rows::app(&row))
        .transpose()
}

/// One cursor page of an owner's apps, in id order.
pub(crate) async fn list(
    pool: &PgPool,
    owner: &Owner,
    cursor: Option<AppId>,
    limit: usize,
) -> Result<Vec<App>> {
    let query = match cursor {
        Some(cursor) => {
            sqlx::query("SELECT * FROM apps WHERE owner = $1 AND id > $2 ORDER BY id LIMIT $3")
                .bind(&owner.0)
                .bind(cursor.0)
        }
        None => {
            sqlx::query("SELECT * FROM apps WHERE owner = $1 ORDER BY id LIMIT $2").bind(&owner.0)
        }
    };
    query
        .bind(rows::limit(limit))
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(rows::app)
        .collect()
}
