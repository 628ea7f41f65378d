//! W5, recovery, in full: 500 jobs on a web process and two worker processes
//! (PostgreSQL + Redis), one worker SIGKILLed at random moments and restarted
//! several times, a WebSocket watcher on every job.
//!
//! ```text
//! cargo run --release --example chaos
//! ```
//!
//! Needs the server example built in the same profile; it is built on first
//! use. `DATABASE_URL` and `REDIS_URL` name the services (default: local).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::Duration;

use support::chaos::{run, Chaos};

/// Builds the server example next to this one when it is missing.
fn ensure_server() -> bool {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("server")));
    let Some(bin) = bin else { return false };
    if bin.exists() {
        return true;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--example", "server"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    cmd.status().is_ok_and(|s| s.success()) && bin.exists()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    if !ensure_server() {
        eprintln!("chaos: build the server first: cargo build --release --example server");
        return ExitCode::FAILURE;
    }
    let chaos = Chaos {
        jobs: 500,
        steps: 20,
        delay_ms: 50,
        kills: 6,
        kill_gap_ms: (800, 2000),
        concurrency: 16,
        seed: 0x5eed_0500,
        limit: Duration::from_secs(600),
    };
    let Some(r) = run(&chaos).await else {
        eprintln!("chaos: PostgreSQL or Redis is unreachable");
        return ExitCode::FAILURE;
    };
    let rows = [
        ("jobs", r.jobs.to_string(), "500"),
        ("succeeded", r.succeeded.to_string(), "= jobs"),
        ("lost", r.lost.to_string(), "0"),
        ("kills (SIGKILL + restart)", r.kills.to_string(), ""),
        ("orphaned jobs that ran again", r.orphaned.to_string(), ""),
        (
            "duplicate seqs at watchers",
            r.duplicate_seqs.to_string(),
            "0",
        ),
        ("missing seqs at watchers", r.missing_seqs.to_string(), "0"),
        (
            "max kill -> orphan running",
            format!("{} ms", r.max_recovery.as_millis()),
            "",
        ),
        ("wall time", format!("{} ms", r.elapsed.as_millis()), ""),
    ];
    println!(
        "W5 recovery ({} steps x {} ms per job, lease 1s)",
        chaos.steps, chaos.delay_ms
    );
    println!("{:<30} {:>10}  must be", "figure", "value");
    for (name, value, must) in rows {
        println!("{name:<30} {value:>10}  {must}");
    }
    println!("{}", r.json());
    let ok = r.lost == 0 && r.succeeded == r.jobs && r.duplicate_seqs == 0 && r.missing_seqs == 0;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
