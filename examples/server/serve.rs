//! Running a role: the web server, the workers, or both; and shutting down
//! gracefully on SIGINT or SIGTERM.

use std::time::Duration;

use projectengine_core::{Engine, Registry, StubOrchestrator, Worker, WorkerConfig};
use projectengine_http::{ApiState, HttpConfig, JwtAuth};
use tokio_util::sync::CancellationToken;

use crate::backends::Backends;
use crate::config::{Config, JwtKey};
use crate::custom_orchestrator::AppBuilder;
use crate::Role;

/// Why the server stopped with an error.
pub enum Failure {
    /// Bad configuration: exit code 2.
    Config(String),
    /// Anything else: exit code 1.
    Runtime(String),
}

fn registry(config: &Config) -> Result<Registry, Failure> {
    let registry = Registry::new()
        .register(
            "stub",
            StubOrchestrator::new(config.stub_steps, config.stub_delay),
        )
        .register("app-builder", AppBuilder::default());
    if registry.get(&config.default_kind).is_none() {
        let kinds: Vec<&str> = registry.kinds().collect();
        return Err(Failure::Config(format!(
            "invalid configuration: PROJECTENGINE_DEFAULT_KIND: `{}` is not a registered kind ({})",
            config.default_kind,
            kinds.join(", ")
        )));
    }
    Ok(registry.set_default(config.default_kind.clone()))
}

fn auth(config: &Config) -> Result<JwtAuth, Failure> {
    let bad = |var: &str, e: &dyn std::fmt::Display| {
        Failure::Config(format!("invalid configuration: {var}: {e}"))
    };
    let auth = match &config.jwt {
        JwtKey::Secret(s) | JwtKey::Ephemeral(s) => {
            JwtAuth::hs256(s).map_err(|e| bad("PROJECTENGINE_JWT_SECRET", &e))?
        }
        JwtKey::PublicKey { algorithm, pem } if algorithm == "ES256" => {
            JwtAuth::es256_pem(pem.as_bytes())
                .map_err(|e| bad("PROJECTENGINE_JWT_PUBLIC_KEY", &e))?
        }
        JwtKey::PublicKey { pem, .. } => JwtAuth::rs256_pem(pem.as_bytes())
            .map_err(|e| bad("PROJECTENGINE_JWT_PUBLIC_KEY", &e))?,
    };
    let auth = match &config.jwt_issuer {
        Some(iss) => auth.issuer(iss.clone()),
        None => auth,
    };
    Ok(match &config.jwt_audience {
        Some(aud) => auth.audience(aud.clone()),
        None => auth,
    })
}

fn worker_config(config: &Config) -> WorkerConfig {
    WorkerConfig {
        concurrency: config.concurrency,
        queues: config.queues.clone(),
        lease: config.lease,
        heartbeat: config.heartbeat,
        shutdown_grace: config.shutdown_grace,
        recovery_every: Some(config.recovery_every),
        recovery_overdue: config.recovery_every * 2,
        ..WorkerConfig::default()
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

pub async fn run(role: Role, config: Config) -> Result<(), Failure> {
    let rt = |e: String| Failure::Runtime(e);
    match role {
        Role::Token { sub, ttl } => {
            let JwtKey::Secret(_) = &config.jwt else {
                return Err(Failure::Config(
                    "invalid configuration: PROJECTENGINE_JWT_SECRET: must be set to mint tokens a server will accept".into(),
                ));
            };
            let token = auth(&config)?
                .mint(&sub, ttl)
                .map_err(|e| rt(e.to_string()))?;
            println!("{token}");
            return Ok(());
        }
        Role::Migrate => {
            if config.database_url.is_none() {
                return Err(Failure::Config(
                    "invalid configuration: DATABASE_URL: must be set to migrate".into(),
                ));
            }
            Backends::connect(&config, true).await.map_err(rt)?;
            tracing::info!("migrations applied");
            return Ok(());
        }
        Role::Help | Role::All | Role::Web | Role::Worker => {}
    }
    let registry = registry(&config)?;
    let auth = auth(&config)?;
    let web = matches!(role, Role::All | Role::Web);
    let work = matches!(role, Role::All | Role::Worker);
    let backends = Backends::connect(&config, work).await.map_err(rt)?;
    if role != Role::All && (backends.pg.is_none() || backends.redis_notifier.is_none()) {
        return Err(Failure::Config(
            "invalid configuration: DATABASE_URL and REDIS_URL: separate web and worker processes need both, or use the `all` role".into(),
        ));
    }
    tracing::info!("{}", backends.describe());
    let engine = Engine::new(
        backends.store.clone(),
        backends.queue.clone(),
        backends.notifier.clone(),
        registry,
    );
    let stop = CancellationToken::new();
    let worker = work.then(|| Worker::new(engine.clone(), worker_config(&config)).spawn());

    // Every role serves HTTP: `web` and `all` the whole API, `worker` its
    // health, readiness and metrics (its attempts are counted there).
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| {
            Failure::Config(format!(
                "invalid configuration: PROJECTENGINE_BIND: cannot listen on {}: {e}",
                config.bind
            ))
        })?;
    let addr = listener.local_addr().map_err(|e| rt(e.to_string()))?;
    let mut http = HttpConfig::default();
    http.body_limit = config.max_body_bytes;
    let state = ApiState::with_config(engine.clone(), auth.clone(), http);
    let router = if web {
        greet(&config, &auth, addr);
        projectengine_http::router_with(state.clone())
    } else {
        println!("worker health and metrics on http://{addr}/metrics");
        projectengine_http::instrument(projectengine_http::health_routes(state.clone()))
    };
    // Upgraded connections are not waited for by axum: close them ourselves.
    let streams = state.shutdown_token();
    let shutdown = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.cancelled().await;
                streams.cancel();
            })
            .await
    });

    signal().await;
    tracing::info!("shutting down: no new requests or jobs; draining");
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the HTTP server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server task failed"),
        Err(_) => tracing::warn!("open connections did not close in 10 s"),
    }
    if let Some(worker) = worker {
        worker.shutdown().await;
    }
    if let Some(n) = &backends.redis_notifier {
        n.shutdown();
    }
    tracing::info!("stopped");
    Ok(())
}

/// What a newcomer needs: the URL, a token, a line that creates a job and one
/// that watches it.
fn greet(config: &Config, auth: &JwtAuth, addr: std::net::SocketAddr) {
    let url = format!("http://{addr}");
    println!("projectEngine listening on {url}  (API docs: {url}/docs)");
    match &config.jwt {
        JwtKey::PublicKey { .. } => println!("tokens: verified with the configured public key"),
        jwt => {
            if let JwtKey::Ephemeral(_) = jwt {
                println!("tokens: PROJECTENGINE_JWT_SECRET is not set; using a random secret for this process only");
            }
            if let Ok(token) = auth.mint("dev", Duration::from_secs(24 * 3600)) {
                println!("development token (sub=dev, 24 h):\n  export TOKEN={token}");
                println!("create a job:\n  curl -s -X POST {url}/api/jobs/ -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"prompt\":\"a todo app\"}}'");
                println!("watch it live (put the job id from the answer in place of JOB_ID):\n  curl -N {url}/api/jobs/JOB_ID/stream/ -H \"Authorization: Bearer $TOKEN\"");
            }
        }
    }
}
