//! The app routes, and owner isolation on every route: another owner's job,
//! app or stream is 404, never 403, and never listed.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use projectengine_core::JobStatus;
use serde_json::json;

#[tokio::test]
async fn apps_are_listed_read_and_found_by_job() {
    let app = TestApp::new();
    let t = app.token("alice");
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(
            app.submit(
                &t,
                json!({"prompt": format!("app {i}"), "params": {"steps": 1}}),
            )
            .await,
        );
    }
    for id in &jobs {
        app.wait_for("alice", *id, JobStatus::Succeeded).await;
    }

    let mut listed = Vec::new();
    let mut uri = "/api/apps/?limit=2".to_owned();
    loop {
        let r = app.get(&uri, &t).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        for a in r.json["items"].as_array().unwrap() {
            listed.push((
                a["id"].as_str().unwrap().to_owned(),
                a["job_id"].as_str().unwrap().to_owned(),
            ));
        }
        match r.json["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/apps?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(listed.len(), 3);
    let mut job_ids: Vec<String> = listed.iter().map(|(_, j)| j.clone()).collect();
    job_ids.sort();
    let mut want: Vec<String> = jobs.iter().map(|j| j.to_string()).collect();
    want.sort();
    assert_eq!(job_ids, want);

    let (app_id, job_id) = &listed[0];
    for uri in [
        format!("/api/apps/{app_id}/"),
        format!("/api/apps/{app_id}"),
    ] {
        let r = app.get(&uri, &t).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["id"], app_id.as_str());
        assert_eq!(r.json["job_id"], job_id.as_str());
        assert!(r.json["payload"].is_object());
        assert!(r.json["name"].is_string());
    }
    for uri in [
        format!("/api/apps/by-job/{job_id}/"),
        format!("/api/apps/by-job/{job_id}"),
    ] {
        let r = app.get(&uri, &t).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["id"], app_id.as_str());
    }

    let r = app.get("/api/apps/?cursor=zzz", &t).await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST), "invalid");
    assert_eq!(r.field(), Some("cursor"));
}

#[tokio::test]
async fn a_job_without_an_app_yet_is_404_on_by_job() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let id = app.submit(&t, json!({"prompt": "x"})).await;
    let r = app.get(&format!("/api/apps/by-job/{id}/"), &t).await;
    assert_eq!(r.error(StatusCode::NOT_FOUND), "not_found");
    assert!(r.text.contains("app"), "{}", r.text);
}

#[tokio::test]
async fn another_owners_things_are_invisible_on_every_route() {
    let app = TestApp::new();
    let alice = app.token("alice");
    let bob = app.token("bob");
    let done = app
        .submit(&alice, json!({"prompt": "x", "params": {"steps": 1}}))
        .await;
    app.wait_for("alice", done, JobStatus::Succeeded).await;
    let running = app
        .submit(
            &alice,
            json!({"prompt": "y", "params": {"steps": 1000, "delay_ms": 20}}),
        )
        .await;
    app.wait_for("alice", running, JobStatus::Running).await;
    let r = app.get(&format!("/api/apps/by-job/{done}/"), &alice).await;
    assert_eq!(r.status, StatusCode::OK);
    let app_id = r.json["id"].as_str().unwrap().to_owned();

    for (method, uri) in [
        (Method::GET, format!("/api/jobs/{done}/")),
        (Method::GET, format!("/api/jobs/{done}")),
        (Method::POST, format!("/api/jobs/{running}/cancel/")),
        (Method::POST, format!("/api/jobs/{done}/retry/")),
        (Method::GET, format!("/api/jobs/{done}/events/")),
        (Method::GET, format!("/api/jobs/{running}/stream/")),
        (Method::GET, format!("/ws/jobs/{running}/")),
        (Method::GET, format!("/ws/jobs/{running}/?token={bob}")),
        (Method::GET, format!("/api/apps/{app_id}/")),
        (Method::GET, format!("/api/apps/by-job/{done}/")),
    ] {
        let r = app.call(method.clone(), &uri, Some(&bob), None).await;
        assert_eq!(
            r.error(StatusCode::NOT_FOUND),
            "not_found",
            "{method} {uri}"
        );
    }
    // Bob's cancel did nothing.
    let r = app.get(&format!("/api/jobs/{running}/"), &alice).await;
    assert_eq!(r.json["cancel_requested"], false);

    // Listings show only one's own.
    for uri in ["/api/jobs/", "/api/apps/", "/api/jobs/?status=succeeded"] {
        let r = app.get(uri, &bob).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json["items"], json!([]), "{uri}");
        let r = app.get(uri, &alice).await;
        assert!(!r.json["items"].as_array().unwrap().is_empty(), "{uri}");
    }
    // A cursor taken from alice's listing shows bob nothing of hers.
    let r = app
        .get(&format!("/api/jobs/?cursor={done}&order=asc"), &bob)
        .await;
    assert_eq!(r.json["items"], json!([]));
}
