//! Running the real server binary and talking to it over real sockets.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use projectengine_core::testkit::assert::{assert_gap_free_seqs, eventually};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The HS256 secret every test server is started with.
pub const SECRET: &str = "end-to-end-test-secret-0123456789";

/// A development token for `sub`, signed with [`SECRET`].
pub fn token(sub: &str) -> String {
    projectengine_http::JwtAuth::hs256(SECRET)
        .and_then(|a| a.mint(sub, Duration::from_secs(3600)))
        .expect("mint a token")
}

/// The example server, built by `cargo test` next to this test binary
/// (`PROJECTENGINE_SERVER_BIN` names another one).
pub fn server_bin() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("PROJECTENGINE_SERVER_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let bin = dir.join("examples").join("server");
    assert!(
        bin.exists(),
        "{} is missing: build the examples first (cargo test builds them)",
        bin.display()
    );
    bin
}

/// A running server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: Option<SocketAddr>,
    /// The lines it printed on stdout so far.
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `server <role>` with `env` on top of fast test settings; waits for
    /// the line announcing its HTTP address and records it.
    pub fn start(role: &str, env: &[(&str, String)]) -> Server {
        Self::spawn(role, env, true).0
    }

    /// Like [`Server::start`], without a configured secret: the server signs
    /// with a random one and prints a development token, answered here.
    pub fn start_with_printed_token(role: &str, env: &[(&str, String)]) -> (Server, String) {
        let (server, token) = Self::spawn(role, env, false);
        let token = token
            .recv_timeout(Duration::from_secs(10))
            .expect("the server printed a development token");
        (server, token)
    }

    fn spawn(
        role: &str,
        env: &[(&str, String)],
        with_secret: bool,
    ) -> (Server, std::sync::mpsc::Receiver<String>) {
        let mut cmd = Command::new(server_bin());
        cmd.arg(role)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PROJECTENGINE_BIND", "127.0.0.1:0");
        if with_secret {
            cmd.env("PROJECTENGINE_JWT_SECRET", SECRET);
        }
        cmd.env("PROJECTENGINE_HEARTBEAT", "200ms")
            .env("PROJECTENGINE_LEASE", "1s")
            .env("PROJECTENGINE_RECOVERY_EVERY", "300ms")
            .env("PROJECTENGINE_SHUTDOWN_GRACE", "2s")
            .env("PROJECTENGINE_STUB_STEPS", "5")
            .env("PROJECTENGINE_STUB_DELAY", "50ms")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = printed.clone();
        let (token_tx, token_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(token) = line.trim().strip_prefix("export TOKEN=") {
                    let _ = token_tx.send(token.to_owned());
                }
                lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line.clone());
                if !sent {
                    if let Some(rest) = line.split(" on http://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server printed its address");
        let addr = Some(
            addr.trim_end_matches("/metrics")
                .parse()
                .expect("an address"),
        );
        (
            Server {
                child,
                addr,
                stdout: printed,
            },
            token_rx,
        )
    }

    /// The lines printed on stdout so far.
    pub fn printed(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the server announced its address")
    }

    /// Kills the process at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal such as `STOP` or `CONT` with `kill(1)`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig}: {status:?}");
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client for the tests' requests: plain HTTP to loopback, no proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// One request to the server at `addr`: (status, JSON body or Null).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut req = client().request(method, format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.expect("an HTTP response");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.expect("the body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Watches a job over a real WebSocket from `after`, collecting events until
/// the server closes the socket (after the terminal event), or `take` events.
pub async fn ws_watch(
    addr: SocketAddr,
    job_id: &str,
    after: u64,
    token: &str,
    take: Option<usize>,
) -> Vec<Value> {
    let url = format!("ws://{addr}/ws/jobs/{job_id}/?after={after}");
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket upgrade");
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("events in time");
        match msg {
            Some(Ok(Message::Text(t))) => {
                events.push(serde_json::from_str(&t).expect("JSON event"));
                if take.is_some_and(|n| events.len() >= n) {
                    let _ = ws.close(None).await;
                    return events;
                }
            }
            Some(Ok(Message::Ping(p))) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Some(Ok(Message::Close(_))) | None => return events,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("websocket error: {e}"),
        }
    }
}

/// Asserts the JSON events are seq `from, from + 1, …`: at least one, each
/// once, in order.
pub fn assert_seqs(events: &[Value], from: u64) {
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_gap_free_seqs(&seqs, from);
}

/// Polls a job over REST until its status is `status`; fails at once if it
/// ends in another terminal status.
pub async fn wait_status(
    addr: SocketAddr,
    token: &str,
    job_id: &str,
    status: &str,
    limit: Duration,
) -> Value {
    let path = format!("/api/jobs/{job_id}/");
    eventually(&format!("job {job_id} becomes {status}"), limit, || async {
        let (code, job) = http(addr, "GET", &path, Some(token), None).await;
        assert_eq!(code, 200, "{job}");
        let now = job["status"].as_str().expect("a status");
        assert!(
            now == status || !matches!(now, "succeeded" | "failed" | "cancelled"),
            "job {job_id} ended {now} while waiting for {status}: {job}"
        );
        (now == status).then_some(job)
    })
    .await
}

/// A fresh database and Redis prefix for one test; `None` (skipped) when a
/// service is absent and not required.
pub async fn deployment() -> Option<Vec<(&'static str, String)>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    use sqlx::Connection;
    let mut conn = match sqlx::PgConnection::connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            projectengine_core::testkit::service_missing("PostgreSQL", &url, &e);
            return None;
        }
    };
    if let Err(e) = tokio::net::TcpStream::connect(
        redis
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap_or(""),
    )
    .await
    {
        projectengine_core::testkit::service_missing("Redis", &redis, &e);
        return None;
    }
    let db = format!("e2e_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .expect("create a database");
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    // Web and worker processes share artifacts through a directory.
    let artifacts = std::env::temp_dir().join(format!("projectengine-{db}"));
    Some(vec![
        ("DATABASE_URL", format!("{base}/{db}")),
        ("REDIS_URL", redis),
        ("PROJECTENGINE_REDIS_PREFIX", db),
        (
            "PROJECTENGINE_ARTIFACTS",
            artifacts.to_string_lossy().into_owned(),
        ),
    ])
}

pub fn migrate(env: &[(&str, String)]) {
    let status = std::process::Command::new(server_bin())
        .arg("migrate")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("PROJECTENGINE_JWT_SECRET", SECRET)
        .status()
        .expect("run migrate");
    assert!(status.success(), "migrate: {status:?}");
}

/// What one watcher saw of a job, across any number of reconnects.
#[derive(Debug, Default)]
pub struct Watched {
    /// Every event received, in order, with the moment it arrived.
    pub events: Vec<(Value, std::time::Instant)>,
    /// WebSocket connections opened.
    pub connections: u32,
    /// Whether a terminal status event arrived.
    pub done: bool,
}

impl Watched {
    /// The events alone.
    pub fn values(&self) -> Vec<Value> {
        self.events.iter().map(|(e, _)| e.clone()).collect()
    }

    /// (seqs received more than once, seqs missing below the highest seen).
    pub fn seq_faults(&self) -> (usize, usize) {
        let mut seen = std::collections::BTreeMap::<u64, usize>::new();
        for (e, _) in &self.events {
            *seen.entry(e["seq"].as_u64().unwrap_or(0)).or_default() += 1;
        }
        let dups = seen.values().map(|n| n - 1).sum();
        let max = seen.keys().next_back().copied().unwrap_or(0);
        let missing = (1..=max).filter(|s| !seen.contains_key(s)).count();
        (dups, missing)
    }

    /// The terminal status, if one arrived.
    pub fn final_status(&self) -> Option<String> {
        self.events
            .iter()
            .rev()
            .find(|(e, _)| is_terminal(e))
            .and_then(|(e, _)| e["data"]["status"].as_str().map(str::to_owned))
    }
}

/// Whether `event` is a terminal status event.
pub fn is_terminal(event: &Value) -> bool {
    event["type"] == "status"
        && matches!(
            event["data"]["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
}

/// Watches a job over a real WebSocket until its terminal event, reconnecting
/// after the last seq received whenever the connection fails or ends early
/// (a restart of a process or of PostgreSQL); gives up after `limit`.
pub async fn watch_to_end(addr: SocketAddr, job_id: &str, token: &str, limit: Duration) -> Watched {
    let deadline = tokio::time::Instant::now() + limit;
    let mut w = Watched::default();
    while tokio::time::Instant::now() < deadline && !w.done {
        let after = w
            .events
            .iter()
            .filter_map(|(e, _)| e["seq"].as_u64())
            .max()
            .unwrap_or(0);
        let url = format!("ws://{addr}/ws/jobs/{job_id}/?after={after}");
        let mut req = url.into_client_request().expect("request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let connect =
            tokio::time::timeout_at(deadline, tokio_tungstenite::connect_async(req)).await;
        let Ok(Ok((mut ws, _))) = connect else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        w.connections += 1;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
            match msg {
                Message::Text(t) => {
                    let event: Value = serde_json::from_str(&t).expect("JSON event");
                    w.done |= is_terminal(&event);
                    w.events.push((event, std::time::Instant::now()));
                }
                Message::Ping(p) => {
                    let _ = ws.send(Message::Pong(p)).await;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    }
    w
}

pub mod chaos;

/// Submits a job over REST, asserting 201; answers its id.
pub async fn submit(addr: SocketAddr, token: &str, body: &Value) -> String {
    let (status, job) = http(addr, "POST", "/api/jobs/", Some(token), Some(body)).await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().expect("job id").to_owned()
}

/// A job's stored events over REST (the first 500).
pub async fn events(addr: SocketAddr, token: &str, job_id: &str) -> Vec<Value> {
    let path = format!("/api/jobs/{job_id}/events/?after=0&limit=500");
    let (_, page) = http(addr, "GET", &path, Some(token), None).await;
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Polls a job's events until `done` holds for them (at most 30 s).
pub async fn wait_events(
    addr: SocketAddr,
    token: &str,
    job_id: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) {
    eventually(what, Duration::from_secs(30), || async {
        done(&events(addr, token, job_id).await).then_some(())
    })
    .await
}

/// An unauthenticated GET answered as text (e.g. `/metrics`), asserting 200.
pub async fn get_text(addr: SocketAddr, path: &str) -> String {
    let res = client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("an HTTP response");
    assert_eq!(res.status(), reqwest::StatusCode::OK, "GET {path}");
    res.text().await.expect("the body")
}

/// Whether the sandbox's programs (bubblewrap) are installed; panics when
/// they are not and `PROJECTENGINE_REQUIRE_SERVICES` is set.
pub fn sandbox_installed() -> bool {
    let found = Command::new("bwrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && projectengine_core::testkit::services_required() {
        panic!("bwrap is required (PROJECTENGINE_REQUIRE_SERVICES is set): run scripts/sandbox-deps.sh");
    }
    if !found {
        eprintln!("SKIPPED: bwrap is not installed (scripts/sandbox-deps.sh)");
    }
    found
}
