//! Migrations and connection errors.

mod support;

use std::time::Duration;

use futures::future::join_all;
use projectengine_core::{Error, JobId, Store};
use projectengine_store_postgres::PgStore;
use sqlx::Row;

async fn applied(store: &PgStore) -> Vec<(i64, bool)> {
    sqlx::query("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(store.pool())
        .await
        .expect("read _sqlx_migrations")
        .iter()
        .map(|r| (r.get("version"), r.get("success")))
        .collect()
}

/// Every migration of the crate, applied successfully: versions 1 to the
/// number of migration files.
fn every_migration() -> Vec<(i64, bool)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let files = std::fs::read_dir(dir)
        .expect("the migrations directory")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count();
    let last = i64::try_from(files).expect("a few migrations");
    (1..=last).map(|v| (v, true)).collect()
}

async fn tables(store: &PgStore) -> Vec<String> {
    sqlx::query(
        "SELECT tablename::text AS t FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .expect("list tables")
    .iter()
    .map(|r| r.get("t"))
    .collect()
}

#[tokio::test]
async fn migrate_creates_the_schema_and_is_idempotent() {
    let Some(schema) = support::Schema::new().await else {
        return;
    };
    let store = schema.store(2).await;
    assert!(tables(&store).await.is_empty());
    store.migrate().await.expect("migrate an empty schema");
    assert_eq!(
        tables(&store).await,
        [
            "_sqlx_migrations",
            "apps",
            "artifacts",
            "attempts",
            "idempotency_keys",
            "job_dependencies",
            "job_events",
            "jobs",
            "schedule_runs",
            "schedules",
            "webhook_deliveries",
            "webhook_tries"
        ]
    );
    assert_eq!(applied(&store).await, every_migration());
    store.migrate().await.expect("migrate a migrated schema");
    assert_eq!(applied(&store).await, every_migration());
    let indexes: Vec<String> = sqlx::query(
        "SELECT indexname::text AS i FROM pg_indexes WHERE schemaname = current_schema()",
    )
    .fetch_all(store.pool())
    .await
    .expect("indexes")
    .iter()
    .map(|r| r.get("i"))
    .collect();
    for wanted in [
        "jobs_owner_id",
        "jobs_queued_run_at",
        "jobs_queued_owner",
        "jobs_parent_child_key",
        "idempotency_keys_pkey",
        "idempotency_keys_expires_at",
        "attempts_running_lease",
        "apps_owner_id",
        "job_events_pkey",
        "apps_job_id_key",
        "artifacts_pkey",
        "webhook_deliveries_due",
        "webhook_deliveries_job",
    ] {
        assert!(
            indexes.iter().any(|i| i == wanted),
            "{wanted} in {indexes:?}"
        );
    }
    store.ping().await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_apply_once() {
    let Some(schema) = support::Schema::new().await else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(schema.store(1).await);
    }
    let runs = stores
        .iter()
        .cloned()
        .map(|store| tokio::spawn(async move { store.migrate().await }));
    for r in join_all(runs).await {
        r.expect("join").expect("every concurrent migrate succeeds");
    }
    assert_eq!(applied(&stores[0]).await, every_migration());
    assert!(stores[0]
        .get_job(JobId::new())
        .await
        .expect("get")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_releases_its_lock() {
    let Some(schema) = support::Schema::new().await else {
        return;
    };
    let first = schema.store(1).await;
    // A table in the way makes the migration fail.
    sqlx::query("CREATE TABLE apps (x int)")
        .execute(first.pool())
        .await
        .expect("create a blocking table");
    assert!(first.migrate().await.is_err());
    // Another process must not wait for a lock the failure left behind.
    let second = schema.store(1).await;
    let again = tokio::time::timeout(Duration::from_secs(20), second.migrate())
        .await
        .expect("the advisory lock was released");
    assert!(again.is_err(), "still blocked by the table");
    sqlx::query("DROP TABLE apps")
        .execute(first.pool())
        .await
        .expect("drop it");
    tokio::time::timeout(Duration::from_secs(20), first.migrate())
        .await
        .expect("the lock is free")
        .expect("migrate now succeeds");
    assert_eq!(applied(&first).await, every_migration());
}

#[tokio::test]
async fn an_unmigrated_schema_is_unavailable() {
    let Some(schema) = support::Schema::new().await else {
        return;
    };
    let store = schema.store(1).await;
    let err = store.get_job(JobId::new()).await.expect_err("no tables");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("run migrations"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let err = PgStore::connect("postgres://postgres@127.0.0.1:1/none")
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    // The driver's error is kept as the source, not only as text.
    let source = std::error::Error::source(&err).expect("a source");
    assert!(!source.to_string().is_empty());
}

#[tokio::test]
async fn a_bad_url_is_invalid() {
    let err = PgStore::connect("not a url at all")
        .await
        .expect_err("not a PostgreSQL URL");
    assert!(
        matches!(
            err,
            Error::Invalid {
                field: "database_url",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_closed_pool_is_unavailable() {
    let Some(store) = support::fresh(1).await else {
        return;
    };
    store.pool().close().await;
    let err = store.ping().await.expect_err("closed");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}
