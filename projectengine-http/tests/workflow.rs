//! Workflows over HTTP: projects and the list filters, `depends_on` at
//! submission, `POST /api/jobs/batch/` and `GET /api/projects/`.

mod common;

use axum::http::StatusCode;
use common::TestApp;
use projectengine_core::{JobId, JobStatus};
use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|j| j["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_batch_diamond_runs_in_order_and_projects_count_it() {
    let app = TestApp::new();
    let t = app.token("alice");
    let body = json!({"jobs": [
        {"ref": "ship", "prompt": "ship", "project": "site", "depends_on": ["build", "test"]},
        {"ref": "build", "prompt": "build", "project": "site", "depends_on": ["plan"]},
        {"ref": "test", "prompt": "test", "project": "site", "kind": "other", "depends_on": ["plan"]},
        {"ref": "plan", "prompt": "plan", "project": "site"},
    ]});
    let r = app.post("/api/jobs/batch/", &t, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let jobs = r.json["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 4);
    let id = |i: usize| jobs[i]["id"].as_str().unwrap().parse::<JobId>().unwrap();
    assert_eq!(jobs[3]["status"], "queued");
    for j in &jobs[..3] {
        assert_eq!(j["status"], "waiting");
        assert_eq!(j["project"], "site");
    }
    let ship_deps: Vec<&str> = jobs[0]["depends_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ship_deps.len(), 2);
    assert!(ship_deps.contains(&jobs[1]["id"].as_str().unwrap()));
    assert!(ship_deps.contains(&jobs[2]["id"].as_str().unwrap()));
    app.wait_for("alice", id(0), JobStatus::Succeeded).await;
    // Each job's (first attempt's start, finish).
    let mut runs = Vec::new();
    for i in 0..4 {
        let r = app.get(&format!("/api/jobs/{}/", id(i)), &t).await;
        runs.push((
            r.json["attempts"][0]["started_at"]
                .as_str()
                .unwrap()
                .to_owned(),
            r.json["finished_at"].as_str().unwrap().to_owned(),
        ));
    }
    let (ship, build, test, plan) = (&runs[0], &runs[1], &runs[2], &runs[3]);
    let time = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    assert!(time(&build.0) >= time(&plan.1));
    assert!(time(&test.0) >= time(&plan.1));
    assert!(time(&ship.0) >= time(&build.1) && time(&ship.0) >= time(&test.1));

    // One more job of the project, waiting on a job still queued.
    let later = app
        .post(
            "/api/jobs/",
            &t,
            json!({"prompt": "later", "project": "site",
                   "run_at": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()}),
        )
        .await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.text);
    let after = app
        .post(
            "/api/jobs/",
            &t,
            json!({"prompt": "after", "project": "docs", "depends_on": [later.json["id"]]}),
        )
        .await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.text);
    assert_eq!(after.json["status"], "waiting");

    let r = app.get("/api/projects/", &t).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"items": [
            {"name": "docs", "counts": {"waiting": 1}, "total": 1},
            {"name": "site", "counts": {"queued": 1, "succeeded": 4}, "total": 5},
        ]})
    );
    let bob = app.token("bob");
    let r = app.get("/api/projects", &bob).await;
    assert_eq!(r.json, json!({"items": []}));

    let r = app.get("/api/jobs/?project=site&kind=other", &t).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(ids(&r.json), vec![id(2).to_string()]);
    let r = app.get("/api/jobs/?project=docs&status=waiting", &t).await;
    assert_eq!(ids(&r.json), vec![after.json["id"].as_str().unwrap()]);
    let r = app.get("/api/jobs/?project=site&status=waiting", &t).await;
    assert!(ids(&r.json).is_empty());
}

#[tokio::test]
async fn a_bad_batch_is_422_naming_the_item_and_creates_nothing() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let bob = app.token("bob");
    let foreign = app.submit(&bob, json!({"prompt": "bob's"})).await;
    let cases = [
        (
            json!({"jobs": [
                {"ref": "a", "prompt": "a", "depends_on": ["c"]},
                {"ref": "b", "prompt": "b", "depends_on": ["a"]},
                {"ref": "c", "prompt": "c", "depends_on": ["b"]},
            ]}),
            "cycle",
        ),
        (
            json!({"jobs": [
                {"ref": "a", "prompt": "a"},
                {"ref": "b", "prompt": "b", "depends_on": [foreign.to_string()]},
            ]}),
            "item 1 (`b`)",
        ),
        (
            json!({"jobs": [
                {"ref": "a", "prompt": "a"},
                {"ref": "b", "prompt": "b", "depends_on": ["nothing"]},
            ]}),
            "item 1 (`b`)",
        ),
        (
            json!({"jobs": [{"ref": "a", "prompt": "a", "project": "bad\nname"}]}),
            "item 0 (`a`): invalid project",
        ),
        (json!({"jobs": []}), "at least one"),
    ];
    for (body, names) in cases {
        let r = app.post("/api/jobs/batch/", &t, body).await;
        assert_eq!(
            r.error(StatusCode::UNPROCESSABLE_ENTITY),
            "invalid",
            "{}",
            r.text
        );
        assert_eq!(r.field(), Some("jobs"));
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{message} should name {names}");
        let list = app.get("/api/jobs/", &t).await;
        assert!(ids(&list.json).is_empty(), "nothing created: {}", list.text);
    }
    // Unknown fields are refused, like a single submission's.
    let r = app
        .post(
            "/api/jobs/batch",
            &t,
            json!({"jobs": [{"prompt": "a", "after": []}]}),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.text);
}

#[tokio::test]
async fn depends_on_at_submission_is_checked() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let bob = app.token("bob");
    let foreign = app.submit(&bob, json!({"prompt": "bob's"})).await;
    let r = app
        .post(
            "/api/jobs/",
            &t,
            json!({"prompt": "x", "depends_on": [foreign.to_string()]}),
        )
        .await;
    assert_eq!(
        r.error(StatusCode::UNPROCESSABLE_ENTITY),
        "invalid",
        "{}",
        r.text
    );
    assert_eq!(r.field(), Some("depends_on"));
    let r = app
        .post(
            "/api/jobs/",
            &t,
            json!({"prompt": "x", "depends_on": ["not-an-id"]}),
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.text);
    let mine = app.submit(&t, json!({"prompt": "first"})).await;
    let r = app
        .post(
            "/api/jobs/",
            &t,
            json!({"prompt": "x", "depends_on": [mine.to_string(), mine.to_string()]}),
        )
        .await;
    assert_eq!(
        r.error(StatusCode::UNPROCESSABLE_ENTITY),
        "invalid",
        "{}",
        r.text
    );
    assert_eq!(r.field(), Some("depends_on"));
    let r = app
        .post("/api/jobs/", &t, json!({"prompt": "x", "project": ""}))
        .await;
    assert_eq!(
        r.error(StatusCode::UNPROCESSABLE_ENTITY),
        "invalid",
        "{}",
        r.text
    );
    assert_eq!(r.field(), Some("project"));
    // Cancelled: its waiting dependent is cancelled with it.
    let dependent = app
        .post(
            "/api/jobs/",
            &t,
            json!({"prompt": "x", "depends_on": [mine.to_string()]}),
        )
        .await;
    assert_eq!(dependent.json["status"], "waiting");
    let r = app
        .post(&format!("/api/jobs/{mine}/cancel/"), &t, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = dependent.json["id"].as_str().unwrap();
    let r = app.get(&format!("/api/jobs/{id}/"), &t).await;
    assert_eq!(r.json["status"], "cancelled");
    assert_eq!(r.json["error"]["code"], "dependency_failed");
    let r = app
        .post(
            "/api/jobs/",
            &t,
            json!({"prompt": "x", "depends_on": [mine.to_string()]}),
        )
        .await;
    assert_eq!(
        r.error(StatusCode::UNPROCESSABLE_ENTITY),
        "invalid",
        "{}",
        r.text
    );
    assert_eq!(r.field(), Some("depends_on"));
}

#[tokio::test]
async fn the_openapi_document_lists_the_workflow_routes() {
    let app = TestApp::idle();
    let r = app.get("/openapi.json", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json["paths"]["/api/jobs/batch/"]["post"].is_object());
    assert!(r.json["paths"]["/api/projects/"]["get"].is_object());
    let params = r.json["paths"]["/api/jobs/"]["get"]["parameters"]
        .as_array()
        .unwrap();
    for name in ["project", "kind", "status"] {
        assert!(params.iter().any(|p| p["name"] == name), "{name}");
    }
    assert!(r.json["components"]["schemas"]["CreateJob"]["properties"]["depends_on"].is_object());
}

#[tokio::test]
async fn a_concurrency_key_is_kept_and_bad_ones_create_nothing() {
    let app = TestApp::new();
    let t = app.token("alice");
    let r = app
        .post(
            "/api/jobs/",
            &t,
            json!({"prompt": "deploy", "concurrency_key": "site-deploys", "concurrency_limit": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["concurrency_key"], "site-deploys");
    assert_eq!(r.json["concurrency_limit"], 2);
    let bad = [
        (
            json!({"prompt": "x", "concurrency_key": "k"}),
            "concurrency_limit",
        ),
        (
            json!({"prompt": "x", "concurrency_limit": 2}),
            "concurrency_key",
        ),
        (
            json!({"prompt": "x", "concurrency_key": "k", "concurrency_limit": 0}),
            "concurrency_limit",
        ),
        (
            json!({"prompt": "x", "concurrency_key": "", "concurrency_limit": 1}),
            "concurrency_key",
        ),
        (
            json!({"prompt": "x", "concurrency_key": "k".repeat(129), "concurrency_limit": 1}),
            "concurrency_key",
        ),
    ];
    for (body, field) in bad {
        let r = app.post("/api/jobs/", &t, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
        assert_eq!(r.json["error"]["field"], field, "{body}");
    }
    let r = app.get("/api/jobs/", &t).await;
    assert_eq!(
        ids(&r.json).len(),
        1,
        "a refused submission creates nothing"
    );
}
