//! Measures how many PostgreSQL transactions one job costs through the Store
//! API, in the usual shape: create, claim, 5 step appends, save_app, finish.
//!
//! `cargo test -p projectengine-store-postgres --test transactions -- --ignored --nocapture`

mod support;

use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use projectengine_core::testkit::service_missing;
use projectengine_core::{EventData, JobId, NewApp, NewJob, Outcome, Owner, Step, Store};
use projectengine_store_postgres::PgStore;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, Row};

const JOBS: u64 = 1000;

/// Committed and rolled back transactions of `db`, once the counters settle
/// (backends report their counts when they exit or go idle).
async fn counters(admin: &mut PgConnection, db: &str) -> (i64, i64) {
    let mut last = (-1, -1);
    loop {
        sqlx::query("SELECT pg_stat_force_next_flush(), pg_stat_clear_snapshot()")
            .execute(&mut *admin)
            .await
            .expect("flush stats");
        let row = sqlx::query(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1",
        )
        .bind(db)
        .fetch_one(&mut *admin)
        .await
        .expect("read pg_stat_database");
        let now = (row.get("xact_commit"), row.get("xact_rollback"));
        if now == last {
            return now;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

async fn store_on(options: &PgConnectOptions) -> PgStore {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .expect("connect to the measuring database");
    PgStore::from_pool(pool)
}

async fn one_job(store: &PgStore, owner: &Owner) {
    let id = JobId::new();
    store
        .create_job(NewJob {
            id,
            owner: owner.clone(),
            kind: "stub".into(),
            queue: "q".into(),
            prompt: "p".into(),
            params: json!({}),
            priority: 0,
            max_attempts: 3,
            timeout_ms: 60_000,
            run_at: Utc::now(),
            max_queued: None,
        })
        .await
        .expect("create");
    let claim = store
        .claim(id, "w", Duration::from_secs(30))
        .await
        .expect("claim")
        .expect("claimable");
    let fence = claim.attempt.fence();
    for i in 0..5 {
        store
            .append(
                fence,
                vec![EventData::Step(Step::completed(format!("step {i}")))],
            )
            .await
            .expect("append");
    }
    store
        .save_app(
            fence,
            NewApp {
                name: "app".into(),
                payload: json!({"ok": true}),
            },
        )
        .await
        .expect("save_app");
    store
        .finish(fence, Outcome::Succeeded)
        .await
        .expect("finish");
}

#[tokio::test]
#[ignore = "a measurement: prints the transactions one job costs"]
async fn transactions_per_job() {
    let url = support::database_url();
    let mut admin = match PgConnection::connect(&url).await {
        Ok(c) => c,
        Err(e) => return service_missing("PostgreSQL", &url, &e),
    };
    let db = format!("pe_xact_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .expect("create the measuring database");
    let options = PgConnectOptions::from_str(&url)
        .expect("DATABASE_URL parses")
        .database(&db);

    let store = store_on(&options).await;
    store.migrate().await.expect("migrate");
    store.pool().close().await;
    let before = counters(&mut admin, &db).await;

    let store = store_on(&options).await;
    let owner = Owner::new("measure");
    let started = std::time::Instant::now();
    for _ in 0..JOBS {
        one_job(&store, &owner).await;
    }
    let elapsed = started.elapsed();
    store.pool().close().await;
    let after = counters(&mut admin, &db).await;

    let _ = sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    let commits = after.0 - before.0;
    let per_job = commits as f64 / JOBS as f64;
    println!(
        "{JOBS} jobs (create, claim, 5 appends, save_app, finish): {commits} commits, \
         {per_job:.3} transactions per job, {} rolled back, {:.2} ms per job",
        after.1 - before.1,
        elapsed.as_secs_f64() * 1000.0 / JOBS as f64
    );
    assert_eq!(after.1, before.1, "no transaction rolled back");
    // One per call: create, claim, 5 appends, save_app, finish = 9, plus a
    // handful of statement preparations on the one connection.
    assert!(
        (9.0..9.1).contains(&per_job),
        "{per_job} transactions per job"
    );
}
