//! Isolation, with real processes under the real sandbox: network,
//! filesystem, secrets, user.

mod common;

use std::time::Duration;

use common::{run, sandbox, sh, texts};
use projectengine_sandbox::{Command, Limits, Stream, INSIDE_ID};
use tokio::net::TcpListener;

/// A bash command that opens a TCP connection to 127.0.0.1:`port` and says
/// whether it could.
fn connect(port: u16) -> Command {
    Command::new([
        "bash",
        "-c",
        &format!("if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo connected; else echo refused; exit 1; fi"),
    ])
    .limits(Limits {
        wall_time: Duration::from_secs(20),
        ..Limits::default()
    })
}

#[tokio::test]
async fn the_hosts_loopback_is_unreachable_without_network_and_reachable_with_it() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();

    let (outcome, lines) = run(&sandbox, &connect(port)).await;
    assert!(!outcome.success(), "connected without network: {lines:?}");
    assert!(texts(&lines).contains(&"refused"), "{lines:?}");
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "the listener saw a connection from the sandbox"
    );

    // Allowed network is the host's: its loopback is the host's loopback.
    let (outcome, lines) = run(&sandbox, &connect(port).allow_network(true)).await;
    assert!(outcome.success(), "{outcome:?} {lines:?}");
    assert_eq!(texts(&lines), ["connected"]);
    let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
    assert!(accepted.is_ok(), "the listener saw no connection");
}

#[tokio::test]
async fn only_the_workdir_and_tmp_are_writable() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let workdir = sandbox.workdir().unwrap();
    let probe = format!("projectengine-sandbox-probe-{}", fastrand::u64(..));
    let script = format!(
        "for p in /usr/{probe} /etc/{probe} /{probe} /proc/{probe}; do \
           if echo x > $p; then echo wrote $p; fi; done; \
         echo x > /tmp/{probe} && echo tmp-ok; echo x > ./{probe} && echo workdir-ok"
    );
    let mut running = sandbox
        .spawn(&workdir, &sh(&script), Default::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(line) = running.next_line().await {
        if line.stream == Stream::Stdout {
            out.push(line.text);
        }
    }
    running.wait().await.unwrap();
    assert_eq!(out, ["tmp-ok", "workdir-ok"]);
    // The workdir write reached the host; the private /tmp did not.
    assert!(workdir.path().join(&probe).exists());
    assert!(!std::path::Path::new("/tmp").join(&probe).exists());
    assert!(!std::path::Path::new("/usr").join(&probe).exists());
}

#[tokio::test]
async fn secrets_outside_the_workdir_are_not_readable() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let secret = format!("secret-{}", fastrand::u64(..));
    // One secret in the worker's home, one in a directory beside the workdir.
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let home_secret = std::path::Path::new(&home).join(format!(".projectengine-sandbox-{secret}"));
    std::fs::write(&home_secret, &secret).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let beside = outside.path().join("token");
    std::fs::write(&beside, &secret).unwrap();
    let workdir = sandbox.workdir().unwrap();
    workdir.write_file("mine", secret.as_bytes()).unwrap();

    let script = format!(
        "cat {} {} /proc/1/environ 2>/dev/null; ls /root /home /work 2>/dev/null; cat mine; echo",
        home_secret.display(),
        beside.display()
    );
    let mut running = sandbox
        .spawn(&workdir, &sh(&script), Default::default())
        .await
        .unwrap();
    let mut stdout = String::new();
    while let Some(line) = running.next_line().await {
        if line.stream == Stream::Stdout {
            stdout.push_str(&line.text);
            stdout.push('\n');
        }
    }
    running.wait().await.unwrap();
    std::fs::remove_file(&home_secret).unwrap();
    // The workdir's own file is readable: the reading works.
    assert_eq!(stdout.matches(&secret).count(), 1, "{stdout}");
    assert_eq!(stdout.trim(), secret);
}

#[tokio::test]
async fn the_user_inside_is_unprivileged_and_so_is_its_host_id() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let marker = common::unique_seconds();
    let workdir = sandbox.workdir().unwrap();
    let command = sh(&format!(
        "id -u; id -g; grep CapEff /proc/self/status; exec sleep {marker}"
    ));
    let mut running = sandbox
        .spawn(&workdir, &command, Default::default())
        .await
        .unwrap();
    let mut lines = Vec::new();
    for _ in 0..3 {
        lines.push(running.next_line().await.unwrap().text);
    }
    assert_eq!(lines[0], INSIDE_ID.to_string());
    assert_eq!(lines[1], INSIDE_ID.to_string());
    assert_eq!(lines[2].split_whitespace().nth(1), Some("0000000000000000"));
    if nix_is_root() {
        let mut pids = Vec::new();
        for _ in 0..100 {
            pids = common::processes_with_arg(&marker);
            if !pids.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!pids.is_empty(), "the sleeping command was not found");
        for pid in pids {
            let uid = common::host_uid(pid).expect("a uid");
            assert_ne!(uid, 0, "pid {pid} runs as root on the host");
            assert_eq!(Some(uid), workdir.owner().map(|(u, _)| u));
        }
    }
    drop(running);
    common::assert_gone(&marker, Duration::from_secs(5)).await;
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn the_hosts_processes_are_invisible_and_no_namespace_can_be_made_inside() {
    let Some(sandbox) = sandbox().await else {
        return;
    };
    let (outcome, lines) = run(
        &sandbox,
        &sh("ls /proc | grep -c '^[0-9]'; if unshare --user --map-root-user true 2>/dev/null; then echo unshared; else echo refused; fi"),
    )
    .await;
    assert!(outcome.success(), "{outcome:?} {lines:?}");
    let out = texts(&lines);
    let visible: u32 = out[0].parse().unwrap();
    // The namespace's init, the shell, ls and grep; the host has far more.
    assert!(visible <= 6, "{visible} processes visible");
    assert_eq!(out[1], "refused");
    let host = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    assert!(host > visible as usize, "the host shows {host} processes");
}
