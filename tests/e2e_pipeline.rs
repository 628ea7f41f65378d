//! The `pipeline` kind in the real server binary: its phases run in the
//! sandbox with the limits of the server's environment.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{http, submit, token, wait_status, ws_watch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_job_runs_in_the_sandbox_within_the_servers_limits() {
    if !support::sandbox_installed() {
        return;
    }
    let dir = tempfile::tempdir().expect("a directory");
    let server = Server::start(
        "all",
        &[
            ("PROJECTENGINE_PIPELINE_PROCESSES", "64".into()),
            (
                "PROJECTENGINE_SANDBOX_DIR",
                dir.path().display().to_string(),
            ),
        ],
    );
    let addr = server.addr();
    let t = token("alice");

    let id = submit(
        addr,
        &t,
        &json!({
            "prompt": "say hello",
            "kind": "pipeline",
            "params": {
                "files": [{"path": "name.txt", "content": "sandbox"}],
                "phases": [
                    {"name": "greet", "argv": ["sh", "-c", "echo hello $(cat name.txt) from uid $(id -u)"]},
                    {"name": "check", "argv": ["test", "-s", "name.txt"], "gate": true}
                ]
            }
        }),
    )
    .await;
    let events = ws_watch(addr, &id, 0, &t, None).await;
    let of = |kind: &str| -> Vec<serde_json::Value> {
        events
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["data"].clone())
            .collect()
    };
    let stages: Vec<_> = of("stage")
        .iter()
        .map(|d| d["stage"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(stages, ["GREET", "GATES"]);
    let logs: Vec<_> = of("log")
        .iter()
        .map(|d| d["message"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(logs, ["[greet] hello sandbox from uid 65534"]);
    assert_eq!(
        of("status").last().map(|d| d["status"].clone()),
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
    assert_eq!(app["payload"]["phases"][0]["exit_code"], 0);

    // A phase asking for more processes than the server allows is refused.
    let id = submit(
        addr,
        &t,
        &json!({
            "prompt": "too many",
            "kind": "pipeline",
            "params": {"phases": [{"name": "a", "argv": ["true"], "limits": {"processes": 65}}]}
        }),
    )
    .await;
    let job = wait_status(addr, &t, &id, "failed", Duration::from_secs(30)).await;
    assert_eq!(job["error"]["code"], "invalid_params", "{job}");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("phases[0].limits.processes"),
        "{job}"
    );
    // Every working directory was removed.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The README's example: a small C program built in three phases, and the
/// built program downloaded as an artifact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_build_leaves_a_program_to_download() {
    if !support::sandbox_installed() {
        return;
    }
    let server = Server::start("all", &[]);
    let addr = server.addr();
    let t = token("alice");
    let id = submit(
        addr,
        &t,
        &json!({
            "prompt": "build hello",
            "kind": "pipeline",
            "params": {
                "files": [{"path": "hello.c", "content": "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n"}],
                "phases": [
                    {"name": "compile", "argv": ["cc", "-O2", "-o", "hello", "hello.c"], "weight": 3},
                    {"name": "test", "argv": ["./hello"], "gate": true},
                    {"name": "package", "argv": ["tar", "czf", "hello.tar.gz", "hello"]}
                ],
                "artifacts": ["hello.tar.gz"]
            }
        }),
    )
    .await;
    wait_status(addr, &t, &id, "succeeded", Duration::from_secs(60)).await;
    let res = support::client()
        .get(format!(
            "http://{addr}/api/jobs/{id}/artifacts/hello.tar.gz"
        ))
        .bearer_auth(&t)
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/gzip");
    let bytes = res.bytes().await.expect("bytes");
    assert_eq!(&bytes[..2], b"\x1f\x8b", "a gzip file");
}
