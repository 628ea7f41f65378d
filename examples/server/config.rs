//! The server's configuration: every environment variable (each also a long
//! option), typed, with its default, parsed by clap. A bad value is one line
//! naming the variable, and exit code 2.

use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Command, ValueEnum};
use jsonwebtoken::Algorithm;
use projectengine_core::{ArtifactLimits, ArtifactStore};
use projectengine_http::{Cors, JwksConfig, JwtAuth};

/// A configuration error: which variable, and why.
#[derive(Debug)]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.var, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the server reads from its environment.
#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Address the HTTP server listens on (a `worker` serves /health, /ready and /metrics there)
    #[arg(long, env = "PROJECTENGINE_BIND", default_value = "127.0.0.1:8080", value_parser = address)]
    pub bind: SocketAddr,

    /// Durable store: a PostgreSQL URL, or a SQLite file as sqlite://jobs.db (created if missing) (unset: in-memory store)
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = database_url)]
    pub database_url: Option<String>,

    /// Redis URL of the queue and notifier (unset: in-memory queue and notifier)
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = redis_url)]
    pub redis_url: Option<String>,

    /// Key prefix, so deployments can share a Redis
    #[arg(long, env = "PROJECTENGINE_REDIS_PREFIX", default_value = "projectengine", value_parser = text)]
    pub redis_prefix: String,

    /// HS256 secret for bearer tokens, at least 32 bytes (unset: a random secret per process)
    #[arg(long, env = "PROJECTENGINE_JWT_SECRET", hide_env_values = true, value_parser = jwt_secret)]
    pub jwt_secret: Option<String>,

    /// PEM public key (inline or a file path) for RS256/ES256 tokens; replaces the secret (unset: the secret is used)
    #[arg(long, env = "PROJECTENGINE_JWT_PUBLIC_KEY", hide_env_values = true, value_parser = public_key)]
    pub jwt_public_key: Option<String>,

    /// Algorithm of tokens verified with the public key: RS256 or ES256
    #[arg(long, env = "PROJECTENGINE_JWT_ALGORITHM", default_value = "RS256", value_parser = public_key_algorithm)]
    pub jwt_algorithm: Algorithm,

    /// URL of the identity provider's key set (JWKS) that verifies tokens, instead of a public key or secret (unset: not used)
    #[arg(long, env = "PROJECTENGINE_JWT_JWKS_URL", value_parser = jwks_url)]
    pub jwt_jwks_url: Option<String>,

    /// Shortest time between two fetches of the JWKS (a token with an unknown `kid` fetches it at most this often)
    #[arg(long, env = "PROJECTENGINE_JWT_JWKS_MIN_REFRESH", default_value = "30s", value_parser = duration)]
    pub jwt_jwks_min_refresh: Duration,

    /// Age after which the JWKS is fetched again on the next token, so withdrawn keys stop working
    #[arg(long, env = "PROJECTENGINE_JWT_JWKS_MAX_AGE", default_value = "10m", value_parser = positive_duration)]
    pub jwt_jwks_max_age: Duration,

    /// The token claim naming the owner, e.g. `user_id`
    #[arg(long, env = "PROJECTENGINE_JWT_SUBJECT_CLAIM", default_value = "sub", value_parser = claim_name)]
    pub jwt_subject_claim: String,

    /// Required `iss` of tokens (unset: not checked)
    #[arg(long, env = "PROJECTENGINE_JWT_ISSUER", value_parser = text)]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of tokens (unset: not checked)
    #[arg(long, env = "PROJECTENGINE_JWT_AUDIENCE", value_parser = text)]
    pub jwt_audience: Option<String>,

    /// Attempts a worker runs at once, 1 to 10000
    #[arg(long, env = "PROJECTENGINE_WORKER_CONCURRENCY", default_value = "16", value_parser = concurrency)]
    pub worker_concurrency: usize,

    /// Comma-separated queues this worker serves (unset: every registered kind's queue)
    #[arg(long, env = "PROJECTENGINE_QUEUES", value_delimiter = ',', value_parser = text)]
    pub queues: Option<Vec<String>>,

    /// Comma-separated kinds run by remote agents over the agent protocol, not in process
    #[arg(long, env = "PROJECTENGINE_REMOTE_KINDS", default_value = "remote", value_delimiter = ',', value_parser = text)]
    pub remote_kinds: Vec<String>,

    /// How long a claim holds without a heartbeat
    #[arg(long, env = "PROJECTENGINE_LEASE", default_value = "30s", value_parser = positive_duration)]
    pub lease: Duration,

    /// How often a running attempt renews its lease (and sees a cancel); shorter than the lease
    #[arg(long, env = "PROJECTENGINE_HEARTBEAT", default_value = "10s", value_parser = positive_duration)]
    pub heartbeat: Duration,

    /// How long running attempts may finish on shutdown before they are released
    #[arg(long, env = "PROJECTENGINE_SHUTDOWN_GRACE", default_value = "30s", value_parser = positive_duration)]
    pub shutdown_grace: Duration,

    /// How often recovery looks for lost attempts and stranded jobs
    #[arg(long, env = "PROJECTENGINE_RECOVERY_EVERY", default_value = "5s", value_parser = positive_duration)]
    pub recovery_every: Duration,

    /// How often the schedule ticker looks for due cron ticks (in every worker; each tick fires once)
    #[arg(long, env = "PROJECTENGINE_SCHEDULE_EVERY", default_value = "1s", value_parser = positive_duration)]
    pub schedule_every: Duration,

    /// A cron tick further than this in the past was missed (downtime): its schedule's misfire policy decides
    #[arg(long, env = "PROJECTENGINE_SCHEDULE_GRACE", default_value = "60s", value_parser = positive_duration)]
    pub schedule_grace: Duration,

    /// Delete finished jobs, with their logs, Apps, artifacts and deliveries, this long after they finished, e.g. 30d (unset: keep them)
    #[arg(long, env = "PROJECTENGINE_RETENTION", value_parser = positive_duration)]
    pub retention: Option<Duration>,

    /// Orchestrator kind of jobs that name none (`stub`, `demo-builder`, `pipeline`, or `app-builder` when an LLM is configured)
    #[arg(long, env = "PROJECTENGINE_DEFAULT_KIND", default_value = "stub", value_parser = text)]
    pub default_kind: String,

    /// Steps of the stub orchestrator
    #[arg(long, env = "PROJECTENGINE_STUB_STEPS", default_value = "5", value_parser = number::<u32>)]
    pub stub_steps: u32,

    /// Pause before each stub step
    #[arg(long, env = "PROJECTENGINE_STUB_DELAY", default_value = "200ms", value_parser = duration)]
    pub stub_delay: Duration,

    /// Largest accepted request body, in bytes
    #[arg(long, env = "PROJECTENGINE_MAX_BODY_BYTES", default_value = "65536", value_parser = number::<usize>)]
    pub max_body_bytes: usize,

    /// Most queued jobs one owner may have; more is 429, counted by the store (unset: no quota)
    #[arg(long, env = "PROJECTENGINE_MAX_QUEUED_PER_OWNER", value_parser = limit::<u32>)]
    pub max_queued_per_owner: Option<u32>,

    /// Most WebSocket and SSE streams one owner may have open on this process (unset: no limit)
    #[arg(long, env = "PROJECTENGINE_MAX_STREAMS_PER_OWNER", value_parser = limit::<usize>)]
    pub max_streams_per_owner: Option<usize>,

    /// How long an Idempotency-Key of a submission is kept: the same key and body answer the job it created until then
    #[arg(long, env = "PROJECTENGINE_IDEMPOTENCY_TTL", default_value = "24h", value_parser = positive_duration)]
    pub idempotency_ttl: Duration,

    /// Where artifacts' bytes are kept: `memory`, a directory, or an object store URL (`file:///dir`, with the core's cloud features `s3://bucket/prefix`, `gs://…`, `az://…`)
    #[arg(long, env = "PROJECTENGINE_ARTIFACTS", default_value = "memory", value_parser = artifacts)]
    pub artifacts: ArtifactsAt,

    /// Largest artifact, in bytes
    #[arg(long, env = "PROJECTENGINE_ARTIFACT_MAX_BYTES", default_value = "268435456", value_parser = limit::<u64>)]
    pub artifact_max_bytes: u64,

    /// Most bytes one job's artifacts may take together
    #[arg(long, env = "PROJECTENGINE_JOB_ARTIFACTS_MAX_BYTES", default_value = "1073741824", value_parser = limit::<u64>)]
    pub job_artifacts_max_bytes: u64,

    /// Wall-clock limit of one pipeline phase (and the most a job may ask for)
    #[arg(long, env = "PROJECTENGINE_PIPELINE_WALL_TIME", default_value = "10m", value_parser = positive_duration)]
    pub pipeline_wall_time: Duration,

    /// CPU time limit of each process of a pipeline phase
    #[arg(long, env = "PROJECTENGINE_PIPELINE_CPU_TIME", default_value = "10m", value_parser = positive_duration)]
    pub pipeline_cpu_time: Duration,

    /// Address-space limit of each process of a pipeline phase, in bytes
    #[arg(long, env = "PROJECTENGINE_PIPELINE_MEMORY_BYTES", default_value = "2147483648", value_parser = limit::<u64>)]
    pub pipeline_memory_bytes: u64,

    /// Processes a pipeline phase may have at once
    #[arg(long, env = "PROJECTENGINE_PIPELINE_PROCESSES", default_value = "256", value_parser = limit::<u64>)]
    pub pipeline_processes: u64,

    /// Largest file a pipeline phase may write, in bytes
    #[arg(long, env = "PROJECTENGINE_PIPELINE_FILE_SIZE_BYTES", default_value = "1073741824", value_parser = limit::<u64>)]
    pub pipeline_file_size_bytes: u64,

    /// Open files of each process of a pipeline phase, at least 8
    #[arg(long, env = "PROJECTENGINE_PIPELINE_OPEN_FILES", default_value = "1024", value_parser = open_files)]
    pub pipeline_open_files: u64,

    /// Output of a pipeline phase kept as log lines, in bytes (more is dropped)
    #[arg(long, env = "PROJECTENGINE_PIPELINE_OUTPUT_BYTES", default_value = "16777216", value_parser = limit::<u64>)]
    pub pipeline_output_bytes: u64,

    /// Whether a pipeline phase may ask for the network (true or false)
    #[arg(long, env = "PROJECTENGINE_PIPELINE_ALLOW_NETWORK", default_value = "false", value_parser = boolean, action = clap::ArgAction::Set)]
    pub pipeline_allow_network: bool,

    /// Directory of the sandbox's working directories (unset: the system's temporary directory)
    #[arg(long, env = "PROJECTENGINE_SANDBOX_DIR", value_parser = text)]
    pub sandbox_dir: Option<String>,

    /// Run pipeline phases unsandboxed when the host cannot isolate them (true or false; never with untrusted jobs)
    #[arg(long, env = "PROJECTENGINE_SANDBOX_ALLOW_UNSANDBOXED", default_value = "false", value_parser = boolean, action = clap::ArgAction::Set)]
    pub sandbox_allow_unsandboxed: bool,

    /// Comma-separated origins (https://app.example.com) whose pages may call the API, or `*` (unset: no CORS headers)
    #[arg(long, env = "PROJECTENGINE_CORS_ORIGINS", value_delimiter = ',', value_parser = text)]
    pub cors_origins: Option<Vec<String>>,

    /// Comma-separated methods those pages may use, or `*` (unset: GET, POST)
    #[arg(long, env = "PROJECTENGINE_CORS_METHODS", value_delimiter = ',', value_parser = text)]
    pub cors_methods: Option<Vec<String>>,

    /// Comma-separated request headers those pages may send, or `*` (unset: authorization, content-type, last-event-id)
    #[arg(long, env = "PROJECTENGINE_CORS_HEADERS", value_delimiter = ',', value_parser = text)]
    pub cors_headers: Option<Vec<String>>,

    /// Base URL of an OTLP/HTTP collector (http://collector:4318) to export traces to (unset: no traces)
    #[cfg(feature = "otel")]
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = otlp_url)]
    pub otel_endpoint: Option<String>,

    /// Service name of the exported traces
    #[cfg(feature = "otel")]
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "projectengine", value_parser = text)]
    pub otel_service_name: String,

    /// JSON file of LLM providers and agents for the `app-builder` kind (see projectengine-llm's `LlmConfig`); replaces the PROJECTENGINE_LLM_BASE_URL settings
    #[arg(long, env = "PROJECTENGINE_LLM_CONFIG", value_parser = text)]
    pub llm_config: Option<String>,

    /// Base URL of an OpenAI-compatible API for the `app-builder` kind, e.g. https://api.openai.com/v1 (unset, and no PROJECTENGINE_LLM_CONFIG: no `app-builder`)
    #[arg(long, env = "PROJECTENGINE_LLM_BASE_URL", value_parser = text)]
    pub llm_base_url: Option<String>,

    /// Comma-separated models of that API, in order of preference (the next is used when one is rate-limited, overloaded or missing)
    #[arg(long, env = "PROJECTENGINE_LLM_MODELS", value_delimiter = ',', default_value = "gpt-4o-mini", value_parser = text)]
    pub llm_models: Vec<String>,

    /// The variable holding that API's key (when it is unset, requests carry no key, as local servers want)
    #[arg(long, env = "PROJECTENGINE_LLM_API_KEY_ENV", default_value = "PROJECTENGINE_LLM_API_KEY", value_parser = text)]
    pub llm_api_key_env: String,

    /// Most requests a minute to that API from this process (unset: no limit)
    #[arg(long, env = "PROJECTENGINE_LLM_REQUESTS_PER_MINUTE", value_parser = limit::<u32>)]
    pub llm_requests_per_minute: Option<u32>,

    /// Most tokens a minute to that API from this process (unset: no limit)
    #[arg(long, env = "PROJECTENGINE_LLM_TOKENS_PER_MINUTE", value_parser = limit::<u32>)]
    pub llm_tokens_per_minute: Option<u32>,

    /// Fix rounds of the `app-builder` after a failed build
    #[arg(long, env = "PROJECTENGINE_LLM_MAX_FIX_ROUNDS", default_value = "2", value_parser = number::<u32>)]
    pub llm_max_fix_rounds: u32,

    /// Address deployed sites are served on: a port of their own, so generated pages never share the API's origin (unset: sites are not served)
    #[arg(long, env = "PROJECTENGINE_SITES_BIND", value_parser = address)]
    pub sites_bind: Option<SocketAddr>,

    /// Public base URL of the sites listener, for the `deploy_url` of Apps (default: http://PROJECTENGINE_SITES_BIND)
    #[arg(long, env = "PROJECTENGINE_SITES_URL", value_parser = text)]
    pub sites_url: Option<String>,

    /// How log lines are written; RUST_LOG filters them (default info)
    #[arg(long, env = "PROJECTENGINE_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Completion webhooks
    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookConfig,

    /// Shell command the `app-builder` runs after a successful build to deploy the site to a real host: in the build's sandbox, with the network for this step only; it prints the site's URL, or writes it to $DEPLOY_URL_FILE (unset: sites are only served by PROJECTENGINE_SITES_BIND)
    #[arg(long, env = "PROJECTENGINE_DEPLOY_COMMAND", value_parser = text)]
    pub deploy_command: Option<String>,

    /// Comma-separated names of variables of this process passed to the deploy command, their values never logged (unset: none)
    #[arg(long, env = "PROJECTENGINE_DEPLOY_SECRETS", value_delimiter = ',', value_parser = variable_name)]
    pub deploy_secrets: Vec<String>,

    /// How long the deploy command may run
    #[arg(long, env = "PROJECTENGINE_DEPLOY_TIMEOUT", default_value = "5m", value_parser = positive_duration)]
    pub deploy_timeout: Duration,

    /// Secret (at least 32 bytes) that signs the attempt tokens of remote agents; every web process must share it (unset: PROJECTENGINE_JWT_SECRET, else a random one, for the `all` role only)
    #[arg(long, env = "PROJECTENGINE_ATTEMPT_TOKEN_SECRET", value_parser = jwt_secret, hide_env_values = true)]
    pub attempt_token_secret: Option<String>,

    /// Whether owners with queued jobs take turns within a queue's priority, so one owner's backlog does not hold up another's jobs (true or false; false: first-in first-out)
    #[arg(long, env = "PROJECTENGINE_FAIR_QUEUES", default_value = "true", value_parser = boolean, action = clap::ArgAction::Set)]
    pub fair_queues: bool,
}

/// Where artifacts' bytes are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArtifactsAt {
    /// In this process's memory (gone with it).
    Memory,
    /// Files under a directory.
    Directory(std::path::PathBuf),
    /// An object store URL.
    Url(String),
}

impl ArtifactsAt {
    /// The artifact store, with `limits`.
    pub fn open(&self, limits: ArtifactLimits) -> Result<ArtifactStore, ConfigError> {
        let store = match self {
            Self::Memory => ArtifactStore::in_memory(),
            Self::Directory(dir) => ArtifactStore::local(dir)
                .map_err(|e| ConfigError::new("PROJECTENGINE_ARTIFACTS", e.to_string()))?,
            Self::Url(url) => ArtifactStore::from_url(url)
                .map_err(|e| ConfigError::new("PROJECTENGINE_ARTIFACTS", e.to_string()))?,
        };
        Ok(store.with_limits(limits))
    }
}

impl fmt::Display for ArtifactsAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory (not durable)"),
            Self::Directory(dir) => write!(f, "directory {}", dir.display()),
            Self::Url(url) => f.write_str(url.split('?').next().unwrap_or(url)),
        }
    }
}

/// Reads `./.env`, when there is one, into the environment (a variable already
/// set wins), then drops variables of `command` that are set but blank, so that
/// `VAR=` means unset.
pub fn load_env(command: &Command) -> Result<(), ConfigError> {
    match dotenvy::from_path(".env") {
        Ok(()) => {}
        Err(e) if e.not_found() => {}
        Err(e) => return Err(ConfigError::new(".env", e.to_string())),
    }
    for name in command.get_arguments().filter_map(|a| a.get_env()) {
        if std::env::var_os(name).is_some_and(|v| v.to_string_lossy().trim().is_empty()) {
            std::env::remove_var(name);
        }
    }
    Ok(())
}

impl Config {
    /// The checks that involve more than one variable.
    pub fn check(mut self) -> Result<Self, ConfigError> {
        if self.heartbeat >= self.lease {
            return Err(ConfigError::new(
                "PROJECTENGINE_HEARTBEAT",
                "must be shorter than PROJECTENGINE_LEASE",
            ));
        }
        if self.jwt_public_key.is_some() && self.jwt_secret.is_some() {
            return Err(ConfigError::new(
                "PROJECTENGINE_JWT_PUBLIC_KEY",
                "set either it or PROJECTENGINE_JWT_SECRET, not both",
            ));
        }
        if self.jwt_jwks_url.is_some()
            && (self.jwt_public_key.is_some() || self.jwt_secret.is_some())
        {
            return Err(ConfigError::new(
                "PROJECTENGINE_JWT_JWKS_URL",
                "set either it, PROJECTENGINE_JWT_PUBLIC_KEY or PROJECTENGINE_JWT_SECRET, not two",
            ));
        }
        if let Some(queues) = &mut self.queues {
            queues.retain(|q| !q.is_empty());
        }
        self.webhooks.check()?;
        self.cors()?;
        Ok(self)
    }

    /// The pipeline orchestrator's settings: its sandbox limits, network and
    /// working directories.
    pub fn pipeline(&self) -> projectengine_orchestrators::PipelineConfig {
        let mut pipeline = projectengine_orchestrators::PipelineConfig::default();
        pipeline.limits = projectengine_sandbox::Limits {
            wall_time: self.pipeline_wall_time,
            cpu_time: Some(self.pipeline_cpu_time),
            memory_bytes: Some(self.pipeline_memory_bytes),
            processes: Some(self.pipeline_processes),
            file_size_bytes: Some(self.pipeline_file_size_bytes),
            open_files: Some(self.pipeline_open_files),
            output_bytes: self.pipeline_output_bytes,
            ..projectengine_sandbox::Limits::default()
        };
        pipeline.allow_network = self.pipeline_allow_network;
        pipeline.workdir_root = self.sandbox_dir.as_ref().map(Into::into);
        pipeline.allow_unsandboxed = self.sandbox_allow_unsandboxed;
        pipeline
    }

    /// The CORS policy: none without `PROJECTENGINE_CORS_ORIGINS`.
    pub fn cors(&self) -> Result<Option<Cors>, ConfigError> {
        let empty = Vec::new();
        let Some(origins) = &self.cors_origins else {
            let var = if self.cors_methods.is_some() {
                "PROJECTENGINE_CORS_METHODS"
            } else if self.cors_headers.is_some() {
                "PROJECTENGINE_CORS_HEADERS"
            } else {
                return Ok(None);
            };
            return Err(ConfigError::new(
                var,
                "needs PROJECTENGINE_CORS_ORIGINS, the origins it applies to",
            ));
        };
        let methods = self.cors_methods.as_ref().unwrap_or(&empty);
        let headers = self.cors_headers.as_ref().unwrap_or(&empty);
        Cors::parse(origins, methods, headers)
            .map(Some)
            .map_err(|e| {
                let var = match e.list {
                    "methods" => "PROJECTENGINE_CORS_METHODS",
                    "headers" => "PROJECTENGINE_CORS_HEADERS",
                    _ => "PROJECTENGINE_CORS_ORIGINS",
                };
                ConfigError::new(var, e.to_string())
            })
    }

    /// The LLM providers and agents of the `app-builder` kind: the file of
    /// PROJECTENGINE_LLM_CONFIG, else one provider at
    /// PROJECTENGINE_LLM_BASE_URL with the default agents, else none.
    pub fn llm(&self) -> Result<Option<projectengine_llm::LlmConfig>, ConfigError> {
        use projectengine_llm::{LlmConfig, ProviderProfile};
        if let Some(path) = &self.llm_config {
            return LlmConfig::load(std::path::Path::new(path))
                .map(Some)
                .map_err(|e| ConfigError::new("PROJECTENGINE_LLM_CONFIG", e.to_string()));
        }
        let Some(base_url) = &self.llm_base_url else {
            return Ok(None);
        };
        let models: Vec<String> = self
            .llm_models
            .iter()
            .filter(|m| !m.is_empty())
            .cloned()
            .collect();
        let mut provider = ProviderProfile::new("default", base_url.clone(), models);
        if std::env::var_os(&self.llm_api_key_env).is_some() {
            provider.api_key_env = Some(self.llm_api_key_env.clone());
        }
        provider.requests_per_minute = self.llm_requests_per_minute;
        provider.tokens_per_minute = self.llm_tokens_per_minute;
        LlmConfig::new(
            vec![provider],
            projectengine_orchestrators::app_builder::default_agents("default"),
        )
        .map(Some)
        .map_err(|e| ConfigError::new("PROJECTENGINE_LLM_BASE_URL", e.to_string()))
    }

    /// The `app-builder`'s deploy command, with the values of its secrets
    /// read from this process's environment.
    pub fn deploy(
        &self,
    ) -> Result<Option<projectengine_orchestrators::app_builder::DeployCommand>, ConfigError> {
        let Some(command) = &self.deploy_command else {
            if self.deploy_secrets.is_empty() {
                return Ok(None);
            }
            return Err(ConfigError::new(
                "PROJECTENGINE_DEPLOY_SECRETS",
                "needs PROJECTENGINE_DEPLOY_COMMAND, the command they are for",
            ));
        };
        let mut deploy =
            projectengine_orchestrators::app_builder::DeployCommand::new(command.clone())
                .timeout(self.deploy_timeout);
        for name in &self.deploy_secrets {
            let value = std::env::var(name).map_err(|_| {
                ConfigError::new(
                    "PROJECTENGINE_DEPLOY_SECRETS",
                    format!("names {name}, which is not set"),
                )
            })?;
            deploy = deploy.secret(name.clone(), value);
        }
        Ok(Some(deploy))
    }

    /// The public base URL of deployed sites, when they are served.
    pub fn sites_url(&self) -> Option<String> {
        match (&self.sites_url, self.sites_bind) {
            (Some(url), _) => Some(url.trim_end_matches('/').to_owned()),
            (None, Some(bind)) => Some(format!("http://{bind}")),
            (None, None) => None,
        }
    }

    /// The token verifier: the JWKS, else the public key, else the secret,
    /// else a random secret for this process only.
    pub fn jwt_auth(&self) -> Result<JwtAuth, ConfigError> {
        let auth = match (&self.jwt_public_key, &self.jwt_secret) {
            _ if self.jwt_jwks_url.is_some() => {
                let url = self.jwt_jwks_url.clone().unwrap_or_default();
                let jwks = JwksConfig::new(url)
                    .min_refresh(self.jwt_jwks_min_refresh)
                    .max_age(self.jwt_jwks_max_age);
                JwtAuth::jwks(jwks)
                    .map_err(|e| ConfigError::new("PROJECTENGINE_JWT_JWKS_URL", e.to_string()))?
            }
            (Some(pem), _) => JwtAuth::public_key_pem(self.jwt_algorithm, pem.as_bytes())
                .map_err(|e| ConfigError::new("PROJECTENGINE_JWT_PUBLIC_KEY", e.to_string()))?,
            (None, Some(secret)) => JwtAuth::hs256(secret)
                .map_err(|e| ConfigError::new("PROJECTENGINE_JWT_SECRET", e.to_string()))?,
            (None, None) => {
                let random = format!(
                    "{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                );
                JwtAuth::hs256(random)
                    .map_err(|e| ConfigError::new("PROJECTENGINE_JWT_SECRET", e.to_string()))?
            }
        };
        let auth = match &self.jwt_issuer {
            Some(iss) => auth.issuer(iss.clone()),
            None => auth,
        };
        let auth = match &self.jwt_audience {
            Some(aud) => auth.audience(aud.clone()),
            None => auth,
        };
        auth.try_subject_claim(self.jwt_subject_claim.clone())
            .map_err(|e| ConfigError::new("PROJECTENGINE_JWT_SUBJECT_CLAIM", e.to_string()))
    }
}

/// One line for a clap error about a value: the variable it came from (or the
/// option, for one without a variable) and why it is wrong. `None` for other
/// errors (help, unknown role, …), which clap renders itself.
pub fn one_line(command: &Command, error: &clap::Error) -> Option<String> {
    if !matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    // An argument shows as the error does only once built.
    let mut command = command.clone();
    command.build();
    let arg = command
        .get_subcommands()
        .flat_map(Command::get_arguments)
        .chain(command.get_arguments())
        .find(|a| a.to_string() == *shown);
    let reason = match (
        std::error::Error::source(error),
        error.get(ContextKind::InvalidValue),
    ) {
        (Some(source), _) => source.to_string(),
        (None, Some(ContextValue::String(value))) => {
            let valid = match error.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) => v.join(" or "),
                _ => "valid".into(),
            };
            format!("`{value}` is not {valid}")
        }
        _ => error.kind().to_string(),
    };
    Some(
        match arg.and_then(|a| a.get_env()).map(OsStr::to_string_lossy) {
            Some(var) => format!("invalid configuration: {var}: {reason}"),
            None => format!("{shown}: {reason}"),
        },
    )
}

/// Parses a duration: `500ms`, `30s`, `5m`, `1h 30m` (humantime), or a bare
/// number of seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("`{s}` is not a duration such as 500ms, 30s or 5m");
    match s.parse::<f64>() {
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|_| bad()),
        Err(_) => humantime::parse_duration(s).map_err(|_| bad()),
    }
}

/// A duration longer than zero.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "`{}` is not a positive duration such as 500ms, 30s or 5m",
            s.trim()
        )),
    }
}

fn text(s: &str) -> Result<String, String> {
    Ok(s.trim().to_owned())
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{}` is not a number", s.trim()))
}

/// A limit: a whole number, at least 1.
fn limit<T: std::str::FromStr + PartialOrd + From<u8>>(s: &str) -> Result<T, String> {
    match number::<T>(s) {
        Ok(n) if n >= T::from(1) => Ok(n),
        _ => Err("must be a whole number, at least 1".into()),
    }
}

fn artifacts(s: &str) -> Result<ArtifactsAt, String> {
    let s = s.trim();
    if s == "memory" {
        Ok(ArtifactsAt::Memory)
    } else if s.contains("://") {
        url::Url::parse(s)
            .map(|_| ArtifactsAt::Url(s.to_owned()))
            .map_err(|e| format!("not a valid URL: {e}"))
    } else if s.is_empty() {
        Err("must be `memory`, a directory or an object store URL".into())
    } else {
        Ok(ArtifactsAt::Directory(s.into()))
    }
}

/// `true` or `false` (also `1` or `0`, `yes` or `no`).
fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(format!("`{other}` is not true or false")),
    }
}

/// Open files of a sandboxed process: at least 8.
fn open_files(s: &str) -> Result<u64, String> {
    match number::<u64>(s) {
        Ok(n) if n >= 8 => Ok(n),
        _ => Err("must be a whole number, at least 8".into()),
    }
}

fn address(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{}` is not an address such as 127.0.0.1:8080", s.trim()))
}

fn concurrency(s: &str) -> Result<usize, String> {
    match number::<usize>(s) {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err("must be between 1 and 10000".into()),
    }
}

/// A URL with one of `schemes`; the value is not repeated, as it may hold a password.
fn url(s: &str, schemes: &[&str]) -> Result<String, String> {
    let s = s.trim();
    if schemes.iter().any(|scheme| {
        s.strip_prefix(scheme)
            .is_some_and(|rest| rest.starts_with("://"))
    }) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "must be a URL starting with {}://",
            schemes.join(":// or ")
        ))
    }
}

fn database_url(s: &str) -> Result<String, String> {
    url(s, &["postgres", "postgresql", "sqlite"])
}

/// The SQLite file a `sqlite://` database URL names, if it names one.
pub fn sqlite_file(database_url: &str) -> Option<&str> {
    database_url.strip_prefix("sqlite://")
}

fn redis_url(s: &str) -> Result<String, String> {
    url(s, &["redis", "rediss"])
}

#[cfg(feature = "otel")]
fn otlp_url(s: &str) -> Result<String, String> {
    url(s, &["http", "https"])
}

fn jwks_url(s: &str) -> Result<String, String> {
    url(s, &["https", "http"])
}

/// A claim's name: not empty.
fn claim_name(s: &str) -> Result<String, String> {
    match s.trim() {
        "" => Err("must name a claim, such as sub or user_id".into()),
        name => Ok(name.to_owned()),
    }
}

/// The name of an environment variable.
fn variable_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    let valid = !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match valid {
        true => Ok(s.to_owned()),
        false => Err(format!(
            "`{s}` is not a variable name (letters, digits, `_`)"
        )),
    }
}

fn jwt_secret(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.len() < 32 {
        return Err("must be at least 32 bytes".into());
    }
    Ok(s.to_owned())
}

/// An inline PEM, or the path of a file holding one.
fn public_key(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.contains("-----BEGIN") {
        return Ok(s.to_owned());
    }
    std::fs::read_to_string(s).map_err(|e| format!("cannot read `{s}`: {e}"))
}

fn public_key_algorithm(s: &str) -> Result<Algorithm, String> {
    match s.trim().parse() {
        Ok(alg @ (Algorithm::RS256 | Algorithm::ES256)) => Ok(alg),
        _ => Err(format!("`{}` is not RS256 or ES256", s.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    use crate::Cli;

    /// The command without its environment variables, so the test process's
    /// own environment plays no part.
    fn without_env() -> Command {
        Cli::command().mut_args(|a| a.env(None::<&'static str>))
    }

    fn with(args: &[&str]) -> Result<Config, String> {
        let command = Cli::command();
        let matches = without_env()
            .try_get_matches_from(std::iter::once("server").chain(args.iter().copied()))
            .map_err(|e| one_line(&command, &e).unwrap_or_else(|| e.to_string()))?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        cli.config.check().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = with(&[]).expect("defaults");
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert!(c.database_url.is_none() && c.redis_url.is_none());
        assert!(c.jwt_secret.is_none() && c.jwt_public_key.is_none());
        assert_eq!(c.jwt_algorithm, Algorithm::RS256);
        assert_eq!(
            (c.worker_concurrency, c.lease, c.heartbeat),
            (16, Duration::from_secs(30), Duration::from_secs(10))
        );
        assert_eq!(c.stub_delay, Duration::from_millis(200));
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (flag, value, var) in [
            ("--bind", "nowhere", "PROJECTENGINE_BIND"),
            ("--database-url", "mysql://x", "DATABASE_URL"),
            ("--redis-url", "localhost", "REDIS_URL"),
            (
                "--worker-concurrency",
                "0",
                "PROJECTENGINE_WORKER_CONCURRENCY",
            ),
            ("--lease", "soon", "PROJECTENGINE_LEASE"),
            (
                "--max-queued-per-owner",
                "0",
                "PROJECTENGINE_MAX_QUEUED_PER_OWNER",
            ),
            (
                "--max-streams-per-owner",
                "lots",
                "PROJECTENGINE_MAX_STREAMS_PER_OWNER",
            ),
            ("--idempotency-ttl", "0s", "PROJECTENGINE_IDEMPOTENCY_TTL"),
            ("--heartbeat", "1h", "PROJECTENGINE_HEARTBEAT"),
            ("--log-format", "xml", "PROJECTENGINE_LOG_FORMAT"),
            ("--jwt-secret", "short", "PROJECTENGINE_JWT_SECRET"),
            ("--jwt-algorithm", "HS256", "PROJECTENGINE_JWT_ALGORITHM"),
            ("--stub-steps", "many", "PROJECTENGINE_STUB_STEPS"),
            ("--webhook-url", "ftp://x", "PROJECTENGINE_WEBHOOK_URL"),
            (
                "--webhook-secret",
                "hunter2",
                "PROJECTENGINE_WEBHOOK_SECRET",
            ),
            (
                "--webhook-secret",
                "whsec_c2hvcnQ=",
                "PROJECTENGINE_WEBHOOK_SECRET",
            ),
            (
                "--webhook-retries",
                "5s,soon",
                "PROJECTENGINE_WEBHOOK_RETRIES",
            ),
            ("--webhook-timeout", "0s", "PROJECTENGINE_WEBHOOK_TIMEOUT"),
            (
                "--webhook-allow-private",
                "maybe",
                "PROJECTENGINE_WEBHOOK_ALLOW_PRIVATE",
            ),
            (
                "--pipeline-open-files",
                "3",
                "PROJECTENGINE_PIPELINE_OPEN_FILES",
            ),
            (
                "--pipeline-allow-network",
                "maybe",
                "PROJECTENGINE_PIPELINE_ALLOW_NETWORK",
            ),
            (
                "--pipeline-wall-time",
                "0s",
                "PROJECTENGINE_PIPELINE_WALL_TIME",
            ),
            (
                "--jwt-jwks-url",
                "id.example.com",
                "PROJECTENGINE_JWT_JWKS_URL",
            ),
            (
                "--jwt-jwks-min-refresh",
                "often",
                "PROJECTENGINE_JWT_JWKS_MIN_REFRESH",
            ),
            (
                "--jwt-subject-claim",
                " ",
                "PROJECTENGINE_JWT_SUBJECT_CLAIM",
            ),
            (
                "--cors-origins",
                "example.com",
                "PROJECTENGINE_CORS_ORIGINS",
            ),
            ("--cors-methods", "GET", "PROJECTENGINE_CORS_METHODS"),
        ] {
            let e = with(&[flag, value]).expect_err(var);
            assert!(
                e.starts_with(&format!("invalid configuration: {var}: ")),
                "{e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let e = with(&["--jwt-secret", &"s".repeat(32), "--jwt-public-key", "k.pem"])
            .expect_err("a missing key file");
        assert!(e.contains("PROJECTENGINE_JWT_PUBLIC_KEY"), "{e}");
    }

    #[test]
    fn webhooks_need_a_secret_and_a_public_url() {
        let c = with(&[]).expect("defaults");
        assert!(c.webhooks.secret.is_none() && !c.webhooks.allow_private);
        assert_eq!(c.webhooks.retries.max_tries(), 7);
        assert!(c.webhooks.engine().check.is_none(), "off without a secret");
        let e = with(&["--webhook-url", "https://hooks.example.com/"]).expect_err("no secret");
        assert!(e.contains("PROJECTENGINE_WEBHOOK_SECRET"), "{e}");
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let e = with(&[
            "--webhook-secret",
            secret,
            "--webhook-url",
            "http://127.0.0.1:9/",
        ])
        .expect_err("private");
        assert!(e.contains("PROJECTENGINE_WEBHOOK_URL"), "{e}");
        let c = with(&[
            "--webhook-secret",
            secret,
            "--webhook-url",
            "http://127.0.0.1:9/",
            "--webhook-allow-private",
            "true",
        ])
        .expect("allowed");
        assert!(c.webhooks.engine().notify_deployment);
        let c = with(&["--webhook-secret", secret]).expect("job URLs only");
        let engine = c.webhooks.engine();
        assert!(!engine.notify_deployment && engine.check.is_some());
        assert!(
            !format!("{c:?}").contains(&secret[6..]),
            "the secret is not shown"
        );
    }

    #[test]
    fn the_pipeline_takes_its_sandbox_limits_from_the_variables() {
        let defaults = with(&[]).expect("defaults").pipeline();
        assert_eq!(defaults.limits, projectengine_sandbox::Limits::default());
        assert!(!defaults.allow_network && !defaults.allow_unsandboxed);
        assert_eq!(defaults.workdir_root, None);
        let c = with(&[
            "--pipeline-wall-time",
            "90s",
            "--pipeline-memory-bytes",
            "1000000000",
            "--pipeline-processes",
            "64",
            "--pipeline-allow-network",
            "true",
            "--sandbox-dir",
            "/var/tmp/builds",
        ])
        .expect("valid");
        let p = c.pipeline();
        assert_eq!(p.limits.wall_time, Duration::from_secs(90));
        assert_eq!(p.limits.memory_bytes, Some(1_000_000_000));
        assert_eq!(p.limits.processes, Some(64));
        assert!(p.allow_network);
        assert_eq!(p.workdir_root, Some("/var/tmp/builds".into()));
    }

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(duration("5 parsecs").is_err());
        assert!(duration("-1").is_err());
        assert!(positive_duration("0s").is_err());
    }

    #[test]
    fn the_database_is_postgresql_or_a_sqlite_file() {
        let c = with(&["--database-url", "sqlite://jobs.db"]).expect("SQLite");
        assert_eq!(
            c.database_url.as_deref().and_then(sqlite_file),
            Some("jobs.db")
        );
        let c = with(&["--database-url", "postgres://u@h/db"]).expect("PostgreSQL");
        assert_eq!(c.database_url.as_deref().and_then(sqlite_file), None);
        let e = with(&["--database-url", "sqlite:jobs.db"]).expect_err("no //");
        assert!(e.contains("sqlite://"), "{e}");
    }

    #[test]
    fn the_algorithm_is_a_jsonwebtoken_algorithm() {
        let c = with(&["--jwt-algorithm", "ES256"]).expect("ES256");
        assert_eq!(c.jwt_algorithm, Algorithm::ES256);
    }

    #[test]
    fn tokens_from_a_jwks_with_another_subject_claim() {
        let c = with(&[
            "--jwt-jwks-url",
            "https://id.example.com/.well-known/jwks.json",
            "--jwt-jwks-min-refresh",
            "1m",
            "--jwt-subject-claim",
            "user_id",
        ])
        .expect("jwks");
        assert_eq!(c.jwt_jwks_min_refresh, Duration::from_secs(60));
        let auth = format!("{:?}", c.jwt_auth().expect("auth"));
        assert!(
            auth.contains("id.example.com") && auth.contains("user_id"),
            "{auth}"
        );
        let e = with(&[
            "--jwt-jwks-url",
            "https://id.example.com/jwks.json",
            "--jwt-secret",
            &"s".repeat(32),
        ])
        .expect_err("two sources of keys");
        assert!(e.contains("PROJECTENGINE_JWT_JWKS_URL"), "{e}");
    }

    #[test]
    fn cors_is_off_unless_origins_are_set() {
        assert_eq!(with(&[]).expect("defaults").cors().expect("cors"), None);
        let c = with(&[
            "--cors-origins",
            "https://a.example, http://localhost:3000",
            "--cors-methods",
            "GET,POST,DELETE",
        ])
        .expect("cors");
        let cors = c.cors().expect("valid").expect("on");
        assert_eq!(
            cors.methods,
            projectengine_http::Allowed::List(vec![
                axum::http::Method::GET,
                axum::http::Method::POST,
                axum::http::Method::DELETE
            ])
        );
        let e = with(&["--cors-origins", "*", "--cors-headers", "bad header"])
            .expect_err("a bad header");
        assert!(e.contains("PROJECTENGINE_CORS_HEADERS"), "{e}");
    }

    #[test]
    fn the_deploy_command_takes_its_secrets_from_the_environment() {
        assert!(with(&[]).unwrap().deploy().unwrap().is_none());
        let err = with(&["--deploy-secrets", "PATH"])
            .unwrap()
            .deploy()
            .unwrap_err();
        assert_eq!(err.var, "PROJECTENGINE_DEPLOY_SECRETS");
        assert!(err.reason.contains("PROJECTENGINE_DEPLOY_COMMAND"), "{err}");
        let unset = "PROJECTENGINE_TEST_A_VARIABLE_NOBODY_SETS";
        let err = with(&["--deploy-command", "true", "--deploy-secrets", unset])
            .unwrap()
            .deploy()
            .unwrap_err();
        assert_eq!(err.var, "PROJECTENGINE_DEPLOY_SECRETS");
        assert!(err.reason.contains(unset), "{err}");
        assert!(with(&["--deploy-secrets", "NOT-A-NAME"]).is_err());
        assert!(with(&["--deploy-secrets", "1ST"]).is_err());
        // A variable every test process has, passed with its value, which
        // the command's description never shows.
        let path = std::env::var("PATH").unwrap();
        let deploy = with(&[
            "--deploy-command",
            "./publish.sh",
            "--deploy-secrets",
            "PATH",
            "--deploy-timeout",
            "90s",
        ])
        .unwrap()
        .deploy()
        .unwrap()
        .unwrap();
        assert_eq!(deploy.command, "./publish.sh");
        assert_eq!(deploy.secrets, [("PATH".to_owned(), path.clone())]);
        assert_eq!(deploy.timeout, Duration::from_secs(90));
        assert!(!format!("{deploy:?}").contains(&path));
    }

    #[test]
    fn queues_are_split_on_commas() {
        let c = with(&["--queues", "a, b,"]).expect("queues");
        assert_eq!(c.queues, Some(vec!["a".to_owned(), "b".to_owned()]));
    }
}
