//! Shared fixtures: an in-memory engine with a running worker, the router,
//! tokens, and request helpers for `oneshot` and for real sockets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::testkit::assert::wait_for_status;
use projectengine_core::worker::Backoff;
use projectengine_core::{
    Engine, JobId, JobStatus, Limits, Owner, Registry, StubOrchestrator, Worker, WorkerConfig,
    WorkerHandle,
};
use projectengine_http::{router_with, ApiState, HttpConfig, JwtAuth};
use serde_json::Value;
use tower::ServiceExt;

/// A secret long enough for HS256.
pub const SECRET: &str = "test secret, thirty-two bytes at least";

/// An engine, its router and a worker making jobs progress.
pub struct TestApp {
    pub engine: Engine,
    pub state: ApiState,
    pub router: Router,
    pub auth: JwtAuth,
    pub worker: Option<WorkerHandle>,
}

impl TestApp {
    /// With a running worker and the default settings.
    pub fn new() -> Self {
        Self::build(true, HttpConfig::default())
    }

    /// Without a worker: jobs stay queued.
    pub fn idle() -> Self {
        Self::build(false, HttpConfig::default())
    }

    /// With a worker and the given settings.
    pub fn with_config(config: HttpConfig) -> Self {
        Self::build(true, config)
    }

    pub fn build(worker: bool, config: HttpConfig) -> Self {
        Self::build_with_limits(worker, config, Limits::default())
    }

    /// Like [`TestApp::build`], with the engine's submission limits.
    pub fn build_with_limits(worker: bool, config: HttpConfig, limits: Limits) -> Self {
        let registry = Registry::new()
            .register("stub", StubOrchestrator::new(3, Duration::from_millis(5)))
            .register("other", StubOrchestrator::new(1, Duration::from_millis(5)));
        let engine = Engine::with_limits(
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryQueue::default()),
            Arc::new(MemoryNotifier::default()),
            registry,
            limits,
        );
        let auth = JwtAuth::hs256(SECRET).expect("secret");
        let state = ApiState::with_config(engine.clone(), auth.clone(), config);
        let router = router_with(state.clone());
        let worker = worker.then(|| Worker::new(engine.clone(), worker_config()).spawn());
        Self {
            engine,
            state,
            router,
            auth,
            worker,
        }
    }

    /// Serves `engine` (a reconfigured clone of this app's engine) instead;
    /// the worker keeps running on the same backends.
    pub fn rebind(&mut self, engine: Engine) {
        let config = self.state.config().clone();
        self.state = ApiState::with_config(engine.clone(), self.auth.clone(), config);
        self.router = router_with(self.state.clone());
        self.engine = engine;
    }

    /// A valid token for `sub`.
    pub fn token(&self, sub: &str) -> String {
        self.auth.mint(sub, Duration::from_secs(600)).expect("mint")
    }

    /// Sends a request through the router with `oneshot`.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        self.send(req).await
    }

    /// Sends a prepared request through the router with `oneshot`.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    /// GET with alice's-style token.
    pub async fn get(&self, uri: &str, token: &str) -> Reply {
        self.call(Method::GET, uri, Some(token), None).await
    }

    /// POST JSON.
    pub async fn post(&self, uri: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(token), Some(body)).await
    }

    /// Submits a job through the API and answers its id.
    pub async fn submit(&self, token: &str, body: Value) -> JobId {
        let r = self.post("/api/jobs/", token, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json["id"].as_str().expect("id").parse().expect("uuid")
    }

    /// Waits until the job has `status` (at most 10 s).
    pub async fn wait_for(&self, owner: &str, id: JobId, status: JobStatus) {
        let owner = Owner::new(owner);
        wait_for_status(&self.engine, &owner, id, status, Duration::from_secs(10)).await;
    }

    /// Serves the router on 127.0.0.1 on a free port.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        self.serve_on(listener)
    }

    /// Serves the router on 127.0.0.1 with small socket send buffers (which
    /// accepted connections inherit), so a client that stops reading pushes
    /// back on the server at once instead of after megabytes.
    pub async fn serve_with_small_buffers(&self) -> SocketAddr {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_send_buffer_size(4096).expect("sndbuf");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        self.serve_on(socket.listen(64).expect("listen"))
    }

    fn serve_on(&self, listener: tokio::net::TcpListener) -> SocketAddr {
        let addr = listener.local_addr().expect("addr");
        let router = self.router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        addr
    }
}

/// A worker that reacts fast: short heartbeats (cancel delivery), short pops,
/// short backoff.
pub fn worker_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        lease: Duration::from_secs(5),
        heartbeat: Duration::from_millis(50),
        cancel_grace: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(1),
        backoff: Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
            jitter: false,
        },
        recovery_every: Some(Duration::from_millis(200)),
        recovery_overdue: Duration::from_millis(200),
        pop_wait: Duration::from_millis(200),
        ..WorkerConfig::default()
    }
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Reply {
    /// Asserts the status and our error shape; answers the error code.
    pub fn error(&self, status: StatusCode) -> &str {
        assert_eq!(self.status, status, "{}", self.text);
        let code = self.json["error"]["code"].as_str();
        assert!(
            code.is_some() && self.json["error"]["message"].is_string(),
            "not our error shape: {}",
            self.text
        );
        code.unwrap_or_default()
    }

    /// The `field` of an error body.
    pub fn field(&self) -> Option<&str> {
        self.json["error"]["field"].as_str()
    }
}
