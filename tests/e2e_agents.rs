//! Remote agents against the real server binary, on PostgreSQL + Redis: the
//! Python reference agent (standard library only) runs a job end to end.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::{deployment, events, http, server_bin, submit, token, wait_status, Server, SECRET};

/// `server token --agent --kinds …`: an agent token minted by the binary.
fn agent_token(kinds: &str) -> String {
    let out = Command::new(server_bin())
        .args(["token", "--sub", "py-agent", "--agent", "--kinds", kinds])
        .env_clear()
        .env("PROJECTENGINE_JWT_SECRET", SECRET)
        .output()
        .expect("run server token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_agent_runs_a_job_end_to_end() {
    let Some(env) = deployment().await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let user = token("alice");
    let agent = agent_token("remote");

    // Tokens are not interchangeable.
    let (status, _) = http(addr, "GET", "/api/jobs/", Some(&agent), None).await;
    assert_eq!(status, 401, "an agent token acting as a user");
    let (status, _) = http(
        addr,
        "POST",
        "/api/agent/v1/claim",
        Some(&user),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 401, "a user token acting as an agent");

    let id = submit(
        addr,
        &user,
        &json!({"prompt": "a report", "kind": "remote", "params": {"steps": 3}}),
    )
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agents/agent.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg(script)
            .args(["--url", &format!("http://{addr}"), "--once", "--wait", "10"])
            .arg("--resend-batch")
            .env("AGENT_TOKEN", &agent)
            .output(),
    )
    .await
    .expect("the agent ends")
    .expect("run python3");
    assert!(
        out.status.success(),
        "agent: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).expect("the agent's line");
    assert_eq!(line["job"], id);
    assert_eq!(line["outcome"], "succeeded");

    wait_status(addr, &user, &id, "succeeded", Duration::from_secs(10)).await;
    let (status, app) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{id}/"),
        Some(&user),
        None,
    )
    .await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["payload"]["language"], "python");
    let (status, list) = http(
        addr,
        "GET",
        &format!("/api/jobs/{id}/artifacts/"),
        Some(&user),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"][0]["name"], "report/summary.txt");
    assert_eq!(list["items"][0]["content_type"], "text/plain");

    // Every batch was sent twice and is stored once: seqs 1..n, one log line,
    // three steps.
    let evs = events(addr, &user, &id).await;
    support::assert_seqs(&evs, 1);
    let count = |kind: &str| evs.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(count("log"), 1);
    assert_eq!(count("step"), 3);
    assert_eq!(count("stage"), 1);

    let (status, doc) = http(addr, "GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/api/agent/v1/claim"]["post"].is_object());
    assert!(doc["paths"]["/api/jobs/{id}/audit/"]["get"].is_object());
}

/// A Python agent killed mid-job (SIGKILL): its lease expires, recovery
/// queues the job again, a second agent finishes it, and the log is seqs
/// 1..n, each once, with the first attempt `lost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_loses_its_job_to_another() {
    let Some(env) = deployment().await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let user = token("alice");
    let agent = agent_token("remote");
    let id = submit(
        addr,
        &user,
        &json!({"prompt": "slow", "kind": "remote", "params": {"steps": 40, "delay_s": 0.1}}),
    )
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agents/agent.py");
    let python = |wait: &str| {
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(script)
            .args(["--url", &format!("http://{addr}"), "--once", "--wait", wait])
            .env("AGENT_TOKEN", &agent)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd
    };
    let mut first = python("10").spawn().expect("run python3");
    // Killed once it has reported a few steps.
    support::wait_events(addr, &user, &id, "three steps", |evs| {
        evs.iter().filter(|e| e["type"] == "step").count() >= 3
    })
    .await;
    first.kill().await.expect("SIGKILL");

    let out = tokio::time::timeout(Duration::from_secs(60), python("20").output())
        .await
        .expect("the second agent ends")
        .expect("run python3");
    assert!(out.status.success(), "{out:?}");
    let line: Value = serde_json::from_slice(&out.stdout).expect("the agent's line");
    assert_eq!(line["job"], id);
    assert_eq!(line["attempt"], 2);
    assert_eq!(line["outcome"], "succeeded");
    wait_status(addr, &user, &id, "succeeded", Duration::from_secs(10)).await;
    let evs = events(addr, &user, &id).await;
    support::assert_seqs(&evs, 1);
    let (status, detail) = http(addr, "GET", &format!("/api/jobs/{id}/"), Some(&user), None).await;
    assert_eq!(status, 200, "{detail}");
    let attempts: Vec<&str> = detail["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(attempts, ["lost", "succeeded"]);
}
