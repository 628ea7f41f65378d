//! Two OS processes on one Redis: events published in one reach subscribers
//! in the other, both ways. The child is this test binary run again on the
//! ignored `child` test, with its instructions in environment variables.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{event, TestRedis};
use futures::StreamExt;
use projectengine_core::{JobId, Notification, NotificationStream, Notifier};
use projectengine_queue_redis::{RedisConfig, RedisNotifier};

const CHILD_PREFIX: &str = "PE_TWO_PROCESS_PREFIX";
const CHILD_OUT: &str = "PE_TWO_PROCESS_OUT";
const CHILD_IN: &str = "PE_TWO_PROCESS_IN";
const READY: &str = "CHILD-SUBSCRIBED";
const WAIT: Duration = Duration::from_secs(10);

async fn next_seq(sub: &mut NotificationStream, job: JobId) -> u64 {
    loop {
        match tokio::time::timeout(WAIT, sub.next()).await {
            Ok(Some(Notification::Event(e))) => {
                assert_eq!(e.job_id, job);
                return e.seq;
            }
            Ok(Some(Notification::Lagged)) => continue,
            Ok(None) => panic!("the subscription ended"),
            Err(_) => panic!("no event within {WAIT:?}"),
        }
    }
}

#[tokio::test]
async fn events_cross_the_process_boundary_both_ways() {
    let Some(r) = TestRedis::connect().await else {
        return;
    };
    let notifier = r.notifier().await;
    let (to_parent, to_child) = (JobId::new(), JobId::new());
    let mut sub = notifier.subscribe(to_parent).await.expect("subscribe");

    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REDIS_URL", &r.url)
        .env(CHILD_PREFIX, r.prefix())
        .env(CHILD_OUT, to_parent.to_string())
        .env(CHILD_IN, to_child.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("piped stdout");
    // The child says when it has subscribed, so nothing we publish is early.
    // Its whole output is read, so it never writes to a closed pipe.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let output = tokio::task::spawn_blocking(move || {
        let mut ready_tx = Some(ready_tx);
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(READY) {
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(());
                }
            }
            lines.push(line);
        }
        lines
    });
    let ready = tokio::time::timeout(WAIT, ready_rx).await;
    assert!(
        matches!(ready, Ok(Ok(()))),
        "the child never subscribed: {:?}",
        output.await
    );

    // Child → parent.
    for seq in 1..=3 {
        assert_eq!(next_seq(&mut sub, to_parent).await, seq);
    }
    // Parent → child: the child exits successfully only once it got these.
    notifier
        .publish(&[event(to_child, 1), event(to_child, 2)])
        .await
        .expect("publish");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait for the child");
    let output = output.await.expect("reader");
    assert!(status.success(), "the child failed ({status}): {output:#?}");
    r.cleanup().await;
}

/// Not a test of its own: the child process of the test above (it needs the
/// variables that test sets).
#[tokio::test]
#[ignore = "run as a child process by events_cross_the_process_boundary_both_ways"]
async fn child() {
    let (Ok(prefix), Ok(out), Ok(inn)) = (
        std::env::var(CHILD_PREFIX),
        std::env::var(CHILD_OUT),
        std::env::var(CHILD_IN),
    ) else {
        panic!("run by events_cross_the_process_boundary_both_ways only");
    };
    let (out, inn): (JobId, JobId) = (out.parse().expect("job id"), inn.parse().expect("job id"));
    let config = RedisConfig::new(common::redis_url()).with_prefix(prefix);
    let notifier = RedisNotifier::connect(&config).await.expect("connect");
    let mut sub = notifier.subscribe(inn).await.expect("subscribe");
    println!("{READY}");
    notifier
        .publish(&[event(out, 1), event(out, 2)])
        .await
        .expect("publish");
    notifier.publish(&[event(out, 3)]).await.expect("publish");
    assert_eq!(next_seq(&mut sub, inn).await, 1);
    assert_eq!(next_seq(&mut sub, inn).await, 2);
}
