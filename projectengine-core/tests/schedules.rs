//! The schedule ticker on the in-memory backends: ticks missed within the
//! grace period are caught up one by one, each once however many tickers
//! run at once; ticks missed longer follow the misfire policy; a template
//! that no longer makes a job records an `invalid` skip.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::schedule::{fire_due, tick_job_id};
use projectengine_core::{
    Engine, JobTemplate, MisfirePolicy, NewSchedule, OverlapPolicy, Owner, Registry, ScheduleId,
    ScheduleSettings, SkipReason, StubOrchestrator,
};

fn engine(registry: Registry) -> (Engine, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::new(
        store.clone(),
        Arc::new(MemoryQueue::default()),
        Arc::new(MemoryNotifier::default()),
        registry,
    );
    (engine, store)
}

fn registry() -> Registry {
    Registry::new().register("stub", StubOrchestrator::new(1, Duration::ZERO))
}

/// A schedule every second whose next tick is `behind` seconds ago.
async fn behind(engine: &Engine, owner: &Owner, behind: i64, misfire: MisfirePolicy) -> ScheduleId {
    let next = (Utc::now() - TimeDelta::seconds(behind))
        .duration_trunc(TimeDelta::seconds(1))
        .expect("a time");
    engine
        .store()
        .create_schedule(NewSchedule {
            id: ScheduleId::new(),
            owner: owner.clone(),
            settings: ScheduleSettings {
                name: "s".into(),
                cron: "* * * * * *".into(),
                timezone: "UTC".into(),
                template: JobTemplate {
                    prompt: "tick".into(),
                    kind: Some("stub".into()),
                    ..JobTemplate::default()
                },
                overlap: OverlapPolicy::Allow,
                misfire,
                enabled: true,
                next_fire_at: Some(next),
            },
        })
        .await
        .expect("create")
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tickers_catch_up_each_tick_once() {
    let (engine, _store) = engine(registry());
    let owner = Owner::new("o");
    let id = behind(&engine, &owner, 10, MisfirePolicy::Skip).await;
    let tickers: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { fire_due(&engine, Duration::from_secs(60)).await })
        })
        .collect();
    let mut created = 0;
    for t in tickers {
        created += t.await.expect("task").expect("pass").created;
    }
    let runs = engine
        .store()
        .schedule_runs(id, None, 1000)
        .await
        .expect("runs");
    // Each tick from 10 s ago to now, once, with its job.
    assert!(runs.len() >= 10, "{} runs", runs.len());
    assert_eq!(created, runs.len(), "one job per run");
    for pair in runs.windows(2) {
        assert_eq!(pair[0].tick - pair[1].tick, TimeDelta::seconds(1));
    }
    for run in &runs {
        assert_eq!(run.job_id, Some(tick_job_id(id, run.tick)));
        assert!(engine.get(&owner, tick_job_id(id, run.tick)).await.is_ok());
    }
    let s = engine.schedule(&owner, id).await.expect("schedule");
    assert!(s.next_fire_at.expect("next") > runs[0].tick);
}

#[tokio::test]
async fn missed_ticks_follow_the_misfire_policy() {
    let (engine, _store) = engine(registry());
    let owner = Owner::new("o");
    let grace = Duration::from_secs(30);
    let skip = behind(&engine, &owner, 3600, MisfirePolicy::Skip).await;
    let once = behind(&engine, &owner, 3600, MisfirePolicy::RunOnce).await;
    fire_due(&engine, grace).await.expect("pass");
    let runs = engine
        .store()
        .schedule_runs(skip, None, 10)
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (runs[0].job_id, runs[0].skipped),
        (None, Some(SkipReason::Misfire))
    );
    let runs = engine
        .store()
        .schedule_runs(once, None, 10)
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1, "one job for all the missed ticks: {runs:?}");
    assert_eq!(runs[0].job_id, Some(tick_job_id(once, runs[0].tick)));
    for id in [skip, once] {
        let s = engine.schedule(&owner, id).await.expect("schedule");
        assert!(
            s.next_fire_at.expect("next") > Utc::now() - TimeDelta::seconds(2),
            "jumped to the present"
        );
    }
}

#[tokio::test]
async fn a_template_whose_kind_is_gone_records_an_invalid_skip() {
    let (engine, store) = engine(registry());
    let owner = Owner::new("o");
    let id = behind(&engine, &owner, 0, MisfirePolicy::Skip).await;
    // The same store served by a deployment that no longer runs `stub`.
    let other = Engine::new(
        store,
        Arc::new(MemoryQueue::default()),
        Arc::new(MemoryNotifier::default()),
        Registry::new().register("else", StubOrchestrator::new(1, Duration::ZERO)),
    );
    let report = fire_due(&other, Duration::from_secs(60))
        .await
        .expect("pass");
    assert_eq!((report.created, report.skipped), (0, 1));
    let runs = engine
        .store()
        .schedule_runs(id, None, 10)
        .await
        .expect("runs");
    assert_eq!(runs[0].skipped, Some(SkipReason::Invalid));
}
