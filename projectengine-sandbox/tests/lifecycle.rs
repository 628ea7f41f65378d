//! Cancel, drop, output volume, and a host that cannot isolate.

mod common;

use std::time::{Duration, Instant};

use common::{sandbox, sh};
use projectengine_sandbox::{
    Command, Error, Failure, Isolation, Limits, Sandbox, SandboxConfig, Stream,
};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn cancel_kills_a_running_command_promptly() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let marker = common::unique_seconds();
    let cancel = CancellationToken::new();
    let workdir = sandbox.workdir().unwrap();
    let command = sh(&format!("echo started; sleep {marker} & sleep {marker}"));
    let mut running = sandbox
        .spawn(&workdir, &command, cancel.clone())
        .await
        .unwrap();
    assert_eq!(running.next_line().await.unwrap().text, "started");
    let start = Instant::now();
    cancel.cancel();
    while running.next_line().await.is_some() {}
    let outcome = running.wait().await.unwrap();
    assert_eq!(outcome.failure, Some(Failure::Cancelled));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    common::assert_gone(&marker, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn dropping_the_handle_kills_the_tree() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let marker = common::unique_seconds();
    let workdir = sandbox.workdir().unwrap();
    let command = sh(&format!(
        "echo started; setsid sleep {marker} & sleep {marker}"
    ));
    let mut running = sandbox
        .spawn(&workdir, &command, Default::default())
        .await
        .unwrap();
    assert_eq!(running.next_line().await.unwrap().text, "started");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(common::processes_with_arg(&marker).len(), 2);
    drop(running);
    common::assert_gone(&marker, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn kill_returns_once_the_tree_is_gone() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let marker = common::unique_seconds();
    let workdir = sandbox.workdir().unwrap();
    let command = sh(&format!("echo started; sleep {marker} & sleep {marker}"));
    let mut running = sandbox
        .spawn(&workdir, &command, Default::default())
        .await
        .unwrap();
    assert_eq!(running.next_line().await.unwrap().text, "started");
    let outcome = running.kill().await.unwrap();
    assert_eq!(outcome.failure, Some(Failure::Cancelled));
    assert_eq!(common::processes_with_arg(&marker), Vec::<i32>::new());
    drop(workdir);
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_hundred_megabytes_of_output_stay_bounded_and_are_reported_truncated() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let cap = 1 << 20;
    // 100 MB of 100-byte lines on stdout, then one 10 MB line on stderr.
    let command = sh("yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -c 100000000; head -c 10000000 /dev/zero | tr '\\0' a >&2")
        .limits(Limits {
            output_bytes: cap,
            wall_time: Duration::from_secs(120),
            ..Limits::default()
        });
    let before = vm_rss_kib();
    let workdir = sandbox.workdir().unwrap();
    let mut running = sandbox
        .spawn(&workdir, &command, Default::default())
        .await
        .unwrap();
    let mut delivered = 0u64;
    let mut stdout_lines = 0u64;
    while let Some(line) = running.next_line().await {
        delivered += line.text.len() as u64 + 1;
        if line.stream == Stream::Stdout {
            stdout_lines += 1;
            assert_eq!(line.text.len(), 99);
        }
    }
    let outcome = running.wait().await.unwrap();
    assert!(outcome.success(), "{outcome:?}");
    assert!(outcome.output_truncated);
    assert!(
        delivered <= cap,
        "{delivered} bytes delivered past a cap of {cap}"
    );
    assert_eq!(stdout_lines, cap / 100);
    // Everything past the cap was dropped: 1 000 000 lines in all, plus the long one.
    assert_eq!(outcome.lines_dropped + stdout_lines, 1_000_001);
    let grown = vm_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "resident memory grew by {grown} KiB");
}

#[tokio::test]
async fn a_very_long_line_is_cut() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let (outcome, lines) = common::run(
        &sandbox,
        &sh("head -c 1000000 /dev/zero | tr '\\0' a; echo; echo next"),
    )
    .await;
    assert!(outcome.success());
    assert_eq!(lines.len(), 2);
    assert!(lines[0].cut);
    assert_eq!(lines[0].text.len(), sandbox.config().max_line_bytes);
    assert_eq!(lines[1].text, "next");
}

#[tokio::test]
async fn without_bwrap_the_sandbox_refuses_unless_unsandboxed_is_allowed() {
    let mut config = SandboxConfig::default();
    config.bwrap = "/nonexistent/bwrap".into();
    match Sandbox::new(config.clone()).await {
        Err(Error::Unavailable { reason }) => assert!(reason.contains("nonexistent"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    config.isolation = Isolation::AllowUnsandboxed;
    let sandbox = Sandbox::new(config).await.unwrap();
    assert!(!sandbox.is_isolated());
    let (outcome, lines) = common::run(&sandbox, &sh("echo $((6 * 7)); exit 4")).await;
    assert_eq!(outcome.failure, Some(Failure::Exit(4)));
    assert_eq!(common::texts(&lines), ["42"]);
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_runs() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let workdir = sandbox.workdir().unwrap();
    let empty: [&str; 0] = [];
    for (command, field) in [
        (Command::new(empty), "argv"),
        (Command::new(["echo", "a\0b"]), "argv"),
        (Command::new(["true"]).env("A=B", "x"), "env"),
        (
            Command::new(["true"]).limits(Limits {
                wall_time: Duration::ZERO,
                ..Limits::default()
            }),
            "limits.wall_time",
        ),
    ] {
        match sandbox.spawn(&workdir, &command, Default::default()).await {
            Err(Error::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected Invalid {field}, got {other:?}"),
        }
    }
}
