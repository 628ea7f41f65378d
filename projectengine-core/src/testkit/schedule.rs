//! The [`Store`] suite's checks of schedules: their settings, and firing a
//! tick exactly once.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::store::new_job;
use super::unique;
use crate::schedule::{
    tick_job_id, Fired, JobTemplate, MisfirePolicy, NewSchedule, OverlapPolicy, ScheduleFire,
    ScheduleId, ScheduleSettings, SkipReason,
};
use crate::{Error, JobStatus, NewJob, Owner, Store};

fn owner() -> Owner {
    Owner::new(unique("owner"))
}

/// A whole second `secs` from now.
fn second(secs: i64) -> DateTime<Utc> {
    (Utc::now() + TimeDelta::seconds(secs))
        .duration_trunc(TimeDelta::seconds(1))
        .expect("a time")
}

fn settings(next: Option<DateTime<Utc>>) -> ScheduleSettings {
    ScheduleSettings {
        name: "every second".into(),
        cron: "* * * * * *".into(),
        timezone: "Europe/Paris".into(),
        template: JobTemplate {
            prompt: "tick".into(),
            kind: Some("stub".into()),
            params: Some(serde_json::json!({"k": 1})),
            priority: Some(3),
            max_attempts: Some(2),
            timeout_ms: Some(60_000),
        },
        overlap: OverlapPolicy::Allow,
        misfire: MisfirePolicy::RunOnce,
        enabled: true,
        next_fire_at: next,
    }
}

async fn create(store: &Arc<dyn Store>, owner: &Owner, s: ScheduleSettings) -> ScheduleId {
    store
        .create_schedule(NewSchedule {
            id: ScheduleId::new(),
            owner: owner.clone(),
            settings: s,
        })
        .await
        .expect("create_schedule")
        .id
}

fn tick_job(owner: &Owner, schedule: ScheduleId, tick: DateTime<Utc>) -> NewJob {
    NewJob {
        id: tick_job_id(schedule, tick),
        ..new_job(owner)
    }
}

fn plan(
    owner: &Owner,
    schedule: ScheduleId,
    tick: DateTime<Utc>,
    next: DateTime<Utc>,
    skip_if_running: bool,
) -> ScheduleFire {
    ScheduleFire {
        schedule_id: schedule,
        tick,
        expected_next_fire_at: tick,
        next_fire_at: Some(next),
        job: Ok(tick_job(owner, schedule, tick)),
        skip_if_running,
    }
}

/// A schedule is stored as given (revision 1), listed for its owner only
/// in id order; an update needs the current revision (a stale one is a
/// conflict and changes nothing); delete removes it; unknown ids are `None`
/// or not found.
pub async fn check_schedule_settings(store: Arc<dyn Store>) {
    let o = owner();
    let next = second(3600);
    let s = settings(Some(next));
    let created = store
        .create_schedule(NewSchedule {
            id: ScheduleId::new(),
            owner: o.clone(),
            settings: s.clone(),
        })
        .await
        .expect("create");
    assert_eq!(created.owner, o);
    assert_eq!(
        (&created.name, &created.cron, &created.timezone),
        (&s.name, &s.cron, &s.timezone)
    );
    assert_eq!(created.template, s.template);
    assert_eq!((created.overlap, created.misfire), (s.overlap, s.misfire));
    assert_eq!(created.next_fire_at, Some(next));
    assert_eq!((created.enabled, created.revision), (true, 1));
    assert_eq!(created.last_job_id, None);
    assert_eq!(
        store.get_schedule(created.id).await.expect("get"),
        Some(created.clone())
    );
    let dup = store
        .create_schedule(NewSchedule {
            id: created.id,
            owner: o.clone(),
            settings: s.clone(),
        })
        .await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");

    let second_id = create(&store, &o, settings(None)).await;
    let other = create(&store, &owner(), settings(None)).await;
    let listed: Vec<_> = store
        .list_schedules(&o, None, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![created.id, second_id]);
    assert!(!listed.contains(&other));
    let after: Vec<_> = store
        .list_schedules(&o, Some(created.id), 10)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(after, vec![second_id]);

    let mut changed = settings(None);
    changed.name = "paused".into();
    changed.enabled = false;
    changed.overlap = OverlapPolicy::Skip;
    changed.misfire = MisfirePolicy::Skip;
    changed.cron = "0 9 * * MON".into();
    let updated = store
        .update_schedule(created.id, 1, changed.clone())
        .await
        .expect("update");
    assert_eq!(updated.revision, 2);
    assert_eq!(
        (
            updated.name.as_str(),
            updated.cron.as_str(),
            updated.enabled
        ),
        ("paused", "0 9 * * MON", false)
    );
    assert_eq!(
        (updated.overlap, updated.misfire, updated.next_fire_at),
        (OverlapPolicy::Skip, MisfirePolicy::Skip, None)
    );
    assert_eq!(updated.created_at, created.created_at);
    let stale = store.update_schedule(created.id, 1, settings(None)).await;
    assert!(matches!(stale, Err(Error::Conflict(_))), "{stale:?}");
    assert_eq!(
        store.get_schedule(created.id).await.expect("get"),
        Some(updated)
    );
    let unknown = store
        .update_schedule(ScheduleId::new(), 1, settings(None))
        .await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "{unknown:?}"
    );

    store.delete_schedule(created.id).await.expect("delete");
    assert_eq!(store.get_schedule(created.id).await.expect("get"), None);
    let again = store.delete_schedule(created.id).await;
    assert!(matches!(again, Err(Error::NotFound { .. })), "{again:?}");
    assert_eq!(
        store.get_schedule(ScheduleId::new()).await.expect("get"),
        None
    );
}

/// A due schedule is listed by `due_schedules`; of many concurrent firers of
/// its tick exactly one creates the tick's job (with the deterministic id),
/// records the run and moves `next_fire_at`; the others, and any later
/// firer of the same plan, get `AlreadyFired`.
pub async fn check_schedule_tick_fires_once(store: Arc<dyn Store>) {
    let o = owner();
    let tick = second(-2);
    let next = second(3600);
    let id = create(&store, &o, settings(Some(tick))).await;
    let due = store.due_schedules(10_000).await.expect("due");
    assert!(due.iter().any(|s| s.id == id), "a due schedule is listed");
    let firers = (0..8).map(|_| {
        let store = store.clone();
        let fire = plan(&o, id, tick, next, false);
        tokio::spawn(async move { store.fire_schedule(fire).await })
    });
    let mut jobs = Vec::new();
    let mut already = 0;
    for f in firers {
        match f.await.expect("task").expect("fire") {
            Fired::Job(changed) => jobs.push(changed),
            Fired::AlreadyFired => already += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((jobs.len(), already), (1, 7), "one firer wins");
    let changed = &jobs[0];
    assert_eq!(changed.job.id, tick_job_id(id, tick));
    assert_eq!(changed.job.status, JobStatus::Queued);
    assert_eq!(changed.job.owner, o);
    assert_eq!(changed.events.len(), 1);
    assert_eq!(changed.events[0].seq, 1);
    assert_eq!(
        store.get_job(changed.job.id).await.expect("get job"),
        Some(changed.job.clone())
    );
    let s = store.get_schedule(id).await.expect("get").expect("exists");
    assert_eq!(s.next_fire_at, Some(next));
    assert_eq!(s.last_job_id, Some(changed.job.id));
    assert_eq!(s.revision, 1, "firing is not a change of settings");
    let runs = store.schedule_runs(id, None, 10).await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].tick, runs[0].job_id, runs[0].skipped),
        (tick, Some(changed.job.id), None)
    );
    let again = store
        .fire_schedule(plan(&o, id, tick, next, false))
        .await
        .expect("fire");
    assert_eq!(again, Fired::AlreadyFired);
    let due = store.due_schedules(10_000).await.expect("due");
    assert!(!due.iter().any(|s| s.id == id), "no longer due");
}

/// Firing is one transaction: when the tick's job exists already, nothing
/// is written (`next_fire_at` stays, no run); a paused schedule neither is
/// due nor fires.
pub async fn check_schedule_fire_is_all_or_nothing(store: Arc<dyn Store>) {
    let o = owner();
    let tick = second(-1);
    let id = create(&store, &o, settings(Some(tick))).await;
    store
        .create_job(tick_job(&o, id, tick))
        .await
        .expect("create the tick's job");
    let fired = store
        .fire_schedule(plan(&o, id, tick, second(3600), false))
        .await
        .expect("fire");
    assert_eq!(fired, Fired::AlreadyFired);
    let s = store.get_schedule(id).await.expect("get").expect("exists");
    assert_eq!(s.next_fire_at, Some(tick), "rolled back");
    assert_eq!(s.last_job_id, None);
    assert!(store
        .schedule_runs(id, None, 10)
        .await
        .expect("runs")
        .is_empty());

    let mut paused = settings(Some(tick));
    paused.enabled = false;
    let p = create(&store, &o, paused).await;
    let due = store.due_schedules(10_000).await.expect("due");
    assert!(
        !due.iter().any(|s| s.id == p),
        "a paused schedule is not due"
    );
    let fired = store
        .fire_schedule(plan(&o, p, tick, second(3600), false))
        .await
        .expect("fire");
    assert_eq!(fired, Fired::AlreadyFired);
    assert!(store
        .schedule_runs(p, None, 10)
        .await
        .expect("runs")
        .is_empty());
    let gone = store
        .fire_schedule(plan(&o, ScheduleId::new(), tick, second(3600), false))
        .await
        .expect("fire");
    assert_eq!(gone, Fired::AlreadyFired);
}

/// With `skip_if_running`, a tick while the last job is unfinished records
/// an `overlap` skip and creates nothing; once that job is finished the next
/// tick creates its job. A planned skip (`misfire`) is recorded as such.
/// Runs list newest first, before a tick when asked.
pub async fn check_schedule_overlap_and_skips(store: Arc<dyn Store>) {
    let o = owner();
    let t1 = second(-10);
    let t2 = second(-9);
    let t3 = second(-8);
    let t4 = second(-7);
    let id = create(&store, &o, settings(Some(t1))).await;
    let first = match store
        .fire_schedule(plan(&o, id, t1, t2, true))
        .await
        .expect("fire")
    {
        Fired::Job(c) => c.job.id,
        other => panic!("expected a job, got {other:?}"),
    };
    let skipped = store
        .fire_schedule(plan(&o, id, t2, t3, true))
        .await
        .expect("fire");
    assert_eq!(skipped, Fired::Skipped(SkipReason::Overlap));
    assert_eq!(
        store.get_job(tick_job_id(id, t2)).await.expect("get job"),
        None,
        "an overlap creates no job"
    );
    // The previous job ends (cancelled while queued): the next tick runs.
    store.request_cancel(first).await.expect("cancel");
    let third = store
        .fire_schedule(plan(&o, id, t3, t4, true))
        .await
        .expect("fire");
    assert!(matches!(third, Fired::Job(_)), "{third:?}");
    let mut missed = plan(&o, id, t4, second(3600), true);
    missed.job = Err(SkipReason::Misfire);
    let fourth = store.fire_schedule(missed).await.expect("fire");
    assert_eq!(fourth, Fired::Skipped(SkipReason::Misfire));
    let s = store.get_schedule(id).await.expect("get").expect("exists");
    assert_eq!(s.last_job_id, Some(tick_job_id(id, t3)));
    let runs = store.schedule_runs(id, None, 10).await.expect("runs");
    let seen: Vec<_> = runs.iter().map(|r| (r.tick, r.job_id, r.skipped)).collect();
    assert_eq!(
        seen,
        vec![
            (t4, None, Some(SkipReason::Misfire)),
            (t3, Some(tick_job_id(id, t3)), None),
            (t2, None, Some(SkipReason::Overlap)),
            (t1, Some(first), None),
        ]
    );
    let older = store.schedule_runs(id, Some(t3), 1).await.expect("runs");
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].tick, t2);
    // Deleting the schedule removes its runs, not its jobs.
    store.delete_schedule(id).await.expect("delete");
    assert!(store
        .schedule_runs(id, None, 10)
        .await
        .expect("runs")
        .is_empty());
    assert!(store.get_job(first).await.expect("get").is_some());
}
