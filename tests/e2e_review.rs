//! The review gate through the real server binary on PostgreSQL and Redis:
//! a job submitted with `review` waits for a person; a rejection runs it
//! again and the new attempt sees the comment; an approval succeeds it, and
//! its webhook reports `job.awaiting_review` for each wait and
//! `job.succeeded` once.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use projectengine_core::testkit::assert::eventually;
use serde_json::{json, Value};
use support::{deployment, http, migrate, submit, token, wait_status, Server};

const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Got = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receive(State(got): State<Got>, headers: HeaderMap, body: Bytes) -> StatusCode {
    got.lock().expect("lock").push((headers, body));
    StatusCode::NO_CONTENT
}

/// A receiver on a free loopback port that keeps what it gets and answers 204.
async fn receiver() -> (SocketAddr, Got) {
    let got = Got::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

/// The verified bodies received so far, in arrival order.
fn bodies(got: &Got) -> Vec<Value> {
    let verifier = standardwebhooks::Webhook::new(WEBHOOK_SECRET).expect("secret");
    got.lock()
        .expect("lock")
        .iter()
        .map(|(headers, body)| {
            verifier
                .verify(body, headers)
                .expect("signed per Standard Webhooks");
            serde_json::from_slice(body).expect("JSON")
        })
        .collect()
}

/// Waits until every delivery of the job is delivered; answers their events.
async fn delivered(addr: SocketAddr, t: &str, id: &str, n: usize) -> Vec<String> {
    let path = format!("/api/jobs/{id}/webhooks/");
    eventually(
        &format!("{n} deliveries delivered"),
        Duration::from_secs(30),
        || async {
            let (status, body) = http(addr, "GET", &path, Some(t), None).await;
            assert_eq!(status, 200, "{body}");
            let items = body["items"].as_array().expect("items").clone();
            (items.len() == n && items.iter().all(|d| d["status"] == "delivered")).then(|| {
                items
                    .iter()
                    .map(|d| d["event"].as_str().expect("event").to_owned())
                    .collect()
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_then_approve_fires_the_webhook_once_per_state() {
    let Some(mut env) = deployment().await else {
        return;
    };
    migrate(&env);
    env.extend([
        ("PROJECTENGINE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("PROJECTENGINE_WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
        ("PROJECTENGINE_WEBHOOK_TIMEOUT", "2s".to_owned()),
    ]);
    let server = Server::start("all", &env);
    let addr = server.addr();
    let (hook, got) = receiver().await;
    let t = token("alice");
    let url = format!("http://{hook}/hook");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "review me", "webhook": url, "review": true, "max_attempts": 2}),
    )
    .await;

    let job = wait_status(addr, &t, &id, "awaiting_review", Duration::from_secs(30)).await;
    assert_eq!(job["finished_at"], Value::Null, "{job}");
    assert_eq!(delivered(addr, &t, &id, 1).await, ["job.awaiting_review"]);
    let (status, app) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{id}/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "the App is visible while the job waits: {app}");
    assert_eq!(app["payload"]["review_comment"], Value::Null);

    let (status, body) = http(
        addr,
        "POST",
        &format!("/api/jobs/{id}/reject/"),
        Some(&t),
        Some(&json!({"comment": "a darker theme"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "queued");
    eventually(
        "the second attempt waits for review",
        Duration::from_secs(30),
        || async {
            let (_, job) = http(addr, "GET", &format!("/api/jobs/{id}/"), Some(&t), None).await;
            (job["status"] == "awaiting_review" && job["attempt"] == 2).then_some(())
        },
    )
    .await;
    let (_, app) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{id}/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(
        app["payload"]["review_comment"], "a darker theme",
        "the new attempt saw the comment: {app}"
    );

    let (status, body) = http(
        addr,
        "POST",
        &format!("/api/jobs/{id}/approve/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "succeeded");
    let events = delivered(addr, &t, &id, 3).await;
    assert_eq!(
        events,
        [
            "job.awaiting_review",
            "job.awaiting_review",
            "job.succeeded"
        ]
    );
    // What the receiver got: each delivery (each `webhook-id`) once, one
    // `job.succeeded` among them.
    let received = bodies(&got);
    let succeeded: Vec<&Value> = received
        .iter()
        .filter(|b| b["type"] == "job.succeeded")
        .collect();
    assert_eq!(succeeded.len(), 1, "{received:?}");
    assert_eq!(succeeded[0]["data"]["job_id"], json!(id));
    assert_eq!(succeeded[0]["data"]["status"], "succeeded");
    assert!(succeeded[0]["data"]["app_id"].is_string());
    let waits: Vec<&Value> = received
        .iter()
        .filter(|b| b["type"] == "job.awaiting_review")
        .collect();
    assert_eq!(waits.len(), 2, "{received:?}");
    assert!(waits
        .iter()
        .all(|b| b["data"]["status"] == "awaiting_review"));
    let mut ids: Vec<String> = got
        .lock()
        .expect("lock")
        .iter()
        .map(|(h, _)| h["webhook-id"].to_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three deliveries");

    // A finished job runs again as a new job with its spec.
    let (status, rerun) = http(
        addr,
        "POST",
        &format!("/api/jobs/{id}/rerun/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 201, "{rerun}");
    assert_ne!(rerun["id"], json!(id));
    assert_eq!(rerun["review"], true);
    assert_eq!(rerun["webhook"], json!(url));
}
