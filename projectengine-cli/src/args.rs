//! The command line: global options and one subcommand per operation.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The server's default address (`PROJECTENGINE_BIND` of the bundled server).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

const AFTER_HELP: &str = "\
Exit codes: 0 success (for `watch`, the job succeeded); 1 an error (the server's
is shown as it sent it); 2 a bad command line; 3 the watched job failed; 4 the
watched job was cancelled; 130 interrupted.
With --json every command prints JSON on stdout (`watch`: one event per line)
and an error as {\"error\": {\"code\", \"message\"}} on stderr.";

/// Command-line client of a projectEngine server: submit jobs, watch them live,
/// list, cancel, retry, review and rerun them, fetch their artifacts.
#[derive(Debug, Parser)]
#[command(name = "projectengine", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The server's base URL
    #[arg(long, global = true, env = "PROJECTENGINE_URL", default_value = DEFAULT_SERVER)]
    pub server: String,

    /// Bearer token (a JWT whose `sub` is you); `projectengine token` mints a development one
    #[arg(
        long,
        global = true,
        env = "PROJECTENGINE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Machine-readable output: JSON on stdout, errors as JSON on stderr
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The operations.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a job; prints it (with --watch, then watches it)
    Submit(SubmitArgs),
    /// Watch a job live until it ends: a progress bar on a terminal, plain lines otherwise
    Watch(WatchArgs),
    /// List your jobs, a page at a time
    List(ListArgs),
    /// Show a job with its steps and attempts
    Show {
        /// The job id
        #[arg(value_parser = job_id)]
        id: String,
    },
    /// Cancel a job: a queued one at once, a running one within a heartbeat
    Cancel {
        /// The job id
        #[arg(value_parser = job_id)]
        id: String,
    },
    /// Run a failed or cancelled job again
    Retry {
        /// The job id
        #[arg(value_parser = job_id)]
        id: String,
    },
    /// Approve a job awaiting review: it succeeds
    Approve {
        /// The job id
        #[arg(value_parser = job_id)]
        id: String,
    },
    /// Reject a job awaiting review: it runs again with your comment, or fails
    /// when its attempts are spent
    Reject {
        /// The job id
        #[arg(value_parser = job_id)]
        id: String,
        /// What the next attempt should change
        #[arg(long)]
        comment: String,
    },
    /// Submit a new job with a finished job's spec
    Rerun {
        /// The finished job's id
        #[arg(value_parser = job_id)]
        id: String,
    },
    /// List a job's artifacts
    Artifacts {
        /// The job id
        #[arg(value_parser = job_id)]
        id: String,
    },
    /// Download one artifact of a job, checking its sha256
    Download(DownloadArgs),
    /// Mint a development token signed with PROJECTENGINE_JWT_SECRET (HS256),
    /// as the server's `token` role does
    Token(TokenArgs),
}

/// `submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// What to do
    pub prompt: String,
    /// Orchestrator kind (the server's default kind when absent)
    #[arg(long)]
    pub kind: Option<String>,
    /// A file holding the params, a JSON object; `-` reads standard input
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// Higher runs first
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Attempts allowed
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Per-attempt timeout in seconds
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Hold a successful result for your approval (`approve` / `reject`)
    #[arg(long)]
    pub review: bool,
    /// A project of yours the job belongs to
    #[arg(long)]
    pub project: Option<String>,
    /// A job of yours that must succeed before this one runs (repeat it, or
    /// separate ids with commas)
    #[arg(long = "depends-on", value_name = "JOB_ID", value_parser = job_id, value_delimiter = ',')]
    pub depends_on: Vec<String>,
    /// A concurrency key of yours: at most `--concurrency-limit` of your jobs
    /// with this key run at once
    #[arg(long, requires = "concurrency_limit")]
    pub concurrency_key: Option<String>,
    /// How many of your jobs with `--concurrency-key` may run at once
    #[arg(long, requires = "concurrency_key")]
    pub concurrency_limit: Option<u32>,
    /// Watch the job right after submitting it (the exit code is then `watch`'s)
    #[arg(long)]
    pub watch: bool,
    /// How long `--watch` keeps trying to reconnect
    #[arg(long, default_value = "2m", value_parser = duration, requires = "watch")]
    pub reconnect_for: Duration,
}

/// `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The job id
    #[arg(value_parser = job_id)]
    pub id: String,
    /// Show only the events after this seq
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// How long to keep trying to reconnect after the connection drops
    #[arg(long, default_value = "2m", value_parser = duration)]
    pub reconnect_for: Duration,
}

/// A job status, for `list --status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    /// Waiting for a worker
    Queued,
    /// Held until the jobs it depends on succeed
    Waiting,
    /// Running
    Running,
    /// Succeeded, its result waiting for approval
    AwaitingReview,
    /// Finished with success
    Succeeded,
    /// Finished with an error
    Failed,
    /// Cancelled
    Cancelled,
}

impl StatusFilter {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusFilter::Queued => "queued",
            StatusFilter::Waiting => "waiting",
            StatusFilter::Running => "running",
            StatusFilter::AwaitingReview => "awaiting_review",
            StatusFilter::Succeeded => "succeeded",
            StatusFilter::Failed => "failed",
            StatusFilter::Cancelled => "cancelled",
        }
    }
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs in this status
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// Page size (the server caps it)
    #[arg(long)]
    pub limit: Option<usize>,
    /// The cursor printed after the previous page
    #[arg(long, value_parser = job_id)]
    pub cursor: Option<String>,
    /// Newest first
    #[arg(long)]
    pub newest_first: bool,
    /// Only jobs of this project
    #[arg(long)]
    pub project: Option<String>,
    /// Only jobs of this kind
    #[arg(long)]
    pub kind: Option<String>,
}

/// `download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The job id
    #[arg(value_parser = job_id)]
    pub id: String,
    /// The artifact's name, as `artifacts` lists it (may contain `/`)
    pub name: String,
    /// Where to write it (default: the last segment of the name, in the current directory)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The owner the token names (its `sub`)
    #[arg(long, value_parser = subject)]
    pub sub: String,
    /// How long it is valid
    #[arg(long, default_value = "24h", value_parser = duration)]
    pub ttl: Duration,
    /// The HS256 secret the server verifies tokens with (at least 32 bytes)
    #[arg(long, env = "PROJECTENGINE_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// `iss` claim, when the server requires one
    #[arg(long, env = "PROJECTENGINE_JWT_ISSUER")]
    pub issuer: Option<String>,
    /// `aud` claim, when the server requires one
    #[arg(long, env = "PROJECTENGINE_JWT_AUDIENCE")]
    pub audience: Option<String>,
}

/// A job id: a UUID, written in its canonical hyphenated form.
fn job_id(s: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(s.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| format!("`{s}` is not a job id (a UUID)"))
}

/// A positive duration with a unit (`500ms`, `30s`, `2m`); a bare number is seconds.
fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e}"))?,
    };
    if d.is_zero() {
        return Err("must be positive".into());
    }
    Ok(d)
}

fn subject(s: &str) -> Result<String, String> {
    match s.trim() {
        "" => Err("must not be empty".into()),
        sub => Ok(sub.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse_argv(args: &[&str]) -> Result<Cli, clap::Error> {
        let command = Cli::command().mut_args(|a| a.env(None::<&'static str>));
        let matches = command
            .try_get_matches_from(std::iter::once("projectengine").chain(args.iter().copied()))?;
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
    }

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        parse_argv(&args.split_whitespace().collect::<Vec<_>>())
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_go_anywhere_and_default_to_the_servers_address() {
        let cli = parse("list").unwrap();
        assert_eq!(cli.server, DEFAULT_SERVER);
        assert!(!cli.json && cli.token.is_none());
        let cli = parse("list --json --server http://h:1 --token t").unwrap();
        assert!(cli.json);
        assert_eq!(cli.server, "http://h:1");
        assert_eq!(cli.token.as_deref(), Some("t"));
    }

    #[test]
    fn ids_are_checked_and_made_canonical() {
        let id = "0193A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B";
        match parse(&format!("show {id}")).unwrap().command {
            Command::Show { id } => assert_eq!(id, "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
            other => panic!("{other:?}"),
        }
        let err = parse("show not-a-job").unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("not a job id"), "{err}");
        assert!(parse("watch ../x").is_err());
    }

    #[test]
    fn submit_takes_its_options() {
        let cli =
            parse("submit hello --kind stub --params - --priority -3 --max-attempts 2 --watch")
                .unwrap();
        let Command::Submit(s) = cli.command else {
            panic!("not submit")
        };
        assert_eq!(s.prompt, "hello");
        assert_eq!(s.kind.as_deref(), Some("stub"));
        assert_eq!(s.params.as_deref(), Some(std::path::Path::new("-")));
        assert_eq!(s.priority, Some(-3));
        assert_eq!(s.max_attempts, Some(2));
        assert!(s.watch);
        assert!(parse("submit").is_err(), "a prompt is required");
        assert!(
            parse("submit x --reconnect-for 5s").is_err(),
            "only with --watch"
        );
    }

    #[test]
    fn durations_need_to_be_positive() {
        assert_eq!(duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(duration("0s").is_err());
        assert!(duration("soon").is_err());
        assert!(parse("token --sub alice --ttl 0s").is_err());
        let err = parse_argv(&["token", "--sub", " "]).unwrap_err();
        assert!(err.to_string().contains("must not be empty"), "{err}");
        assert!(parse_argv(&["token", "--sub", "alice"]).is_ok());
    }
}
