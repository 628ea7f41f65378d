//! Shared helpers of the sandbox tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use projectengine_sandbox::{Command, Limits, Line, Outcome, Sandbox, SandboxConfig};
use tokio_util::sync::CancellationToken;

/// Whether a missing sandbox must fail the test (CI sets it).
fn required() -> bool {
    std::env::var("PROJECTENGINE_REQUIRE_SERVICES").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The real sandbox, or `None` (with a SKIPPED line) when the host cannot
/// isolate and PROJECTENGINE_REQUIRE_SERVICES is unset.
pub async fn sandbox() -> Option<Sandbox> {
    match Sandbox::new(SandboxConfig::default()).await {
        Ok(sandbox) => {
            assert!(sandbox.is_isolated());
            Some(sandbox)
        }
        Err(error) if !required() => {
            eprintln!("SKIPPED: {error}; install bubblewrap (scripts/sandbox-deps.sh) or set PROJECTENGINE_REQUIRE_SERVICES=1 to fail instead");
            None
        }
        Err(error) => {
            panic!("the sandbox is required (PROJECTENGINE_REQUIRE_SERVICES is set): {error}")
        }
    }
}

/// `sh -c script` with the default limits but a short wall clock.
pub fn sh(script: &str) -> Command {
    Command::new(["sh", "-c", script]).limits(Limits {
        wall_time: Duration::from_secs(30),
        ..Limits::default()
    })
}

/// Runs to the end; the lines' texts, and the outcome.
pub async fn run(sandbox: &Sandbox, command: &Command) -> (Outcome, Vec<Line>) {
    sandbox
        .run(command, CancellationToken::new())
        .await
        .expect("the run starts")
}

/// The texts of the lines.
pub fn texts(lines: &[Line]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

/// Host processes that have `arg` as one of their arguments.
pub fn processes_with_arg(arg: &str) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// The real (host) uid of a process.
pub fn host_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until no host process has `arg` among its arguments; panics after
/// `within`.
pub async fn assert_gone(arg: &str, within: Duration) {
    let start = Instant::now();
    loop {
        let left = processes_with_arg(arg);
        if left.is_empty() {
            return;
        }
        if start.elapsed() > within {
            panic!("processes with argument {arg} survive: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A number no other test or process uses as an argument.
pub fn unique_seconds() -> String {
    format!("{}", 600 + fastrand::u32(0..1_000_000))
}
