//! `store-xacts`: PostgreSQL transactions one job costs through the Store API
//! alone, in the usual shape (create, claim, K step appends, save_app,
//! finish), one call after another on a pool of one connection, so no write
//! shares another's transaction.
//!
//! Runs on a database of its own (`bench_xact_<uuid>` on `DATABASE_URL`,
//! dropped afterwards), whatever `--backend` says.

use std::str::FromStr;
use std::time::{Duration, Instant};

use projectengine_core::{EventData, NewApp, Outcome, Owner, Step, Store};
use projectengine_store_postgres::PgStore;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, Row};

use crate::backends::DEFAULT_DATABASE_URL;
use crate::report::Report;
use crate::workloads::round;
use crate::Args;

pub async fn run(args: &Args) -> Result<Report, String> {
    let n = args.n.unwrap_or(1000);
    let k = args.k.unwrap_or(5);
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let mut admin = PgConnection::connect(&url)
        .await
        .map_err(|e| format!("PostgreSQL at {url}: {e}"))?;
    let db = format!("bench_xact_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("CREATE DATABASE {db}: {e}"))?;
    let measured = measure(&url, &db, &mut admin, n, k).await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    let (commits, rollbacks, elapsed) = measured?;
    let mut r = Report {
        workload: args.workload.clone(),
        backend: "pg".into(),
        n,
        k,
        concurrency: 1,
        fields: Vec::new(),
    };
    r.set("pg_xacts", commits);
    r.set("pg_xacts_per_job", round(commits as f64 / n as f64, 3));
    r.set("pg_rollbacks", rollbacks);
    r.set(
        "ms_per_job",
        round(elapsed.as_secs_f64() * 1000.0 / n as f64, 3),
    );
    Ok(r)
}

/// (commits, rollbacks, time) of `n` jobs on database `db`.
async fn measure(
    url: &str,
    db: &str,
    admin: &mut PgConnection,
    n: usize,
    k: u32,
) -> Result<(i64, i64, Duration), String> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| format!("DATABASE_URL: {e}"))?
        .database(db);
    // Migrate on a pool of its own, closed before the first reading.
    let store = store_on(&options).await?;
    store.migrate().await.map_err(|e| format!("migrate: {e}"))?;
    store.pool().close().await;
    let before = counters(admin, db).await?;

    let store = store_on(&options).await?;
    let owner = Owner::new("bench");
    let started = Instant::now();
    for _ in 0..n {
        one_job(&store, &owner, k).await?;
    }
    let elapsed = started.elapsed();
    store.pool().close().await;
    let after = counters(admin, db).await?;
    Ok((after.0 - before.0, after.1 - before.1, elapsed))
}

async fn store_on(options: &PgConnectOptions) -> Result<PgStore, String> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
    Ok(PgStore::from_pool(pool))
}

/// Committed and rolled back transactions of `db`, once the counters settle
/// (backends report their counts when they exit or go idle).
async fn counters(admin: &mut PgConnection, db: &str) -> Result<(i64, i64), String> {
    // A closed pool's sessions end asynchronously, and each reports its
    // counts as it ends: wait until none is left.
    for _ in 0..100 {
        let sessions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(db)
                .fetch_one(&mut *admin)
                .await
                .map_err(|e| format!("pg_stat_activity: {e}"))?;
        if sessions == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut last = (-1, -1);
    loop {
        sqlx::query("SELECT pg_stat_force_next_flush(), pg_stat_clear_snapshot()")
            .execute(&mut *admin)
            .await
            .map_err(|e| format!("flush statistics: {e}"))?;
        let row = sqlx::query(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1",
        )
        .bind(db)
        .fetch_one(&mut *admin)
        .await
        .map_err(|e| format!("pg_stat_database: {e}"))?;
        let now = (row.get("xact_commit"), row.get("xact_rollback"));
        if now == last {
            return Ok(now);
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

async fn one_job(store: &PgStore, owner: &Owner, k: u32) -> Result<(), String> {
    let new = projectengine_core::testkit::store::new_job(owner);
    let id = new.id;
    store
        .create_job(new)
        .await
        .map_err(|e| format!("create_job: {e}"))?;
    let claim = store
        .claim(id, "w", Duration::from_secs(30))
        .await
        .map_err(|e| format!("claim: {e}"))?
        .ok_or("a fresh job was not claimable")?;
    let fence = claim.attempt.fence();
    for i in 0..k {
        store
            .append(
                fence,
                vec![EventData::Step(Step::completed(format!("step {i}")))],
            )
            .await
            .map_err(|e| format!("append: {e}"))?;
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
        .map_err(|e| format!("save_app: {e}"))?;
    store
        .finish(fence, Outcome::Succeeded)
        .await
        .map_err(|e| format!("finish: {e}"))?;
    Ok(())
}
