//! `Engine::with_fair_queues`: the entries the engine and recovery push carry
//! the job's owner as their group when it is on, and none when it is off.

use std::sync::Arc;
use std::time::Duration;

use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::worker::recover_once;
use projectengine_core::{
    Engine, JobId, Notifier, Owner, Queue, Registry, Store, StubOrchestrator, Submit,
};

fn engine(store: Arc<MemoryStore>, queue: Arc<MemoryQueue>) -> Engine {
    let stub = StubOrchestrator::new(1, Duration::ZERO);
    Engine::new(
        store as Arc<dyn Store>,
        queue as Arc<dyn Queue>,
        Arc::new(MemoryNotifier::default()) as Arc<dyn Notifier>,
        Registry::new().register("stub", stub),
    )
}

/// Owner A submits 4 jobs, then owner B 1; answers their ids.
async fn submit(engine: &Engine) -> (Vec<JobId>, JobId) {
    let (a, b) = (Owner::new("a"), Owner::new("b"));
    let mut ids = Vec::new();
    for i in 0..4 {
        let job = engine.submit(&a, Submit::new(format!("a {i}"))).await;
        ids.push(job.expect("submit").id);
    }
    let job = engine.submit(&b, Submit::new("b")).await.expect("submit");
    (ids, job.id)
}

/// Pops every entry of the `stub` queue: (job, group) in order.
async fn drain(queue: &MemoryQueue) -> Vec<(JobId, Option<String>)> {
    let names = vec!["stub".to_owned()];
    let got = queue
        .pop_many(&names, 100, Duration::ZERO)
        .await
        .expect("pop_many");
    got.into_iter().map(|d| (d.job_id, d.group)).collect()
}

#[tokio::test]
async fn fair_queues_group_entries_by_owner_and_b_goes_second() {
    let queue = Arc::new(MemoryQueue::default());
    let engine = engine(Arc::new(MemoryStore::new()), queue.clone()).with_fair_queues(true);
    assert!(engine.fair_queues());
    let (a, b) = submit(&engine).await;
    let (ga, gb) = (Some("a".to_owned()), Some("b".to_owned()));
    assert_eq!(
        drain(&queue).await,
        vec![
            (a[0], ga.clone()),
            (b, gb),
            (a[1], ga.clone()),
            (a[2], ga.clone()),
            (a[3], ga),
        ]
    );
}

#[tokio::test]
async fn without_fair_queues_entries_have_no_group_and_come_in_order() {
    let queue = Arc::new(MemoryQueue::default());
    let engine = engine(Arc::new(MemoryStore::new()), queue.clone());
    assert!(!engine.fair_queues(), "off by default");
    let (a, b) = submit(&engine).await;
    let expected: Vec<_> = a.iter().chain([&b]).map(|id| (*id, None)).collect();
    assert_eq!(drain(&queue).await, expected);
}

#[tokio::test]
async fn recovery_pushes_with_the_owner_as_group() {
    let store = Arc::new(MemoryStore::new());
    let (a, b) = submit(&engine(store.clone(), Arc::new(MemoryQueue::default()))).await;
    // The queue lost its content: recovery pushes the due jobs again.
    let queue = Arc::new(MemoryQueue::default());
    let fair = engine(store.clone(), queue.clone()).with_fair_queues(true);
    let report = recover_once(&fair, Duration::ZERO).await.expect("recover");
    assert_eq!(report.pushed, 5);
    let mut got = drain(&queue).await;
    got.sort();
    let mut expected: Vec<_> = a
        .iter()
        .map(|id| (*id, Some("a".to_owned())))
        .chain([(b, Some("b".to_owned()))])
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    // And without fair queues, with none.
    let queue = Arc::new(MemoryQueue::default());
    let plain = engine(store, queue.clone());
    recover_once(&plain, Duration::ZERO).await.expect("recover");
    assert!(drain(&queue).await.iter().all(|(_, g)| g.is_none()));
}
