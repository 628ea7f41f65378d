//! The real server binary on the embedded default (everything in memory, one
//! process), driven over HTTP and a real WebSocket.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{assert_seqs, http, submit, token, wait_status, ws_watch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_to_its_app_over_http_and_websocket() {
    let server = Server::start("all", &[]);
    let addr = server.addr();
    let t = token("alice");
    let id = submit(addr, &t, &json!({"prompt": "a todo app"})).await;
    let events = ws_watch(addr, &id, 0, &t, None).await;
    assert_seqs(&events, 1);
    let last = events.last().expect("events");
    assert_eq!(
        (last["type"].as_str(), last["data"]["status"].as_str()),
        (Some("status"), Some("succeeded"))
    );
    assert_eq!(events.iter().filter(|e| e["type"] == "step").count(), 5);
    let app_event = events
        .iter()
        .find(|e| e["type"] == "app")
        .expect("an app event");
    let (status, app) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{id}/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["id"], app_event["data"]["app_id"]);
    assert_eq!(app["job_id"].as_str(), Some(id.as_str()));
    assert!(app["payload"].is_object());
    // Another owner sees nothing of it.
    let (status, _) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{id}/"),
        Some(&token("mallory")),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_cancelled_within_two_heartbeats() {
    let heartbeat = Duration::from_millis(200);
    let server = Server::start("all", &[]);
    let addr = server.addr();
    let t = token("alice");
    let body = json!({"prompt": "long", "params": {"steps": 200, "delay_ms": 50}});
    let id = submit(addr, &t, &body).await;
    wait_status(addr, &t, &id, "running", Duration::from_secs(30)).await;
    let asked = Instant::now();
    let (status, body) = http(
        addr,
        "POST",
        &format!("/api/jobs/{id}/cancel/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_status(addr, &t, &id, "cancelled", Duration::from_secs(30)).await;
    let took = asked.elapsed();
    assert!(
        took <= heartbeat * 2,
        "cancelled after {took:?}, more than two heartbeats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start("all", &[]);
    let (status, _) = http(server.addr(), "GET", "/health", None, None).await;
    assert_eq!(status, 200);
    let exit = server.terminate();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_bad_setting_is_one_line_and_exit_code_2() {
    let out = std::process::Command::new(support::server_bin())
        .env_clear()
        .env("PROJECTENGINE_LEASE", "soon")
        .output()
        .expect("run the server");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PROJECTENGINE_LEASE"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
