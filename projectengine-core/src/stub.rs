//! A stub orchestrator for demos, tests and benchmarks.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::{
    ArtifactBody, Job, JobCallbacks, LogLevel, NewApp, Orchestrator, OrchestratorError, Step,
};

/// Makes `steps` steps, `delay` apart, then publishes an App of about
/// `app_bytes` bytes. Honours cancellation between steps.
///
/// A job's `params` may override the settings: `{"steps": 3, "delay_ms": 10,
/// "fail": "retryable" | "fatal", "panic": true, "fail_attempts": 2,
/// "ignore_cancel": true, "log_lines": 3}` — `fail` and `panic` make it fail on purpose (only in
/// the first `fail_attempts` attempts when that is given), for tests and demos of
/// retries; `ignore_cancel` makes it sleep through its cancellation;
/// `log_lines` logs that many lines before each step; `"progress": true`
/// reports the progress (`100 * i / steps`) after step `i`. `"artifacts": {"name":
/// bytes}` (or `{"name": {"bytes": n, "content_type": "text/plain"}}`) stores
/// those artifacts before the App, each streamed from a generator whose byte
/// `i` is `i % 251` ([`StubOrchestrator::artifact_byte`]). An attempt after
/// a reviewer's rejection logs the comment
/// ([`JobCallbacks::review_comment`]) and puts it in the App's payload as
/// `review_comment`.
#[derive(Clone, Debug)]
pub struct StubOrchestrator {
    /// Steps per job.
    pub steps: u32,
    /// Pause before each step.
    pub delay: Duration,
    /// Approximate size of the published App's payload.
    pub app_bytes: usize,
}

impl Default for StubOrchestrator {
    fn default() -> Self {
        Self {
            steps: 5,
            delay: Duration::from_millis(100),
            app_bytes: 1024,
        }
    }
}

impl StubOrchestrator {
    /// Byte `i` of every artifact the stub stores.
    pub fn artifact_byte(i: u64) -> u8 {
        (i % 251) as u8
    }

    /// A stream of `size` bytes of [`StubOrchestrator::artifact_byte`], made
    /// as it is read.
    fn artifact_body(size: u64) -> ArtifactBody {
        const CHUNK: u64 = 64 * 1024;
        let chunks = futures::stream::iter((0..size).step_by(CHUNK as usize)).map(move |start| {
            let end = (start + CHUNK).min(size);
            Ok(bytes::Bytes::from_iter(
                (start..end).map(Self::artifact_byte),
            ))
        });
        ArtifactBody::stream(chunks)
    }

    /// A stub with `steps` steps, `delay` apart.
    pub fn new(steps: u32, delay: Duration) -> Self {
        Self {
            steps,
            delay,
            ..Self::default()
        }
    }
}

#[async_trait]
impl Orchestrator for StubOrchestrator {
    async fn run(&self, job: &Job, cb: &dyn JobCallbacks) -> Result<(), OrchestratorError> {
        let p = &job.params;
        let steps = p
            .get("steps")
            .and_then(|v| v.as_u64())
            .map_or(self.steps, |v| v.min(10_000) as u32);
        let delay = p
            .get("delay_ms")
            .and_then(|v| v.as_u64())
            .map_or(self.delay, |ms| Duration::from_millis(ms.min(3_600_000)));
        let failing = p
            .get("fail_attempts")
            .and_then(|v| v.as_u64())
            .is_none_or(|n| u64::from(cb.attempt()) <= n);
        if failing && p.get("panic").and_then(|v| v.as_bool()) == Some(true) {
            panic!("the stub orchestrator was asked to panic");
        }
        match p.get("fail").and_then(|v| v.as_str()) {
            Some("retryable") if failing => {
                return Err(OrchestratorError::retryable("asked to fail (retryable)"))
            }
            Some("fatal") if failing => {
                return Err(OrchestratorError::fatal("asked to fail (fatal)"))
            }
            _ => {}
        }
        let ignore_cancel = p.get("ignore_cancel").and_then(|v| v.as_bool()) == Some(true);
        let report_progress = p.get("progress").and_then(|v| v.as_bool()) == Some(true);
        let log_lines = p
            .get("log_lines")
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
            .min(1000);
        let review_comment = cb.review_comment();
        if let Some(comment) = review_comment {
            cb.log(LogLevel::Info, &format!("review comment: {comment}"))
                .await?;
        }
        for i in 1..=steps {
            if ignore_cancel {
                tokio::time::sleep(delay).await;
            } else if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cb.cancellation().cancelled() => return Err(OrchestratorError::cancelled()),
                }
            }
            if cb.cancellation().is_cancelled() && !ignore_cancel {
                return Err(OrchestratorError::cancelled());
            }
            for l in 0..log_lines {
                cb.log(LogLevel::Debug, &format!("step {i}, line {l}"))
                    .await?;
            }
            cb.step(Step::completed(format!("step {i} of {steps}")))
                .await?;
            if report_progress {
                cb.progress((u64::from(i) * 100 / u64::from(steps)) as u8)
                    .await?;
            }
        }
        if steps == 0 {
            cb.log(LogLevel::Info, "nothing to do").await?;
        }
        if let Some(Value::Object(artifacts)) = p.get("artifacts") {
            for (name, spec) in artifacts {
                let size = spec
                    .as_u64()
                    .or_else(|| spec.get("bytes").and_then(Value::as_u64))
                    .unwrap_or(0);
                let content_type = spec
                    .get("content_type")
                    .and_then(Value::as_str)
                    .unwrap_or("application/octet-stream");
                cb.put_artifact(name, content_type, Self::artifact_body(size))
                    .await?;
            }
        }
        let filler = "x".repeat(self.app_bytes.saturating_sub(64));
        // Built by hand: `json!` would serialize (copy) the filler again.
        let mut payload = Map::from_iter([
            ("prompt_len".to_owned(), Value::from(job.prompt.len())),
            ("steps".to_owned(), Value::from(steps)),
            ("body".to_owned(), Value::String(filler)),
        ]);
        if let Some(comment) = review_comment {
            payload.insert("review_comment".to_owned(), Value::from(comment));
        }
        cb.publish_app(NewApp {
            name: format!("app for job {}", job.id),
            payload: Value::Object(payload),
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    use crate::{
        App, AppId, Job, JobCallbacks, JobId, LogLevel, NewApp, NewJob, Orchestrator, Owner,
        Result, Step, StubOrchestrator,
    };

    #[derive(Default)]
    struct Recorder {
        steps: Mutex<Vec<String>>,
        app: Mutex<Option<NewApp>>,
        token: CancellationToken,
    }

    #[async_trait]
    impl JobCallbacks for Recorder {
        async fn stage(&self, _: &str) -> Result<()> {
            Ok(())
        }
        async fn step(&self, step: Step) -> Result<()> {
            self.steps.lock().unwrap().push(step.name);
            Ok(())
        }
        async fn progress(&self, _: u8) -> Result<()> {
            Ok(())
        }
        async fn log(&self, _: LogLevel, _: &str) -> Result<()> {
            Ok(())
        }
        async fn publish_app(&self, app: NewApp) -> Result<App> {
            *self.app.lock().unwrap() = Some(app.clone());
            Ok(App {
                id: AppId::new(),
                job_id: JobId::new(),
                attempt: 1,
                owner: Owner::new("o"),
                name: app.name,
                payload: app.payload,
                created_at: chrono::Utc::now(),
            })
        }
        async fn put_artifact(
            &self,
            _: &str,
            _: &str,
            _: crate::ArtifactBody,
        ) -> Result<crate::Artifact> {
            Err(crate::Error::unavailable(
                "this recorder keeps no artifacts",
            ))
        }
        fn cancellation(&self) -> &CancellationToken {
            &self.token
        }
        fn attempt(&self) -> u32 {
            1
        }
        fn review_comment(&self) -> Option<&str> {
            None
        }
    }

    /// A job as a store makes it, with `prompt`.
    async fn job(prompt: &str) -> Job {
        let new = NewJob {
            id: JobId::new(),
            owner: Owner::new("o"),
            kind: "stub".into(),
            queue: "default".into(),
            prompt: prompt.into(),
            params: json!({}),
            priority: 0,
            max_attempts: 1,
            timeout_ms: 1000,
            run_at: chrono::Utc::now(),
            max_queued: None,
            webhook: None,
            notify_deployment: false,
            trace_parent: None,
            review: false,
            parent_id: None,
            child_key: None,
            project: None,
            depends_on: Vec::new(),
            concurrency_key: None,
            concurrency_limit: None,
        };
        let store = crate::memory::MemoryStore::new();
        crate::Store::create_job(&store, new)
            .await
            .expect("create_job")
            .job
    }

    #[tokio::test]
    async fn the_stub_reports_its_steps_and_app() {
        let stub = StubOrchestrator::new(3, std::time::Duration::ZERO);
        let job = job("four").await;
        let rec = Recorder::default();
        stub.run(&job, &rec).await.expect("the stub succeeds");
        assert_eq!(
            *rec.steps.lock().unwrap(),
            ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
        );
        let app = rec.app.lock().unwrap().take().expect("an app");
        assert_eq!(app.name, format!("app for job {}", job.id));
        let body = "x".repeat(1024 - 64);
        assert_eq!(
            app.payload,
            json!({ "prompt_len": 4, "steps": 3, "body": body })
        );
    }
}
