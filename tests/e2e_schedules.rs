//! Cron schedules over the real server: a web process and four worker
//! processes on PostgreSQL and Redis, every worker ticking. Two schedules
//! fire every second for two minutes while one worker is SIGKILLed in the
//! middle; every tick of the window has exactly one job, under its
//! deterministic id, and those are all the jobs there are.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use projectengine_core::schedule::tick_job_id;
use projectengine_core::ScheduleId;
use serde_json::{json, Value};
use support::{deployment, http, migrate, token, Server};

/// How long the schedules tick.
const WINDOW: Duration = Duration::from_secs(120);

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("a time: {v}"))
}

/// Every run of the schedule, oldest first, paging through `before`.
async fn runs(addr: std::net::SocketAddr, t: &str, id: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(b) => format!("/api/schedules/{id}/runs/?limit=100&before={b}"),
            None => format!("/api/schedules/{id}/runs/?limit=100"),
        };
        let (status, page) = http(addr, "GET", &path, Some(t), None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().expect("items").clone();
        if items.is_empty() {
            break;
        }
        before = items
            .last()
            .and_then(|r| r["tick"].as_str())
            .map(percent_encode);
        all.extend(items);
    }
    all.reverse();
    all
}

fn percent_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Every job id of the owner.
async fn job_ids(addr: std::net::SocketAddr, t: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/jobs/?limit=200&cursor={c}"),
            None => "/api/jobs/?limit=200".to_owned(),
        };
        let (status, page) = http(addr, "GET", &path, Some(t), None).await;
        assert_eq!(status, 200, "{page}");
        for j in page["items"].as_array().expect("items") {
            ids.push(j["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_fire_every_tick_of_two_schedules_once_across_a_kill() {
    let Some(mut env) = deployment().await else {
        return;
    };
    migrate(&env);
    env.push(("PROJECTENGINE_SCHEDULE_EVERY", "200ms".to_owned()));
    let web = Server::start("web", &env);
    let mut workers: Vec<Server> = (0..4).map(|_| Server::start("worker", &env)).collect();
    let addr = web.addr();
    let t = token(&format!("cron-{}", uuid::Uuid::now_v7().simple()));

    let mut schedules = Vec::new();
    for name in ["first", "second"] {
        let body = json!({
            "name": name,
            "cron": "* * * * * *",
            "timezone": "Europe/Paris",
            "template": {"prompt": format!("tick of {name}"), "kind": "stub"},
            "overlap": "allow",
            "misfire": "run_once",
        });
        let (status, s) = http(addr, "POST", "/api/schedules/", Some(&t), Some(&body)).await;
        assert_eq!(status, 201, "{s}");
        assert_eq!(
            s["next_fire_times"].as_array().map(Vec::len),
            Some(5),
            "{s}"
        );
        schedules.push(s["id"].as_str().expect("id").to_owned());
    }

    tokio::time::sleep(WINDOW / 2).await;
    // A worker dies outright, maybe in the middle of a tick.
    workers[1].kill();
    let killed_at = Utc::now();
    tokio::time::sleep(WINDOW / 2).await;
    for id in &schedules {
        let (status, s) = http(
            addr,
            "PATCH",
            &format!("/api/schedules/{id}/"),
            Some(&t),
            Some(&json!({"enabled": false})),
        )
        .await;
        assert_eq!(status, 200, "{s}");
        assert_eq!(s["next_fire_at"], Value::Null, "paused: {s}");
    }
    // A pass that read the schedule before the pause may still fire its tick.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut expected: BTreeSet<String> = BTreeSet::new();
    for id in &schedules {
        let runs = runs(addr, &t, id).await;
        let schedule_id: ScheduleId = id.parse().expect("a schedule id");
        let ticks: Vec<DateTime<Utc>> = runs.iter().map(|r| time(&r["tick"])).collect();
        assert!(
            ticks.last().is_some_and(|last| *last > killed_at),
            "ticks went on after the kill: {:?}",
            ticks.last()
        );
        for pair in ticks.windows(2) {
            assert_eq!(
                pair[1] - pair[0],
                chrono::TimeDelta::seconds(1),
                "every second of the window has its tick: {} then {}",
                pair[0],
                pair[1]
            );
        }
        for (run, tick) in runs.iter().zip(&ticks) {
            assert_eq!(run["skipped"], Value::Null, "{run}");
            let job = tick_job_id(schedule_id, *tick).to_string();
            assert_eq!(run["job_id"].as_str(), Some(job.as_str()), "{run}");
            assert!(expected.insert(job), "one job per tick");
        }
        assert!(
            ticks.first().is_some_and(|first| *first < killed_at),
            "ticks before the kill: {:?}",
            ticks.first()
        );
    }
    // Those jobs, each once, and no other.
    let ids = job_ids(addr, &t).await;
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no job listed twice");
    assert_eq!(unique, expected);
    for w in &mut workers {
        w.kill();
    }
}
