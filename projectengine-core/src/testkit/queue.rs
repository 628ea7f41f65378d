//! The [`Queue`] suite. The queue under test has a visibility timeout of
//! [`QUEUE_VISIBILITY_TIMEOUT`], and every check
//! uses queue names of its own, so checks may share one backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{unique, QUEUE_VISIBILITY_TIMEOUT};
use crate::{Delivery, JobId, Queue, QueueEntry};

const SHORT: Duration = Duration::from_millis(50);

fn grouped(job_id: JobId, priority: i32, group: Option<&str>) -> QueueEntry {
    QueueEntry {
        group: group.map(str::to_owned),
        ..entry(job_id, priority)
    }
}

fn entry(job_id: JobId, priority: i32) -> QueueEntry {
    QueueEntry {
        job_id,
        priority,
        not_before: None,
        group: None,
    }
}

async fn pop(queue: &Arc<dyn Queue>, names: &[String], wait: Duration) -> Option<Delivery> {
    queue.pop(names, wait).await.expect("pop")
}

/// Higher priority first; equal priorities first-in first-out.
pub async fn check_priority_then_fifo(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    let ids: Vec<JobId> = (0..6).map(|_| JobId::new()).collect();
    let prios = [0, 5, 0, -3, 5, 0];
    for (id, p) in ids.iter().zip(prios) {
        assert!(queue.push(&q[0], entry(*id, p)).await.expect("push"));
    }
    let mut order = Vec::new();
    for _ in 0..6 {
        let d = pop(&queue, &q, SHORT).await.expect("an entry");
        assert_eq!(d.queue, q[0]);
        order.push(d.job_id);
        queue.ack(&d).await.expect("ack");
    }
    assert_eq!(order, vec![ids[1], ids[4], ids[0], ids[2], ids[5], ids[3]]);
    assert!(pop(&queue, &q, SHORT).await.is_none());
}

/// A pop never returns an entry of a queue it did not name.
pub async fn check_named_queues_kept_apart(queue: Arc<dyn Queue>) {
    let (a, b) = (unique("a"), unique("b"));
    let (ja, jb) = (JobId::new(), JobId::new());
    queue.push(&a, entry(ja, 0)).await.expect("push");
    queue.push(&b, entry(jb, 100)).await.expect("push");
    let d = pop(&queue, std::slice::from_ref(&a), SHORT)
        .await
        .expect("a's entry");
    assert_eq!((d.job_id, d.queue.as_str()), (ja, a.as_str()));
    queue.ack(&d).await.expect("ack");
    assert!(pop(&queue, std::slice::from_ref(&a), SHORT).await.is_none());
    let d = pop(&queue, std::slice::from_ref(&b), SHORT)
        .await
        .expect("b's entry");
    assert_eq!(d.job_id, jb);
    queue.ack(&d).await.expect("ack");
}

/// One pop serves several named queues.
pub async fn check_pop_serves_several_queues(queue: Arc<dyn Queue>) {
    let names = vec![unique("x"), unique("y"), unique("z")];
    let (jx, jz) = (JobId::new(), JobId::new());
    queue.push(&names[0], entry(jx, 0)).await.expect("push");
    queue.push(&names[2], entry(jz, 0)).await.expect("push");
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = pop(&queue, &names, SHORT).await.expect("an entry");
        got.push((d.job_id, d.queue.clone()));
        queue.ack(&d).await.expect("ack");
    }
    got.sort();
    let mut expected = vec![(jx, names[0].clone()), (jz, names[2].clone())];
    expected.sort();
    assert_eq!(got, expected);
    assert!(pop(&queue, &names, SHORT).await.is_none());
}

/// An entry with `not_before` is not delivered before its time, and is after.
pub async fn check_delayed_delivery(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    let (late, now) = (JobId::new(), JobId::new());
    let at = Utc::now() + chrono::Duration::milliseconds(500);
    let start = Instant::now();
    queue
        .push(
            &q[0],
            QueueEntry {
                job_id: late,
                priority: 10,
                not_before: Some(at),
                group: None,
            },
        )
        .await
        .expect("push");
    queue.push(&q[0], entry(now, 0)).await.expect("push");
    let d = pop(&queue, &q, SHORT).await.expect("the due entry");
    assert_eq!(
        d.job_id, now,
        "the delayed entry waits despite its priority"
    );
    queue.ack(&d).await.expect("ack");
    assert!(pop(&queue, &q, SHORT).await.is_none());
    let d = pop(&queue, &q, Duration::from_secs(3))
        .await
        .expect("delayed entry, in time");
    assert_eq!(d.job_id, late);
    assert!(
        start.elapsed() >= Duration::from_millis(450),
        "delivered early: {:?}",
        start.elapsed()
    );
    queue.ack(&d).await.expect("ack");
}

/// A popped entry that is not acked is delivered again after the visibility timeout.
pub async fn check_visibility_timeout_redelivers(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    let id = JobId::new();
    queue.push(&q[0], entry(id, 0)).await.expect("push");
    let first = pop(&queue, &q, SHORT).await.expect("entry");
    assert!(
        pop(&queue, &q, SHORT).await.is_none(),
        "invisible while in flight"
    );
    let second = pop(&queue, &q, QUEUE_VISIBILITY_TIMEOUT * 4)
        .await
        .expect("redelivered after the visibility timeout");
    assert_eq!(second.job_id, id);
    assert_ne!(second.receipt, first.receipt);
    queue.ack(&second).await.expect("ack");
    assert!(pop(&queue, &q, QUEUE_VISIBILITY_TIMEOUT * 2)
        .await
        .is_none());
}

/// An acked entry never comes back.
pub async fn check_ack_removes_for_good(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    queue
        .push(&q[0], entry(JobId::new(), 0))
        .await
        .expect("push");
    let d = pop(&queue, &q, SHORT).await.expect("entry");
    queue.ack(&d).await.expect("ack");
    queue.ack(&d).await.expect("a second ack is harmless");
    assert!(pop(&queue, &q, QUEUE_VISIBILITY_TIMEOUT * 2)
        .await
        .is_none());
}

/// Acking an older delivery does not remove the entry delivered again since.
pub async fn check_stale_receipt_is_ignored(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    let id = JobId::new();
    queue.push(&q[0], entry(id, 0)).await.expect("push");
    let old = pop(&queue, &q, SHORT).await.expect("entry");
    let new = pop(&queue, &q, QUEUE_VISIBILITY_TIMEOUT * 4)
        .await
        .expect("redelivered");
    queue.ack(&old).await.expect("stale ack");
    queue.nack(&old, None).await.expect("stale nack");
    assert!(
        pop(&queue, &q, SHORT).await.is_none(),
        "the stale nack requeued nothing"
    );
    let again = pop(&queue, &q, QUEUE_VISIBILITY_TIMEOUT * 4)
        .await
        .expect("the new delivery was not acked, so it comes back");
    assert_eq!(again.job_id, id);
    assert_ne!(again.receipt, new.receipt);
    queue.ack(&again).await.expect("ack");
}

/// A nack with a delay makes the entry deliverable again after it.
pub async fn check_nack_with_delay(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    let id = JobId::new();
    queue.push(&q[0], entry(id, 0)).await.expect("push");
    let d = pop(&queue, &q, SHORT).await.expect("entry");
    let start = Instant::now();
    queue
        .nack(&d, Some(Duration::from_millis(300)))
        .await
        .expect("nack");
    assert!(
        pop(&queue, &q, SHORT).await.is_none(),
        "not before its delay"
    );
    let d = pop(&queue, &q, Duration::from_secs(3))
        .await
        .expect("after its delay");
    assert_eq!(d.job_id, id);
    assert!(start.elapsed() >= Duration::from_millis(250));
    queue.nack(&d, None).await.expect("nack");
    let d = pop(&queue, &q, SHORT).await.expect("at once");
    queue.ack(&d).await.expect("ack");
}

/// Pushing a job already waiting in a queue is a no-op.
pub async fn check_duplicate_push_is_noop(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    let id = JobId::new();
    assert!(queue.push(&q[0], entry(id, 0)).await.expect("push"));
    assert!(!queue.push(&q[0], entry(id, 0)).await.expect("push"));
    assert!(!queue.push(&q[0], entry(id, 9)).await.expect("push"));
    let d = pop(&queue, &q, SHORT).await.expect("entry");
    queue.ack(&d).await.expect("ack");
    assert!(pop(&queue, &q, SHORT).await.is_none(), "delivered once");
    assert!(
        queue.push(&q[0], entry(id, 0)).await.expect("push"),
        "once gone, it may come again"
    );
    let d = pop(&queue, &q, SHORT).await.expect("entry");
    queue.ack(&d).await.expect("ack");
}

/// A waiting pop wakes when an entry is pushed, long before its wait ends.
pub async fn check_blocking_pop_wakes_on_push(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    let id = JobId::new();
    let waiter = {
        let (queue, q) = (queue.clone(), q.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let d = queue.pop(&q, Duration::from_secs(20)).await.expect("pop");
            (d, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    queue.push(&q[0], entry(id, 0)).await.expect("push");
    let (d, waited) = waiter.await.expect("join");
    let d = d.expect("woken with the entry");
    assert_eq!(d.job_id, id);
    assert!(
        waited < Duration::from_secs(10),
        "woken by the push, not by the timeout"
    );
    queue.ack(&d).await.expect("ack");
}

/// A pop on empty queues answers `None` after its wait.
pub async fn check_pop_times_out_empty(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    let start = Instant::now();
    assert!(pop(&queue, &q, Duration::from_millis(200)).await.is_none());
    assert!(start.elapsed() >= Duration::from_millis(150));
}

/// Depth counts ready, delayed and in-flight entries.
pub async fn check_depth(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    for _ in 0..3 {
        queue
            .push(&q[0], entry(JobId::new(), 0))
            .await
            .expect("push");
    }
    let later = Utc::now() + chrono::Duration::seconds(60);
    queue
        .push(
            &q[0],
            QueueEntry {
                job_id: JobId::new(),
                priority: 0,
                not_before: Some(later),
                group: None,
            },
        )
        .await
        .expect("push");
    let d = pop(&queue, &q, SHORT).await.expect("entry");
    let depth = queue.depth(&q[0]).await.expect("depth");
    assert_eq!((depth.ready, depth.delayed, depth.in_flight), (2, 1, 1));
    queue.ack(&d).await.expect("ack");
    assert_eq!(queue.depth(&q[0]).await.expect("depth").in_flight, 0);
    assert_eq!(
        queue.depth(&unique("empty")).await.expect("depth"),
        Default::default()
    );
}

/// `pop_many` takes up to `max` entries at once, in the order single pops
/// would take them, each a delivery of its own (acked or redelivered on its
/// own); it serves several queues; `max == 0` takes nothing; with nothing
/// ready it waits, and a push wakes it.
pub async fn check_pop_many_takes_up_to_max_in_order(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    let ids: Vec<JobId> = (0..5).map(|_| JobId::new()).collect();
    for (id, p) in ids.iter().zip([0, 5, 0, 5, 1]) {
        assert!(queue.push(&q[0], entry(*id, p)).await.expect("push"));
    }
    assert!(queue
        .pop_many(&q, 0, SHORT)
        .await
        .expect("pop_many")
        .is_empty());
    let first = queue.pop_many(&q, 3, SHORT).await.expect("pop_many");
    let order: Vec<JobId> = first.iter().map(|d| d.job_id).collect();
    assert_eq!(
        order,
        vec![ids[1], ids[3], ids[4]],
        "best first, FIFO within a priority"
    );
    let receipts: std::collections::HashSet<u64> = first.iter().map(|d| d.receipt).collect();
    assert_eq!(receipts.len(), 3, "each a delivery of its own");
    assert!(first.iter().all(|d| d.queue == q[0]));
    let rest = queue.pop_many(&q, 10, SHORT).await.expect("pop_many");
    let order: Vec<JobId> = rest.iter().map(|d| d.job_id).collect();
    assert_eq!(order, vec![ids[0], ids[2]], "no more than there is");
    // Acked ones are gone; the one left un-acked comes back on its own.
    for d in first.iter().chain(&rest[1..]) {
        queue.ack(d).await.expect("ack");
    }
    let again = queue
        .pop_many(&q, 10, QUEUE_VISIBILITY_TIMEOUT * 3)
        .await
        .expect("pop_many");
    let order: Vec<JobId> = again.iter().map(|d| d.job_id).collect();
    assert_eq!(order, vec![ids[0]], "the un-acked delivery is redelivered");
    queue.ack(&again[0]).await.expect("ack");

    // Several queues in one call.
    let names = vec![unique("x"), unique("y")];
    let (jx, jy) = (JobId::new(), JobId::new());
    queue.push(&names[0], entry(jx, 0)).await.expect("push");
    queue.push(&names[1], entry(jy, 0)).await.expect("push");
    let both = queue.pop_many(&names, 5, SHORT).await.expect("pop_many");
    let mut got: Vec<(JobId, String)> = both.iter().map(|d| (d.job_id, d.queue.clone())).collect();
    got.sort();
    let mut expected = vec![(jx, names[0].clone()), (jy, names[1].clone())];
    expected.sort();
    assert_eq!(got, expected);
    for d in &both {
        queue.ack(d).await.expect("ack");
    }

    // Empty: waits, and a push wakes it.
    let started = Instant::now();
    assert!(queue
        .pop_many(&q, 4, SHORT)
        .await
        .expect("pop_many")
        .is_empty());
    assert!(started.elapsed() >= SHORT, "an empty pop_many waits");
    let late = JobId::new();
    let waiter = {
        let (queue, q) = (queue.clone(), q.clone());
        tokio::spawn(async move { queue.pop_many(&q, 4, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(SHORT).await;
    queue.push(&q[0], entry(late, 0)).await.expect("push");
    let woke = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("a push wakes a waiting pop_many")
        .expect("join")
        .expect("pop_many");
    assert_eq!(
        woke.iter().map(|d| d.job_id).collect::<Vec<_>>(),
        vec![late]
    );
    queue.ack(&woke[0]).await.expect("ack");
}

/// Pushes `n` entries of `group` at `priority`; answers their ids in order.
async fn push_group(
    queue: &Arc<dyn Queue>,
    q: &str,
    group: Option<&str>,
    priority: i32,
    n: usize,
) -> Vec<JobId> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let id = JobId::new();
        assert!(queue
            .push(q, grouped(id, priority, group))
            .await
            .expect("push"));
        ids.push(id);
    }
    ids
}

/// Pops (and acks) `n` entries one at a time; answers (job, group) in order.
async fn pop_acked(queue: &Arc<dyn Queue>, q: &[String], n: usize) -> Vec<(JobId, Option<String>)> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let d = pop(queue, q, SHORT).await.expect("an entry");
        queue.ack(&d).await.expect("ack");
        got.push((d.job_id, d.group));
    }
    got
}

/// Within a priority, groups take turns (start-time fair queuing, see the
/// [`Queue`] contract): group "a" pushes 50 entries, then "b" pushes 3, and
/// b's come out 2nd, 4th and 6th, not after a's 50; a group arriving after
/// some pops is tagged from the virtual time, not from zero; a delivery
/// carries its group, and a nack gives it back with it; priorities still
/// win over groups; entries without a group share one group, so alone they
/// come out first-in first-out.
pub async fn check_groups_take_turns_within_a_priority(queue: Arc<dyn Queue>) {
    let q = vec![unique("q")];
    let a = push_group(&queue, &q[0], Some("a"), 0, 50).await;
    let b = push_group(&queue, &q[0], Some("b"), 0, 3).await;
    let got = pop_acked(&queue, &q, 6).await;
    let (sa, sb) = (Some("a".to_owned()), Some("b".to_owned()));
    assert_eq!(
        got,
        vec![
            (a[0], sa.clone()),
            (b[0], sb.clone()),
            (a[1], sa.clone()),
            (b[1], sb.clone()),
            (a[2], sa.clone()),
            (b[2], sb.clone()),
        ],
        "b's 3 entries within the first 6 pops, alternating with a's"
    );
    // b arrives again after 4 more of a's were popped: it is tagged from
    // the virtual time (a's 7th), so it comes right after a's next one.
    let got = pop_acked(&queue, &q, 4).await;
    assert_eq!(
        got,
        a[3..7]
            .iter()
            .map(|id| (*id, sa.clone()))
            .collect::<Vec<_>>()
    );
    let b2 = push_group(&queue, &q[0], Some("b"), 0, 1).await;
    let got = pop_acked(&queue, &q, 3).await;
    assert_eq!(
        got,
        vec![(a[7], sa.clone()), (b2[0], sb.clone()), (a[8], sa.clone())]
    );
    // A nacked delivery comes back with its group.
    let b3 = push_group(&queue, &q[0], Some("b"), 0, 1).await;
    let first = pop(&queue, &q, SHORT).await.expect("an entry");
    assert_eq!((first.job_id, first.group.clone()), (a[9], sa.clone()));
    queue.ack(&first).await.expect("ack");
    let d = pop(&queue, &q, SHORT).await.expect("an entry");
    assert_eq!((d.job_id, d.group.clone()), (b3[0], sb.clone()));
    queue.nack(&d, None).await.expect("nack");
    let got = pop_acked(&queue, &q, 2).await;
    assert_eq!(got, vec![(a[10], sa.clone()), (b3[0], sb.clone())]);
    // The rest of a's, in order.
    let got = pop_acked(&queue, &q, 39).await;
    assert_eq!(
        got,
        a[11..]
            .iter()
            .map(|id| (*id, sa.clone()))
            .collect::<Vec<_>>()
    );
    assert!(pop(&queue, &q, SHORT).await.is_none());

    // Priorities win over groups.
    let q = vec![unique("q")];
    let a = push_group(&queue, &q[0], Some("a"), 0, 3).await;
    let b = push_group(&queue, &q[0], Some("b"), 5, 1).await;
    let c = push_group(&queue, &q[0], Some("c"), 0, 1).await;
    let got: Vec<JobId> = pop_acked(&queue, &q, 5)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got, vec![b[0], a[0], c[0], a[1], a[2]]);

    // Without groups: first-in first-out; they are one group among others.
    let q = vec![unique("q")];
    let none = push_group(&queue, &q[0], None, 0, 4).await;
    let x = push_group(&queue, &q[0], Some("x"), 0, 1).await;
    let got = pop_acked(&queue, &q, 5).await;
    assert_eq!(
        got,
        vec![
            (none[0], None),
            (x[0], Some("x".to_owned())),
            (none[1], None),
            (none[2], None),
            (none[3], None),
        ]
    );
    assert!(pop(&queue, &q, SHORT).await.is_none());
}
