//! The core testkit's engine scenarios with their orchestrator run as a
//! remote agent: the same `StubOrchestrator` the in-process runs use, driven
//! by this crate's [`Agent`] through the agent protocol against a real
//! server (the agent routes on a real socket) over the scenario's engine.
//!
//! Run here, as they are in process (`projectengine-core`'s
//! `engine_suite!`): every scenario in which a worker runs jobs and the
//! protocol has the same outcome —
//! `check_job_runs_to_its_app`, `check_watch_across_reconnects`,
//! `check_watch_of_a_finished_job`, `check_owner_scoping`,
//! `check_cancel_queued_job`, `check_cancel_running_job`,
//! `check_retries_with_backoff_then_failed` (the server's backoff, as the
//! agent names no delay), `check_fatal_error_fails_at_once`,
//! `check_panic_fails_the_attempt_not_the_worker`,
//! `check_owner_retry_runs_again` and `check_lost_worker_is_recovered` (a
//! worker dies holding the job; recovery, run beside the server, requeues
//! it and an agent finishes it).
//!
//! Not run here:
//! - `check_submit_validation`, `check_cursor_pages_through_engine`: no job
//!   runs; they test the engine alone, whoever runs jobs.
//! - `check_timeout`: an agent stops an attempt at the job's timeout too,
//!   but the protocol's `finish` has no `timed_out` outcome: the attempt
//!   ends `failed` with the code `timeout`, where the scenario expects
//!   `timed_out`.
//! - `check_graceful_shutdown_releases`: a stopping agent finishes its
//!   running attempt (the protocol has no outcome that gives a job back
//!   without spending its attempt), where the scenario expects a release.
//! - `check_logs_and_steps_with_a_slow_store`: it checks the in-process
//!   worker's write-behind of reports; an agent's reports go through its
//!   own batching (checked in `remote.rs`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use projectengine_agent::{Agent, Client};
use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::testkit::scenarios::{self, Runner, RunningWorker, Setup};
use projectengine_core::testkit::QUEUE_VISIBILITY_TIMEOUT;
use projectengine_core::worker::recover_once;
use projectengine_core::{
    CancellationToken, Engine, Job, JobCallbacks, Notifier, Orchestrator, OrchestratorError, Queue,
    Registry, Store, WorkerConfig,
};
use projectengine_http::{agent_routes, AgentConfig, ApiState, AttemptTokens, JwtAuth};

const SECRET: &str = "a test secret that is long enough for HS256";

/// Runs a scenario's jobs on remote agents.
struct RemoteAgents;

/// An `Arc<dyn Orchestrator>` as an orchestrator.
struct Shared(Arc<dyn Orchestrator>);

#[async_trait]
impl Orchestrator for Shared {
    async fn run(&self, job: &Job, cb: &dyn JobCallbacks) -> Result<(), OrchestratorError> {
        self.0.run(job, cb).await
    }
}

/// A server with the agent routes, `concurrency` agents and recovery.
struct Running {
    stop: CancellationToken,
    agents: tokio::task::JoinHandle<()>,
    recovery: Option<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<()>,
}

#[async_trait]
impl RunningWorker for Running {
    async fn shutdown(self: Box<Self>) {
        self.stop.cancel();
        self.agents.await.expect("the agents stopped");
        if let Some(recovery) = self.recovery {
            let _ = recovery.await;
        }
        self.server.abort();
    }
}

impl Runner for RemoteAgents {
    fn register(
        &self,
        registry: Registry,
        kind: String,
        _queue: String,
        _orchestrator: Arc<dyn Orchestrator>,
    ) -> Registry {
        // No in-process orchestrator: the kind's jobs wait for agents.
        registry.register_remote(kind)
    }

    fn start(
        &self,
        engine: &Engine,
        orchestrator: Arc<dyn Orchestrator>,
        config: WorkerConfig,
    ) -> Box<dyn RunningWorker> {
        let kinds: Vec<String> = engine
            .registry()
            .kinds()
            .filter(|k| engine.registry().get(k).is_some_and(|r| r.remote))
            .map(str::to_owned)
            .collect();
        let auth = JwtAuth::hs256(SECRET).expect("secret");
        let agents = AgentConfig::new(
            auth.clone(),
            AttemptTokens::hs256(SECRET).expect("attempt secret"),
        )
        // A longer lease than in process: the attempt's calls go over HTTP,
        // and a panicking orchestrator's backtrace alone may take longer
        // than a second to print on a busy machine.
        .lease(config.lease.max(Duration::from_secs(5)), config.heartbeat)
        .max_wait(Duration::from_secs(5));
        let routes = agent_routes(ApiState::new(engine.clone(), auth.clone()), agents);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, routes).await;
        });
        let token = auth
            .mint_agent("scenario-agent", &kinds, Duration::from_secs(3600))
            .expect("mint");
        let stop = CancellationToken::new();
        // Built in a task: a client takes a while to set up, and the caller
        // goes on at once, as after spawning an in-process worker.
        let agents = tokio::spawn({
            let stop = stop.clone();
            async move {
                let client = Client::new(&url).expect("client");
                let agents: Vec<_> = (0..config.concurrency)
                    .map(|_| {
                        let agent =
                            Agent::new(client.clone(), &token, Shared(orchestrator.clone()))
                                .wait(config.pop_wait)
                                .cancel_grace(config.cancel_grace);
                        let stop = stop.clone();
                        tokio::spawn(async move {
                            agent.run(stop).await.expect("the agent runs");
                        })
                    })
                    .collect();
                for agent in agents {
                    agent.await.expect("the agent's task");
                }
            }
        });
        // What a worker process of the deployment does beside the agents.
        let recovery = config.recovery_every.map(|every| {
            let engine = engine.clone();
            let stop = stop.clone();
            let overdue = config.recovery_overdue;
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let _ = recover_once(&engine, overdue).await;
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            })
        });
        Box::new(Running {
            stop,
            agents,
            recovery,
            server,
        })
    }
}

fn setup() -> Setup {
    Setup::new(
        (
            Arc::new(MemoryStore::new()) as Arc<dyn Store>,
            Arc::new(MemoryQueue::new(QUEUE_VISIBILITY_TIMEOUT)) as Arc<dyn Queue>,
            Arc::new(MemoryNotifier::default()) as Arc<dyn Notifier>,
        ),
        RemoteAgents,
    )
}

macro_rules! remote_scenarios {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                scenarios::$check(setup()).await;
            }
        )*
    };
}

remote_scenarios!(
    check_job_runs_to_its_app,
    check_watch_across_reconnects,
    check_watch_of_a_finished_job,
    check_owner_scoping,
    check_cancel_queued_job,
    check_cancel_running_job,
    check_retries_with_backoff_then_failed,
    check_fatal_error_fails_at_once,
    check_panic_fails_the_attempt_not_the_worker,
    check_owner_retry_runs_again,
    check_lost_worker_is_recovered,
    check_concurrency_key_limits_running_jobs,
);
