//! Per-owner limits: queued jobs, and open streams (WebSocket and SSE).

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::TestApp;
use projectengine_core::Limits;
use projectengine_http::HttpConfig;
use serde_json::json;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

#[tokio::test]
async fn a_submission_beyond_the_queued_limit_is_429() {
    let limits = Limits {
        max_queued_per_owner: Some(2),
        ..Limits::default()
    };
    let app = TestApp::build_with_limits(false, HttpConfig::default(), limits);
    let alice = app.token("alice");
    let first = app.submit(&alice, json!({"prompt": "1"})).await;
    app.submit(&alice, json!({"prompt": "2"})).await;
    let r = app.post("/api/jobs/", &alice, json!({"prompt": "3"})).await;
    assert_eq!(r.error(StatusCode::TOO_MANY_REQUESTS), "limit_exceeded");
    // Another owner has a budget of its own.
    app.submit(&app.token("bob"), json!({"prompt": "b"})).await;
    // A queued job leaving the queue frees room.
    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{first}/cancel/"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    app.submit(&alice, json!({"prompt": "3"})).await;
}

#[tokio::test]
async fn streams_beyond_the_limit_are_429_before_the_upgrade() {
    let mut config = HttpConfig::default();
    config.max_streams_per_owner = Some(1);
    let app = TestApp::build(false, config);
    let addr = app.serve().await;
    let alice = app.token("alice");
    let id = app.submit(&alice, json!({"prompt": "x"})).await;
    let ws = |token: String| async move {
        let mut req = format!("ws://{addr}/ws/jobs/{id}/")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(req).await
    };
    let first = ws(alice.clone()).await.expect("first stream");
    match ws(alice.clone()).await {
        Err(tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS)
        }
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    // SSE counts against the same budget.
    let r = app.get(&format!("/api/jobs/{id}/stream/"), &alice).await;
    assert_eq!(r.error(StatusCode::TOO_MANY_REQUESTS), "limit_exceeded");

    // Closing the first frees the slot.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match ws(alice.clone()).await {
            Ok(_) => break,
            Err(tungstenite::Error::Http(res)) if res.status() == StatusCode::TOO_MANY_REQUESTS => {
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}
