//! The review gate over HTTP: `review` at submission,
//! `POST /api/jobs/{id}/approve/`, `/reject/` and `/rerun/`.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use projectengine_core::{JobId, JobStatus};
use serde_json::{json, Value};

async fn submit_reviewed(app: &TestApp, token: &str, max_attempts: u32) -> JobId {
    let r = app
        .post(
            "/api/jobs/",
            token,
            json!({"prompt": "p", "review": true, "max_attempts": max_attempts, "params": {"steps": 1}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["review"], true);
    assert_eq!(r.json["review_comment"], Value::Null);
    r.json["id"].as_str().expect("id").parse().expect("uuid")
}

fn statuses(events: &Value) -> Vec<String> {
    events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["type"] == "status")
        .map(|e| e["data"]["status"].as_str().expect("status").to_owned())
        .collect()
}

#[tokio::test]
async fn reject_runs_again_with_the_comment_and_approve_succeeds() {
    let app = TestApp::new();
    let t = app.token("alice");
    let id = submit_reviewed(&app, &t, 2).await;
    app.wait_for("alice", id, JobStatus::AwaitingReview).await;
    let job = app.get(&format!("/api/jobs/{id}/"), &t).await;
    assert_eq!(job.json["status"], "awaiting_review", "{}", job.text);
    assert_eq!(job.json["finished_at"], Value::Null);
    // Its App is visible while it waits.
    let r = app.get(&format!("/api/apps/by-job/{id}/"), &t).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let r = app
        .post(
            &format!("/api/jobs/{id}/reject/"),
            &t,
            json!({"comment": "bigger buttons"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "queued");
    assert_eq!(r.json["review_comment"], "bigger buttons");
    assert_eq!(r.json["error"]["code"], "rejected");
    app.wait_for("alice", id, JobStatus::AwaitingReview).await;
    let r = app.get(&format!("/api/apps/by-job/{id}/"), &t).await;
    assert_eq!(
        r.json["payload"]["review_comment"], "bigger buttons",
        "the new attempt's orchestrator saw the comment: {}",
        r.text
    );

    // Without the trailing slash too.
    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{id}/approve"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "succeeded");
    assert!(r.json["finished_at"].is_string());

    let events = app.get(&format!("/api/jobs/{id}/events/"), &t).await;
    assert_eq!(
        statuses(&events.json),
        [
            "queued",
            "running",
            "awaiting_review",
            "queued",
            "running",
            "awaiting_review",
            "succeeded"
        ]
    );
    let rejected = events.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["data"]["error"]["code"] == "rejected")
        .expect("the rejection's event");
    assert_eq!(rejected["data"]["error"]["message"], "bigger buttons");

    // Decided: a second decision conflicts.
    for (path, body) in [
        ("approve", None),
        ("reject", Some(json!({"comment": "late"}))),
    ] {
        let r = app
            .call(
                Method::POST,
                &format!("/api/jobs/{id}/{path}/"),
                Some(&t),
                body,
            )
            .await;
        assert_eq!(r.error(StatusCode::CONFLICT), "conflict", "{path}");
    }
}

#[tokio::test]
async fn a_rejection_without_attempts_left_fails_the_job() {
    let app = TestApp::new();
    let t = app.token("alice");
    let id = submit_reviewed(&app, &t, 1).await;
    app.wait_for("alice", id, JobStatus::AwaitingReview).await;
    let r = app
        .post(
            &format!("/api/jobs/{id}/reject/"),
            &t,
            json!({"comment": "no"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "failed");
    assert_eq!(r.json["error"]["code"], "rejected");
    assert_eq!(r.json["error"]["message"], "no");
}

#[tokio::test]
async fn bad_decisions_are_refused_and_change_nothing() {
    let app = TestApp::new();
    let alice = app.token("alice");
    let id = submit_reviewed(&app, &alice, 2).await;
    app.wait_for("alice", id, JobStatus::AwaitingReview).await;
    let before = app.get(&format!("/api/jobs/{id}/"), &alice).await;
    let reject = format!("/api/jobs/{id}/reject/");
    for (body, field) in [
        (json!({}), "comment"),
        (json!({"comment": "   "}), "comment"),
        (json!({"comment": 3}), "comment"),
        (json!({"comment": "x".repeat(16 * 1024 + 1)}), "comment"),
        (json!({"comment": "ok", "extra": 1}), "extra"),
    ] {
        let r = app.post(&reject, &alice, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
        assert_eq!(r.field(), Some(field), "{}", r.text);
    }
    let r = app.call(Method::POST, &reject, Some(&alice), None).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text);
    // Another owner's job does not exist for them.
    let bob = app.token("bob");
    for path in ["approve", "rerun"] {
        let r = app
            .call(
                Method::POST,
                &format!("/api/jobs/{id}/{path}/"),
                Some(&bob),
                None,
            )
            .await;
        assert_eq!(r.error(StatusCode::NOT_FOUND), "not_found", "{path}");
    }
    let r = app.post(&reject, &bob, json!({"comment": "mine"})).await;
    assert_eq!(r.error(StatusCode::NOT_FOUND), "not_found");
    // No token, a bad id, an unknown job.
    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{id}/approve/"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .call(Method::POST, "/api/jobs/nope/approve/", Some(&alice), None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{}/approve/", JobId::new()),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.error(StatusCode::NOT_FOUND), "not_found");
    // An unfinished job cannot be rerun.
    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{id}/rerun/"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.error(StatusCode::CONFLICT), "conflict");
    let after = app.get(&format!("/api/jobs/{id}/"), &alice).await;
    assert_eq!(after.json, before.json, "nothing changed");
    // A job without review is never awaiting review.
    let plain = app.submit(&alice, json!({"prompt": "p"})).await;
    app.wait_for("alice", plain, JobStatus::Succeeded).await;
    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{plain}/approve/"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.error(StatusCode::CONFLICT), "conflict");
}

#[tokio::test]
async fn rerun_submits_the_spec_of_a_finished_job_again() {
    let app = TestApp::new();
    let t = app.token("alice");
    let r = app
        .post(
            "/api/jobs/",
            &t,
            json!({"prompt": "again", "kind": "other", "params": {"steps": 1, "k": "v"},
                   "priority": 3, "max_attempts": 2, "timeout_s": 120}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let first = r.json;
    let id: JobId = first["id"].as_str().expect("id").parse().expect("uuid");
    app.wait_for("alice", id, JobStatus::Succeeded).await;
    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{id}/rerun/"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let new_id = r.json["id"].as_str().expect("id");
    assert_ne!(new_id, id.to_string());
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/api/jobs/{new_id}/").as_str())
    );
    for field in [
        "kind",
        "prompt",
        "params",
        "priority",
        "max_attempts",
        "timeout_s",
        "review",
        "webhook",
    ] {
        assert_eq!(r.json[field], first[field], "{field}");
    }
    assert_eq!(r.json["status"], "queued");
    assert_eq!(r.json["attempts_used"], 0);
    let new_id: JobId = new_id.parse().expect("uuid");
    app.wait_for("alice", new_id, JobStatus::Succeeded).await;
    // The original is untouched.
    let old = app.get(&format!("/api/jobs/{id}/"), &t).await;
    assert_eq!(old.json["status"], "succeeded");
}

#[tokio::test]
async fn the_openapi_document_lists_the_review_routes() {
    let app = TestApp::idle();
    let r = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let paths = &r.json["paths"];
    for path in ["approve", "reject", "rerun"] {
        let op = &paths[format!("/api/jobs/{{id}}/{path}/")]["post"];
        assert!(op.is_object(), "{path} is documented");
    }
    assert_eq!(
        paths["/api/jobs/{id}/reject/"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/RejectJob"
    );
    assert!(paths["/api/jobs/{id}/rerun/"]["post"]["responses"]["201"].is_object());
    let create = &r.json["components"]["schemas"]["CreateJob"]["properties"];
    assert!(create["review"].is_object());
}
