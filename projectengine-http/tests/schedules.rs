//! `/api/schedules/`: create, read with next fire times, list, change,
//! delete, runs; bad input names its field and changes nothing; another
//! owner's schedule is not found. The in-process worker's ticker fires them.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use common::TestApp;
use projectengine_core::testkit::assert::eventually;
use serde_json::{json, Value};

fn body() -> Value {
    json!({
        "name": "nightly",
        "cron": "0 30 2 * * *",
        "timezone": "Europe/Paris",
        "template": {"prompt": "report", "kind": "stub", "params": {"k": 1}, "timeout_s": 60},
    })
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("a time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

#[tokio::test]
async fn a_schedule_is_created_read_listed_changed_and_deleted() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let r = app.post("/api/schedules/", &t, body()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().expect("id").to_owned();
    assert_eq!(
        r.headers["location"].to_str().ok(),
        Some(format!("/api/schedules/{id}/").as_str())
    );
    let s = &r.json;
    assert_eq!(s["cron"], "0 30 2 * * *");
    assert_eq!(s["timezone"], "Europe/Paris");
    assert_eq!(
        (&s["overlap"], &s["misfire"]),
        (&json!("skip"), &json!("skip"))
    );
    assert_eq!(s["enabled"], true);
    assert_eq!(s["revision"], 1);
    assert_eq!(s["template"]["timeout_s"], 60);
    assert_eq!(s["template"]["params"], json!({"k": 1}));
    let times: Vec<_> = s["next_fire_times"]
        .as_array()
        .expect("times")
        .iter()
        .map(time)
        .collect();
    assert_eq!(times.len(), 5);
    assert_eq!(times[0], time(&s["next_fire_at"]));
    let paris = chrono_tz::Europe::Paris;
    for t in &times {
        assert!(*t > Utc::now());
        let local = t.with_timezone(&paris).format("%H:%M:%S").to_string();
        // 02:30 every day, or just after the gap on a spring-forward day.
        assert!(local == "02:30:00" || local == "03:00:00", "{local}");
    }

    let r = app
        .get(&format!("/api/schedules/{id}/?upcoming=12"), &t)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["next_fire_times"].as_array().map(Vec::len), Some(12));
    let r = app.get("/api/schedules/?upcoming=0", &t).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.json["items"][0]["next_fire_times"], json!([]));

    // Pausing clears the next tick; changing the cron computes it anew.
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/schedules/{id}/"),
            Some(&t),
            Some(json!({"enabled": false, "overlap": "allow"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["next_fire_at"], Value::Null);
    assert_eq!(r.json["next_fire_times"], json!([]));
    assert_eq!(
        (&r.json["overlap"], &r.json["revision"]),
        (&json!("allow"), &json!(2))
    );
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/schedules/{id}/"),
            Some(&t),
            Some(json!({"enabled": true, "cron": "@hourly", "timezone": "UTC"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let next = time(&r.json["next_fire_at"]);
    assert_eq!(next.format("%M:%S").to_string(), "00:00");

    let r = app
        .call(
            Method::DELETE,
            &format!("/api/schedules/{id}/"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = app.get(&format!("/api/schedules/{id}/"), &t).await;
    assert_eq!(r.error(StatusCode::NOT_FOUND), "not_found");
}

#[tokio::test]
async fn bad_input_names_its_field_and_creates_nothing() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let cases = [
        ("cron", json!({"cron": "61 * * * *"})),
        ("cron", json!({"cron": "not a cron"})),
        ("timezone", json!({"timezone": "Mars/Olympus"})),
        ("kind", json!({"template": {"prompt": "x", "kind": "nope"}})),
        ("prompt", json!({"template": {"prompt": " "}})),
        (
            "timeout_s",
            json!({"template": {"prompt": "x", "timeout_s": 999_999_999}}),
        ),
    ];
    for (field, patch) in cases {
        let mut b = body();
        for (k, v) in patch.as_object().expect("object") {
            b[k] = v.clone();
        }
        let r = app.post("/api/schedules/", &t, b).await;
        assert_eq!(
            r.error(StatusCode::UNPROCESSABLE_ENTITY),
            "invalid",
            "{field}"
        );
        assert_eq!(r.field(), Some(field), "{}", r.text);
    }
    let mut b = body();
    b["overlap"] = json!("sometimes");
    let r = app.post("/api/schedules/", &t, b).await;
    assert!(r.status.is_client_error(), "{}", r.text);
    let r = app.get("/api/schedules/", &t).await;
    assert_eq!(r.json["items"], json!([]), "nothing was created");
    let r = app.get("/api/schedules/?upcoming=101", &t).await;
    r.error(StatusCode::BAD_REQUEST);
    assert_eq!(r.field(), Some("upcoming"));
}

#[tokio::test]
async fn another_owners_schedule_is_not_found() {
    let app = TestApp::idle();
    let alice = app.token("alice");
    let bob = app.token("bob");
    let r = app.post("/api/schedules/", &alice, body()).await;
    let id = r.json["id"].as_str().expect("id").to_owned();
    let path = format!("/api/schedules/{id}/");
    let r = app.get(&path, &bob).await;
    assert_eq!(r.error(StatusCode::NOT_FOUND), "not_found");
    let r = app
        .call(
            Method::PATCH,
            &path,
            Some(&bob),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.error(StatusCode::NOT_FOUND), "not_found");
    let r = app.call(Method::DELETE, &path, Some(&bob), None).await;
    assert_eq!(r.error(StatusCode::NOT_FOUND), "not_found");
    let r = app.get(&format!("{path}runs/"), &bob).await;
    assert_eq!(r.error(StatusCode::NOT_FOUND), "not_found");
    let r = app.get("/api/schedules/", &bob).await;
    assert_eq!(r.json["items"], json!([]));
    // Alice's is untouched.
    let r = app.get(&path, &alice).await;
    assert_eq!(
        (r.status, &r.json["enabled"]),
        (StatusCode::OK, &json!(true))
    );
    let r = app.call(Method::GET, "/api/schedules/", None, None).await;
    assert_eq!(r.error(StatusCode::UNAUTHORIZED), "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_fires_every_second_and_the_runs_link_the_jobs() {
    let app = TestApp::new();
    let t = app.token("alice");
    let mut b = body();
    b["cron"] = json!("* * * * * *");
    b["overlap"] = json!("allow");
    let r = app.post("/api/schedules/", &t, b).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().expect("id").to_owned();
    let runs = eventually("three runs", Duration::from_secs(20), || {
        let path = format!("/api/schedules/{id}/runs/");
        let app = &app;
        let t = &t;
        async move {
            let r = app.get(&path, t).await;
            let items = r.json["items"].as_array().cloned().unwrap_or_default();
            (items.len() >= 3).then_some(items)
        }
    })
    .await;
    // Newest first, a second apart, each with its job, which succeeds.
    for pair in runs.windows(2) {
        assert_eq!(
            time(&pair[0]["tick"]) - time(&pair[1]["tick"]),
            chrono::TimeDelta::seconds(1)
        );
    }
    for run in &runs {
        let job = run["job_id"].as_str().expect("a job");
        let r = app.get(&format!("/api/jobs/{job}/"), &t).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["prompt"], "report");
        app.wait_for(
            "alice",
            job.parse().expect("id"),
            projectengine_core::JobStatus::Succeeded,
        )
        .await;
    }
    let r = app.get(&format!("/api/schedules/{id}/"), &t).await;
    assert!(r.json["last_job_id"].is_string(), "{}", r.text);
}

#[tokio::test]
async fn the_openapi_document_lists_the_schedule_routes() {
    let doc = projectengine_http::openapi();
    let doc = serde_json::to_value(doc).expect("json");
    for (path, method) in [
        ("/api/schedules/", "post"),
        ("/api/schedules/", "get"),
        ("/api/schedules/{id}/", "get"),
        ("/api/schedules/{id}/", "patch"),
        ("/api/schedules/{id}/", "delete"),
        ("/api/schedules/{id}/runs/", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
}
