//! `GET /api/kinds/` (the registered kinds, the default one marked) and
//! `GET /api/queues/` (each queue's depth).

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn the_kinds_are_listed_by_name_with_the_default_marked() {
    let app = TestApp::idle();
    let t = app.token("alice");
    for uri in ["/api/kinds/", "/api/kinds"] {
        let r = app.get(uri, &t).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(
            r.json,
            json!({"items": [
                {"name": "other", "default": false},
                {"name": "stub", "default": true},
            ]})
        );
    }
}

#[tokio::test]
async fn the_kinds_need_a_token() {
    let app = TestApp::idle();
    let r = app.call(Method::GET, "/api/kinds/", None, None).await;
    assert_eq!(r.error(StatusCode::UNAUTHORIZED), "unauthorized");
    let r = app
        .post("/api/kinds/", &app.token("alice"), json!({}))
        .await;
    r.error(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_queues_show_their_depths() {
    let app = TestApp::idle();
    let t = app.token("alice");
    app.submit(&t, json!({"prompt": "a", "kind": "stub"})).await;
    app.submit(&app.token("bob"), json!({"prompt": "b", "kind": "stub"}))
        .await;
    app.submit(
        &t,
        json!({"prompt": "c", "kind": "other", "run_at": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let r = app.get("/api/queues/", &t).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"items": [
            {"name": "other", "ready": 0, "delayed": 1, "in_flight": 0},
            {"name": "stub", "ready": 2, "delayed": 0, "in_flight": 0},
        ]})
    );
    let r = app.call(Method::GET, "/api/queues/", None, None).await;
    assert_eq!(r.error(StatusCode::UNAUTHORIZED), "unauthorized");
}
