//! A database written by an earlier schema opens with the current one: the
//! migration that rebuilds the jobs table keeps its rows, and the rows of the
//! tables that refer to them, and the new schema takes the new statuses.

mod support;

use std::path::Path;

use projectengine_core::{JobId, JobStatus, Store};
use projectengine_store_sqlite::SqliteStore;
use sqlx::migrate::Migrator;
use sqlx::{Connection, SqliteConnection};
use support::TempDir;

/// The first migration that rebuilds the jobs table.
const REBUILD: &str = "0006";

/// A copy, in `dir`, of the migrations older than `version`.
fn migrations_before(version: &str, dir: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    std::fs::create_dir_all(dir).expect("a directory for the old migrations");
    for entry in std::fs::read_dir(source).expect("the migrations") {
        let path = entry.expect("a migration").path();
        let name = path.file_name().expect("a file name").to_string_lossy();
        if name.as_ref() < version {
            std::fs::copy(&path, dir.join(name.as_ref())).expect("copy a migration");
        }
    }
}

#[tokio::test]
async fn the_jobs_table_rebuild_keeps_every_row() {
    let dir = TempDir::new();
    let url = dir.url("jobs.db");
    let old = dir.path().join("old-migrations");
    migrations_before(REBUILD, &old);
    let id = JobId::new();
    let bytes = id.0.as_bytes().to_vec();

    // A finished job with an attempt, two events and an app, in the old schema.
    let mut conn = SqliteConnection::connect(&format!("{url}?mode=rwc"))
        .await
        .expect("create the file");
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut conn)
        .await
        .expect("foreign keys on");
    Migrator::new(old.as_path())
        .await
        .expect("read the old migrations")
        .run_direct(&mut conn)
        .await
        .expect("the old schema");
    for (sql, what) in [
        (
            "INSERT INTO jobs (id, owner, kind, queue, prompt, params, status, priority, \
             max_attempts, timeout_ms, run_at, attempt, attempts_used, created_at, finished_at, \
             updated_at, last_seq, webhook, trace_parent) VALUES (?1, 'o', 'stub', 'default', \
             'p', '{\"a\":1}', 'succeeded', 3, 2, 1000, 1, 1, 1, 1, 5, 5, 2, \
             'https://example.com/h', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')",
            "a job",
        ),
        (
            "INSERT INTO attempts (job_id, number, id, worker_id, status, lease_expires_at, \
             started_at, finished_at) VALUES (?1, 1, randomblob(16), 'w', 'succeeded', 9, 2, 5)",
            "an attempt",
        ),
        (
            "INSERT INTO job_events (job_id, seq, attempt, at, data) VALUES \
             (?1, 1, 0, 1, '{\"type\":\"status\",\"data\":{\"status\":\"queued\"}}'), \
             (?1, 2, 1, 5, '{\"type\":\"status\",\"data\":{\"status\":\"succeeded\"}}')",
            "two events",
        ),
        (
            "INSERT INTO apps (id, job_id, attempt, owner, name, payload, created_at) VALUES \
             (randomblob(16), ?1, 1, 'o', 'site', '{}', 4)",
            "an app",
        ),
    ] {
        sqlx::query(sql)
            .bind(&bytes)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("insert {what}: {e}"));
    }
    let refused = sqlx::query("UPDATE jobs SET status = 'waiting'")
        .execute(&mut conn)
        .await;
    assert!(refused.is_err(), "the old schema refuses the new statuses");
    conn.close().await.expect("close");

    // The current schema: every row is there and still linked to its job.
    let store = SqliteStore::open(&url)
        .await
        .expect("migrate to the current schema");
    let job = store
        .get_job(id)
        .await
        .expect("read")
        .expect("the job is kept");
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!((job.priority, job.max_attempts, job.last_seq), (3, 2, 2));
    assert_eq!(job.params, serde_json::json!({"a": 1}));
    assert_eq!(job.webhook.as_deref(), Some("https://example.com/h"));
    assert!(job.trace_parent.is_some());
    assert_eq!(store.attempts(id).await.expect("attempts").len(), 1);
    assert_eq!(store.events(id, 0, 10).await.expect("events").len(), 2);
    assert!(store.app_by_job(id).await.expect("app").is_some());
    drop(store);

    let mut conn = SqliteConnection::connect(&url).await.expect("reconnect");
    let broken: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .expect("check the foreign keys");
    assert!(broken.is_empty(), "rows lost their job: {broken:?}");
    for status in ["waiting", "awaiting_review"] {
        sqlx::query("UPDATE jobs SET status = ?1")
            .bind(status)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("the new schema takes {status}: {e}"));
    }
    let indexes: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'jobs' AND sql IS NOT NULL ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .expect("the jobs indexes");
    let names: Vec<&str> = indexes.iter().map(|(n,)| n.as_str()).collect();
    assert_eq!(
        names,
        ["jobs_owner_id", "jobs_queued_owner", "jobs_queued_run_at"]
    );
}
