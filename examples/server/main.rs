//! The bundled projectEngine server: REST + WebSocket + workers.
//!
//! ```text
//! cargo run --example server [all|web|worker|migrate|token --sub NAME [--ttl 24h]]
//! ```
//!
//! Configuration comes from environment variables (see `config.rs` and the
//! README); with none set it runs everything in one process, in memory.

mod backends;
mod config;
#[allow(dead_code)]
#[path = "../custom_orchestrator.rs"]
mod custom_orchestrator;
mod serve;

use std::process::ExitCode;
use std::time::Duration;

use config::{Config, LogFormat};

/// What this process does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Web and worker in one process (the default).
    All,
    /// Only the HTTP API.
    Web,
    /// Only workers and recovery.
    Worker,
    /// Apply the store's migrations and exit.
    Migrate,
    /// Print a development token.
    Token {
        /// The owner the token names.
        sub: String,
        /// How long it is valid.
        ttl: Duration,
    },
    /// Print the usage and the configuration variables.
    Help,
}

const USAGE: &str = "usage: server [all|web|worker|migrate|token --sub NAME [--ttl 24h]]";

fn parse_role(args: &[String]) -> Result<Role, String> {
    let Some(first) = args.first() else {
        return Ok(Role::All);
    };
    let rest = &args[1..];
    let role = match first.as_str() {
        "all" => Role::All,
        "web" => Role::Web,
        "worker" => Role::Worker,
        "migrate" => Role::Migrate,
        "token" => {
            let (mut sub, mut ttl) = (None, Duration::from_secs(24 * 3600));
            let mut it = rest.iter();
            while let Some(flag) = it.next() {
                let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                match flag.as_str() {
                    "--sub" => sub = Some(value.clone()),
                    "--ttl" => {
                        ttl = config::parse_duration(value)
                            .filter(|d| !d.is_zero())
                            .ok_or_else(|| {
                                format!("--ttl: `{value}` is not a duration such as 30m or 24h")
                            })?
                    }
                    other => return Err(format!("unknown option {other}")),
                }
            }
            let sub = sub.ok_or("token needs --sub NAME")?;
            if sub.trim().is_empty() {
                return Err("--sub must not be empty".into());
            }
            return Ok(Role::Token { sub, ttl });
        }
        "-h" | "--help" | "help" => Role::Help,
        other => return Err(format!("unknown role `{other}`")),
    };
    if let Some(extra) = rest.first() {
        return Err(format!("unexpected argument `{extra}`"));
    }
    Ok(role)
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = match parse_role(&args) {
        Ok(role) => role,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("server: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if role == Role::Help {
        println!("{USAGE}\n\nconfiguration (environment variables):");
        for (var, default, meaning) in config::VARIABLES {
            println!("  {var:<34} {meaning} [default: {default}]");
        }
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("server: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
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
    match runtime.block_on(serve::run(role, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(serve::Failure::Config(e)) => {
            eprintln!("server: {e}");
            ExitCode::from(2)
        }
        Err(serve::Failure::Runtime(e)) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn roles_parse() {
        assert_eq!(parse_role(&[]), Ok(Role::All));
        assert_eq!(parse_role(&args("worker")), Ok(Role::Worker));
        assert_eq!(
            parse_role(&args("token --sub alice --ttl 30m")),
            Ok(Role::Token {
                sub: "alice".into(),
                ttl: Duration::from_secs(1800)
            })
        );
        assert!(parse_role(&args("token")).is_err());
        assert!(parse_role(&args("token --sub")).is_err());
        assert!(parse_role(&args("dance")).is_err());
        assert!(parse_role(&args("web extra")).is_err());
    }
}
