//! The bundled server on a SQLite file, killed mid-job (SIGKILL) and started
//! again on the same file: the running job completes with its events seq
//! 1..n, each once, and a job that was queued before the kill is not lost.
//! A job's artifacts are listed and downloaded from it, before and after a
//! restart.

mod support;

use std::time::Duration;

use projectengine_core::testkit::assert::eventually;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{
    assert_seqs, client, events, http, submit, token, wait_events, wait_status, ws_watch, Server,
};

/// A directory of its own for the database file, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "projectengine-e2e-sqlite-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server on the file, one attempt at a time (so the second job waits
/// in the queue), with the in-memory queue and notifier.
fn start(database_url: &str) -> Server {
    start_with(database_url, &[])
}

/// Like [`start`], with more variables.
fn start_with(database_url: &str, more: &[(&str, String)]) -> Server {
    let mut env = vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("PROJECTENGINE_WORKER_CONCURRENCY", "1".to_owned()),
    ];
    env.extend(more.iter().cloned());
    let server = Server::start("all", &env);
    // The durability line comes right after the address line.
    let line = (0..100).find_map(|_| {
        let line = server
            .printed()
            .into_iter()
            .find(|l| l.contains("store: SQLite file"));
        if line.is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        line
    });
    assert!(
        line.as_deref().is_some_and(|l| l.contains("durable")),
        "the server says it is durable on SQLite: {:?}",
        server.printed()
    );
    server
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_its_jobs_from_the_sqlite_file() {
    let dir = TempDir::new();
    let file = dir.0.join("jobs.db");
    let url = format!("sqlite://{}", file.display());
    let t = token("alice");

    let mut server = start(&url);
    assert!(file.exists(), "the file is created at start");
    let addr = server.addr();
    let running = submit(
        addr,
        &t,
        &json!({"prompt": "long", "params": {"steps": 40, "delay_ms": 50}}),
    )
    .await;
    wait_events(addr, &t, &running, "three steps", |evs| {
        evs.iter().filter(|e| e["type"] == "step").count() >= 3
    })
    .await;
    // Submitted while the one worker slot is busy: it waits in the queue.
    let waiting = submit(addr, &t, &json!({"prompt": "waiting"})).await;
    let (code, job) = http(
        addr,
        "GET",
        &format!("/api/jobs/{waiting}/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(
        (code, job["status"].as_str()),
        (200, Some("queued")),
        "{job}"
    );
    let before = events(addr, &t, &running).await;
    assert_seqs(&before, 1);

    server.kill();
    assert!(!server.alive(), "the server is gone");

    let server = start(&url);
    let addr = server.addr();
    // Both jobs run to the end: the running one once its dead attempt's lease
    // has expired, the queued one from the store into the fresh queue.
    let done = wait_status(addr, &t, &running, "succeeded", Duration::from_secs(60)).await;
    wait_status(addr, &t, &waiting, "succeeded", Duration::from_secs(60)).await;

    // The running job's log: everything written before the kill, unchanged,
    // then the rest, seq 1..n without gaps or duplicates, over REST and
    // over a WebSocket replay.
    let after = events(addr, &t, &running).await;
    assert_seqs(&after, 1);
    assert!(after.len() > before.len());
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the log before the kill is kept as it was"
    );
    let watched = ws_watch(addr, &running, 0, &t, None).await;
    assert_eq!(seqs(&watched), seqs(&after));
    let statuses: Vec<&str> = after
        .iter()
        .filter(|e| e["type"] == "status")
        .filter_map(|e| e["data"]["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        ["queued", "running", "queued", "running", "succeeded"],
        "lost with the process, queued again, run to the end"
    );
    let attempts = done["attempts"].as_array().cloned().unwrap_or_default();
    let attempt_statuses: Vec<&str> = attempts
        .iter()
        .filter_map(|a| a["status"].as_str())
        .collect();
    assert_eq!(attempt_statuses, ["lost", "succeeded"], "{done}");

    // The queued job ran once, after the restart.
    let waited = events(addr, &t, &waiting).await;
    assert_seqs(&waited, 1);
    let (code, app) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{waiting}/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(code, 200, "{app}");
    eventually(
        "the waiting job ran once",
        Duration::from_secs(5),
        || async {
            let (_, job) = http(
                addr,
                "GET",
                &format!("/api/jobs/{waiting}/"),
                Some(&t),
                None,
            )
            .await;
            let attempts = job["attempts"].as_array().map_or(0, Vec::len);
            (attempts == 1).then_some(())
        },
    )
    .await;
}

/// The job's artifacts, as the listing route answers them.
async fn listed(addr: std::net::SocketAddr, t: &str, id: &str) -> Vec<Value> {
    let (code, list) = http(
        addr,
        "GET",
        &format!("/api/jobs/{id}/artifacts/"),
        Some(t),
        None,
    )
    .await;
    assert_eq!(code, 200, "{list}");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Downloads `name` of job `id`: its bytes.
async fn download(addr: std::net::SocketAddr, t: &str, id: &str, name: &str) -> Vec<u8> {
    let res = client()
        .get(format!("http://{addr}/api/jobs/{id}/artifacts/{name}"))
        .bearer_auth(t)
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), 200, "download {name}");
    res.bytes().await.expect("body").to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_served_from_the_sqlite_store_across_a_restart() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}", dir.0.join("jobs.db").display());
    let blobs = dir.0.join("artifacts");
    std::fs::create_dir_all(&blobs).expect("artifacts directory");
    let env = [(
        "PROJECTENGINE_ARTIFACTS",
        blobs.to_string_lossy().into_owned(),
    )];
    let t = token("alice");
    // What the stub writes: byte i is i % 251.
    let want: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let want_sha = hex::encode(Sha256::digest(&want));

    let mut server = start_with(&url, &env);
    let addr = server.addr();
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "files", "params": {"steps": 1, "artifacts": {"a.bin": 1000}}}),
    )
    .await;
    wait_status(addr, &t, &id, "succeeded", Duration::from_secs(30)).await;
    let items = listed(addr, &t, &id).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["name"], "a.bin");
    assert_eq!(items[0]["size"], 1000);
    assert_eq!(items[0]["sha256"], want_sha.as_str());
    assert_eq!(download(addr, &t, &id, "a.bin").await, want);
    // The artifact event is in the job's log, in seq order with the rest.
    let log = events(addr, &t, &id).await;
    assert_seqs(&log, 1);
    assert_eq!(
        log.iter().filter(|e| e["type"] == "artifact").count(),
        1,
        "{log:?}"
    );
    // Another owner sees nothing of it.
    let (code, _) = http(
        addr,
        "GET",
        &format!("/api/jobs/{id}/artifacts/"),
        Some(&token("mallory")),
        None,
    )
    .await;
    assert_eq!(code, 404);

    server.kill();
    let server = start_with(&url, &env);
    let addr = server.addr();
    // The metadata is in the file, the bytes in the directory: both survive.
    assert_eq!(listed(addr, &t, &id).await, items);
    assert_eq!(download(addr, &t, &id, "a.bin").await, want);
}
