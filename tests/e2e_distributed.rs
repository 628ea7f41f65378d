//! The real server as separate web and worker processes on PostgreSQL and
//! Redis: a worker's events reach the web process's WebSocket clients, and a
//! worker killed mid-job loses nothing.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{
    assert_seqs, deployment, get_text, http, migrate, submit, token, wait_events, wait_status,
    ws_watch, Server,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_and_worker_processes_work_together() {
    let Some(env) = deployment().await else {
        return;
    };
    migrate(&env);
    let web = Server::start("web", &env);
    let worker = Server::start("worker", &env);
    let addr = web.addr();
    let t = token("alice");
    let id = submit(addr, &t, &json!({"prompt": "two processes"})).await;
    let events = ws_watch(addr, &id, 0, &t, None).await;
    assert_seqs(&events, 1);
    assert_eq!(
        events.last().map(|e| e["data"]["status"].clone()),
        Some(json!("succeeded"))
    );
    let (status, app) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{id}/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "{app}");
    let (status, _) = http(addr, "GET", "/ready", None, None).await;
    assert_eq!(status, 200);
    // The worker counts the attempt it ran on its own /metrics.
    let metrics = get_text(worker.addr(), "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"projectengine_jobs_finished_total{kind="stub",status="succeeded"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_is_replaced_and_the_watcher_misses_nothing() {
    let Some(env) = deployment().await else {
        return;
    };
    migrate(&env);
    let web = Server::start("web", &env);
    let mut worker = Server::start("worker", &env);
    let addr = web.addr();
    let t = token("alice");
    let body = json!({"prompt": "survive", "params": {"steps": 30, "delay_ms": 50}});
    let id = submit(addr, &t, &body).await;
    let watcher = {
        let (id, t) = (id.clone(), t.clone());
        tokio::spawn(async move {
            // A watcher that also reconnects once, in the middle.
            let mut seen = ws_watch(addr, &id, 0, &t, Some(12)).await;
            let after = seen.last().and_then(|e| e["seq"].as_u64()).unwrap_or(0);
            seen.extend(ws_watch(addr, &id, after, &t, None).await);
            seen
        })
    };
    // Let it make some steps, then kill the worker outright.
    wait_events(addr, &t, &id, "four steps", |evs| {
        evs.iter().filter(|e| e["type"] == "step").count() >= 4
    })
    .await;
    worker.kill();
    let _replacement = Server::start("worker", &env);
    let events = tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .expect("watch ended")
        .expect("watcher");
    assert_seqs(&events, 1);
    let last = events.last().expect("events");
    assert_eq!(last["data"]["status"], "succeeded", "{last}");
    let running = events
        .iter()
        .filter(|e| e["type"] == "status" && e["data"]["status"] == "running")
        .count();
    let statuses: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "status" || e["type"] == "error")
        .map(|e| (e["seq"].clone(), e["attempt"].clone(), e["data"].clone()))
        .collect();
    assert_eq!(running, 2, "the job ran again after the kill: {statuses:?}");
    let job = wait_status(addr, &t, &id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(job["attempt"], 2, "{job}");
}
