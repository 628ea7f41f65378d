//! BUILDING: one build round is one run of the `pipeline` orchestrator
//! (files in, one `build` phase in the sandbox, the output collected as
//! artifacts), seen through callbacks that make its reports part of the
//! app builder's.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use projectengine_core::{
    App, AppId, Artifact, ArtifactBody, Job, JobCallbacks, LogLevel, NewApp, OrchestratorError,
    Result, Step,
};
use projectengine_sandbox::Workdir;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::plan::BuildSpec;
use crate::PipelineOrchestrator;

/// What a build round ended with.
pub(crate) enum Round {
    /// Built: the pipeline's App payload (phases, collected artifacts), and
    /// the working directory with the sources and the output (removed when
    /// dropped).
    Built(Value, Workdir),
    /// The build command failed: the pipeline's message (with the last
    /// output lines).
    Failed(String),
}

/// Runs one build round of `files` with `spec`.
pub(crate) async fn run(
    pipeline: &PipelineOrchestrator,
    job: &Job,
    cb: &dyn JobCallbacks,
    files: &BTreeMap<String, String>,
    spec: &BuildSpec,
    round: u32,
) -> Result<Round, OrchestratorError> {
    let mut build_job = job.clone();
    build_job.params = json!({
        "files": files.iter().map(|(path, content)| json!({"path": path, "content": content})).collect::<Vec<_>>(),
        "phases": [{"name": "build", "argv": spec.argv}],
        "artifacts": [format!("{}/**", spec.output)],
    });
    let inner = Inner {
        cb,
        job,
        round,
        app: Mutex::new(None),
    };
    match pipeline.run_kept(&build_job, &inner).await {
        Ok(workdir) => {
            let app = inner
                .app
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or(Value::Null);
            Ok(Round::Built(app, workdir))
        }
        Err(e) if e.code == "phase_failed" => Ok(Round::Failed(e.message)),
        Err(e) => Err(e),
    }
}

/// The pipeline's callbacks: its steps renamed to the round, its stages
/// and progress left out (the builder reports its own), its App kept.
struct Inner<'a> {
    cb: &'a dyn JobCallbacks,
    job: &'a Job,
    round: u32,
    app: Mutex<Option<Value>>,
}

#[async_trait]
impl JobCallbacks for Inner<'_> {
    async fn stage(&self, _stage: &str) -> Result<()> {
        Ok(())
    }

    async fn step(&self, step: Step) -> Result<()> {
        self.cb
            .step(Step {
                name: format!("build round {}", self.round),
                ..step
            })
            .await
    }

    async fn progress(&self, _percent: u8) -> Result<()> {
        Ok(())
    }

    async fn log(&self, level: LogLevel, message: &str) -> Result<()> {
        self.cb.log(level, message).await
    }

    async fn publish_app(&self, app: NewApp) -> Result<App> {
        *self.app.lock().unwrap_or_else(|e| e.into_inner()) = Some(app.payload.clone());
        Ok(App {
            id: AppId::new(),
            job_id: self.job.id,
            attempt: self.cb.attempt(),
            owner: self.job.owner.clone(),
            name: app.name,
            payload: app.payload,
            created_at: chrono::Utc::now(),
        })
    }

    async fn put_artifact(
        &self,
        name: &str,
        content_type: &str,
        body: ArtifactBody,
    ) -> Result<Artifact> {
        self.cb.put_artifact(name, content_type, body).await
    }

    fn cancellation(&self) -> &CancellationToken {
        self.cb.cancellation()
    }

    fn attempt(&self) -> u32 {
        self.cb.attempt()
    }

    fn review_comment(&self) -> Option<&str> {
        self.cb.review_comment()
    }

    async fn submit_child(&self, key: &str, spec: projectengine_core::Submit) -> Result<Job> {
        self.cb.submit_child(key, spec).await
    }
}
