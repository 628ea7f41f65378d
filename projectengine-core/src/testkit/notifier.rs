//! The [`Notifier`] suite.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;

use crate::{
    EventData, JobEvent, JobId, LogLevel, LogLine, Notification, NotificationStream, Notifier,
};

const WAIT: Duration = Duration::from_secs(5);

fn event(job_id: JobId, seq: u64) -> JobEvent {
    JobEvent {
        job_id,
        seq,
        attempt: 1,
        at: Utc::now(),
        data: EventData::Log(LogLine {
            level: LogLevel::Info,
            message: format!("line {seq}"),
        }),
    }
}

/// The next event of a subscription, skipping `Lagged` markers.
async fn next_event(sub: &mut NotificationStream) -> JobEvent {
    loop {
        match tokio::time::timeout(WAIT, sub.next()).await {
            Ok(Some(Notification::Event(e))) => return e,
            Ok(Some(Notification::Lagged)) => continue,
            Ok(None) => panic!("the subscription ended"),
            Err(_) => panic!("no event within {WAIT:?}"),
        }
    }
}

/// Give a subscription time to be established at a remote broker.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Published events reach a subscriber, in order, intact.
pub async fn check_publish_reaches_subscriber(notifier: Arc<dyn Notifier>) {
    let job = JobId::new();
    let mut sub = notifier.subscribe(job).await.expect("subscribe");
    settle().await;
    let events: Vec<JobEvent> = (1..=3).map(|s| event(job, s)).collect();
    notifier.publish(&events[..2]).await.expect("publish");
    notifier.publish(&events[2..]).await.expect("publish");
    for expected in &events {
        assert_eq!(&next_event(&mut sub).await, expected);
    }
}

/// A subscription receives only its job's events.
pub async fn check_subscription_is_per_job(notifier: Arc<dyn Notifier>) {
    let (mine, other) = (JobId::new(), JobId::new());
    let mut sub = notifier.subscribe(mine).await.expect("subscribe");
    settle().await;
    notifier
        .publish(&[event(other, 1), event(other, 2)])
        .await
        .expect("publish");
    notifier.publish(&[event(mine, 1)]).await.expect("publish");
    let got = next_event(&mut sub).await;
    assert_eq!((got.job_id, got.seq), (mine, 1));
}

/// Every subscriber of a job receives its events.
pub async fn check_every_subscriber_receives(notifier: Arc<dyn Notifier>) {
    let job = JobId::new();
    let mut subs = Vec::new();
    for _ in 0..5 {
        subs.push(notifier.subscribe(job).await.expect("subscribe"));
    }
    settle().await;
    notifier
        .publish(&[event(job, 1), event(job, 2)])
        .await
        .expect("publish");
    for sub in &mut subs {
        assert_eq!(next_event(sub).await.seq, 1);
        assert_eq!(next_event(sub).await.seq, 2);
    }
    // Dropping some subscribers leaves the others served.
    subs.truncate(1);
    notifier.publish(&[event(job, 3)]).await.expect("publish");
    assert_eq!(next_event(&mut subs[0]).await.seq, 3);
}

/// Publishing with nobody subscribed succeeds.
pub async fn check_publish_without_subscribers(notifier: Arc<dyn Notifier>) {
    notifier
        .publish(&[event(JobId::new(), 1)])
        .await
        .expect("publish");
    notifier.publish(&[]).await.expect("publish nothing");
}
