//! The `app-builder` orchestrator: agents plan, generate, build, fix and
//! deploy a small site from a prompt.
//!
//! # Stages
//! - `PLANNING`: the `planner` agent answers a site plan as JSON
//!   ([`Plan`]: name, description, files with their purpose, an optional
//!   build); a reply that does not fit the schema is sent back once with the
//!   reason, and a second bad reply fails the job (`invalid_plan`).
//! - `GENERATING`: the `generator` agent writes each file (a step per file);
//!   each is kept as the artifact `source/PATH`.
//! - `BUILDING`: the files are built by the `pipeline` orchestrator in the
//!   sandbox (offline, limited): the build command of the job's params, else
//!   of the plan, else a static copy into `site/`. A step `build round N`
//!   per round; the output directory's files become artifacts.
//! - `FIXING`: after a failed build, the `fixer` agent gets the errors and
//!   the files and answers whole-file patches (a step `fix round N`); an
//!   answer that is not valid patches is sent back once with the reason (a
//!   failed step `fix round N`), and a second bad answer fails the job
//!   (`invalid_patch`); then the build runs again, up to `max_fix_rounds`
//!   fixes.
//! - `DEPLOYING`: the built site is served from its artifacts at
//!   `{deploy_base_url}/sites/{job_id}/` (see `projectengine-http`'s sites
//!   router); with a [`DeployCommand`], that command also runs in the
//!   build's working directory, in the sandbox, with the network for this
//!   step only, and the URL it reports is the deploy URL (a failure fails
//!   the job: `deploy_failed`, `deploy_no_url`, `deploy_bad_url`). A step
//!   `deploy`.
//!
//! Then the App: `plan`, `files` (path, bytes), `build` (command, output,
//! rounds, artifacts), `usage` (tokens in and out, cost, every call with its
//! agent and model), `deploy` (`url`, `prefix`, `site_url` — the built-in
//! host's — and `command_url` — the deploy command's) and `deploy_url` (the
//! deploy command's URL, else the built-in host's).
//!
//! The model's text is logged as it streams (`[agent] text`, one line per
//! `log_interval`). When every model of an agent stays rate-limited or
//! overloaded, the attempt ends retryable (`llm_exhausted`, the message
//! saying when to retry); a refused request or a missing model list is
//! fatal.
//!
//! # Params (all optional)
//! ```json
//! {"build": {"argv": ["npm", "run", "build"], "output": "dist"}, "max_fix_rounds": 2}
//! ```

mod agents;
mod build;
mod deploy;
mod patch;
mod plan;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use projectengine_core::{
    ArtifactBody, ErrorKind, Job, JobCallbacks, NewApp, Orchestrator, OrchestratorError, Step,
};
use projectengine_llm::{Llm, Message};
use projectengine_sandbox::Sandbox;
use serde::Deserialize;
use serde_json::{json, Value};

use agents::{call, Ledger};
pub use agents::{default_agents, FIXER_PROMPT, GENERATOR_PROMPT, PLANNER_PROMPT};
use build::Round;
pub use deploy::{DeployCommand, DEPLOY_URL_FILE};
use plan::SOURCE_PREFIX;
pub use plan::{BuildSpec, Plan, PlannedFile};

use crate::{PipelineConfig, PipelineOrchestrator};

/// The app builder's settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AppBuilderConfig {
    /// The planning agent's name.
    pub planner: String,
    /// The generating agent's name.
    pub generator: String,
    /// The fixing agent's name.
    pub fixer: String,
    /// Fix rounds after a failed build (a job may ask for fewer).
    pub max_fix_rounds: u32,
    /// Most files in a plan.
    pub max_files: usize,
    /// Most bytes of a generated file.
    pub max_file_bytes: usize,
    /// Where deployed sites are served (`{base}/sites/{job_id}/`); none: no
    /// URL in the App.
    pub deploy_base_url: Option<String>,
    /// How often streamed text is logged.
    pub log_interval: Duration,
    /// The sandbox of the builds.
    pub pipeline: PipelineConfig,
    /// A command that deploys the built site to a real host (none: the
    /// site is only served from its artifacts).
    pub deploy: Option<DeployCommand>,
}

impl Default for AppBuilderConfig {
    fn default() -> Self {
        Self {
            planner: "planner".into(),
            generator: "generator".into(),
            fixer: "fixer".into(),
            max_fix_rounds: 2,
            max_files: 30,
            max_file_bytes: 256 * 1024,
            deploy_base_url: None,
            log_interval: Duration::from_millis(250),
            pipeline: PipelineConfig::default(),
            deploy: None,
        }
    }
}

/// Builds a site from a prompt with LLM agents (see the module docs).
#[derive(Debug)]
pub struct AppBuilder {
    llm: Llm,
    config: AppBuilderConfig,
    pipeline: PipelineOrchestrator,
}

impl AppBuilder {
    /// A builder calling `llm`'s agents, building in a sandbox set up at the
    /// first job.
    pub fn new(llm: Llm, config: AppBuilderConfig) -> Self {
        let pipeline = PipelineOrchestrator::new(config.pipeline.clone());
        Self {
            llm,
            config,
            pipeline,
        }
    }

    /// A builder building in `sandbox`.
    pub fn with_sandbox(llm: Llm, config: AppBuilderConfig, sandbox: Sandbox) -> Self {
        let pipeline = PipelineOrchestrator::with_sandbox(config.pipeline.clone(), sandbox);
        Self {
            llm,
            config,
            pipeline,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    build: Option<BuildSpec>,
    #[serde(default)]
    max_fix_rounds: Option<u32>,
}

fn invalid_params(reason: impl std::fmt::Display) -> OrchestratorError {
    OrchestratorError::fatal(format!("invalid params: {reason}")).with_code("invalid_params")
}

/// A model's file content: the reply, without a code fence around it.
fn strip_fence(reply: &str) -> String {
    let t = reply.trim();
    if let Some(rest) = t.strip_prefix("```") {
        if let Some(end) = rest.rfind("```") {
            let inner = &rest[..end];
            // Drop the info string (```html).
            let inner = inner.split_once('\n').map_or("", |(_, body)| body);
            return inner.to_owned();
        }
    }
    let mut s = reply.to_owned();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

#[async_trait]
impl Orchestrator for AppBuilder {
    async fn run(&self, job: &Job, cb: &dyn JobCallbacks) -> Result<(), OrchestratorError> {
        let params: Params = if job.params.is_null() {
            Params::default()
        } else {
            serde_path_to_error::deserialize(&job.params).map_err(invalid_params)?
        };
        if let Some(b) = &params.build {
            b.validate().map_err(invalid_params)?;
        }
        let max_fix_rounds = params
            .max_fix_rounds
            .unwrap_or(self.config.max_fix_rounds)
            .min(self.config.max_fix_rounds);
        let interval = self.config.log_interval;
        let mut ledger = Ledger::default();

        // PLANNING
        cb.stage("PLANNING").await?;
        let ask = format!(
            "Plan a small website for this request:\n\n{}\n\nAnswer with one JSON object of this form:\n{}\nKeep it small: at most {} files. Leave `build` null for a static site.",
            job.prompt,
            plan::SCHEMA,
            self.config.max_files
        );
        let mut messages = vec![Message::user(ask)];
        let mut plan = None;
        for try_no in 1..=2 {
            let reply = call(
                &self.llm,
                cb,
                &mut ledger,
                interval,
                &self.config.planner,
                "plan",
                &messages,
            )
            .await?;
            match plan::parse(&reply.text, self.config.max_files) {
                Ok(p) => {
                    plan = Some(p);
                    break;
                }
                Err(reason) if try_no == 1 => {
                    cb.step(Step {
                        detail: Some(json!({"reason": reason})),
                        ..Step::failed("plan")
                    })
                    .await?;
                    messages.push(Message::assistant(reply.text));
                    messages.push(Message::user(format!(
                        "That plan is invalid: {reason}. Answer again with one JSON object of the form given, nothing else."
                    )));
                }
                Err(reason) => {
                    return Err(OrchestratorError::fatal(format!(
                        "the planner's answer is not a valid plan, twice: {reason}"
                    ))
                    .with_code("invalid_plan"))
                }
            }
        }
        let Some(plan) = plan else {
            return Err(OrchestratorError::fatal("no plan").with_code("invalid_plan"));
        };
        cb.step(Step {
            detail: Some(json!({"name": plan.name, "files": plan.files.len()})),
            ..Step::completed("plan")
        })
        .await?;
        cb.progress(10).await?;

        // GENERATING
        cb.stage("GENERATING").await?;
        let plan_json = serde_json::to_string_pretty(&plan).unwrap_or_default();
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        let count = plan.files.len();
        for (i, file) in plan.files.iter().enumerate() {
            if cb.cancellation().is_cancelled() {
                return Err(OrchestratorError::cancelled());
            }
            let ask = format!(
                "The site plan:\n{plan_json}\n\nWrite the file `{}` ({}). Answer with its content only.",
                file.path, file.purpose
            );
            let reply = call(
                &self.llm,
                cb,
                &mut ledger,
                interval,
                &self.config.generator,
                &format!("generate {}", file.path),
                &[Message::user(ask)],
            )
            .await?;
            let content = strip_fence(&reply.text);
            if content.len() > self.config.max_file_bytes {
                return Err(OrchestratorError::fatal(format!(
                    "{}: {} bytes generated, at most {} allowed",
                    file.path,
                    content.len(),
                    self.config.max_file_bytes
                ))
                .with_code("file_too_large"));
            }
            self.keep_source(cb, &file.path, &content).await?;
            cb.step(Step {
                detail: Some(json!({
                    "bytes": content.len(),
                    "model": reply.model,
                    "input_tokens": reply.usage.input_tokens,
                    "output_tokens": reply.usage.output_tokens,
                })),
                ..Step::completed(format!("generate {}", file.path))
            })
            .await?;
            files.insert(file.path.clone(), content);
            cb.progress(u8::try_from(10 + 50 * (i + 1) / count).unwrap_or(60))
                .await?;
        }

        // BUILDING, FIXING
        let spec = params
            .build
            .clone()
            .or_else(|| plan.build.clone())
            .unwrap_or_else(BuildSpec::static_copy);
        let mut round = 1;
        let (built, workdir) = loop {
            cb.stage("BUILDING").await?;
            match build::run(&self.pipeline, job, cb, &files, &spec, round).await? {
                Round::Built(app, workdir) => break (app, workdir),
                Round::Failed(message) if round <= max_fix_rounds => {
                    cb.stage("FIXING").await?;
                    let patched = self
                        .fix(
                            cb,
                            &mut ledger,
                            &plan_json,
                            &spec,
                            &message,
                            &mut files,
                            round,
                        )
                        .await?;
                    cb.step(Step {
                        detail: Some(json!({"patched": patched})),
                        ..Step::completed(format!("fix round {round}"))
                    })
                    .await?;
                    round += 1;
                }
                Round::Failed(message) => {
                    return Err(OrchestratorError::fatal(format!(
                        "the build still fails after {max_fix_rounds} fix rounds: {message}"
                    ))
                    .with_code("build_failed"))
                }
            }
        };
        cb.progress(85).await?;

        // DEPLOYING
        cb.stage("DEPLOYING").await?;
        let artifacts = built["artifacts"].as_array().cloned().unwrap_or_default();
        if artifacts.is_empty() {
            return Err(OrchestratorError::fatal(format!(
                "the build left no files in `{}`",
                spec.output
            ))
            .with_code("empty_output"));
        }
        let prefix = format!("{}/", spec.output);
        let site_url = self
            .config
            .deploy_base_url
            .as_ref()
            .map(|base| format!("{}/sites/{}/", base.trim_end_matches('/'), job.id));
        let deployed = match &self.config.deploy {
            Some(command) => {
                let sandbox = self.pipeline.sandbox().await?;
                let result = deploy::run(
                    sandbox,
                    &workdir,
                    command,
                    job,
                    cb,
                    &spec.output,
                    &plan.name,
                )
                .await;
                match result {
                    Ok(url) => Some(url),
                    Err(e) => {
                        if e.kind != ErrorKind::Cancelled {
                            cb.step(Step {
                                detail: Some(json!({"code": e.code, "site_url": site_url})),
                                ..Step::failed("deploy")
                            })
                            .await?;
                        }
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        drop(workdir);
        let deploy_url = deployed.clone().or_else(|| site_url.clone());
        cb.step(Step {
            detail: Some(json!({
                "url": deploy_url,
                "site_url": site_url,
                "command": self.config.deploy.is_some(),
                "files": artifacts.len(),
            })),
            ..Step::completed("deploy")
        })
        .await?;
        cb.progress(100).await?;

        let usage = ledger.report();
        let cost = usage["cost_usd"].clone();
        cb.publish_app(NewApp {
            name: plan.name.clone(),
            payload: json!({
                "plan": plan,
                "files": files.iter().map(|(p, c)| json!({"path": p, "bytes": c.len(), "artifact": format!("{SOURCE_PREFIX}/{p}")})).collect::<Vec<_>>(),
                "build": {
                    "command": spec.argv,
                    "output": spec.output,
                    "rounds": round,
                    "artifacts": artifacts,
                },
                "usage": usage,
                "cost_usd": cost,
                "deploy": {"url": deploy_url, "prefix": prefix, "site_url": site_url, "command_url": deployed},
                "deploy_url": deploy_url,
            }),
        })
        .await?;
        Ok(())
    }
}

impl AppBuilder {
    async fn keep_source(
        &self,
        cb: &dyn JobCallbacks,
        path: &str,
        content: &str,
    ) -> Result<(), OrchestratorError> {
        let content_type = mime_guess::from_path(path)
            .first_raw()
            .unwrap_or("text/plain");
        let content_type =
            if content_type.starts_with("text/") || content_type.ends_with("javascript") {
                format!("{content_type}; charset=utf-8")
            } else {
                content_type.to_owned()
            };
        cb.put_artifact(
            &format!("{SOURCE_PREFIX}/{path}"),
            &content_type,
            ArtifactBody::Bytes(content.to_owned().into_bytes().into()),
        )
        .await?;
        Ok(())
    }

    /// One fix round: the fixer's whole-file patches applied to `files`;
    /// the paths patched.
    #[allow(clippy::too_many_arguments)]
    async fn fix(
        &self,
        cb: &dyn JobCallbacks,
        ledger: &mut Ledger,
        plan_json: &str,
        spec: &BuildSpec,
        failure: &str,
        files: &mut BTreeMap<String, String>,
        round: u32,
    ) -> Result<Vec<String>, OrchestratorError> {
        let mut listing = String::new();
        for (path, content) in files.iter() {
            listing.push_str(&format!("=== {path} ===\n{content}\n"));
        }
        let ask = format!(
            "The site plan:\n{plan_json}\n\nThe build command {:?} failed:\n{failure}\n\nThe files:\n{listing}\nAnswer with one JSON object {} that makes the build pass.",
            spec.argv,
            patch::FORM
        );
        let name = format!("fix round {round}");
        let mut messages = vec![Message::user(ask)];
        let mut patches = None;
        for try_no in 1..=2 {
            let reply = call(
                &self.llm,
                cb,
                ledger,
                self.config.log_interval,
                &self.config.fixer,
                &name,
                &messages,
            )
            .await?;
            match patch::parse(
                &reply.text,
                self.config.max_files,
                self.config.max_file_bytes,
            ) {
                Ok(p) => {
                    patches = Some(p);
                    break;
                }
                Err(reason) => {
                    cb.step(Step {
                        detail: Some(json!({"reason": reason, "try": try_no})),
                        ..Step::failed(name.clone())
                    })
                    .await?;
                    if try_no == 2 {
                        return Err(OrchestratorError::fatal(format!(
                            "fix round {round}: the fixer's answer is not valid patches, twice: {reason}"
                        ))
                        .with_code("invalid_patch"));
                    }
                    messages.push(Message::assistant(reply.text));
                    messages.push(Message::user(format!(
                        "Those patches are invalid: {reason}. Answer again with one JSON object {}, nothing else.",
                        patch::FORM
                    )));
                }
            }
        }
        let Some(patches) = patches else {
            return Err(OrchestratorError::fatal("no patches").with_code("invalid_patch"));
        };
        let mut patched = Vec::new();
        for patch in patches {
            self.keep_source(cb, &patch.path, &patch.content).await?;
            files.insert(patch.path.clone(), patch.content);
            patched.push(patch.path);
        }
        Ok(patched)
    }
}

/// The part of the App a site host needs: where the built files are.
pub fn deployed_prefix(app_payload: &Value) -> Option<&str> {
    app_payload["deploy"]["prefix"].as_str()
}
