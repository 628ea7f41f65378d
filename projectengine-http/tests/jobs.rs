//! The job routes through `oneshot`: submit, list, detail, cancel, retry, events,
//! and every class of bad input.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::TestApp;
use projectengine_core::JobStatus;
use serde_json::{json, Value};

#[tokio::test]
async fn submit_answers_201_with_location_and_the_job() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let run_at = (chrono::Utc::now() + chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = json!({
        "prompt": "build me a todo app",
        "kind": "other",
        "params": {"steps": 2},
        "priority": 7,
        "max_attempts": 2,
        "timeout_s": 30,
        "run_at": run_at,
    });
    let r = app.post("/api/jobs/", &t, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap();
    assert_eq!(
        r.headers[header::LOCATION].to_str().unwrap(),
        format!("/api/jobs/{id}/")
    );
    assert_eq!(r.json["status"], "queued");
    assert_eq!(r.json["kind"], "other");
    assert_eq!(r.json["params"], json!({"steps": 2}));
    assert_eq!(r.json["priority"], 7);
    assert_eq!(r.json["max_attempts"], 2);
    assert_eq!(r.json["timeout_s"], 30);
    assert_eq!(r.json["run_at"], run_at);
    assert!(r.json.get("owner").is_none());

    // Without the trailing slash too, and with defaults.
    let r = app.post("/api/jobs", &t, json!({"prompt": "x"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["kind"], "stub");
    assert_eq!(r.json["max_attempts"], 3);
    assert_eq!(r.json["params"], json!({}));
    let id = r.json["id"].as_str().unwrap();
    assert_eq!(
        r.headers[header::LOCATION].to_str().unwrap(),
        format!("/api/jobs/{id}/")
    );
}

#[tokio::test]
async fn a_job_runs_and_its_detail_has_ordered_steps_and_attempts() {
    let app = TestApp::new();
    let t = app.token("alice");
    let id = app
        .submit(&t, json!({"prompt": "go", "params": {"steps": 4}}))
        .await;
    app.wait_for("alice", id, JobStatus::Succeeded).await;
    for uri in [format!("/api/jobs/{id}/"), format!("/api/jobs/{id}")] {
        let r = app.get(&uri, &t).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["id"], id.to_string());
        assert_eq!(r.json["status"], "succeeded");
        let steps = r.json["steps"].as_array().unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["step 1 of 4", "step 2 of 4", "step 3 of 4", "step 4 of 4"]
        );
        let seqs: Vec<u64> = steps.iter().map(|s| s["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert_eq!(steps[0]["status"], "completed");
        let attempts = r.json["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0]["number"], 1);
        assert_eq!(attempts[0]["status"], "succeeded");
    }
}

#[tokio::test]
async fn list_pages_with_a_cursor_and_filters_by_status() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.submit(&t, json!({"prompt": format!("job {i}")})).await);
    }
    // One cancelled, for the status filter.
    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{}/cancel/", ids[4]),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let mut seen = Vec::new();
    let mut uri = "/api/jobs/?limit=2".to_owned();
    loop {
        let r = app.get(&uri, &t).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let items = r.json["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        match r.json["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/jobs?limit=2&cursor={c}"),
            None => break,
        }
    }
    let want: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    assert_eq!(seen, want);

    let r = app.get("/api/jobs/?order=desc&limit=1", &t).await;
    assert_eq!(r.json["items"][0]["id"], ids[4].to_string());

    let r = app.get("/api/jobs/?status=cancelled", &t).await;
    let items = r.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], ids[4].to_string());
    let r = app.get("/api/jobs/?status=queued", &t).await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 4);
    assert!(r.json["next_cursor"].is_null());
}

#[tokio::test]
async fn list_refuses_bad_parameters_naming_them() {
    let app = TestApp::idle();
    let t = app.token("alice");
    for (query, field) in [
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("cursor=not-a-uuid", "cursor"),
        ("status=sleeping", "status"),
        ("order=sideways", "order"),
    ] {
        let r = app.get(&format!("/api/jobs/?{query}"), &t).await;
        assert_eq!(r.error(StatusCode::BAD_REQUEST), "invalid", "{query}");
        assert_eq!(r.field(), Some(field), "{query}: {}", r.text);
    }
}

#[tokio::test]
async fn cancel_a_queued_job_then_a_finished_one_conflicts() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let id = app.submit(&t, json!({"prompt": "x"})).await;
    for uri in [
        format!("/api/jobs/{id}/cancel/"),
        format!("/api/jobs/{id}/cancel"),
    ] {
        let r = app.call(Method::POST, &uri, Some(&t), None).await;
        if uri.ends_with('/') {
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_eq!(r.json["status"], "cancelled");
        } else {
            assert_eq!(r.error(StatusCode::CONFLICT), "conflict");
        }
    }
}

#[tokio::test]
async fn cancel_a_running_job_stops_it() {
    let app = TestApp::new();
    let t = app.token("alice");
    let id = app
        .submit(
            &t,
            json!({"prompt": "long", "params": {"steps": 1000, "delay_ms": 20}}),
        )
        .await;
    app.wait_for("alice", id, JobStatus::Running).await;
    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{id}/cancel/"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["cancel_requested"], true);
    app.wait_for("alice", id, JobStatus::Cancelled).await;
}

#[tokio::test]
async fn retry_a_failed_job_and_refuse_retrying_a_succeeded_one() {
    let app = TestApp::new();
    let t = app.token("alice");
    let id = app
        .submit(
            &t,
            json!({"prompt": "x", "max_attempts": 1, "params": {"fail": "fatal", "fail_attempts": 1}}),
        )
        .await;
    app.wait_for("alice", id, JobStatus::Failed).await;
    let r = app.get(&format!("/api/jobs/{id}/"), &t).await;
    assert_eq!(r.json["error"]["code"], "orchestrator_error");

    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{id}/retry"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "queued");
    // The second attempt is past `fail_attempts`: it succeeds.
    app.wait_for("alice", id, JobStatus::Succeeded).await;

    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{id}/retry/"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.error(StatusCode::CONFLICT), "conflict");
}

#[tokio::test]
async fn events_page_after_a_seq() {
    let app = TestApp::new();
    let t = app.token("alice");
    let id = app
        .submit(&t, json!({"prompt": "x", "params": {"steps": 5}}))
        .await;
    app.wait_for("alice", id, JobStatus::Succeeded).await;

    let r = app.get(&format!("/api/jobs/{id}/events/"), &t).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let all = r.json["items"].as_array().unwrap().clone();
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(r.json["next_after"], seqs.len() as u64);
    let first = &all[0];
    assert_eq!(first["type"], "status");
    assert_eq!(first["data"]["status"], "queued");
    assert_eq!(first["job_id"], id.to_string());
    assert!(first["at"].is_string() && first["attempt"].is_u64());
    assert_eq!(all.last().unwrap()["data"]["status"], "succeeded");

    let r = app
        .get(&format!("/api/jobs/{id}/events?after=2&limit=3"), &t)
        .await;
    let seqs: Vec<u64> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(r.json["next_after"], 5);

    let r = app
        .get(&format!("/api/jobs/{id}/events/?after=1000"), &t)
        .await;
    assert_eq!(r.json["items"], json!([]));
    assert_eq!(r.json["next_after"], 1000);

    let r = app
        .get(&format!("/api/jobs/{id}/events/?after=x"), &t)
        .await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST), "invalid");
    assert_eq!(r.field(), Some("after"));
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_field() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "prompt"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": "   "}), "prompt"),
        (json!({"prompt": 12}), "prompt"),
        (json!({"prompt": "x".repeat(32 * 1024 + 1)}), "prompt"),
        (json!({"prompt": "x", "kind": "nope"}), "kind"),
        (json!({"prompt": "x", "params": [1, 2]}), "params"),
        (json!({"prompt": "x", "params": "a"}), "params"),
        (json!({"prompt": "x", "priority": 1000}), "priority"),
        (json!({"prompt": "x", "priority": "high"}), "priority"),
        (json!({"prompt": "x", "max_attempts": 0}), "max_attempts"),
        (json!({"prompt": "x", "max_attempts": -1}), "max_attempts"),
        (json!({"prompt": "x", "timeout_s": 0}), "timeout_s"),
        (json!({"prompt": "x", "run_at": "tomorrow"}), "run_at"),
        (json!({"prompt": "x", "priority": 1.5}), "priority"),
        (json!({"prompt": "x", "max_attempts": 1e30}), "max_attempts"),
        (json!({"prompt": "x", "colour": "blue"}), "colour"),
    ];
    for (body, field) in cases {
        let r = app.post("/api/jobs/", &t, body.clone()).await;
        assert_eq!(
            r.error(StatusCode::UNPROCESSABLE_ENTITY),
            "invalid",
            "{body}"
        );
        assert_eq!(r.field(), Some(field), "{body}: {}", r.text);
        assert!(
            r.json["error"]["message"].as_str().unwrap().contains(field),
            "{}",
            r.text
        );
    }
    // A prompt of exactly 32 KiB is fine.
    let r = app
        .post("/api/jobs/", &t, json!({"prompt": "x".repeat(32 * 1024)}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

fn raw_post(
    uri: &str,
    token: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    req.body(body.into()).unwrap()
}

#[tokio::test]
async fn malformed_json_oversize_bodies_and_wrong_content_types() {
    let app = TestApp::idle();
    let t = app.token("alice");
    for body in [r#"{"prompt": "x""#, "not json", "", r#"{"prompt": "x"} {}"#] {
        let r = app
            .send(raw_post("/api/jobs/", &t, Some("application/json"), body))
            .await;
        assert_eq!(
            r.error(StatusCode::BAD_REQUEST),
            "malformed_json",
            "{body:?}"
        );
    }

    let big = format!(r#"{{"prompt": "{}"}}"#, "x".repeat(64 * 1024));
    let r = app
        .send(raw_post("/api/jobs/", &t, Some("application/json"), big))
        .await;
    assert_eq!(r.error(StatusCode::PAYLOAD_TOO_LARGE), "payload_too_large");

    let r = app
        .send(raw_post(
            "/api/jobs/",
            &t,
            Some("text/plain"),
            r#"{"prompt": "x"}"#,
        ))
        .await;
    assert_eq!(
        r.error(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        "unsupported_media_type"
    );
    let r = app
        .send(raw_post("/api/jobs/", &t, None, r#"{"prompt": "x"}"#))
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let r = app
        .send(raw_post(
            "/api/jobs/",
            &t,
            Some("application/json; charset=utf-8"),
            r#"{"prompt": "x"}"#,
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let mut config = projectengine_http::HttpConfig::default();
    config.body_limit = 100;
    let app = TestApp::build(false, config);
    let t = app.token("alice");
    let r = app
        .post("/api/jobs/", &t, json!({"prompt": "x".repeat(200)}))
        .await;
    assert_eq!(r.error(StatusCode::PAYLOAD_TOO_LARGE), "payload_too_large");
    let r = app.post("/api/jobs/", &t, json!({"prompt": "short"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn bad_ids_are_400_naming_the_parameter_and_unknown_ids_404() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let unknown = uuid_v7();
    for (method, uri) in [
        (Method::GET, "/api/jobs/nope/"),
        (Method::POST, "/api/jobs/nope/cancel/"),
        (Method::POST, "/api/jobs/nope/retry/"),
        (Method::GET, "/api/jobs/nope/events/"),
        (Method::GET, "/api/jobs/nope/stream/"),
        (Method::GET, "/ws/jobs/nope/"),
        (Method::GET, "/api/apps/nope/"),
    ] {
        let r = app.call(method.clone(), uri, Some(&t), None).await;
        assert_eq!(r.error(StatusCode::BAD_REQUEST), "invalid", "{uri}");
        assert_eq!(r.field(), Some("id"), "{uri}");
    }
    let r = app.get("/api/apps/by-job/123/", &t).await;
    assert_eq!(r.field(), Some("job_id"));

    for (method, uri) in [
        (Method::GET, format!("/api/jobs/{unknown}/")),
        (Method::POST, format!("/api/jobs/{unknown}/cancel/")),
        (Method::POST, format!("/api/jobs/{unknown}/retry/")),
        (Method::GET, format!("/api/jobs/{unknown}/events/")),
        (Method::GET, format!("/api/jobs/{unknown}/stream/")),
        (Method::GET, format!("/ws/jobs/{unknown}/")),
        (Method::GET, format!("/api/apps/{unknown}/")),
        (Method::GET, format!("/api/apps/by-job/{unknown}/")),
    ] {
        let r = app.call(method, &uri, Some(&t), None).await;
        assert_eq!(r.error(StatusCode::NOT_FOUND), "not_found", "{uri}");
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_our_shape() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let r = app.get("/api/nothing-here/", &t).await;
    assert_eq!(r.error(StatusCode::NOT_FOUND), "not_found");
    let r = app.call(Method::DELETE, "/api/jobs/", Some(&t), None).await;
    assert_eq!(
        r.error(StatusCode::METHOD_NOT_ALLOWED),
        "method_not_allowed"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::idle();
    let r = app.call(Method::GET, "/health", None, None).await;
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");
    let req = Request::builder()
        .uri("/api/jobs/")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["x-request-id"], "abc-123");
}

fn uuid_v7() -> projectengine_core::JobId {
    projectengine_core::JobId::new()
}

#[tokio::test]
async fn whole_numbers_may_be_written_with_a_zero_fraction() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let r = app
        .post(
            "/api/jobs/",
            &t,
            json!({"prompt": "x", "max_attempts": 2.0, "timeout_s": 60.0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["max_attempts"], 2);
    assert_eq!(r.json["timeout_s"], 60);
}
