//! The benchmark program: the workloads of WORKLOADS.md, in a release build.
//!
//! `cargo run --release --example bench -- <w1|w2|w3|w4|w6> --backend <memory|pg-redis|sqlite> [--n N] [--k K] [--concurrency C]`
//!
//! pg-redis takes `--pg-writers W` and `--pg-batch B`: the PgStore's group
//! commit (default 2 writers, 64 writes per transaction; `--pg-writers 0`
//! gives each write its own transaction), and `--publish-interval-ms MS`: the
//! Redis notifier's least time between two messages (default: the
//! notifier's). W1 takes `--inflight F`: the producer keeps up to F submits in flight
//! (default 64; 1 submits one at a time). W3 also takes `--watchers W` (WebSocket clients per job) and `--step-ms MS`
//! (the pause before each step, default 50); W6 takes `--step-ms` too (default 5)
//! and prints two reports, fair queues off then on (`fair` 0 and 1); W7 (pg-redis) takes `--rate R` (jobs
//! submitted per second, default 500), `--retention-s S` (default 60) and `--sample-s S` (default 30),
//! `--n` defaulting to 500 000; W4 takes `--duration S` and `--client
//! auto|wrk|builtin`. `--redis-monitor 1` counts Redis commands per job with
//! MONITOR, split into top-level ones and ones run inside scripts (it slows
//! Redis down: use it for the counts, not for the timings).
//!
//! `store-xacts` counts the PostgreSQL transactions of N jobs (`--n`, default
//! 1000) made through the Store API alone, K step appends each (`--k`,
//! default 5), one call at a time on one connection; it always runs on
//! `DATABASE_URL`. W2 on pg-redis reports Redis commands per job for jobs run
//! one at a time (every pop waits first), W1 for a full queue.
//!
//! Prints a human table and one JSON line per run.

mod backends;
mod http;
mod observe;
mod report;
mod soak;
mod store_xacts;
mod workloads;

use std::process::ExitCode;

/// The command line.
#[derive(Clone, Debug)]
pub struct Args {
    /// `w1`, `w2`, `w3`, `w4`, `w6`, `w7` or `store-xacts`.
    pub workload: String,
    /// `memory` or `pg-redis`.
    pub backend: String,
    /// Jobs (the workload's default when absent).
    pub n: Option<usize>,
    /// Steps per job (the workload's default when absent).
    pub k: Option<u32>,
    /// Attempts a worker runs at once (the workload's default when absent).
    pub concurrency: Option<usize>,
    /// pg-redis: the PgStore's group commit.
    pub group_commit: projectengine_store_postgres::GroupCommit,
    /// pg-redis: the Redis notifier's `publish_interval`, if given.
    pub publish_interval: Option<std::time::Duration>,
    /// W1: submits the producer keeps in flight.
    pub inflight: usize,
    /// W3: WebSocket clients per job.
    pub watchers: usize,
    /// W3, W6: pause before each step, in ms (the workload's default when absent).
    pub step_ms: Option<u64>,
    /// W4: seconds of load.
    pub duration: f64,
    /// W4: `auto` (wrk when installed), `wrk` or `builtin`.
    pub client: String,
    /// Count Redis commands with MONITOR.
    pub redis_monitor: bool,
    /// W7: jobs submitted per second.
    pub rate: usize,
    /// W7: the retention age, in seconds.
    pub retention_s: u64,
    /// W7: seconds between two samples of the tables' sizes.
    pub sample_s: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let workload = it.next().ok_or(
        "usage: bench <w1|w2|w3|w4|w6|w7|store-xacts> [--backend memory|pg-redis|sqlite] [--n N] [--k K] [--concurrency C] \
         [--inflight F] [--pg-writers W] [--pg-batch B] [--publish-interval-ms MS] [--watchers W] [--step-ms MS] [--duration S] [--client auto|wrk|builtin] [--redis-monitor 0|1] \
         [--rate R] [--retention-s S] [--sample-s S]",
    )?;
    let mut args = Args {
        workload,
        backend: "memory".into(),
        n: None,
        k: None,
        concurrency: None,
        inflight: 64,
        group_commit: Default::default(),
        publish_interval: None,
        watchers: 10,
        step_ms: None,
        duration: 20.0,
        client: "auto".into(),
        redis_monitor: false,
        rate: 500,
        retention_s: 60,
        sample_s: 30,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag}: `{value}` is not a number"))
        };
        match flag.as_str() {
            "--backend" => args.backend = value.clone(),
            "--n" => args.n = Some(num()?),
            "--k" => args.k = Some(num()? as u32),
            "--concurrency" => args.concurrency = Some(num()?.max(1)),
            "--inflight" => args.inflight = num()?.max(1),
            "--pg-writers" => args.group_commit.writers = num()?,
            "--pg-batch" => args.group_commit.max_batch = num()?.max(1),
            "--publish-interval-ms" => {
                args.publish_interval = Some(std::time::Duration::from_millis(num()? as u64))
            }
            "--watchers" => args.watchers = num()?,
            "--step-ms" => args.step_ms = Some(num()? as u64),
            "--duration" => {
                args.duration = value
                    .parse::<f64>()
                    .map_err(|_| format!("{flag}: `{value}` is not a number"))?
            }
            "--client" => args.client = value.clone(),
            "--redis-monitor" => args.redis_monitor = num()? != 0,
            "--rate" => args.rate = num()?.max(1),
            "--retention-s" => args.retention_s = num()? as u64,
            "--sample-s" => args.sample_s = num()? as u64,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(workloads::run(&args)) {
        Ok(reports) => {
            for report in reports {
                report.print();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
