//! The `pipeline` orchestrator: input files, then phases of commands run one
//! after the other in one sandboxed working directory, then artifacts.
//!
//! # Params
//! ```json
//! {
//!   "files": [{"path": "main.c", "content": "int main(void) { return 0; }"}],
//!   "phases": [
//!     {"name": "build", "argv": ["cc", "-o", "app", "main.c"], "weight": 3},
//!     {"name": "test", "argv": ["./app"], "gate": true,
//!      "limits": {"wall_time_ms": 10000, "memory_bytes": 268435456}}
//!   ],
//!   "artifacts": ["app", "out/**/*.txt"],
//!   "on_failure": "fatal"
//! }
//! ```
//! - `files`: written into the working directory before the first phase
//!   (relative paths, no `..`).
//! - `phases`: `name` (ASCII letters, digits, `-`, `_`; unique), `argv` (run
//!   as given, no shell), `weight` (its share of the progress bar, default
//!   1), `allow_network` (only where the server allows it), `limits` (each
//!   only lower than the server's: `wall_time_ms`, `cpu_time_ms`,
//!   `memory_bytes`, `processes`, `file_size_bytes`, `open_files`,
//!   `output_bytes`), `gate` (a check: its stage is `GATES`).
//! - `artifacts`: globs relative to the working directory (`*` does not
//!   cross `/`, `**` does).
//! - `on_failure`: `fatal` (default) or `retryable`: what a failing phase
//!   does to the attempt.
//!
//! # Reports
//! Per phase: the stage (its name in capitals, or `GATES` for a gate), every
//! output line as a log (`[name] text`, stderr as warnings), a step `phase
//! NAME` (completed or failed, with `exit_code`, `duration_ms`, `failure`,
//! `limits_hit`, `output_truncated` in its detail), and the progress of the
//! weights done. Then an App `{"phases": [{"name", "exit_code",
//! "duration_ms"}], "artifacts": [matched paths]}`. The working directory is
//! removed in every case.

mod artifacts;
mod params;

use std::collections::VecDeque;
use std::path::PathBuf;

use async_trait::async_trait;
use projectengine_core::{
    ErrorKind, Job, JobCallbacks, LogLevel, NewApp, Orchestrator, OrchestratorError, Step,
};
use projectengine_sandbox::{
    Failure, Isolation, Limits, Outcome, Sandbox, SandboxConfig, Stream, Workdir,
};
use serde_json::json;
use tokio::sync::OnceCell;

pub use params::OnFailure;
use params::{Phase, Pipeline};

/// The pipeline's settings: the sandbox, and the caps on what a job may ask.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PipelineConfig {
    /// Each phase's limits, and the most a phase may ask for.
    pub limits: Limits,
    /// Whether a phase may ask for the network.
    pub allow_network: bool,
    /// Where working directories are created (the sandbox's default: the
    /// system's temporary directory).
    pub workdir_root: Option<PathBuf>,
    /// Run even when the host cannot isolate (see
    /// [`Isolation::AllowUnsandboxed`]).
    pub allow_unsandboxed: bool,
    /// Most phases in a job.
    pub max_phases: usize,
    /// Most input files in a job.
    pub max_files: usize,
    /// Most bytes of input file content in a job.
    pub max_input_bytes: usize,
    /// Output lines of a failing phase quoted in the job's error.
    pub tail_lines: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            allow_network: false,
            workdir_root: None,
            allow_unsandboxed: false,
            max_phases: 32,
            max_files: 1000,
            max_input_bytes: 8 << 20,
            tail_lines: 20,
        }
    }
}

/// Runs a job's phases in the sandbox. The sandbox is set up at the first
/// job (a host that cannot isolate fails that job, retryably, with
/// `sandbox_unavailable`), so a server without `bwrap` still starts.
#[derive(Debug)]
pub struct PipelineOrchestrator {
    config: PipelineConfig,
    sandbox: OnceCell<Sandbox>,
}

impl PipelineOrchestrator {
    /// A pipeline with these settings.
    pub fn new(config: PipelineConfig) -> Self {
        Self {
            config,
            sandbox: OnceCell::new(),
        }
    }

    /// A pipeline running in `sandbox` (whose working-directory and isolation
    /// settings then apply, not `config`'s).
    pub fn with_sandbox(config: PipelineConfig, sandbox: Sandbox) -> Self {
        Self {
            config,
            sandbox: OnceCell::new_with(Some(sandbox)),
        }
    }

    /// The sandbox, set up at the first call.
    pub(crate) async fn sandbox(&self) -> Result<&Sandbox, OrchestratorError> {
        self.sandbox
            .get_or_try_init(|| async {
                let mut config = SandboxConfig::default();
                if let Some(root) = &self.config.workdir_root {
                    config.workdir_root = root.clone();
                }
                if self.config.allow_unsandboxed {
                    config.isolation = Isolation::AllowUnsandboxed;
                }
                Sandbox::new(config).await
            })
            .await
            .map_err(|e| {
                OrchestratorError::retryable(e.to_string()).with_code("sandbox_unavailable")
            })
    }
}

impl Default for PipelineOrchestrator {
    fn default() -> Self {
        Self::new(PipelineConfig::default())
    }
}

/// Text safe for a report: NUL, which the store refuses, becomes U+FFFD.
fn clean(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

fn sandbox_error(e: projectengine_sandbox::Error) -> OrchestratorError {
    OrchestratorError::retryable(e.to_string()).with_code("sandbox_error")
}

#[async_trait]
impl Orchestrator for PipelineOrchestrator {
    async fn run(&self, job: &Job, cb: &dyn JobCallbacks) -> Result<(), OrchestratorError> {
        // The working directory is removed as it drops.
        self.run_kept(job, cb).await.map(drop)
    }
}

impl PipelineOrchestrator {
    /// Runs the job like [`Orchestrator::run`], and answers its working
    /// directory, still there (removed when dropped), for a step that
    /// follows in the same sandbox.
    pub(crate) async fn run_kept(
        &self,
        job: &Job,
        cb: &dyn JobCallbacks,
    ) -> Result<Workdir, OrchestratorError> {
        let pipeline = Pipeline::parse(&job.params, &self.config)
            .map_err(|e| OrchestratorError::fatal(e.to_string()).with_code("invalid_params"))?;
        let sandbox = self.sandbox().await?;
        // Dropped on every way out of this function, which removes it.
        let workdir = sandbox.workdir().map_err(sandbox_error)?;
        for file in &pipeline.files {
            workdir
                .write_file(&file.path, file.content.as_bytes())
                .map_err(|e| OrchestratorError::fatal(e.to_string()).with_code("invalid_params"))?;
        }
        let total = pipeline.total_weight();
        let mut done = 0u64;
        let mut summary = Vec::with_capacity(pipeline.phases.len());
        for phase in &pipeline.phases {
            if cb.cancellation().is_cancelled() {
                return Err(OrchestratorError::cancelled());
            }
            let stage = if phase.gate {
                "GATES".to_owned()
            } else {
                phase.name.to_ascii_uppercase()
            };
            cb.stage(&stage).await?;
            let (outcome, tail) = self.run_phase(sandbox, &workdir, phase, cb).await?;
            let failure = outcome.failure;
            let status = if failure.is_none() {
                Step::completed(format!("phase {}", phase.name))
            } else {
                Step::failed(format!("phase {}", phase.name))
            };
            let duration_ms = u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX);
            cb.step(Step {
                detail: Some(json!({
                    "exit_code": outcome.exit_code(),
                    "duration_ms": duration_ms,
                    "failure": failure.map(|f| f.name()),
                    "limits_hit": outcome.limits_hit.iter().map(Failure::name).collect::<Vec<_>>(),
                    "output_truncated": outcome.output_truncated,
                    "gate": phase.gate,
                })),
                ..status
            })
            .await?;
            match failure {
                None => {}
                Some(Failure::Cancelled) => return Err(OrchestratorError::cancelled()),
                Some(failure) => {
                    return Err(phase_failed(&pipeline, phase, failure, &outcome, tail))
                }
            }
            summary.push(json!({
                "name": phase.name,
                "exit_code": outcome.exit_code(),
                "duration_ms": duration_ms,
            }));
            done += u64::from(phase.weight);
            cb.progress(u8::try_from(done * 100 / total).unwrap_or(100))
                .await?;
        }
        let matched = artifacts::matching_files(workdir.path(), &pipeline.artifacts);
        if !matched.is_empty() {
            cb.stage("COLLECTING").await?;
        }
        let mut collected = Vec::with_capacity(matched.len());
        for path in &matched {
            let (body, content_type) =
                artifacts::open(workdir.path(), path).await.map_err(|e| {
                    OrchestratorError::fatal(format!("artifact {path}: {e}"))
                        .with_code("artifact_unreadable")
                })?;
            let artifact = cb.put_artifact(path, &content_type, body).await?;
            collected.push(json!({
                "name": artifact.name,
                "size": artifact.size,
                "sha256": artifact.sha256,
                "content_type": artifact.content_type,
            }));
        }
        cb.publish_app(NewApp {
            name: format!("pipeline {}", job.id),
            payload: json!({
                "phases": summary,
                "artifact_patterns": pipeline.artifact_patterns,
                "artifacts": collected,
            }),
        })
        .await?;
        Ok(workdir)
    }

    /// Runs one phase, logging its lines; its outcome and last lines.
    async fn run_phase(
        &self,
        sandbox: &Sandbox,
        workdir: &Workdir,
        phase: &Phase,
        cb: &dyn JobCallbacks,
    ) -> Result<(Outcome, VecDeque<String>), OrchestratorError> {
        let mut running = sandbox
            .spawn(workdir, &phase.command, cb.cancellation().clone())
            .await
            .map_err(sandbox_error)?;
        let mut tail = VecDeque::with_capacity(self.config.tail_lines + 1);
        while let Some(line) = running.next_line().await {
            let text = clean(&line.text);
            let level = match line.stream {
                Stream::Stderr => LogLevel::Warn,
                _ => LogLevel::Info,
            };
            let cut = if line.cut { " …" } else { "" };
            if let Err(e) = cb
                .log(level, &format!("[{}] {text}{cut}", phase.name))
                .await
            {
                // The attempt cannot report any more (lost lease): stop the
                // phase, and be sure it is gone before its directory goes.
                let _ = running.kill().await;
                return Err(e.into());
            }
            if self.config.tail_lines > 0 {
                if tail.len() == self.config.tail_lines {
                    tail.pop_front();
                }
                tail.push_back(text);
            }
        }
        let outcome = running.wait().await.map_err(sandbox_error)?;
        Ok((outcome, tail))
    }
}

/// The attempt's error for a failing phase: its name, why, and its last
/// lines.
fn phase_failed(
    pipeline: &Pipeline,
    phase: &Phase,
    failure: Failure,
    outcome: &Outcome,
    tail: VecDeque<String>,
) -> OrchestratorError {
    let kind = match pipeline.on_failure {
        OnFailure::Retryable => ErrorKind::Retryable,
        OnFailure::Fatal => ErrorKind::Fatal,
    };
    let mut message = format!("phase {} failed: {failure}", phase.name);
    if outcome.output_truncated {
        message.push_str(" (output truncated)");
    }
    if !tail.is_empty() {
        message.push_str("\n--- last output ---\n");
        message.push_str(&Vec::from(tail).join("\n"));
    }
    let code = match failure {
        Failure::Exit(_) | Failure::Signal(_) => "phase_failed".to_owned(),
        other => format!("phase_{}", other.name()),
    };
    OrchestratorError::new(kind, code, message)
}
