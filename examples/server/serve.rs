//! Running a role: the web server, the workers, or both; and shutting down
//! gracefully on SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::Context;
use projectengine_core::{
    ArtifactLimits, Engine, Limits, Registry, StubOrchestrator, Worker, WorkerConfig,
};
use projectengine_http::{AgentConfig, ApiState, AttemptTokens, HttpConfig, JwtAuth};
use projectengine_llm::Llm;
use projectengine_orchestrators::{AppBuilder, AppBuilderConfig, PipelineOrchestrator};
use tokio_util::sync::CancellationToken;

use crate::backends::Backends;
use crate::config::{ArtifactsAt, Config, ConfigError};
use crate::custom_orchestrator::DemoBuilder;
use crate::Role;

fn registry(config: &Config) -> Result<Registry, ConfigError> {
    let registry = Registry::new()
        .register(
            "stub",
            StubOrchestrator::new(config.stub_steps, config.stub_delay),
        )
        .register("demo-builder", DemoBuilder::default())
        .register("pipeline", PipelineOrchestrator::new(config.pipeline()));
    let registry = match config.llm()? {
        Some(llm) => {
            let llm = Llm::new(llm)
                .map_err(|e| ConfigError::new("PROJECTENGINE_LLM_CONFIG", e.to_string()))?;
            let mut builder = AppBuilderConfig::default();
            for agent in [&builder.planner, &builder.generator, &builder.fixer] {
                if llm.agent(agent).is_err() {
                    return Err(ConfigError::new(
                        "PROJECTENGINE_LLM_CONFIG",
                        format!("the app builder needs an agent named {agent:?}"),
                    ));
                }
            }
            builder.max_fix_rounds = config.llm_max_fix_rounds;
            builder.deploy_base_url = config.sites_url();
            builder.pipeline = config.pipeline();
            builder.deploy = config.deploy()?;
            registry.register("app-builder", AppBuilder::new(llm, builder))
        }
        None => registry,
    };
    let registry = config
        .remote_kinds
        .iter()
        .fold(registry, |r, kind| r.register_remote(kind.clone()));
    if registry.get(&config.default_kind).is_none() {
        let kinds: Vec<&str> = registry.kinds().collect();
        return Err(ConfigError::new(
            "PROJECTENGINE_DEFAULT_KIND",
            format!(
                "`{}` is not a registered kind ({})",
                config.default_kind,
                kinds.join(", ")
            ),
        ));
    }
    Ok(registry.set_default(config.default_kind.clone()))
}

fn worker_config(config: &Config) -> WorkerConfig {
    WorkerConfig {
        concurrency: config.worker_concurrency,
        queues: config.queues.clone(),
        lease: config.lease,
        heartbeat: config.heartbeat,
        shutdown_grace: config.shutdown_grace,
        recovery_every: Some(config.recovery_every),
        recovery_overdue: config.recovery_every * 2,
        schedule_every: Some(config.schedule_every),
        schedule_grace: config.schedule_grace,
        retention: config
            .retention
            .map(projectengine_core::retention::Retention::after),
        ..WorkerConfig::default()
    }
}

/// The agent protocol's settings: agent tokens verified like user tokens
/// (with the `agent` role), attempt tokens signed with
/// PROJECTENGINE_ATTEMPT_TOKEN_SECRET, else the JWT secret, else — for the
/// `all` role only — a random one for this process; the worker's lease and
/// heartbeat.
///
/// An attempt token is verified by whichever web process the agent's next
/// call reaches, so every web process must sign with the same secret: a
/// `web` process has none of its own to make up.
fn agent_config(config: &Config, auth: &JwtAuth, role: &Role) -> Result<AgentConfig, ConfigError> {
    let (var, secret) = match (&config.attempt_token_secret, &config.jwt_secret) {
        (Some(secret), _) => ("PROJECTENGINE_ATTEMPT_TOKEN_SECRET", secret.clone()),
        (None, Some(secret)) => ("PROJECTENGINE_JWT_SECRET", secret.clone()),
        (None, None) if *role == Role::All => (
            "PROJECTENGINE_ATTEMPT_TOKEN_SECRET",
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
        ),
        (None, None) => {
            return Err(ConfigError::new(
                "PROJECTENGINE_ATTEMPT_TOKEN_SECRET",
                "must be set for the `web` role (the same in every web process: each verifies the attempt tokens the others sign), or PROJECTENGINE_JWT_SECRET",
            ))
        }
    };
    let tokens = AttemptTokens::hs256(secret).map_err(|e| ConfigError::new(var, e.to_string()))?;
    Ok(AgentConfig::new(auth.clone(), tokens).lease(config.lease, config.heartbeat))
}

/// Registers for SIGINT and SIGTERM at once (so that a signal that comes
/// right after the server announced itself is not the default, fatal one),
/// and resolves on the first of them.
fn signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt()).ok();
        let term = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(int) => {}
                _ = wait(term) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `role`. A [`ConfigError`] in the chain of the error means the
/// configuration is at fault (exit code 2).
pub async fn run(role: Role, config: Config) -> anyhow::Result<()> {
    match role {
        Role::Token {
            sub,
            ttl,
            agent,
            kinds,
            owners,
        } => {
            if config.jwt_secret.is_none()
                || config.jwt_public_key.is_some()
                || config.jwt_jwks_url.is_some()
            {
                return Err(ConfigError::new(
                    "PROJECTENGINE_JWT_SECRET",
                    "must be set to mint tokens a server will accept",
                )
                .into());
            }
            let auth = config.jwt_auth()?;
            let token = match agent {
                true => auth.mint_agent_for(&sub, &kinds, &owners, ttl)?,
                false => auth.mint(&sub, ttl)?,
            };
            println!("{token}");
            return Ok(());
        }
        Role::Migrate => {
            if config.database_url.is_none() {
                return Err(ConfigError::new("DATABASE_URL", "must be set to migrate").into());
            }
            Backends::connect(&config, true).await?;
            tracing::info!("migrations applied");
            return Ok(());
        }
        Role::All | Role::Web | Role::Worker => {}
    }
    let stop_signal = signal();
    let registry = registry(&config)?;
    let auth = config.jwt_auth()?;
    let web = matches!(role, Role::All | Role::Web);
    let work = matches!(role, Role::All | Role::Worker);
    let agents = match web {
        true => Some(agent_config(&config, &auth, &role)?),
        false => None,
    };
    let backends = Backends::connect(&config, work).await?;
    if role != Role::All && (backends.pg.is_none() || backends.redis_notifier.is_none()) {
        return Err(ConfigError::new(
            "DATABASE_URL and REDIS_URL",
            "separate web and worker processes need PostgreSQL and Redis, or use the `all` role",
        )
        .into());
    }
    if role != Role::All && config.artifacts == ArtifactsAt::Memory {
        return Err(ConfigError::new(
            "PROJECTENGINE_ARTIFACTS",
            "separate web and worker processes need artifacts both can reach: a directory they share, or an object store URL",
        )
        .into());
    }
    let artifacts = config.artifacts.open(ArtifactLimits {
        max_bytes: config.artifact_max_bytes,
        max_job_bytes: config.job_artifacts_max_bytes,
    })?;
    let durability = backends.describe();
    tracing::info!("{durability}; artifacts in {}", config.artifacts);
    let limits = Limits {
        max_queued_per_owner: config.max_queued_per_owner,
        idempotency_ttl: config.idempotency_ttl,
        ..Limits::default()
    };
    let engine = Engine::with_limits(
        backends.store.clone(),
        backends.queue.clone(),
        backends.notifier.clone(),
        registry,
        limits,
    )
    .with_artifacts(artifacts)
    .with_webhooks(config.webhooks.engine())
    .with_fair_queues(config.fair_queues);
    #[cfg(feature = "otel")]
    if config.otel_endpoint.is_some() {
        engine.set_trace_propagator(projectengine_http::OtelPropagator);
    }
    let stop = CancellationToken::new();

    // Every role serves HTTP: `web` and `all` the whole API, `worker` its
    // health, readiness and metrics (its attempts are counted there).
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| {
            ConfigError::new(
                "PROJECTENGINE_BIND",
                format!("cannot listen on {}: {e}", config.bind),
            )
        })?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let mut http = HttpConfig::default();
    http.body_limit = config.max_body_bytes;
    http.max_streams_per_owner = config.max_streams_per_owner;
    http.cors = config.cors()?;
    let state = ApiState::with_config(engine.clone(), auth.clone(), http);
    // After the state: it binds the engine's metrics to its recorder, which
    // the worker's attempts then report to from the first one.
    let worker = work.then(|| Worker::new(engine.clone(), worker_config(&config)).spawn());
    // Workers deliver the webhook outbox.
    let dispatcher = match work {
        true => config.webhooks.dispatcher(backends.store.clone())?,
        false => None,
    }
    .map(|d| tokio::spawn(d.run(stop.clone())));
    let router = if let Some(agents) = agents {
        greet(&config, &auth, addr, &durability);
        projectengine_http::router_with_agents(state.clone(), agents)
    } else {
        println!("worker health and metrics on http://{addr}/metrics");
        projectengine_http::instrument(projectengine_http::health_routes(state.clone()))
    };
    // Deployed sites: their own listener, so generated pages never share
    // the API's origin.
    let sites = match (web, config.sites_bind) {
        (true, Some(bind)) => {
            let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
                ConfigError::new(
                    "PROJECTENGINE_SITES_BIND",
                    format!("cannot listen on {bind}: {e}"),
                )
            })?;
            let at = listener
                .local_addr()
                .context("cannot read the sites' listening address")?;
            println!("deployed sites on http://{at}/sites/JOB_ID/");
            let routes = projectengine_http::sites_routes(engine.clone());
            let shutdown = stop.clone();
            Some(tokio::spawn(async move {
                axum::serve(listener, routes)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await })
                    .await
            }))
        }
        _ => None,
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

    stop_signal.await;
    tracing::info!("shutting down: no new requests or jobs; draining");
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the HTTP server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server task failed"),
        Err(_) => tracing::warn!("open connections did not close in 10 s"),
    }
    if let Some(sites) = sites {
        let _ = tokio::time::timeout(Duration::from_secs(10), sites).await;
    }
    if let Some(worker) = worker {
        worker.shutdown().await;
    }
    if let Some(dispatcher) = dispatcher {
        let _ = dispatcher.await;
    }
    if let Some(n) = &backends.redis_notifier {
        n.shutdown();
    }
    tracing::info!("stopped");
    Ok(())
}

/// What a newcomer needs: the URL, the dashboard's, what is durable, a
/// token, a line that creates a job and one that watches it.
fn greet(config: &Config, auth: &JwtAuth, addr: std::net::SocketAddr, durability: &str) {
    let url = format!("http://{addr}");
    println!("projectEngine listening on {url}  (API docs: {url}/docs)");
    println!("dashboard: {url}/ui/  (sign in with a token)");
    println!("{durability}");
    match (&config.jwt_public_key, &config.jwt_secret) {
        _ if config.jwt_jwks_url.is_some() => {
            println!("tokens: verified with the keys of the configured JWKS URL");
        }
        (Some(_), _) => println!("tokens: verified with the configured public key"),
        (None, secret) => {
            if secret.is_none() {
                println!("tokens: PROJECTENGINE_JWT_SECRET is not set; using a random secret for this process only");
            }
            if let Ok(token) = auth.mint("dev", Duration::from_secs(24 * 3600)) {
                println!(
                    "development token ({}=dev, 24 h):\n  export TOKEN={token}",
                    config.jwt_subject_claim
                );
                println!("create a job:\n  curl -s -X POST {url}/api/jobs/ -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"prompt\":\"a todo app\"}}'");
                println!("watch it live (put the job id from the answer in place of JOB_ID):\n  curl -N {url}/api/jobs/JOB_ID/stream/ -H \"Authorization: Bearer $TOKEN\"");
            }
        }
    }
}
