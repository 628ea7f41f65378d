//! The benchmark program: the workloads of WORKLOADS.md, in a release build.
//!
//! `cargo run --release --example bench -- <w1|w2> --backend <memory|pg-redis> [--n N] [--k K] [--concurrency C]`
//!
//! Prints a human table and one JSON line per run.

mod observe;
mod report;
mod workloads;

use std::process::ExitCode;

/// The command line.
#[derive(Clone, Debug)]
pub struct Args {
    /// `w1` or `w2`.
    pub workload: String,
    /// `memory` or `pg-redis`.
    pub backend: String,
    /// Jobs (the workload's default when absent).
    pub n: Option<usize>,
    /// Steps per job.
    pub k: u32,
    /// Attempts a worker runs at once.
    pub concurrency: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let workload = it.next().ok_or(
        "usage: bench <w1|w2> [--backend memory|pg-redis] [--n N] [--k K] [--concurrency C]",
    )?;
    let mut args = Args {
        workload,
        backend: "memory".into(),
        n: None,
        k: 5,
        concurrency: 16,
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
            "--k" => args.k = num()? as u32,
            "--concurrency" => args.concurrency = num()?.max(1),
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
        Ok(report) => {
            report.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
