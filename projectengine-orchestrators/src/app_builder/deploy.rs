//! DEPLOYING to a real host: an operator's deploy command, run after a
//! successful build in the build's working directory, in the sandbox, with
//! the network for this step only; the URL it reports goes into the App.

use std::collections::VecDeque;
use std::time::Duration;

use projectengine_core::{Job, JobCallbacks, LogLevel, OrchestratorError};
use projectengine_sandbox::{Command, Failure, Limits, Sandbox, Stream, Workdir};

/// The file, in the working directory, a deploy command may write its URL
/// to (it wins over a URL printed on stdout).
pub const DEPLOY_URL_FILE: &str = ".deploy-url";

/// Output lines of a failing deploy quoted in the job's error.
const TAIL_LINES: usize = 20;

/// What replaces a secret's value in every report.
const REDACTED: &str = "[redacted]";

/// A deploy command (see the module docs of
/// [`app_builder`](crate::app_builder)).
///
/// It runs as `sh -c COMMAND` in the build's working directory (the
/// sources, and the built site in `$DEPLOY_DIR`), in the sandbox, with the
/// host's network, its environment holding `DEPLOY_DIR` (the output
/// directory, relative), `DEPLOY_JOB_ID`, `DEPLOY_NAME` (the app's name),
/// `DEPLOY_URL_FILE` and each secret. Its URL is the content of
/// [`DEPLOY_URL_FILE`] when it writes that file, else the last `http://`,
/// `https://` or `file://` URL on its stdout. Its output is logged
/// (`[deploy] …`) with every secret's value replaced by `[redacted]`.
#[derive(Clone)]
#[non_exhaustive]
pub struct DeployCommand {
    /// The shell command.
    pub command: String,
    /// Environment variables passed to the command: name and value. Values
    /// are never logged.
    pub secrets: Vec<(String, String)>,
    /// How long it may run (default 5 minutes); past it, it is killed and
    /// the deploy fails.
    pub timeout: Duration,
    /// Most bytes of output read from it (default 1 MiB); the rest is
    /// dropped.
    pub output_bytes: u64,
}

impl std::fmt::Debug for DeployCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.secrets.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("DeployCommand")
            .field("command", &self.command)
            .field("secrets", &names)
            .field("timeout", &self.timeout)
            .field("output_bytes", &self.output_bytes)
            .finish()
    }
}

impl DeployCommand {
    /// `command`, run by `sh -c`, with no secrets and the default limits.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            secrets: Vec::new(),
            timeout: Duration::from_secs(300),
            output_bytes: 1 << 20,
        }
    }

    /// Passes the variable `name` with `value` to the command.
    pub fn secret(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.secrets.push((name.into(), value.into()));
        self
    }

    /// Sets how long it may run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `text` with every secret's value replaced.
    fn redact(&self, text: &str) -> String {
        let mut text = text.replace('\0', "\u{FFFD}");
        for (_, value) in &self.secrets {
            if !value.is_empty() {
                text = text.replace(value.as_str(), REDACTED);
            }
        }
        text
    }
}

/// The deploy's error: fatal (a deploy is not retried by running the whole
/// build again), with `code`.
fn failed(code: &str, message: String) -> OrchestratorError {
    OrchestratorError::fatal(message).with_code(code)
}

/// A URL a deploy may report.
fn url_of(text: &str) -> Option<String> {
    let url = url::Url::parse(text.trim()).ok()?;
    matches!(url.scheme(), "http" | "https" | "file").then(|| url.to_string())
}

/// The last URL-looking word of a line.
fn last_url(line: &str) -> Option<String> {
    line.split_whitespace()
        .rev()
        .filter(|w| {
            w.starts_with("http://") || w.starts_with("https://") || w.starts_with("file://")
        })
        .find_map(url_of)
}

/// Runs `deploy` in `workdir` (the built site in `output`); the URL it
/// reports.
pub(crate) async fn run(
    sandbox: &Sandbox,
    workdir: &Workdir,
    deploy: &DeployCommand,
    job: &Job,
    cb: &dyn JobCallbacks,
    output: &str,
    name: &str,
) -> Result<String, OrchestratorError> {
    let limits = Limits {
        wall_time: deploy.timeout,
        output_bytes: deploy.output_bytes,
        ..Limits::default()
    };
    let mut command = Command::new(["sh", "-c", deploy.command.as_str()])
        .allow_network(true)
        .limits(limits)
        .env("DEPLOY_DIR", output)
        .env("DEPLOY_JOB_ID", job.id.to_string())
        .env("DEPLOY_NAME", name)
        .env("DEPLOY_URL_FILE", DEPLOY_URL_FILE);
    for (key, value) in &deploy.secrets {
        command = command.env(key, value);
    }
    let mut running = sandbox
        .spawn(workdir, &command, cb.cancellation().clone())
        .await
        .map_err(|e| failed("deploy_failed", format!("the deploy command: {e}")))?;
    let mut tail = VecDeque::with_capacity(TAIL_LINES + 1);
    let mut printed = None;
    while let Some(line) = running.next_line().await {
        let text = deploy.redact(&line.text);
        let level = match line.stream {
            Stream::Stderr => LogLevel::Warn,
            _ => {
                if let Some(url) = last_url(&line.text) {
                    printed = Some(url);
                }
                LogLevel::Info
            }
        };
        if let Err(e) = cb.log(level, &format!("[deploy] {text}")).await {
            let _ = running.kill().await;
            return Err(e.into());
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
    let outcome = running
        .wait()
        .await
        .map_err(|e| failed("deploy_failed", format!("the deploy command: {e}")))?;
    match outcome.failure {
        None => {}
        Some(Failure::Cancelled) => return Err(OrchestratorError::cancelled()),
        Some(failure) => {
            let mut message = format!("the deploy command failed: {failure}");
            if outcome.output_truncated {
                message.push_str(" (output truncated)");
            }
            if !tail.is_empty() {
                message.push_str("\n--- last output ---\n");
                message.push_str(&Vec::from(tail).join("\n"));
            }
            return Err(failed("deploy_failed", message));
        }
    }
    let file = workdir.path().join(DEPLOY_URL_FILE);
    let written = match tokio::fs::metadata(&file).await {
        Ok(meta) if meta.is_file() && meta.len() <= 8 * 1024 => {
            let text = tokio::fs::read_to_string(&file).await.map_err(|e| {
                failed(
                    "deploy_bad_url",
                    format!("{DEPLOY_URL_FILE} is unreadable: {e}"),
                )
            })?;
            Some(url_of(&text).ok_or_else(|| {
                failed(
                    "deploy_bad_url",
                    format!(
                        "{DEPLOY_URL_FILE} holds {:?}, not an http, https or file URL",
                        deploy.redact(text.trim())
                    ),
                )
            })?)
        }
        Ok(_) => {
            return Err(failed(
                "deploy_bad_url",
                format!("{DEPLOY_URL_FILE} is not a file of at most 8 KiB"),
            ))
        }
        Err(_) => None,
    };
    written.or(printed).ok_or_else(|| {
        failed(
            "deploy_no_url",
            format!(
                "the deploy command succeeded but reported no URL (print one on stdout, or write it to {DEPLOY_URL_FILE})"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_url_of_a_line_is_found() {
        assert_eq!(
            last_url("deployed to https://bakery.example.net/ (took 3 s)").as_deref(),
            Some("https://bakery.example.net/")
        );
        assert_eq!(
            last_url("file:///srv/a/index.html").as_deref(),
            Some("file:///srv/a/index.html")
        );
        assert_eq!(
            last_url("http://127.0.0.1:8080/x http://127.0.0.1:8080/y").as_deref(),
            Some("http://127.0.0.1:8080/y")
        );
        assert_eq!(last_url("uploading 3 files"), None);
        assert_eq!(last_url("ftp://host/file"), None);
        assert_eq!(last_url("http://"), None);
    }

    #[test]
    fn secrets_are_redacted_and_not_shown_by_debug() {
        let deploy = DeployCommand::new("./deploy.sh").secret("TOKEN", "s3cr3t-value");
        assert_eq!(
            deploy.redact("auth s3cr3t-value ok s3cr3t-value"),
            "auth [redacted] ok [redacted]"
        );
        let shown = format!("{deploy:?}");
        assert!(shown.contains("TOKEN"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
