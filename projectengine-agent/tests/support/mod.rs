//! A real server on a real socket: the in-memory engine with a `remote`
//! kind and an in-process `local` kind, the API and the agent routes, and a
//! worker (which also runs recovery).

#![allow(dead_code)]

use std::time::Duration;

use axum::Router;
use projectengine_agent::Client;
use projectengine_core::testkit::scenarios::fast_worker;
use projectengine_core::{
    Engine, JobEvent, JobId, JobStatus, Owner, Registry, StubOrchestrator, Worker, WorkerHandle,
};
use projectengine_http::{agent_routes, api_routes, AgentConfig, ApiState, AttemptTokens, JwtAuth};

pub const SECRET: &str = "a test secret that is long enough for HS256";
pub const REMOTE: &str = "remote";
pub const LOCAL: &str = "local";

pub struct Server {
    pub url: String,
    pub engine: Engine,
    pub auth: JwtAuth,
    pub owner: Owner,
    pub user_token: String,
    pub agent_token: String,
    worker: Option<WorkerHandle>,
}

impl Server {
    /// A server whose attempts hold a lease of `lease`, heartbeating every
    /// `heartbeat`.
    pub async fn start(lease: Duration, heartbeat: Duration) -> Self {
        let registry = Registry::new()
            .register(LOCAL, StubOrchestrator::new(3, Duration::ZERO))
            .register_remote(REMOTE);
        let engine = Engine::in_memory(registry);
        let auth = JwtAuth::hs256(SECRET).expect("secret");
        let state = ApiState::new(engine.clone(), auth.clone());
        let agents = AgentConfig::new(
            auth.clone(),
            AttemptTokens::hs256(SECRET).expect("attempt secret"),
        )
        .lease(lease, heartbeat)
        .max_wait(Duration::from_secs(5));
        let app = Router::new()
            .merge(api_routes(state.clone()))
            .merge(agent_routes(state, agents));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        let worker = Worker::new(engine.clone(), fast_worker()).spawn();
        let owner = Owner::new("alice");
        let user_token = auth.mint("alice", Duration::from_secs(600)).expect("mint");
        let agent_token = auth
            .mint_agent("agent-1", &[REMOTE.to_owned()], Duration::from_secs(600))
            .expect("mint agent");
        Self {
            url: format!("http://{addr}"),
            engine,
            auth,
            owner,
            user_token,
            agent_token,
            worker: Some(worker),
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url).expect("client")
    }

    /// Waits until the job is in `status`.
    pub async fn wait_for(&self, id: JobId, status: JobStatus) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let job = self.engine.get(&self.owner, id).await.expect("job");
            if job.status == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} is {}, not {status}",
                job.status
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The job's whole event log.
    pub async fn events(&self, id: JobId) -> Vec<JobEvent> {
        self.engine
            .events(&self.owner, id, 0, 500)
            .await
            .expect("events")
    }

    pub async fn stop(mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown().await;
        }
    }
}

/// Asserts seqs 1..=n, each once.
pub fn assert_gap_free(events: &[JobEvent]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "seq {} at {i}", e.seq);
    }
}
