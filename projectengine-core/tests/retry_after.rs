//! A retryable error that asks for a later retry (a provider's
//! `Retry-After`) is retried no sooner than asked, even when the worker's
//! backoff is shorter.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use projectengine_core::worker::Backoff;
use projectengine_core::{
    Engine, Job, JobCallbacks, JobStatus, Orchestrator, OrchestratorError, Owner, Registry, Submit,
    Worker, WorkerConfig,
};

/// Fails its first attempt, asking for a retry in 3 s.
#[derive(Default)]
struct RateLimited {
    runs: AtomicU32,
}

#[async_trait]
impl Orchestrator for RateLimited {
    async fn run(&self, _: &Job, _: &dyn JobCallbacks) -> Result<(), OrchestratorError> {
        if self.runs.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(OrchestratorError::retryable("rate limited")
                .with_retry_after(Duration::from_secs(3)));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_waits_for_the_asked_delay_not_the_shorter_backoff() {
    let engine = Engine::in_memory(Registry::new().register("limited", RateLimited::default()));
    let config = WorkerConfig {
        // A backoff far shorter than the delay asked for.
        backoff: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(100),
            jitter: false,
        },
        ..WorkerConfig::default()
    };
    let worker = Worker::new(engine.clone(), config).spawn();
    let owner = Owner::new("o");
    let job = engine.submit(&owner, Submit::new("p")).await.unwrap();
    // The first attempt fails at once; the job is queued again.
    let queued = loop {
        let now = engine.get(&owner, job.id).await.unwrap();
        if now.status == JobStatus::Queued && now.attempts_used == 1 {
            break now;
        }
        assert!(now.status != JobStatus::Failed, "{now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let failed_at = queued.updated_at;
    let wait = queued.run_at - failed_at;
    assert!(
        wait >= chrono::Duration::milliseconds(2900),
        "retried after {wait:?}, sooner than the 3 s asked"
    );
    // And it does run then.
    let done = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let now = engine.get(&owner, job.id).await.unwrap();
            if now.status == JobStatus::Succeeded {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the retry runs");
    assert_eq!(done.attempts_used, 2);
    worker.shutdown().await;
}
