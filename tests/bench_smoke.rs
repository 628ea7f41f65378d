//! The benchmark program runs every workload to completion with a tiny N and
//! prints a well-formed JSON line (no timing assertions).

use std::process::Command;

use serde_json::Value;

/// The bench example, built by `cargo test` next to this test binary.
fn bench_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let bin = dir.join("examples").join("bench");
    assert!(
        bin.exists(),
        "{} is missing: build the examples first (cargo test builds them)",
        bin.display()
    );
    bin
}

/// Runs `bench <args>`, asserts success, and returns its JSON line.
fn run(args: &[&str]) -> Value {
    let out = Command::new(bench_bin())
        .args(args)
        .output()
        .expect("run the bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench {args:?}: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in: {stdout}"));
    let v: Value = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(v["workload"], args[0], "{v}");
    v
}

fn assert_complete(v: &Value, n: u64, k: u64) {
    assert_eq!(v["n"], n, "{v}");
    assert_eq!(v["jobs_succeeded"], n, "{v}");
    // Per job: queued, running, K steps, app, succeeded, at least.
    let events = v["events"].as_u64().expect("events");
    assert!(events >= n * (k + 4), "{v}");
}

#[test]
fn w1_memory() {
    let v = run(&["w1", "--backend", "memory", "--n", "20"]);
    assert_complete(&v, 20, 5);
    assert_eq!(v["not_succeeded"], 0, "{v}");
}

#[test]
fn w2_memory() {
    let v = run(&["w2", "--backend", "memory", "--n", "5"]);
    assert_complete(&v, 5, 5);
}

#[test]
fn w1_sqlite_groups_writes() {
    let v = run(&["w1", "--backend", "sqlite", "--n", "20"]);
    assert_complete(&v, 20, 5);
    let per_job = v["sqlite_xacts_per_job"]
        .as_f64()
        .expect("sqlite_xacts_per_job");
    // A job alone is 9 writes (create, claim, 5 steps, app, finish); 16 at
    // once share transactions.
    assert!(per_job > 0.0 && per_job < 9.0, "{v}");
}

#[test]
fn w2_sqlite() {
    let v = run(&["w2", "--backend", "sqlite", "--n", "5"]);
    assert_complete(&v, 5, 5);
}

#[test]
fn w3_memory() {
    let v = run(&[
        "w3",
        "--backend",
        "memory",
        "--n",
        "4",
        "--watchers",
        "3",
        "--step-ms",
        "5",
    ]);
    assert_complete(&v, 4, 20);
    assert_eq!(v["sockets"], 12, "{v}");
    assert_eq!(v["events_received"], v["events_expected"], "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    assert_eq!(v["out_of_order"], 0, "{v}");
}

#[test]
fn w4_memory() {
    let v = run(&[
        "w4",
        "--backend",
        "memory",
        "--duration",
        "0.5",
        "--client",
        "builtin",
    ]);
    assert_complete(&v, 1, 5);
    assert!(v["requests"].as_u64().expect("requests") > 0, "{v}");
    assert_eq!(v["non_2xx"], 0, "{v}");
}

/// Whether PostgreSQL and Redis answer; `false` (skipped, with a printed line)
/// when one is absent and PROJECTENGINE_REQUIRE_SERVICES is unset.
async fn services() -> bool {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    use sqlx::Connection;
    match sqlx::PgConnection::connect(&url).await {
        Ok(c) => {
            let _ = c.close().await;
        }
        Err(e) => {
            projectengine_core::testkit::service_missing("PostgreSQL", &url, &e);
            return false;
        }
    }
    let hostport = redis
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    if let Err(e) = tokio::net::TcpStream::connect(hostport).await {
        projectengine_core::testkit::service_missing("Redis", &redis, &e);
        return false;
    }
    true
}

#[tokio::test]
async fn w1_pg_redis() {
    if !services().await {
        return;
    }
    let v = tokio::task::spawn_blocking(|| run(&["w1", "--backend", "pg-redis", "--n", "20"]))
        .await
        .expect("bench");
    assert_complete(&v, 20, 5);
    assert!(v["pg_xacts_per_job"].as_f64().is_some(), "{v}");
    assert!(v["redis_cmds_per_job"].as_f64().is_some(), "{v}");
}

#[tokio::test]
async fn w2_pg_redis_counts_redis_commands() {
    if !services().await {
        return;
    }
    let v = tokio::task::spawn_blocking(|| run(&["w2", "--backend", "pg-redis", "--n", "5"]))
        .await
        .expect("bench");
    assert_complete(&v, 5, 5);
    assert!(v["redis_cmds_per_job"].as_f64().is_some(), "{v}");
}

#[tokio::test]
async fn store_xacts_pg() {
    if !services().await {
        return;
    }
    let v = tokio::task::spawn_blocking(|| run(&["store-xacts", "--n", "20"]))
        .await
        .expect("bench");
    assert_eq!(v["n"], 20, "{v}");
    assert_eq!(v["pg_rollbacks"], 0, "{v}");
    // The jobs' transactions were counted. (How many PostgreSQL's statistics
    // show within the settle time varies on a loaded machine: exact figures
    // are the benchmark's, on a quiet one.)
    let per_job = v["pg_xacts_per_job"].as_f64().expect("pg_xacts_per_job");
    assert!(per_job > 0.0, "{v}");
}

/// W7 deletes the jobs of its soak once they are older than the retention
/// age, and samples the tables' sizes.
#[tokio::test]
async fn w7_pg_redis_deletes_finished_jobs() {
    if !services().await {
        return;
    }
    let v = tokio::task::spawn_blocking(|| {
        run(&[
            "w7",
            "--backend",
            "pg-redis",
            "--n",
            "60",
            "--rate",
            "60",
            "--retention-s",
            "1",
            "--sample-s",
            "1",
        ])
    })
    .await
    .expect("bench");
    assert_eq!(v["workload"], "w7", "{v}");
    // The first burst and the soak's jobs ended more than the retention age
    // before the last sample (taken before the final burst): all of them
    // were deleted by then.
    let samples = v["samples"].as_array().expect("samples");
    assert!(samples.len() >= 2, "{v}");
    assert!(samples[0]["total_mb"].as_f64().is_some(), "{v}");
    assert!(samples[0]["jobs_stored"].as_i64() > Some(0), "{v}");
    assert_eq!(samples.last().expect("a sample")["jobs_stored"], 0, "{v}");
    assert_eq!(samples.last().expect("a sample")["finished"], 120, "{v}");
    for figure in ["w1_start_jobs_per_s", "w1_end_jobs_per_s"] {
        assert!(v[figure].as_f64().is_some(), "{figure} in {v}");
    }
}

/// W6 prints two reports, fair queues off then on, each with B's figures.
#[test]
fn w6_memory_off_then_on() {
    let out = Command::new(bench_bin())
        .args(["w6", "--backend", "memory", "--n", "40", "--step-ms", "1"])
        .output()
        .expect("run the bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (v, fair) in lines.iter().zip([0, 1]) {
        assert_eq!(v["workload"], "w6", "{v}");
        assert_eq!(v["fair"], fair, "{v}");
        assert_eq!(v["n"], 40, "{v}");
        assert_eq!(v["a_not_succeeded"], 0, "{v}");
        for figure in ["b_start_p50_ms", "b_start_p99_ms", "a_jobs_per_s"] {
            assert!(v[figure].as_f64().is_some(), "{figure} in {v}");
        }
    }
}
