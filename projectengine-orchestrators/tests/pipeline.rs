//! The `pipeline` orchestrator through a real Engine (in-memory adapters),
//! a real worker and the real sandbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::testkit::assert::{assert_gap_free, watch_to_end};
use projectengine_core::testkit::scenarios::fast_worker;
use projectengine_core::*;
use projectengine_orchestrators::{PipelineConfig, PipelineOrchestrator};
use projectengine_sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};

const WATCH: Duration = Duration::from_secs(120);

fn required() -> bool {
    std::env::var("PROJECTENGINE_REQUIRE_SERVICES").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// An engine with the pipeline registered on a sandbox whose working
/// directories go under `root`; `None` (SKIPPED) when the host cannot
/// isolate and PROJECTENGINE_REQUIRE_SERVICES is unset.
async fn engine(root: &std::path::Path) -> Option<Engine> {
    let mut config = SandboxConfig::default();
    config.workdir_root = root.to_path_buf();
    let sandbox = match Sandbox::new(config).await {
        Ok(sandbox) => sandbox,
        Err(error) if !required() => {
            eprintln!("SKIPPED: {error}; set PROJECTENGINE_REQUIRE_SERVICES=1 to fail instead");
            return None;
        }
        Err(error) => {
            panic!("the sandbox is required (PROJECTENGINE_REQUIRE_SERVICES is set): {error}")
        }
    };
    let pipeline = PipelineOrchestrator::with_sandbox(PipelineConfig::default(), sandbox);
    Some(Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new(Duration::from_secs(1))),
        Arc::new(MemoryNotifier::default()),
        Registry::new().register("pipeline", pipeline),
    ))
}

fn submit(params: Value) -> Submit {
    let mut submit = Submit::new("build it");
    submit.kind = Some("pipeline".into());
    submit.params = Some(params);
    submit.max_attempts = Some(1);
    submit
}

/// Nothing is left in the working-directory root.
fn assert_cleaned(root: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "working directories left behind: {left:?}");
}

const MAIN_C: &str = r#"#include <stdio.h>
#include "config.h"
int main(void) { printf("%s\n", GREETING); return 0; }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_phase_c_build_reports_stages_progress_steps_and_an_app() {
    let root = tempfile::tempdir().unwrap();
    let Some(engine) = engine(root.path()).await else {
        return;
    };
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(
            &owner,
            submit(json!({
                "files": [{"path": "src/main.c", "content": MAIN_C}],
                "phases": [
                    {"name": "configure", "argv": ["sh", "-c", "echo '#define GREETING \"hello from the sandbox\"' > config.h; ln -s /etc/hostname leak.h; echo configured"]},
                    {"name": "build", "argv": ["cc", "-I.", "-o", "hello", "src/main.c"], "weight": 3},
                    {"name": "test", "argv": ["sh", "-c", "./hello && test \"$(./hello)\" = 'hello from the sandbox'"], "gate": true}
                ],
                "artifacts": ["hello", "*.h", "src/*.o"]
            })),
        )
        .await
        .unwrap();
    let events = watch_to_end(&engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    assert_gap_free(&events, 1);

    let job = engine.get(&owner, job.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let stages: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Stage { stage } => Some(stage.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(stages, ["CONFIGURE", "BUILD", "GATES", "COLLECTING"]);
    let progress: Vec<u8> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Progress { progress } => Some(*progress),
            _ => None,
        })
        .collect();
    assert_eq!(progress, [20, 80, 100]);
    let steps: Vec<&Step> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Step(step) => Some(step),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["phase configure", "phase build", "phase test"]);
    for step in &steps {
        assert_eq!(step.status, StepStatus::Completed);
        let detail = step.detail.as_ref().unwrap();
        assert_eq!(detail["exit_code"], 0);
        assert!(detail["duration_ms"].is_u64());
    }
    // Stage, logs, step, progress: in that order for each phase.
    let order: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Stage { .. } => Some("stage"),
            EventData::Step(_) => Some("step"),
            EventData::Progress { .. } => Some("progress"),
            _ => None,
        })
        .collect();
    let mut want = ["stage", "step", "progress"].repeat(3);
    want.push("stage");
    assert_eq!(order, want);
    let logs: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Log(line) => Some(line.message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        logs,
        ["[configure] configured", "[test] hello from the sandbox"]
    );

    let app = engine.app_by_job(&owner, job.id).await.unwrap();
    assert_eq!(app.payload["phases"].as_array().unwrap().len(), 3);
    assert_eq!(app.payload["phases"][1]["name"], "build");
    assert_eq!(app.payload["phases"][1]["exit_code"], 0);
    let collected: Vec<&str> = app.payload["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    // `leak.h`, a link to a file of the host, is not followed.
    assert_eq!(collected, ["config.h", "hello"]);
    let listed = engine.artifacts(&owner, job.id).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["config.h", "hello"]);
    assert_eq!(listed[0].content_type, "text/plain");
    let mut hello = engine
        .open_artifact(&owner, job.id, "hello", Some(0..4))
        .await
        .unwrap();
    let head = futures::StreamExt::next(&mut hello.body)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head[..], b"\x7fELF", "the built program");
    assert_cleaned(root.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_phase_fails_with_its_name_and_output_tail() {
    let root = tempfile::tempdir().unwrap();
    let Some(engine) = engine(root.path()).await else {
        return;
    };
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(
            &owner,
            submit(json!({
                "files": [{"path": "broken.c", "content": "int main(void) { return missing; }\n"}],
                "phases": [
                    {"name": "compile", "argv": ["cc", "-c", "broken.c"]},
                    {"name": "never", "argv": ["sh", "-c", "echo should not run"]}
                ]
            })),
        )
        .await
        .unwrap();
    let events = watch_to_end(&engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    let job = engine.get(&owner, job.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.expect("an error");
    assert_eq!(error.code, "phase_failed");
    assert!(
        error
            .message
            .starts_with("phase compile failed: exit code 1"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("undeclared") && error.message.contains("missing"),
        "{}",
        error.message
    );
    let steps: Vec<(&str, StepStatus)> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Step(step) => Some((step.name.as_str(), step.status)),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [("phase compile", StepStatus::Failed)]);
    assert!(
        engine.app_by_job(&owner, job.id).await.is_err(),
        "no App for a failed job"
    );
    assert_cleaned(root.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_spends_every_attempt() {
    let root = tempfile::tempdir().unwrap();
    let Some(engine) = engine(root.path()).await else {
        return;
    };
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let mut request = submit(json!({
        "phases": [{"name": "flaky", "argv": ["sh", "-c", "echo nope >&2; exit 3"]}],
        "on_failure": "retryable"
    }));
    request.max_attempts = Some(2);
    let job = engine.submit(&owner, request).await.unwrap();
    watch_to_end(&engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    let job = engine.get(&owner, job.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.attempts_used, 2);
    assert!(job.error.unwrap().message.ends_with("nope"));
    assert_cleaned(root.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_params_fail_the_job_naming_the_field() {
    let root = tempfile::tempdir().unwrap();
    let Some(engine) = engine(root.path()).await else {
        return;
    };
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = engine
        .submit(
            &owner,
            submit(
                json!({"phases": [{"name": "x", "argv": ["true"], "limits": {"processes": 0}}]}),
            ),
        )
        .await
        .unwrap();
    watch_to_end(&engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    let error = engine.get(&owner, job.id).await.unwrap().error.unwrap();
    assert_eq!(error.code, "invalid_params");
    assert!(
        error.message.contains("phases[0].limits.processes"),
        "{}",
        error.message
    );
}

fn processes_with_arg(arg: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_running_phase_within_a_heartbeat() {
    let root = tempfile::tempdir().unwrap();
    let Some(engine) = engine(root.path()).await else {
        return;
    };
    let config = WorkerConfig {
        heartbeat: Duration::from_millis(500),
        ..fast_worker()
    };
    let heartbeat = config.heartbeat;
    let worker = Worker::new(engine.clone(), config).spawn();
    let owner = Owner::new("alice");
    let marker = format!("{}", 600 + fastrand::u32(0..1_000_000));
    let job = engine
        .submit(
            &owner,
            submit(json!({"phases": [
                {"name": "wait", "argv": ["sh", "-c", format!("echo waiting; sleep {marker} & sleep {marker}")]},
                {"name": "after", "argv": ["true"]}
            ]})),
        )
        .await
        .unwrap();
    // Wait for the phase's first line, then for its processes.
    let mut stream = engine.watch(&owner, job.id, 0).await.unwrap();
    use futures::StreamExt;
    loop {
        let event = tokio::time::timeout(WATCH, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if matches!(&event.data, EventData::Log(line) if line.message == "[wait] waiting") {
            break;
        }
    }
    let start = Instant::now();
    while processes_with_arg(&marker) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the phase's processes did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = Instant::now();
    engine.cancel(&owner, job.id).await.unwrap();
    while processes_with_arg(&marker) > 0 {
        assert!(
            start.elapsed() < heartbeat + Duration::from_millis(1000),
            "the phase still runs {:?} after the cancel",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = watch_to_end(&engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    let job = engine.get(&owner, job.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.data, EventData::Stage { stage } if stage == "AFTER")),
        "the next phase ran after the cancel"
    );
    assert_cleaned(root.path());
}
