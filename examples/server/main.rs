//! The bundled projectEngine server: REST + WebSocket + workers.
//!
//! ```text
//! cargo run --example server -- [OPTIONS] [all|web|worker|migrate|token --sub NAME [--ttl 24h] [--agent --kinds a,b [--owners x,y]]]
//! ```
//!
//! Configuration comes from environment variables, each also an option, and an
//! optional `.env` file (see `config.rs`, `--help` and the README); with none
//! set it runs everything in one process, in memory.

mod backends;
mod config;
#[allow(dead_code)]
#[path = "../custom_orchestrator.rs"]
mod custom_orchestrator;
mod serve;
mod webhooks;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use config::{Config, ConfigError, LogFormat};

const AFTER_HELP: &str = "\
Every option can be set by the environment variable shown with it; a variable
set to an empty value counts as unset. A `.env` file in the working directory is
read first when there is one; a variable already set in the environment wins.
A bad value stops the server with one line naming the variable, and exit code 2.";

/// The bundled projectEngine server: REST + WebSocket + workers. With nothing
/// set, it runs everything in one process, in memory.
#[derive(Debug, Parser)]
#[command(name = "server", after_help = AFTER_HELP)]
pub struct Cli {
    /// What this process does (default: all)
    #[command(subcommand)]
    pub role: Option<Role>,
    /// The configuration
    #[command(flatten, next_help_heading = "Configuration")]
    pub config: Config,
}

/// What this process does.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum Role {
    /// Web and worker in one process (the default)
    All,
    /// Only the HTTP API
    Web,
    /// Only workers and recovery, with /health, /ready and /metrics
    Worker,
    /// Apply the store's migrations (PostgreSQL, or a SQLite file) and exit
    Migrate,
    /// Print a development token signed with PROJECTENGINE_JWT_SECRET
    Token {
        /// The owner the token names (with --agent: the agent's name)
        #[arg(long, value_parser = subject)]
        sub: String,
        /// How long it is valid
        #[arg(long, default_value = "24h", value_parser = config::positive_duration)]
        ttl: Duration,
        /// An agent token (for the agent protocol), not a user's
        #[arg(long, requires = "kinds")]
        agent: bool,
        /// Comma-separated kinds the agent may serve
        #[arg(long, value_delimiter = ',', value_parser = subject, requires = "agent")]
        kinds: Vec<String>,
        /// Comma-separated owners whose jobs the agent may claim (default: every owner's)
        #[arg(long, value_delimiter = ',', value_parser = subject, requires = "agent")]
        owners: Vec<String>,
    },
}

fn subject(s: &str) -> Result<String, String> {
    match s.trim() {
        "" => Err("must not be empty".into()),
        sub => Ok(sub.to_owned()),
    }
}

/// Reads the command line and the environment (after `.env`): the role and the
/// checked configuration, or the exit code to stop with.
fn parse() -> Result<(Role, Config), ExitCode> {
    if let Err(e) = config::load_env(&Cli::command()) {
        eprintln!("server: {e}");
        return Err(ExitCode::from(2));
    }
    // Built after `.env` is loaded: clap reads the variables as it builds.
    let command = Cli::command();
    let cli = command
        .clone()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
        .map_err(|e| match config::one_line(&command, &e) {
            Some(line) => {
                eprintln!("server: {line}");
                ExitCode::from(2)
            }
            None => {
                let _ = e.print();
                ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
            }
        })?;
    match cli.config.check() {
        Ok(config) => Ok((cli.role.unwrap_or(Role::All), config)),
        Err(e) => {
            eprintln!("server: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// The trace exporter, when the server exports traces.
#[cfg(feature = "otel")]
type Exporter = Option<projectengine_http::Otel>;
#[cfg(not(feature = "otel"))]
type Exporter = Option<std::convert::Infallible>;

/// Log lines to stderr, filtered by `RUST_LOG`; and (feature `otel`) spans of
/// level info and above to an OTLP collector, whatever `RUST_LOG` says.
fn init_logging(config: &Config) -> Result<Exporter, ConfigError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match config.log_format {
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    let logs = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "otel")]
    {
        let otel = match &config.otel_endpoint {
            Some(endpoint) => Some(
                projectengine_http::Otel::otlp(endpoint, &config.otel_service_name)
                    .map_err(|e| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", e.to_string()))?,
            ),
            None => None,
        };
        let spans = otel.as_ref().map(|o| {
            o.layer()
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
        });
        logs.with(spans).init();
        Ok(otel)
    }
    #[cfg(not(feature = "otel"))]
    {
        logs.init();
        Ok(None)
    }
}

fn main() -> ExitCode {
    let (role, config) = match parse() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let exporter = match init_logging(&config) {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("server: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve::run(role, config));
    #[cfg(feature = "otel")]
    if let Some(Err(e)) = exporter.as_ref().map(projectengine_http::Otel::shutdown) {
        eprintln!("server: {e}");
    }
    #[cfg(not(feature = "otel"))]
    let _ = exporter;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e:#}");
            if e.chain().any(|c| c.is::<ConfigError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(args: &str) -> Result<Option<Role>, clap::Error> {
        let args = std::iter::once("server").chain(args.split_whitespace());
        Cli::command()
            .mut_args(|a| a.env(None::<&'static str>))
            .try_get_matches_from(args)
            .and_then(|m| Cli::from_arg_matches(&m))
            .map(|cli| cli.role)
    }

    #[test]
    fn roles_parse() {
        assert_eq!(role("").unwrap(), None);
        assert_eq!(role("worker").unwrap(), Some(Role::Worker));
        assert_eq!(
            role("token --sub alice --ttl 30m").unwrap(),
            Some(Role::Token {
                sub: "alice".into(),
                ttl: Duration::from_secs(1800),
                agent: false,
                kinds: vec![],
                owners: vec![],
            })
        );
        assert_eq!(
            role("token --sub alice").unwrap(),
            Some(Role::Token {
                sub: "alice".into(),
                ttl: Duration::from_secs(24 * 3600),
                agent: false,
                kinds: vec![],
                owners: vec![],
            })
        );
        assert_eq!(
            role("token --sub desk --agent --kinds remote,build").unwrap(),
            Some(Role::Token {
                sub: "desk".into(),
                ttl: Duration::from_secs(24 * 3600),
                agent: true,
                kinds: vec!["remote".into(), "build".into()],
                owners: vec![],
            })
        );
        assert_eq!(
            role("token --sub desk --agent --kinds remote --owners alice,bob").unwrap(),
            Some(Role::Token {
                sub: "desk".into(),
                ttl: Duration::from_secs(24 * 3600),
                agent: true,
                kinds: vec!["remote".into()],
                owners: vec!["alice".into(), "bob".into()],
            })
        );
        assert!(role("token --sub alice --owners alice").is_err());
        assert!(role("token --sub desk --agent").is_err());
        assert!(role("token --sub desk --kinds remote").is_err());
        assert!(role("token").is_err());
        assert!(role("token --sub").is_err());
        assert!(role("token --sub alice --ttl 0s").is_err());
        assert!(role("dance").is_err());
        assert!(role("web extra").is_err());
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }
}
