//! Values at the edges: JSON, text, times and durations survive the database,
//! or are refused as invalid without changing anything.

mod support;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use projectengine_core::{
    Error, EventData, JobId, JobStatus, LogLevel, LogLine, NewApp, NewJob, Owner, Step, Store,
};
use serde_json::{json, Value};

fn new_job(params: Value) -> NewJob {
    NewJob {
        id: JobId::new(),
        owner: Owner::new("ünïcode owner ✓"),
        kind: "stub".into(),
        queue: "q".into(),
        prompt: "line 1\nline 2 \"quoted\" 'single' \\ backslash 🚀".into(),
        params,
        priority: i32::MIN,
        max_attempts: u32::MAX,
        timeout_ms: i64::MAX as u64,
        run_at: Utc::now(),
        max_queued: None,
        webhook: None,
        notify_deployment: false,
        trace_parent: None,
        review: false,
        parent_id: None,
        child_key: None,
        project: None,
        depends_on: Vec::new(),
        concurrency_key: None,
        concurrency_limit: None,
    }
}

fn odd_json() -> Value {
    json!({
        "u64": u64::MAX,
        "i64": i64::MIN,
        "float": 1.5e300,
        "one": 1.0,
        "empty": "",
        "null": null,
        "nested": {"a": [[], {}, [1, [2, [3]]]], "b": "ß ∂ 😀"},
        "escapes": "tab\t newline\n quote\" backslash\\ unicode \u{1}",
    })
}

#[tokio::test]
async fn json_and_text_round_trip() {
    let Some(store) = support::fresh(2).await else {
        return;
    };
    let new = new_job(odd_json());
    let created = store.create_job(new.clone()).await.expect("create").job;
    let job = store.get_job(new.id).await.expect("get").expect("job");
    assert_eq!(job, created);
    assert_eq!(
        (&job.owner, &job.prompt, &job.params),
        (&new.owner, &new.prompt, &new.params)
    );
    assert_eq!(
        (job.priority, job.max_attempts, job.timeout_ms),
        (i32::MIN, u32::MAX, i64::MAX as u64)
    );
    let fence = store
        .claim(job.id, "wörker", Duration::from_secs(30))
        .await
        .expect("claim")
        .expect("claimable")
        .attempt
        .fence();
    let batch = vec![
        EventData::Step(Step::completed("∑ step").detail(odd_json())),
        EventData::Log(LogLine {
            level: LogLevel::Debug,
            message: String::new(),
        }),
        EventData::Stage {
            stage: "ÉTAPE".into(),
        },
    ];
    let appended = store.append(fence, batch).await.expect("append");
    let (app, app_events) = store
        .save_app(
            fence,
            NewApp {
                name: "名前".into(),
                payload: odd_json(),
            },
        )
        .await
        .expect("save");
    assert_eq!(store.get_app(app.id).await.expect("get"), Some(app.clone()));
    let events = store.events(job.id, 2, 100).await.expect("events");
    let returned: Vec<_> = appended.into_iter().chain(app_events).collect();
    assert_eq!(events, returned, "what a write returns is what is stored");
}

#[tokio::test]
async fn times_keep_microseconds_and_events_agree_with_the_job() {
    let Some(store) = support::fresh(2).await else {
        return;
    };
    let mut new = new_job(json!({}));
    new.run_at = Utc
        .with_ymd_and_hms(2021, 3, 4, 5, 6, 7)
        .single()
        .expect("a valid time")
        + chrono::Duration::nanoseconds(123_456_789);
    let changed = store.create_job(new.clone()).await.expect("create");
    let micros = Utc
        .with_ymd_and_hms(2021, 3, 4, 5, 6, 7)
        .single()
        .expect("a valid time")
        + chrono::Duration::microseconds(123_456);
    assert_eq!(changed.job.run_at, micros, "PostgreSQL keeps microseconds");
    let stored = store.events(new.id, 0, 10).await.expect("events");
    assert_eq!(stored, changed.events);
    assert_eq!(
        stored[0].data,
        EventData::Status {
            status: JobStatus::Queued,
            error: None,
            run_at: Some(micros),
        }
    );
}

#[tokio::test]
async fn values_postgresql_cannot_hold_are_invalid_and_change_nothing() {
    let Some(store) = support::fresh(2).await else {
        return;
    };
    let mut bad = new_job(json!({}));
    bad.prompt = "nul \0 inside".into();
    let err = store
        .create_job(bad.clone())
        .await
        .expect_err("NUL in text");
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert_eq!(store.get_job(bad.id).await.expect("get"), None);

    let mut bad = new_job(json!({"k": "nul \0 inside"}));
    bad.timeout_ms = 1;
    let err = store
        .create_job(bad.clone())
        .await
        .expect_err("NUL in JSON");
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");

    let mut too_long = new_job(json!({}));
    too_long.timeout_ms = u64::MAX;
    let err = store.create_job(too_long).await.expect_err("timeout");
    assert!(
        matches!(
            err,
            Error::Invalid {
                field: "timeout_ms",
                ..
            }
        ),
        "{err:?}"
    );

    let job = store
        .create_job(new_job(json!({})))
        .await
        .expect("create")
        .job;
    let fence = store
        .claim(job.id, "w", Duration::from_secs(30))
        .await
        .expect("claim")
        .expect("claimable")
        .attempt
        .fence();
    let nul = EventData::Log(LogLine {
        level: LogLevel::Info,
        message: "a \0 b".into(),
    });
    let err = store
        .append(fence, vec![EventData::Progress { progress: 5 }, nul])
        .await
        .expect_err("NUL in an event");
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    let after = store.get_job(job.id).await.expect("get").expect("job");
    assert_eq!((after.last_seq, after.progress), (2, 0), "nothing applied");
}

#[tokio::test]
async fn enormous_leases_are_clamped_not_refused() {
    let Some(store) = support::fresh(2).await else {
        return;
    };
    let job = store
        .create_job(new_job(json!({})))
        .await
        .expect("create")
        .job;
    let claim = store
        .claim(job.id, "w", Duration::MAX)
        .await
        .expect("claim")
        .expect("claimable");
    assert!(claim.attempt.lease_expires_at > Utc::now() + chrono::Duration::days(365 * 99));
    let hb = store
        .heartbeat(claim.attempt.fence(), Duration::MAX)
        .await
        .expect("heartbeat");
    assert!(hb.lease_expires_at >= claim.attempt.lease_expires_at);
    assert!(store
        .due_jobs(Duration::MAX, 10)
        .await
        .expect("due")
        .is_empty());
}
