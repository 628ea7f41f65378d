//! The Workspace guard: escapes refused after resolving symlinks and `..`,
//! every check in the job's audit log.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use projectengine_agent::{Agent, AttemptEnd, Finish, FsOp, Workspace};
use projectengine_core::{Job, JobCallbacks, JobStatus, Orchestrator, OrchestratorError, Submit};
use serde_json::{json, Value};
use support::{Server, REMOTE};

struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("sub")).expect("root");
    std::fs::create_dir_all(&outside).expect("outside");
    std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
    std::os::unix::fs::symlink(&outside, tmp.path().join("rootlink")).expect("symlink");
    Dirs {
        root: std::fs::canonicalize(&root).expect("canonical"),
        outside,
        _tmp: tmp,
    }
}

fn refused(ws: &Workspace, path: &Path) {
    assert!(
        ws.check(path, FsOp::Write).is_err(),
        "{} must be refused",
        path.display()
    );
}

#[test]
fn escapes_are_refused_after_resolution() {
    let d = dirs();
    let ws = Workspace::new(std::slice::from_ref(&d.root), std::slice::from_ref(&d.root));
    assert_eq!(ws.roots(), std::slice::from_ref(&d.root));
    // Inside, existing or not yet.
    let ok = ws
        .check(d.root.join("sub/new/file.txt"), FsOp::Write)
        .expect("a new file inside");
    assert!(ok.starts_with(&d.root));
    ws.write(d.root.join("sub/a.txt"), b"a")
        .expect("write inside");
    // A symlink out of the root, `..` escapes, `..` below a missing dir.
    refused(&ws, &d.root.join("link/x.txt"));
    refused(&ws, &d.root.join("link"));
    refused(&ws, &d.root.join("../outside/x.txt"));
    refused(&ws, &d.root.join("sub/../../outside/x.txt"));
    refused(&ws, &d.root.join("missing/../../outside/x.txt"));
    assert!(ws.delete(d.root.join("link/y")).is_err());
    assert!(!d.outside.join("x.txt").exists());
    let audit = ws.take_audit();
    let denied = audit
        .iter()
        .filter(|e| matches!(e, projectengine_core::EventData::FsAudit(a) if !a.allowed))
        .count();
    assert_eq!(denied, 6);
    assert_eq!(audit.len(), 8);
}

#[test]
fn a_root_that_is_a_symlink_to_elsewhere_allows_nothing() {
    let d = dirs();
    let rootlink = d.root.parent().expect("parent").join("rootlink");
    let ws = Workspace::new(
        std::slice::from_ref(&d.root),
        std::slice::from_ref(&rootlink),
    );
    assert!(ws.roots().is_empty(), "roots: {:?}", ws.roots());
    refused(&ws, &rootlink.join("x.txt"));
    // A job root inside the agent's is kept; one outside is not.
    let ws = Workspace::new(
        std::slice::from_ref(&d.root),
        &[d.root.join("sub"), d.outside.clone()],
    );
    assert_eq!(ws.roots(), &[d.root.join("sub")]);
}

/// Tries the writes its params list through the attempt's workspace.
struct Writer;

#[async_trait]
impl Orchestrator for Writer {
    async fn run(&self, job: &Job, cb: &dyn JobCallbacks) -> Result<(), OrchestratorError> {
        let ws = Workspace::current().ok_or_else(|| OrchestratorError::fatal("no workspace"))?;
        for path in job.params["paths"].as_array().into_iter().flatten() {
            let path = path.as_str().unwrap_or_default();
            let _ = ws.write(path, b"hello");
        }
        cb.stage("WROTE").await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_in_the_jobs_audit_log() {
    let d = dirs();
    let server = Server::start(Duration::from_secs(5), Duration::from_millis(200)).await;
    let inside = d.root.join("sub/ok.txt");
    let paths = [
        inside.clone(),
        d.root.join("link/evil.txt"),
        d.root.join("../outside/evil.txt"),
    ];
    let job = server
        .engine
        .submit(
            &server.owner,
            Submit::new("write").kind(REMOTE).params(json!({
                "writable_roots": [d.root],
                "paths": paths,
            })),
        )
        .await
        .expect("submit");
    let agent = Agent::new(server.client(), &server.agent_token, Writer)
        .allow_roots([d.root.clone()])
        .wait(Duration::from_secs(5));
    let (_, end) = agent.run_one().await.expect("claim").expect("a job");
    assert_eq!(end, AttemptEnd::Finished(Finish::Succeeded));
    server.wait_for(job.id, JobStatus::Succeeded).await;
    assert_eq!(std::fs::read(&inside).expect("written"), b"hello");
    assert!(!d.outside.join("evil.txt").exists());

    let http = reqwest::Client::new();
    let audit = |query: &'static str| {
        let url = format!("{}/api/jobs/{}/audit/{query}", server.url, job.id);
        let req = http.get(url).bearer_auth(&server.user_token);
        async move {
            let res = req.send().await.expect("send");
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.expect("json")["items"]
                .as_array()
                .expect("items")
                .clone()
        }
    };
    let all = audit("").await;
    assert_eq!(all.len(), 3);
    let denied = audit("?op=write&result=denied").await;
    let denied: Vec<&str> = denied
        .iter()
        .map(|a| a["path"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        denied,
        [
            paths[1].to_str().unwrap_or(""),
            paths[2].to_str().unwrap_or("")
        ]
    );
    let allowed = audit("?result=allowed").await;
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["op"], "write");
    assert!(audit("?op=delete").await.is_empty());
    let res = http
        .get(format!(
            "{}/api/jobs/{}/audit/?op=chmod",
            server.url, job.id
        ))
        .bearer_auth(&server.user_token)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 400);
    server.stop().await;
}
