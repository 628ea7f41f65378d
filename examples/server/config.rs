//! The server's configuration: every environment variable, read once, typed,
//! with its default. A bad value is one clear line naming the variable.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A configuration error: which variable, and why.
#[derive(Debug)]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.var, self.reason)
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How tokens are verified.
#[derive(Clone, Debug)]
pub enum JwtKey {
    /// HS256 with this secret.
    Secret(String),
    /// RS256 or ES256 with this PEM public key.
    PublicKey { algorithm: String, pem: String },
    /// No key configured: a random secret for this process only (development).
    Ephemeral(String),
}

/// Everything the server reads from its environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: SocketAddr,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub jwt: JwtKey,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub concurrency: usize,
    pub queues: Option<Vec<String>>,
    pub lease: Duration,
    pub heartbeat: Duration,
    pub shutdown_grace: Duration,
    pub recovery_every: Duration,
    pub default_kind: String,
    pub stub_steps: u32,
    pub stub_delay: Duration,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
}

/// The variables, their defaults and meaning, as the README lists them.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "PROJECTENGINE_BIND",
        "127.0.0.1:8080",
        "address the HTTP server listens on",
    ),
    (
        "DATABASE_URL",
        "(unset: in-memory store)",
        "PostgreSQL URL of the durable store",
    ),
    (
        "REDIS_URL",
        "(unset: in-memory queue and notifier)",
        "Redis URL of the queue and notifier",
    ),
    (
        "PROJECTENGINE_REDIS_PREFIX",
        "projectengine",
        "key prefix, so deployments can share a Redis",
    ),
    (
        "PROJECTENGINE_JWT_SECRET",
        "(unset: a random secret per process)",
        "HS256 secret for bearer tokens",
    ),
    (
        "PROJECTENGINE_JWT_PUBLIC_KEY",
        "(unset)",
        "PEM public key (inline or a file path) for RS256/ES256 tokens; replaces the secret",
    ),
    (
        "PROJECTENGINE_JWT_ALGORITHM",
        "RS256",
        "RS256 or ES256, with a public key",
    ),
    (
        "PROJECTENGINE_JWT_ISSUER",
        "(unset: not checked)",
        "required `iss` of tokens",
    ),
    (
        "PROJECTENGINE_JWT_AUDIENCE",
        "(unset: not checked)",
        "required `aud` of tokens",
    ),
    (
        "PROJECTENGINE_WORKER_CONCURRENCY",
        "16",
        "attempts a worker runs at once",
    ),
    (
        "PROJECTENGINE_QUEUES",
        "(unset: every registered kind's queue)",
        "comma-separated queues this worker serves",
    ),
    (
        "PROJECTENGINE_LEASE",
        "30s",
        "how long a claim holds without a heartbeat",
    ),
    (
        "PROJECTENGINE_HEARTBEAT",
        "10s",
        "how often a running attempt renews its lease",
    ),
    (
        "PROJECTENGINE_SHUTDOWN_GRACE",
        "30s",
        "how long running attempts may finish on shutdown",
    ),
    (
        "PROJECTENGINE_RECOVERY_EVERY",
        "5s",
        "how often recovery looks for lost attempts and stranded jobs",
    ),
    (
        "PROJECTENGINE_DEFAULT_KIND",
        "stub",
        "orchestrator kind of jobs that name none",
    ),
    (
        "PROJECTENGINE_STUB_STEPS",
        "5",
        "steps of the stub orchestrator",
    ),
    (
        "PROJECTENGINE_STUB_DELAY",
        "200ms",
        "pause before each stub step",
    ),
    (
        "PROJECTENGINE_MAX_BODY_BYTES",
        "65536",
        "largest accepted request body",
    ),
    (
        "PROJECTENGINE_LOG_FORMAT",
        "text",
        "text or json; RUST_LOG filters (default info)",
    ),
];

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn get(env: Env, var: &str) -> Option<String> {
    env(var)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn err(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

fn parse<T: std::str::FromStr>(
    env: Env,
    var: &'static str,
    default: T,
    what: &str,
) -> Result<T, ConfigError> {
    match get(env, var) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| err(var, format!("`{v}` is not {what}"))),
    }
}

/// Parses `500ms`, `30s`, `5m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn duration(env: Env, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    match get(env, var) {
        None => Ok(default),
        Some(v) => match parse_duration(&v) {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(err(
                var,
                format!("`{v}` is not a positive duration such as 500ms, 30s or 5m"),
            )),
        },
    }
}

fn url(env: Env, var: &'static str, schemes: &[&str]) -> Result<Option<String>, ConfigError> {
    match get(env, var) {
        None => Ok(None),
        Some(v) if schemes.iter().any(|s| v.starts_with(&format!("{s}://"))) => Ok(Some(v)),
        Some(_) => Err(err(
            var,
            format!("must be a URL starting with {}://", schemes.join(":// or ")),
        )),
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `env` (a test may pass a map).
    pub fn from_lookup(env: Env) -> Result<Self, ConfigError> {
        let bind = parse(
            env,
            "PROJECTENGINE_BIND",
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            "an address such as 127.0.0.1:8080",
        )?;
        let database_url = url(env, "DATABASE_URL", &["postgres", "postgresql"])?;
        let redis_url = url(env, "REDIS_URL", &["redis", "rediss"])?;
        let redis_prefix =
            get(env, "PROJECTENGINE_REDIS_PREFIX").unwrap_or_else(|| "projectengine".into());
        let jwt = match (
            get(env, "PROJECTENGINE_JWT_PUBLIC_KEY"),
            get(env, "PROJECTENGINE_JWT_SECRET"),
        ) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "PROJECTENGINE_JWT_PUBLIC_KEY",
                    "set either it or PROJECTENGINE_JWT_SECRET, not both",
                ))
            }
            (Some(key), None) => {
                let pem = if key.contains("-----BEGIN") {
                    key
                } else {
                    std::fs::read_to_string(&key).map_err(|e| {
                        err(
                            "PROJECTENGINE_JWT_PUBLIC_KEY",
                            format!("cannot read `{key}`: {e}"),
                        )
                    })?
                };
                let algorithm =
                    get(env, "PROJECTENGINE_JWT_ALGORITHM").unwrap_or_else(|| "RS256".into());
                if algorithm != "RS256" && algorithm != "ES256" {
                    return Err(err(
                        "PROJECTENGINE_JWT_ALGORITHM",
                        format!("`{algorithm}` is not RS256 or ES256"),
                    ));
                }
                JwtKey::PublicKey { algorithm, pem }
            }
            (None, Some(secret)) if secret.len() < 32 => {
                return Err(err("PROJECTENGINE_JWT_SECRET", "must be at least 32 bytes"))
            }
            (None, Some(secret)) => JwtKey::Secret(secret),
            (None, None) => JwtKey::Ephemeral(format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )),
        };
        let concurrency = parse(env, "PROJECTENGINE_WORKER_CONCURRENCY", 16usize, "a number")?;
        if concurrency == 0 || concurrency > 10_000 {
            return Err(err(
                "PROJECTENGINE_WORKER_CONCURRENCY",
                "must be between 1 and 10000",
            ));
        }
        let queues = get(env, "PROJECTENGINE_QUEUES").map(|v| {
            v.split(',')
                .map(|q| q.trim().to_owned())
                .filter(|q| !q.is_empty())
                .collect::<Vec<_>>()
        });
        let lease = duration(env, "PROJECTENGINE_LEASE", Duration::from_secs(30))?;
        let heartbeat = duration(env, "PROJECTENGINE_HEARTBEAT", Duration::from_secs(10))?;
        if heartbeat >= lease {
            return Err(err(
                "PROJECTENGINE_HEARTBEAT",
                "must be shorter than PROJECTENGINE_LEASE",
            ));
        }
        let log_format = match get(env, "PROJECTENGINE_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(err(
                    "PROJECTENGINE_LOG_FORMAT",
                    format!("`{other}` is not text or json"),
                ))
            }
        };
        Ok(Self {
            bind,
            database_url,
            redis_url,
            redis_prefix,
            jwt,
            jwt_issuer: get(env, "PROJECTENGINE_JWT_ISSUER"),
            jwt_audience: get(env, "PROJECTENGINE_JWT_AUDIENCE"),
            concurrency,
            queues,
            lease,
            heartbeat,
            shutdown_grace: duration(env, "PROJECTENGINE_SHUTDOWN_GRACE", Duration::from_secs(30))?,
            recovery_every: duration(env, "PROJECTENGINE_RECOVERY_EVERY", Duration::from_secs(5))?,
            default_kind: get(env, "PROJECTENGINE_DEFAULT_KIND").unwrap_or_else(|| "stub".into()),
            stub_steps: parse(env, "PROJECTENGINE_STUB_STEPS", 5u32, "a number")?,
            stub_delay: match get(env, "PROJECTENGINE_STUB_DELAY") {
                None => Duration::from_millis(200),
                Some(v) => parse_duration(&v).ok_or_else(|| {
                    err(
                        "PROJECTENGINE_STUB_DELAY",
                        format!("`{v}` is not a duration"),
                    )
                })?,
            },
            max_body_bytes: parse(
                env,
                "PROJECTENGINE_MAX_BODY_BYTES",
                64 * 1024usize,
                "a number of bytes",
            )?,
            log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = with(&[]).expect("defaults");
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert!(c.database_url.is_none() && c.redis_url.is_none());
        assert!(matches!(c.jwt, JwtKey::Ephemeral(_)));
        assert_eq!(
            (c.concurrency, c.lease, c.heartbeat),
            (16, Duration::from_secs(30), Duration::from_secs(10))
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("PROJECTENGINE_BIND", "nowhere"),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "localhost"),
            ("PROJECTENGINE_WORKER_CONCURRENCY", "0"),
            ("PROJECTENGINE_LEASE", "soon"),
            ("PROJECTENGINE_HEARTBEAT", "1h"),
            ("PROJECTENGINE_LOG_FORMAT", "xml"),
            ("PROJECTENGINE_JWT_SECRET", "short"),
        ] {
            let e = with(&[(var, value)]).expect_err(var);
            assert_eq!(e.var, var, "{e}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5 parsecs"), None);
    }
}
