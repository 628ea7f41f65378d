//! Core errors map to statuses, and server-side failures show no internals.
//! A mocked store produces the faults a real one cannot on demand.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use projectengine_core::memory::{MemoryNotifier, MemoryQueue};
use projectengine_core::testkit::MockStore;
use projectengine_core::*;
use projectengine_http::{router, JwtAuth};
use serde_json::Value;
use tower::ServiceExt;

const SECRET_DETAIL: &str = "connection to db-7.internal:5432 as admin failed";

/// A router over a store whose every read and write fails with `error()`.
fn failing(error: fn() -> Error) -> (axum::Router, String) {
    let mut store = MockStore::new();
    store.expect_get_job().returning(move |_| Err(error()));
    store.expect_list_jobs().returning(move |_, _| Err(error()));
    store.expect_create_job().returning(move |_| Err(error()));
    store
        .expect_list_apps()
        .returning(move |_, _, _| Err(error()));
    store.expect_ping().returning(move || Err(error()));
    let engine = Engine::new(
        Arc::new(store),
        Arc::new(MemoryQueue::default()),
        Arc::new(MemoryNotifier::default()),
        Registry::new().register("stub", StubOrchestrator::default()),
    );
    let auth = JwtAuth::hs256(common::SECRET).unwrap();
    let token = auth.mint("alice", Duration::from_secs(60)).unwrap();
    (router(engine, auth), token)
}

async fn call(
    app: &axum::Router,
    token: &str,
    method: Method,
    uri: &str,
) -> (StatusCode, Value, String) {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    let body = if method == Method::POST {
        req = req.header(header::CONTENT_TYPE, "application/json");
        Body::from(r#"{"prompt": "x"}"#)
    } else {
        Body::empty()
    };
    let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

/// A core error, the status it maps to, and the code.
type Case = (fn() -> Error, StatusCode, &'static str);

#[tokio::test]
async fn each_core_error_has_its_status_and_internals_stay_inside() {
    let cases: [Case; 5] = [
        (
            || Error::internal(SECRET_DETAIL),
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
        ),
        (
            || Error::StaleAttempt,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
        ),
        (
            || Error::unavailable(SECRET_DETAIL),
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ),
        (
            || Error::conflict("already exists"),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            || Error::LimitExceeded("too many queued jobs".into()),
            StatusCode::TOO_MANY_REQUESTS,
            "limit_exceeded",
        ),
    ];
    let id = JobId::new();
    for (error, status, code) in cases {
        let (app, token) = failing(error);
        for (method, uri) in [
            (Method::POST, "/api/jobs/".to_owned()),
            (Method::GET, "/api/jobs/".to_owned()),
            (Method::GET, format!("/api/jobs/{id}/")),
            (Method::GET, format!("/api/jobs/{id}/events/")),
            (Method::GET, format!("/api/jobs/{id}/stream/")),
            (Method::GET, format!("/ws/jobs/{id}/")),
            (Method::GET, "/api/apps/".to_owned()),
        ] {
            let (got, body, text) = call(&app, &token, method.clone(), &uri).await;
            assert_eq!(got, status, "{method} {uri}: {text}");
            assert_eq!(body["error"]["code"], code, "{method} {uri}");
            assert!(!text.contains("db-7") && !text.contains("admin"), "{text}");
        }
    }
}

#[tokio::test]
async fn ready_is_503_when_the_store_is_down() {
    let (app, token) = failing(|| Error::unavailable(SECRET_DETAIL));
    let (status, body, text) = call(&app, &token, Method::GET, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unavailable");
    assert!(!text.contains("db-7"));
}
