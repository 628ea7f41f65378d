//! Apps: the fenced save, and reads.

use projectengine_core::{App, AppId, Error, EventData, Fence, JobId, NewApp, Owner, Result};
use sqlx::{PgPool, Row};

use crate::error::map;
use crate::jobs::RACE_RETRIES;
use crate::rows::{self, big};

// The fence check, the one-app-per-job check and the writes are one
// statement; two saves racing past the NOT EXISTS meet the unique job_id.
const SAVE: &str = concat!(
    "WITH j AS (",
    " UPDATE jobs SET last_seq = last_seq + jsonb_array_length($6), updated_at = now()",
    " WHERE id = $1 AND status = 'running' AND attempt = $2",
    "   AND NOT EXISTS (SELECT 1 FROM apps WHERE job_id = $1)",
    " RETURNING id, owner, attempt, last_seq, updated_at",
    "), a AS (",
    " INSERT INTO apps (id, job_id, owner, name, payload, created_at)",
    " SELECT $3, id, owner, $4, $5, updated_at FROM j",
    "), ",
    insert_events!("$6"),
    " SELECT owner, last_seq, updated_at FROM j"
);

// Why a save did nothing: the fence first, then an existing app.
const WHY_NOT: &str = "\
SELECT status = 'running' AND attempt = $2 AS fenced, \
       EXISTS (SELECT 1 FROM apps WHERE job_id = $1) AS has_app \
FROM jobs WHERE id = $1";

/// Saves the job's App and appends the `app` event.
pub(crate) async fn save(
    pool: &PgPool,
    fence: Fence,
    new: NewApp,
) -> Result<(App, Vec<projectengine_core::JobEvent>)> {
    let id = AppId::new();
    let events = vec![EventData::App {
        app_id: id,
        name: new.name.clone(),
    }];
    let encoded = rows::encode_events(&events)?;
    for _ in 0..RACE_RETRIES {
        let row = sqlx::query(SAVE)
            .bind(fence.job_id.0)
            .bind(big(fence.attempt))
            .bind(id.0)
            .bind(&new.name)
            .bind(&new.payload)
            .bind(&encoded)
            .fetch_optional(pool)
            .await
            .map_err(map)?;
        if let Some(row) = row {
            let last_seq: i64 = row.try_get("last_seq").map_err(map)?;
            let last_seq =
                u64::try_from(last_seq).map_err(|_| Error::internal("negative last_seq"))?;
            let app = App {
                id,
                job_id: fence.job_id,
                owner: Owner(row.try_get("owner").map_err(map)?),
                name: new.name,
                payload: new.payload,
                created_at: row.try_get("updated_at").map_err(map)?,
            };
            let events = rows::appended(
                fence.job_id,
                fence.attempt,
                last_seq,
                app.created_at,
                events,
            );
            return Ok((app, events));
        }
        let why = sqlx::query(WHY_NOT)
            .bind(fence.job_id.0)
            .bind(big(fence.attempt))
            .fetch_optional(pool)
            .await
            .map_err(map)?
            .ok_or(Error::StaleAttempt)?;
        if !why.try_get::<bool, _>("fenced").map_err(map)? {
            return Err(Error::StaleAttempt);
        }
        if why.try_get::<bool, _>("has_app").map_err(map)? {
            return Err(Error::conflict("this job already published its app"));
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
