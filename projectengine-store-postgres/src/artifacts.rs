//! Artifacts' metadata: the fenced write, and reads.

use chrono::{DateTime, Utc};
use projectengine_core::artifact::check_job_bytes;
use projectengine_core::{
    Artifact, ArtifactStored, Error, EventData, Fence, JobId, NewArtifact, Result, SavedArtifact,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::error::map;
use crate::rows::{self, big};

// The fence check takes the job row's lock, which serializes this write with
// the attempt's other writes (its end included) and with concurrent artifact
// writes of the job, so the byte count below stays true until the commit.
const LOCK: &str =
    "SELECT 1 FROM jobs WHERE id = $1 AND status = 'running' AND attempt = $2 FOR UPDATE";

const OTHERS: &str =
    "SELECT COALESCE(sum(size), 0)::bigint AS total FROM artifacts WHERE job_id = $1 AND name <> $2";

const LOG: &str = "\
WITH j AS ( \
  UPDATE jobs SET last_seq = last_seq + 1, updated_at = now() WHERE id = $1 \
  RETURNING id, attempt, last_seq, updated_at \
), e AS ( \
  INSERT INTO job_events (job_id, seq, attempt, at, kind, data) \
  SELECT id, last_seq, attempt, updated_at, 'artifact', $2 FROM j \
) \
SELECT last_seq, updated_at FROM j";

const UPSERT: &str = "\
INSERT INTO artifacts (job_id, name, attempt, size, sha256, content_type, blob, created_at) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
ON CONFLICT (job_id, name) DO UPDATE SET attempt = EXCLUDED.attempt, size = EXCLUDED.size, \
  sha256 = EXCLUDED.sha256, content_type = EXCLUDED.content_type, blob = EXCLUDED.blob, \
  created_at = EXCLUDED.created_at";

/// Makes an uploaded artifact visible, fenced, within the job's byte limit.
pub(crate) async fn put(pool: &PgPool, fence: Fence, new: NewArtifact) -> Result<SavedArtifact> {
    let mut tx = pool.begin().await.map_err(map)?;
    let done = put_locked(&mut tx, fence, new).await;
    crate::tx::settle(tx, done).await
}

async fn put_locked(
    tx: &mut PgConnection,
    fence: Fence,
    new: NewArtifact,
) -> Result<SavedArtifact> {
    let size =
        i64::try_from(new.size).map_err(|_| Error::invalid("size", "is beyond any limit"))?;
    sqlx::query(LOCK)
        .bind(fence.job_id.0)
        .bind(big(fence.attempt))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?
        .ok_or(Error::StaleAttempt)?;
    let others: i64 = sqlx::query(OTHERS)
        .bind(fence.job_id.0)
        .bind(&new.name)
        .fetch_one(&mut *tx)
        .await
        .map_err(map)?
        .try_get("total")
        .map_err(map)?;
    check_job_bytes(others.max(0) as u64, new.size, new.max_job_bytes)?;
    let replaced = sqlx::query("SELECT * FROM artifacts WHERE job_id = $1 AND name = $2")
        .bind(fence.job_id.0)
        .bind(&new.name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?
        .map(|row| artifact(&row))
        .transpose()?;
    let data = EventData::Artifact(Box::new(ArtifactStored {
        name: new.name.clone(),
        size: new.size,
        sha256: new.sha256.clone(),
        content_type: new.content_type.clone(),
    }));
    let encoded = rows::encode_events(std::slice::from_ref(&data))?;
    let row = sqlx::query(LOG)
        .bind(fence.job_id.0)
        .bind(&encoded[0]["data"])
        .fetch_one(&mut *tx)
        .await
        .map_err(map)?;
    let last_seq: i64 = row.try_get("last_seq").map_err(map)?;
    let at: DateTime<Utc> = row.try_get("updated_at").map_err(map)?;
    sqlx::query(UPSERT)
        .bind(fence.job_id.0)
        .bind(&new.name)
        .bind(big(fence.attempt))
        .bind(size)
        .bind(&new.sha256)
        .bind(&new.content_type)
        .bind(&new.blob)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
    let last_seq = u64::try_from(last_seq).map_err(|_| Error::internal("negative last_seq"))?;
    Ok(SavedArtifact {
        artifact: Artifact {
            job_id: fence.job_id,
            name: new.name,
            attempt: fence.attempt,
            size: new.size,
            sha256: new.sha256,
            content_type: new.content_type,
            blob: new.blob,
            created_at: at,
        },
        replaced,
        events: rows::appended(fence.job_id, fence.attempt, last_seq, at, vec![data]),
    })
}

/// The job's artifacts, by name.
pub(crate) async fn list(pool: &PgPool, job_id: JobId) -> Result<Vec<Artifact>> {
    sqlx::query("SELECT * FROM artifacts WHERE job_id = $1 ORDER BY name COLLATE \"C\"")
        .bind(job_id.0)
        .fetch_all(pool)
        .await
        .map_err(map)?
        .iter()
        .map(artifact)
        .collect()
}

/// The job's artifact of that name.
pub(crate) async fn get(pool: &PgPool, job_id: JobId, name: &str) -> Result<Option<Artifact>> {
    sqlx::query("SELECT * FROM artifacts WHERE job_id = $1 AND name = $2")
        .bind(job_id.0)
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(map)?
        .map(|row| artifact(&row))
        .transpose()
}

/// An `artifacts` row.
fn artifact(row: &PgRow) -> Result<Artifact> {
    let get = |e: sqlx::Error| map(e);
    let attempt: i64 = row.try_get("attempt").map_err(get)?;
    let size: i64 = row.try_get("size").map_err(get)?;
    Ok(Artifact {
        job_id: JobId(row.try_get("job_id").map_err(get)?),
        name: row.try_get("name").map_err(get)?,
        attempt: u32::try_from(attempt).map_err(|_| Error::internal("artifact attempt"))?,
        size: u64::try_from(size).map_err(|_| Error::internal("negative artifact size"))?,
        sha256: row.try_get("sha256").map_err(get)?,
        content_type: row.try_get("content_type").map_err(get)?,
        blob: row.try_get("blob").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
    })
}
