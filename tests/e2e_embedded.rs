//! The real server binary on the embedded default (everything in memory, one
//! process), driven over HTTP and a real WebSocket.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{assert_seqs, http, submit, token, wait_status, ws_watch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_to_its_app_over_http_and_websocket() {
    let server = Server::start("all", &[]);
    let addr = server.addr();
    let t = token("alice");
    let id = submit(addr, &t, &json!({"prompt": "a todo app"})).await;
    let events = ws_watch(addr, &id, 0, &t, None).await;
    assert_seqs(&events, 1);
    let last = events.last().expect("events");
    assert_eq!(
        (last["type"].as_str(), last["data"]["status"].as_str()),
        (Some("status"), Some("succeeded"))
    );
    assert_eq!(events.iter().filter(|e| e["type"] == "step").count(), 5);
    let app_event = events
        .iter()
        .find(|e| e["type"] == "app")
        .expect("an app event");
    let (status, app) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{id}/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["id"], app_event["data"]["app_id"]);
    assert_eq!(app["job_id"].as_str(), Some(id.as_str()));
    assert!(app["payload"].is_object());
    // Another owner sees nothing of it.
    let (status, _) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{id}/"),
        Some(&token("mallory")),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// The per-owner quota of queued jobs, set on the server, refuses a
/// submission beyond it with 429 and stores nothing; another owner has a
/// quota of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queued_quota_is_enforced_by_the_server() {
    let server = Server::start(
        "all",
        &[("PROJECTENGINE_MAX_QUEUED_PER_OWNER", "2".to_owned())],
    );
    let addr = server.addr();
    let alice = token("alice");
    // Scheduled an hour ahead: they stay queued.
    let run_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let body = json!({"prompt": "later", "run_at": run_at});
    submit(addr, &alice, &body).await;
    submit(addr, &alice, &body).await;
    let (status, err) = http(addr, "POST", "/api/jobs/", Some(&alice), Some(&body)).await;
    assert_eq!(status, 429, "{err}");
    assert_eq!(err["error"]["code"], "limit_exceeded", "{err}");
    let (status, page) = http(addr, "GET", "/api/jobs/?limit=10", Some(&alice), None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "{page}");
    submit(addr, &token("bob"), &body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_cancelled_within_two_heartbeats() {
    let heartbeat = Duration::from_millis(200);
    let server = Server::start("all", &[]);
    let addr = server.addr();
    let t = token("alice");
    let body = json!({"prompt": "long", "params": {"steps": 200, "delay_ms": 50}});
    let id = submit(addr, &t, &body).await;
    wait_status(addr, &t, &id, "running", Duration::from_secs(30)).await;
    let asked = Instant::now();
    let (status, body) = http(
        addr,
        "POST",
        &format!("/api/jobs/{id}/cancel/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_status(addr, &t, &id, "cancelled", Duration::from_secs(30)).await;
    let took = asked.elapsed();
    assert!(
        took <= heartbeat * 2,
        "cancelled after {took:?}, more than two heartbeats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start("all", &[]);
    let (status, _) = http(server.addr(), "GET", "/health", None, None).await;
    assert_eq!(status, 200);
    let exit = server.terminate();
    assert!(exit.success(), "{exit:?}");
}

/// Every configuration variable and the default `--help` shows for it.
const VARIABLES: &[(&str, &str)] = &[
    ("PROJECTENGINE_BIND", "[default: 127.0.0.1:8080]"),
    ("DATABASE_URL", "(unset: in-memory store)"),
    ("REDIS_URL", "(unset: in-memory queue and notifier)"),
    ("PROJECTENGINE_REDIS_PREFIX", "[default: projectengine]"),
    (
        "PROJECTENGINE_JWT_SECRET",
        "(unset: a random secret per process)",
    ),
    (
        "PROJECTENGINE_JWT_PUBLIC_KEY",
        "(unset: the secret is used)",
    ),
    ("PROJECTENGINE_JWT_ALGORITHM", "[default: RS256]"),
    ("PROJECTENGINE_JWT_ISSUER", "(unset: not checked)"),
    ("PROJECTENGINE_JWT_AUDIENCE", "(unset: not checked)"),
    ("PROJECTENGINE_JWT_JWKS_URL", "(unset: not used)"),
    ("PROJECTENGINE_JWT_JWKS_MIN_REFRESH", "[default: 30s]"),
    ("PROJECTENGINE_JWT_JWKS_MAX_AGE", "[default: 10m]"),
    ("PROJECTENGINE_JWT_SUBJECT_CLAIM", "[default: sub]"),
    ("PROJECTENGINE_WORKER_CONCURRENCY", "[default: 16]"),
    (
        "PROJECTENGINE_QUEUES",
        "(unset: every registered kind's queue)",
    ),
    ("PROJECTENGINE_REMOTE_KINDS", "[default: remote]"),
    ("PROJECTENGINE_LEASE", "[default: 30s]"),
    ("PROJECTENGINE_HEARTBEAT", "[default: 10s]"),
    ("PROJECTENGINE_SHUTDOWN_GRACE", "[default: 30s]"),
    ("PROJECTENGINE_RECOVERY_EVERY", "[default: 5s]"),
    ("PROJECTENGINE_SCHEDULE_EVERY", "[default: 1s]"),
    ("PROJECTENGINE_SCHEDULE_GRACE", "[default: 60s]"),
    ("PROJECTENGINE_RETENTION", "(unset: keep them)"),
    ("PROJECTENGINE_DEFAULT_KIND", "[default: stub]"),
    ("PROJECTENGINE_STUB_STEPS", "[default: 5]"),
    ("PROJECTENGINE_STUB_DELAY", "[default: 200ms]"),
    ("PROJECTENGINE_MAX_BODY_BYTES", "[default: 65536]"),
    ("PROJECTENGINE_MAX_QUEUED_PER_OWNER", "(unset: no quota)"),
    ("PROJECTENGINE_MAX_STREAMS_PER_OWNER", "(unset: no limit)"),
    ("PROJECTENGINE_IDEMPOTENCY_TTL", "[default: 24h]"),
    ("PROJECTENGINE_ARTIFACTS", "[default: memory]"),
    ("PROJECTENGINE_ARTIFACT_MAX_BYTES", "[default: 268435456]"),
    (
        "PROJECTENGINE_JOB_ARTIFACTS_MAX_BYTES",
        "[default: 1073741824]",
    ),
    ("PROJECTENGINE_PIPELINE_WALL_TIME", "[default: 10m]"),
    ("PROJECTENGINE_PIPELINE_CPU_TIME", "[default: 10m]"),
    (
        "PROJECTENGINE_PIPELINE_MEMORY_BYTES",
        "[default: 2147483648]",
    ),
    ("PROJECTENGINE_PIPELINE_PROCESSES", "[default: 256]"),
    (
        "PROJECTENGINE_PIPELINE_FILE_SIZE_BYTES",
        "[default: 1073741824]",
    ),
    ("PROJECTENGINE_PIPELINE_OPEN_FILES", "[default: 1024]"),
    ("PROJECTENGINE_PIPELINE_OUTPUT_BYTES", "[default: 16777216]"),
    ("PROJECTENGINE_PIPELINE_ALLOW_NETWORK", "[default: false]"),
    (
        "PROJECTENGINE_SANDBOX_DIR",
        "(unset: the system's temporary directory)",
    ),
    (
        "PROJECTENGINE_SANDBOX_ALLOW_UNSANDBOXED",
        "[default: false]",
    ),
    ("PROJECTENGINE_CORS_ORIGINS", "(unset: no CORS headers)"),
    ("PROJECTENGINE_CORS_METHODS", "(unset: GET, POST)"),
    (
        "PROJECTENGINE_CORS_HEADERS",
        "(unset: authorization, content-type, last-event-id)",
    ),
    (
        "PROJECTENGINE_LLM_CONFIG",
        "JSON file of LLM providers and agents",
    ),
    (
        "PROJECTENGINE_LLM_BASE_URL",
        "(unset, and no PROJECTENGINE_LLM_CONFIG: no `app-builder`)",
    ),
    ("PROJECTENGINE_LLM_MODELS", "[default: gpt-4o-mini]"),
    (
        "PROJECTENGINE_LLM_API_KEY_ENV",
        "[default: PROJECTENGINE_LLM_API_KEY]",
    ),
    ("PROJECTENGINE_LLM_REQUESTS_PER_MINUTE", "(unset: no limit)"),
    ("PROJECTENGINE_LLM_TOKENS_PER_MINUTE", "(unset: no limit)"),
    ("PROJECTENGINE_LLM_MAX_FIX_ROUNDS", "[default: 2]"),
    ("PROJECTENGINE_SITES_BIND", "(unset: sites are not served)"),
    (
        "PROJECTENGINE_SITES_URL",
        "(default: http://PROJECTENGINE_SITES_BIND)",
    ),
    ("PROJECTENGINE_LOG_FORMAT", "[default: text]"),
    (
        "PROJECTENGINE_WEBHOOK_URL",
        "(unset: only jobs' own `webhook` URLs)",
    ),
    (
        "PROJECTENGINE_WEBHOOK_SECRET",
        "(unset: no webhooks are sent",
    ),
    (
        "PROJECTENGINE_WEBHOOK_RETRIES",
        "[default: 5s,5m,30m,2h,5h,10h]",
    ),
    ("PROJECTENGINE_WEBHOOK_TIMEOUT", "[default: 10s]"),
    ("PROJECTENGINE_WEBHOOK_ALLOW_PRIVATE", "[default: false]"),
    (
        "PROJECTENGINE_DEPLOY_COMMAND",
        "(unset: sites are only served by PROJECTENGINE_SITES_BIND)",
    ),
    ("PROJECTENGINE_DEPLOY_SECRETS", "(unset: none)"),
    ("PROJECTENGINE_DEPLOY_TIMEOUT", "[default: 5m]"),
    (
        "PROJECTENGINE_ATTEMPT_TOKEN_SECRET",
        "(unset: PROJECTENGINE_JWT_SECRET, else a random one, for the `all` role only)",
    ),
    ("PROJECTENGINE_FAIR_QUEUES", "[default: true]"),
];

/// The variables of a server built with `otel`.
#[cfg(feature = "otel")]
const OTEL_VARIABLES: &[(&str, &str)] = &[
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "(unset: no traces)"),
    ("OTEL_SERVICE_NAME", "[default: projectengine]"),
];
#[cfg(not(feature = "otel"))]
const OTEL_VARIABLES: &[(&str, &str)] = &[];

/// The server binary with an empty environment, in a fresh directory (so no
/// `.env` is read unless the test writes one there).
fn server_in(dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(support::server_bin());
    cmd.env_clear().current_dir(dir);
    cmd
}

fn fresh_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pe-server-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("create a directory");
    dir
}

#[test]
fn help_lists_every_variable_with_its_default_and_every_role() {
    let dir = fresh_dir();
    // A bad value does not stand in the way of reading the help.
    let out = server_in(&dir)
        .arg("--help")
        .env("PROJECTENGINE_LEASE", "soon")
        .output()
        .expect("run the server");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for (var, default) in VARIABLES.iter().chain(OTEL_VARIABLES) {
        let entry = help
            .split("\n      --")
            .find(|entry| entry.contains(&format!("[env: {var}")))
            .unwrap_or_else(|| panic!("{var} is missing from --help:\n{help}"));
        assert!(entry.contains(default), "{var}: {default} not in {entry}");
    }
    assert_eq!(
        help.matches("[env: ").count(),
        VARIABLES.len() + OTEL_VARIABLES.len(),
        "a variable --help shows is not in this test:\n{help}"
    );
    for role in ["all", "web", "worker", "migrate", "token"] {
        assert!(help.contains(&format!("\n  {role} ")), "{role}:\n{help}");
    }
    assert!(help.contains(".env"), "{help}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bad_setting_is_one_line_and_exit_code_2() {
    let dir = fresh_dir();
    for (var, value) in [
        ("PROJECTENGINE_LEASE", "soon"),
        ("PROJECTENGINE_HEARTBEAT", "1h"),
        ("PROJECTENGINE_WORKER_CONCURRENCY", "0"),
        ("PROJECTENGINE_LOG_FORMAT", "xml"),
        ("PROJECTENGINE_ARTIFACTS", "s3//no-scheme://x"),
        ("PROJECTENGINE_ARTIFACT_MAX_BYTES", "0"),
        ("PROJECTENGINE_JWT_ALGORITHM", "HS256"),
        ("PROJECTENGINE_JWT_SECRET", "short"),
        ("PROJECTENGINE_DEFAULT_KIND", "nope"),
        ("PROJECTENGINE_LLM_BASE_URL", "ftp://models.example"),
        ("PROJECTENGINE_SITES_BIND", "nowhere"),
        ("PROJECTENGINE_DEPLOY_SECRETS", "NOT-A-NAME"),
        ("PROJECTENGINE_DEPLOY_TIMEOUT", "0s"),
        ("DATABASE_URL", "mysql://user:hunter2@db"),
    ] {
        let out = server_in(&dir)
            .env(var, value)
            .output()
            .expect("run the server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        assert!(stderr.contains(var), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "a password was shown: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_dotenv_file_is_read_and_the_environment_wins_over_it() {
    let dir = fresh_dir();
    std::fs::write(
        dir.join(".env"),
        format!(
            "PROJECTENGINE_JWT_SECRET={}\nPROJECTENGINE_LEASE=soon\n",
            support::SECRET
        ),
    )
    .expect("write .env");
    let out = server_in(&dir).output().expect("run the server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PROJECTENGINE_LEASE"), "{stderr}");
    // The secret comes from .env (minting needs one); the lease from the environment.
    let out = server_in(&dir)
        .args(["token", "--sub", "alice"])
        .env("PROJECTENGINE_LEASE", "30s")
        .output()
        .expect("run the server");
    assert!(out.status.success(), "{out:?}");
    let minted = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let auth = projectengine_http::JwtAuth::hs256(support::SECRET).expect("auth");
    let owner = projectengine_http::Authenticator::authenticate_token(&auth, &minted)
        .await
        .expect("a token signed with the .env secret");
    assert_eq!(owner.as_str(), "alice");
    let _ = std::fs::remove_dir_all(dir);
}
