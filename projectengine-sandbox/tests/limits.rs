//! Limits, with real processes: each breach reported by name.

mod common;

use std::time::{Duration, Instant};

use common::{run, sandbox, sh};
use projectengine_sandbox::{Command, Failure, Limits};

fn limits() -> Limits {
    Limits {
        wall_time: Duration::from_secs(60),
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_fork_bomb_is_held_by_the_process_limit_and_reported() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let command = sh("f(){ f & f & wait; }; f").limits(Limits {
        processes: Some(32),
        wall_time: Duration::from_secs(30),
        ..Limits::default()
    });
    let (outcome, _) = run(&sandbox, &command).await;
    // The bomb's shells give up when fork fails, so it ends by itself (its
    // top shell may even exit 0): the breach is in `limits_hit`.
    assert!(
        outcome.limits_hit.contains(&Failure::ProcessLimit),
        "{outcome:?}"
    );
    assert!(
        outcome.failure.is_none() || outcome.failure == Some(Failure::ProcessLimit),
        "{outcome:?}"
    );
    // The host still forks.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
}

#[tokio::test]
async fn allocating_past_the_memory_limit_is_memory_limit() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let alloc = |mib: u64| {
        Command::new([
            "python3",
            "-c",
            &format!("b = bytearray({mib} * 1024 * 1024); print(len(b))"),
        ])
        .limits(Limits {
            memory_bytes: Some(200 << 20),
            ..limits()
        })
    };
    let (outcome, lines) = run(&sandbox, &alloc(512)).await;
    assert_eq!(
        outcome.failure,
        Some(Failure::MemoryLimit),
        "{outcome:?} {lines:?}"
    );
    // Under the limit the same program succeeds.
    let (outcome, lines) = run(&sandbox, &alloc(16)).await;
    assert!(outcome.success(), "{outcome:?} {lines:?}");
}

#[tokio::test]
async fn spinning_past_the_cpu_limit_is_cpu_limit() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let command = sh("while :; do :; done").limits(Limits {
        cpu_time: Some(Duration::from_secs(1)),
        ..limits()
    });
    let start = Instant::now();
    let (outcome, _) = run(&sandbox, &command).await;
    assert_eq!(outcome.failure, Some(Failure::CpuLimit), "{outcome:?}");
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn writing_past_the_file_size_limit_is_file_size_limit() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let command =
        Command::new(["dd", "if=/dev/zero", "of=big", "bs=1024", "count=64"]).limits(Limits {
            file_size_bytes: Some(16 * 1024),
            ..limits()
        });
    let (outcome, lines) = run(&sandbox, &command).await;
    assert_eq!(
        outcome.failure,
        Some(Failure::FileSizeLimit),
        "{outcome:?} {lines:?}"
    );
}

#[tokio::test]
async fn opening_past_the_open_files_limit_is_open_files_limit() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let command = Command::new([
        "python3",
        "-c",
        "files = [open('/dev/null') for _ in range(100)]",
    ])
    .limits(Limits {
        open_files: Some(16),
        ..limits()
    });
    let (outcome, lines) = run(&sandbox, &command).await;
    assert_eq!(
        outcome.failure,
        Some(Failure::OpenFilesLimit),
        "{outcome:?} {lines:?}"
    );
}

#[tokio::test]
async fn a_plain_failure_is_its_exit_code() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let (outcome, _) = run(&sandbox, &sh("exit 3")).await;
    assert_eq!(outcome.failure, Some(Failure::Exit(3)));
    assert_eq!(outcome.exit_code(), Some(3));
}

#[tokio::test]
async fn sleep_past_the_wall_clock_is_killed_with_its_whole_tree() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let marker = common::unique_seconds();
    // A child in the background, a grandchild in a session of its own.
    let command = sh(&format!(
        "sleep {marker} & setsid sleep {marker} & sleep {marker}"
    ))
    .limits(Limits {
        wall_time: Duration::from_secs(2),
        ..Limits::default()
    });
    let start = Instant::now();
    let workdir = sandbox.workdir().unwrap();
    let mut running = sandbox
        .spawn(&workdir, &command, Default::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        common::processes_with_arg(&marker).len(),
        3,
        "the tree did not start"
    );
    while running.next_line().await.is_some() {}
    let outcome = running.wait().await.unwrap();
    assert_eq!(outcome.failure, Some(Failure::Timeout));
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    common::assert_gone(&marker, Duration::from_secs(2)).await;
}
