//! Completion webhooks through the real server binary: on PostgreSQL and
//! Redis, a worker SIGKILLed after a job ended and before its webhook was
//! delivered leaves the delivery to the next worker; the configuration and
//! the submit-time guard.

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
use support::{deployment, http, migrate, server_bin, submit, token, wait_status, Server};

const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

type Got = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receive(State(got): State<Got>, headers: HeaderMap, body: Bytes) -> StatusCode {
    got.lock().expect("lock").push((headers, body));
    StatusCode::NO_CONTENT
}

/// A receiver on `addr` that keeps what it gets and answers 204.
async fn receiver(addr: SocketAddr) -> Got {
    let got = Got::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the receiver's port again");
    tokio::spawn(async move { axum::serve(listener, app).await });
    got
}

/// A loopback port nothing listens on (yet).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn webhook_env(retries: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PROJECTENGINE_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("PROJECTENGINE_WEBHOOK_ALLOW_PRIVATE", "true".into()),
        ("PROJECTENGINE_WEBHOOK_RETRIES", retries.into()),
        ("PROJECTENGINE_WEBHOOK_TIMEOUT", "2s".into()),
    ]
}

async fn deliveries(addr: SocketAddr, t: &str, id: &str) -> Vec<Value> {
    let (status, body) = http(
        addr,
        "GET",
        &format!("/api/jobs/{id}/webhooks/"),
        Some(t),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().expect("items").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_before_delivery_leaves_the_webhook_to_the_next() {
    let Some(mut env) = deployment().await else {
        return;
    };
    migrate(&env);
    // Many quick retries: the schedule is not spent while the receiver is down.
    env.extend(webhook_env(&["1s"; 30].join(",")));
    let web = Server::start("web", &env);
    let mut worker = Server::start("worker", &env);
    let addr = web.addr();
    let hook = free_port();
    let t = token("alice");
    let url = format!("http://{hook}/hook");
    let id = submit(addr, &t, &json!({"prompt": "notify me", "webhook": url})).await;
    wait_status(addr, &t, &id, "succeeded", Duration::from_secs(30)).await;
    // The job ended, its receiver is down: nothing delivered. Kill the worker.
    worker.kill();
    let pending = deliveries(addr, &t, &id).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["status"], "pending", "{pending:?}");
    assert_eq!(pending[0]["event"], "job.succeeded");
    assert_eq!(pending[0]["url"], json!(url));
    for tried in pending[0]["tries"].as_array().expect("tries") {
        assert!(tried["error"].is_string(), "a failed try: {tried}");
    }
    let got = receiver(hook).await;
    // No worker, no delivery: the web process does not dispatch.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(got.lock().expect("lock").is_empty());
    assert_eq!(deliveries(addr, &t, &id).await[0]["status"], "pending");

    let _worker = Server::start("worker", &env);
    let delivered = eventually(
        "the webhook is delivered",
        Duration::from_secs(30),
        || async {
            let d = deliveries(addr, &t, &id).await;
            (d[0]["status"] == "delivered").then(|| d[0].clone())
        },
    )
    .await;
    let tries = delivered["tries"].as_array().expect("tries");
    let last = tries.last().expect("a try");
    assert_eq!(last["status_code"], 204, "{delivered}");
    assert_eq!(last["error"], Value::Null);
    assert_eq!(
        tries.iter().filter(|t| t["error"].is_null()).count(),
        1,
        "one success: {delivered}"
    );
    let got = got.lock().expect("lock").clone();
    assert!(!got.is_empty());
    let verifier = standardwebhooks::Webhook::new(WEBHOOK_SECRET).expect("secret");
    for (headers, body) in &got {
        verifier
            .verify(body, headers)
            .expect("signed per Standard Webhooks");
        assert_eq!(
            headers.get("webhook-id").and_then(|v| v.to_str().ok()),
            delivered["id"].as_str()
        );
        let body: Value = serde_json::from_slice(body).expect("JSON");
        assert_eq!(body["type"], "job.succeeded");
        assert_eq!(body["data"]["job_id"], json!(id));
        assert_eq!(body["data"]["status"], "succeeded");
        assert!(body["data"]["app_id"].is_string(), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_webhook_urls_are_refused_unless_allowed() {
    let mut env = webhook_env("1s");
    env.retain(|(k, _)| *k != "PROJECTENGINE_WEBHOOK_ALLOW_PRIVATE");
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("alice");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let (status, body) = http(
            addr,
            "POST",
            "/api/jobs/",
            Some(&t),
            Some(&json!({"prompt": "p", "webhook": url})),
        )
        .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["error"]["field"], "webhook", "{body}");
    }
    let (_, page) = http(addr, "GET", "/api/jobs/", Some(&t), None).await;
    assert_eq!(page["items"], json!([]));
}

#[test]
fn a_malformed_webhook_secret_stops_the_server() {
    for (var, value) in [
        ("PROJECTENGINE_WEBHOOK_SECRET", "not-a-secret"),
        ("PROJECTENGINE_WEBHOOK_SECRET", "whsec_%%%"),
        ("PROJECTENGINE_WEBHOOK_RETRIES", "5s,later"),
    ] {
        let out = std::process::Command::new(server_bin())
            .env_clear()
            .env("PROJECTENGINE_BIND", "127.0.0.1:0")
            .env(var, value)
            .output()
            .expect("run the server");
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("invalid configuration: {var}")),
            "{stderr}"
        );
        assert!(
            !stderr.contains("%%%"),
            "the secret is not echoed: {stderr}"
        );
    }
}

/// The README's receiver (`examples/webhooks/receiver.py`, the standard
/// library only) verifies what the real server sends: a job's end, with its
/// artifacts, arrives once and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_receiver_verifies_what_the_server_sends() {
    use std::io::{BufRead, BufReader};
    let port = free_port().port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/webhooks/receiver.py");
    /// Kills the receiver however the test ends.
    struct Receiver(std::process::Child);
    impl Drop for Receiver {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut receiver = Receiver(
        std::process::Command::new("python3")
            .args([script, &port.to_string()])
            .env("PROJECTENGINE_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the receiver"),
    );
    let mut lines = BufReader::new(receiver.0.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().expect("a line").expect("text"), "listening");
    let server = Server::start("all", &webhook_env("1s"));
    let addr = server.addr();
    let t = token("alice");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "p", "params": {"steps": 1, "artifacts": {"report.txt": 10}},
                "webhook": format!("http://127.0.0.1:{port}/hook")}),
    )
    .await;
    wait_status(addr, &t, &id, "succeeded", Duration::from_secs(30)).await;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the receiver printed a verified call");
    let got: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(got["type"], "job.succeeded");
    assert_eq!(got["job_id"], id.as_str());
    assert_eq!(got["artifacts"], json!(["report.txt"]));
    // The receiver answered 204 before it printed; the server records it.
    let logs = eventually(
        "the delivery is recorded",
        Duration::from_secs(15),
        || async {
            let logs = deliveries(addr, &t, &id).await;
            (logs.len() == 1 && logs[0]["status"] == "delivered").then_some(logs)
        },
    )
    .await;
    assert_eq!(got["id"], logs[0]["id"]);
    drop(receiver);
}
