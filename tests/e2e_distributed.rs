//! The real server as separate web and worker processes on PostgreSQL and
//! Redis: a worker's events reach the web process's WebSocket clients, and a
//! worker killed mid-job loses nothing.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{assert_seqs, deployment, http, migrate, token, wait_status, ws_watch, Server};

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
    let (status, job) = http(
        addr,
        "POST",
        "/api/jobs/",
        Some(&t),
        Some(&json!({"prompt": "two processes"})),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().expect("id").to_owned();
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
    let metrics = metrics_text(worker.addr()).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"projectengine_jobs_finished_total{kind="stub",status="succeeded"} 1"#),
        "{metrics}"
    );
}

async fn metrics_text(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
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
    let (status, job) = http(addr, "POST", "/api/jobs/", Some(&t), Some(&body)).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().expect("id").to_owned();
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) = http(
            addr,
            "GET",
            &format!("/api/jobs/{id}/events/?after=0&limit=500"),
            Some(&t),
            None,
        )
        .await;
        if page["items"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|e| e["type"] == "step").count() >= 4)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job never made progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    assert_eq!(
        job["attempt"]
            .as_u64()
            .or(job["attempts"].as_u64())
            .unwrap_or(0),
        2,
        "{job}"
    );
}
