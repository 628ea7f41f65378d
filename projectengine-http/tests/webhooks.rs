//! The `webhook` of a submission and `GET /api/jobs/{id}/webhooks/`.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::TestApp;
use projectengine_core::{JobId, JobStatus, Webhooks};
use projectengine_webhooks::{AddressPolicy, UrlGuard};
use serde_json::json;

/// An app whose engine checks webhook URLs with `policy`.
fn app(policy: AddressPolicy, worker: bool) -> TestApp {
    let mut app = TestApp::build(worker, Default::default());
    let engine = app.engine.clone().with_webhooks(Webhooks {
        notify_deployment: false,
        check: Some(Arc::new(UrlGuard::new(policy))),
    });
    app.rebind(engine);
    app
}

#[tokio::test]
async fn a_private_webhook_url_is_refused_at_submission() {
    let app = app(AddressPolicy::default(), false);
    let t = app.token("alice");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00::1]/hook",
        "gopher://example.com/",
        "not a url",
    ] {
        let r = app
            .call(
                Method::POST,
                "/api/jobs/",
                Some(&t),
                Some(json!({"prompt": "p", "webhook": url})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {}", r.text);
        assert_eq!(r.json["error"]["field"], "webhook", "{}", r.text);
    }
    let page = app.call(Method::GET, "/api/jobs/", Some(&t), None).await;
    assert_eq!(page.json["items"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn a_deployment_without_webhooks_refuses_one() {
    let app = TestApp::idle();
    let t = app.token("alice");
    let r = app
        .call(
            Method::POST,
            "/api/jobs/",
            Some(&t),
            Some(json!({"prompt": "p", "webhook": "https://example.com/hook"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json["error"]["field"], "webhook");
}

#[tokio::test]
async fn deliveries_are_listed_to_their_owner_only() {
    let app = app(
        AddressPolicy {
            allow_private: true,
        },
        true,
    );
    let alice = app.token("alice");
    let url = "http://127.0.0.1:9/hook";
    let r = app
        .call(
            Method::POST,
            "/api/jobs/",
            Some(&alice),
            Some(json!({"prompt": "p", "webhook": url})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["webhook"], url);
    let id: JobId = r.json["id"].as_str().expect("id").parse().expect("uuid");
    app.wait_for("alice", id, JobStatus::Succeeded).await;
    let path = format!("/api/jobs/{id}/webhooks/");
    let r = app.call(Method::GET, &path, Some(&alice), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let items = r.json["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{}", r.text);
    assert_eq!(items[0]["destination"], "job");
    assert_eq!(items[0]["url"], url);
    assert_eq!(items[0]["event"], "job.succeeded");
    assert_eq!(items[0]["status"], "pending");
    assert!(items[0]["next_at"].is_string());
    assert_eq!(items[0]["tries"], json!([]));
    // Without the slash too.
    let bare = app
        .call(Method::GET, path.trim_end_matches('/'), Some(&alice), None)
        .await;
    assert_eq!(bare.json, r.json);
    // Another owner's job does not exist for them; nor does an unknown one.
    let bob = app.token("bob");
    let r = app.call(Method::GET, &path, Some(&bob), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let unknown = format!("/api/jobs/{}/webhooks/", JobId::new());
    let r = app.call(Method::GET, &unknown, Some(&alice), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.call(Method::GET, &path, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A job without a webhook lists none.
    let r = app
        .call(
            Method::POST,
            "/api/jobs/",
            Some(&alice),
            Some(json!({"prompt": "p"})),
        )
        .await;
    assert_eq!(r.json["webhook"], json!(null));
    let plain: JobId = r.json["id"].as_str().expect("id").parse().expect("uuid");
    app.wait_for("alice", plain, JobStatus::Succeeded).await;
    let r = app
        .call(
            Method::GET,
            &format!("/api/jobs/{plain}/webhooks/"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.json["items"], json!([]));
}

#[tokio::test]
async fn the_route_is_in_the_openapi_document() {
    let app = TestApp::idle();
    let r = app.call(Method::GET, "/openapi.json", None, None).await;
    let op = &r.json["paths"]["/api/jobs/{id}/webhooks/"]["get"];
    assert!(op.is_object(), "{}", r.json["paths"]);
    assert!(r.json["components"]["schemas"]["DeliveryDto"].is_object());
    assert!(r.json["components"]["schemas"]["CreateJob"]["properties"]["webhook"].is_object());
}
