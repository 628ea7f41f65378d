//! How to write an orchestrator: a small demo "app builder" that plans files,
//! generates them one step at a time (each kept as an artifact), reports
//! stages, progress and logs, honours
//! cancellation, asks for a retry on a transient failure, and publishes the App.
//!
//! Run it embedded: `cargo run --example custom_orchestrator`. The bundled
//! server registers it under the kind `demo-builder` (the real, LLM-driven
//! `app-builder` is `projectengine_orchestrators::AppBuilder`).

use std::time::Duration;

use async_trait::async_trait;
use projectengine_core::{
    Job, JobCallbacks, LogLevel, NewApp, Orchestrator, OrchestratorError, Step,
};
use serde_json::{json, Map, Value};

/// Generates a tiny app from the prompt: one file per word of it (at most 8).
#[derive(Clone, Debug)]
pub struct DemoBuilder {
    /// Pause per generated file, standing in for real work.
    pub step_delay: Duration,
}

impl Default for DemoBuilder {
    fn default() -> Self {
        Self {
            step_delay: Duration::from_millis(150),
        }
    }
}

#[async_trait]
impl Orchestrator for DemoBuilder {
    async fn run(&self, job: &Job, cb: &dyn JobCallbacks) -> Result<(), OrchestratorError> {
        cb.stage("PLANNING").await?;
        let files: Vec<String> = job
            .prompt
            .split_whitespace()
            .take(8)
            .map(|w| {
                format!(
                    "src/{}.rs",
                    w.to_lowercase().replace(|c: char| !c.is_alphanumeric(), "")
                )
            })
            .collect();
        cb.log(LogLevel::Info, &format!("planned {} files", files.len()))
            .await?;

        // A transient failure (a model endpoint timing out, say): the worker retries
        // the job with backoff while attempts remain.
        if job.params.get("flaky").and_then(Value::as_bool) == Some(true) && cb.attempt() == 1 {
            return Err(OrchestratorError::retryable(
                "the code model timed out; trying again",
            ));
        }

        cb.stage("GENERATING").await?;
        let mut out = Map::new();
        for (i, file) in files.iter().enumerate() {
            cb.step(Step::started(format!("write {file}"))).await?;
            tokio::select! {
                _ = tokio::time::sleep(self.step_delay) => {}
                // Cancel, timeout, shutdown: stop promptly.
                _ = cb.cancellation().cancelled() => return Err(OrchestratorError::cancelled()),
            }
            let source = format!("// {file}\npub fn run() {{}}\n");
            // Each generated file is also an artifact, downloadable on its own.
            cb.put_artifact(file, "text/x-rust; charset=utf-8", source.clone().into())
                .await?;
            out.insert(file.clone(), json!(source));
            cb.step(Step::completed(format!("write {file}")).detail(json!({ "bytes": 24 })))
                .await?;
            cb.progress(((i + 1) * 90 / files.len().max(1)) as u8)
                .await?;
        }

        cb.stage("PUBLISHING").await?;
        cb.publish_app(NewApp {
            name: job.prompt.chars().take(40).collect(),
            payload: json!({ "files": out, "entry": files.first() }),
        })
        .await?;
        cb.progress(100).await?;
        Ok(())
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> projectengine_core::Result<()> {
    use futures::StreamExt;
    use projectengine_core::{Engine, Owner, Registry, Submit, Worker, WorkerConfig};

    let registry = Registry::new().register("demo-builder", DemoBuilder::default());
    let engine = Engine::in_memory(registry);
    let worker = Worker::new(engine.clone(), WorkerConfig::default()).spawn();
    let owner = Owner::new("demo");
    let job = engine
        .submit(
            &owner,
            Submit::new("todo list with tags").params(json!({ "flaky": true })),
        )
        .await?;
    let mut events = engine.watch(&owner, job.id, 0).await?;
    while let Some(event) = events.next().await {
        let event = event?;
        println!(
            "{:>3} {:<16} {}",
            event.seq,
            event.data.kind(),
            serde_json::to_string(&event.data).unwrap_or_default()
        );
    }
    let app = engine.app_by_job(&owner, job.id).await?;
    println!(
        "app {}: {}",
        app.id,
        app.payload["files"].as_object().map_or(0, |f| f.len())
    );
    worker.shutdown().await;
    Ok(())
}
