//! Artifacts through the real server binary, on PostgreSQL + Redis with the
//! artifacts' bytes in a local directory: the app builder's files, and a
//! 50 MB artifact downloaded with the server's memory staying flat.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{client, deployment, http, submit, token, wait_status, Server};

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn artifacts_dir(env: &[(&str, String)]) -> std::path::PathBuf {
    env.iter()
        .find(|(k, _)| *k == "PROJECTENGINE_ARTIFACTS")
        .map(|(_, v)| v.into())
        .expect("a directory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_builder_leaves_its_files_as_artifacts() {
    let Some(env) = deployment().await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("alice");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "todo list app", "kind": "demo-builder"}),
    )
    .await;
    wait_status(addr, &t, &id, "succeeded", Duration::from_secs(30)).await;
    let (status, list) = http(
        addr,
        "GET",
        &format!("/api/jobs/{id}/artifacts/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["src/app.rs", "src/list.rs", "src/todo.rs"]);
    let (_, app) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{id}/"),
        Some(&t),
        None,
    )
    .await;
    let res = client()
        .get(format!("http://{addr}/api/jobs/{id}/artifacts/src/todo.rs"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/x-rust; charset=utf-8");
    let body = res.text().await.unwrap();
    assert_eq!(Value::String(body), app["payload"]["files"]["src/todo.rs"]);
    // The bytes are in the configured directory.
    let dir = artifacts_dir(&env);
    assert!(dir.join("jobs").join(&id).is_dir(), "{dir:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_artifact_streams_without_growing_the_server() {
    const SIZE: u64 = 50_000_000;
    let Some(env) = deployment().await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("alice");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "big", "params": {"steps": 0, "artifacts": {"big.bin": SIZE}}}),
    )
    .await;
    wait_status(addr, &t, &id, "succeeded", Duration::from_secs(60)).await;
    let pid = server.child.id();
    let before = rss_kib(pid);
    let mut res = client()
        .get(format!("http://{addr}/api/jobs/{id}/artifacts/big.bin"))
        .bearer_auth(&t)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], SIZE.to_string().as_str());
    let mut hasher = Sha256::new();
    let mut got = 0u64;
    let mut peak = before;
    while let Some(chunk) = res.chunk().await.unwrap() {
        got += chunk.len() as u64;
        hasher.update(&chunk);
        peak = peak.max(rss_kib(pid));
    }
    assert_eq!(got, SIZE);
    let want: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        hex::encode(hasher.finalize()),
        hex::encode(Sha256::digest(&want))
    );
    // Loaded whole, the artifact alone would add 48 MiB.
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 16 * 1024,
        "the server grew by {grew} KiB while serving a 50 MB artifact"
    );
}
