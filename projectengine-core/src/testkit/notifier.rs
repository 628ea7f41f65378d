//! The [`Notifier`] suite. No check waits after `subscribe`: a subscription
//! must be live when it returns.

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

/// Published events reach a subscriber, in order, intact.
pub async fn check_publish_reaches_subscriber(notifier: Arc<dyn Notifier>) {
    let job = JobId::new();
    let mut sub = notifier.subscribe(job).await.expect("subscribe");
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

/// A subscription is live as soon as `subscribe` returns: an event published
/// right after reaches it, whether the job is the first one watched (a broker
/// subscribes) or others are watched already.
pub async fn check_subscription_is_live_when_subscribe_returns(notifier: Arc<dyn Notifier>) {
    let mut kept = Vec::new();
    for round in 0..12 {
        let job = JobId::new();
        let mut sub = notifier.subscribe(job).await.expect("subscribe");
        notifier.publish(&[event(job, 1)]).await.expect("publish");
        let got = next_event(&mut sub).await;
        assert_eq!((got.job_id, got.seq), (job, 1), "round {round}");
        kept.push(sub);
        if round % 3 == 2 {
            // Nothing watched any more: the next round subscribes afresh.
            kept.clear();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A subscriber that does not keep up may lose events, but never silently:
/// whatever it misses, it is told [`Notification::Lagged`] before the events
/// that come after the loss (and at all, when the loss is at the end).
pub async fn check_every_loss_is_reported(notifier: Arc<dyn Notifier>) {
    const EVENTS: u64 = 5000;
    const QUIET: Duration = Duration::from_secs(2);
    let job = JobId::new();
    let mut sub = notifier.subscribe(job).await.expect("subscribe");
    // Published before anything is read: a bounded adapter overflows.
    for seq in 1..=EVENTS {
        notifier.publish(&[event(job, seq)]).await.expect("publish");
    }
    let (mut last, mut lagged, mut received) = (0, false, 0u64);
    while last < EVENTS {
        match tokio::time::timeout(QUIET, sub.next()).await {
            Ok(Some(Notification::Lagged)) => lagged = true,
            Ok(Some(Notification::Event(e))) => {
                assert_eq!(e.job_id, job);
                assert!(
                    e.seq <= last + 1 || lagged,
                    "events {}..{} were lost without a Lagged",
                    last + 1,
                    e.seq
                );
                last = last.max(e.seq);
                received += 1;
            }
            Ok(None) => panic!("the subscription ended"),
            Err(_) => break,
        }
    }
    assert!(
        last == EVENTS || lagged,
        "events {}..={EVENTS} were lost without a Lagged",
        last + 1
    );
    assert!(received > 0 || lagged, "nothing arrived, and no Lagged");
}
