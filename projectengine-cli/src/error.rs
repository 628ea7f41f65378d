//! [`CliError`], what can go wrong, and [`Exit`], the process exit codes.

use std::process::ExitCode;

/// The exit codes of `projectengine`, stable so scripts can branch on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// 0: the command did what it was asked; for `watch`, the job succeeded.
    Success,
    /// 1: an error (the server refused, could not be reached, a file could
    /// not be written, a download did not match its checksum).
    Error,
    /// 2: the command line is wrong (clap's usage errors use it too).
    Usage,
    /// 3: the watched job failed.
    JobFailed,
    /// 4: the watched job was cancelled.
    JobCancelled,
    /// 130: interrupted by Ctrl-C while watching.
    Interrupted,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::Usage => 2,
            Exit::JobFailed => 3,
            Exit::JobCancelled => 4,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The server answered with an error: its `{"error": {"code", "message"}}`.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's stable error code, e.g. `not_found`.
        code: String,
        /// The server's message.
        message: String,
        /// The request field at fault, when the server named one.
        field: Option<String>,
    },
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// What was asked for.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// Bad input on the command line or in a file it named; nothing was sent.
    #[error("{field}: {reason}")]
    Invalid {
        /// The option, argument or variable at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A download does not match what the server listed for it.
    #[error("{name}: downloaded {actual}, but the server lists {expected}; the file was not kept")]
    Integrity {
        /// The artifact.
        name: String,
        /// What the listing says (size and sha256).
        expected: String,
        /// What was received.
        actual: String,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl CliError {
    /// A [`CliError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CliError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The exit code this error ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Invalid { .. } => Exit::Usage,
            _ => Exit::Error,
        }
    }

    /// A stable code for `--json` output: the server's for API errors,
    /// otherwise one naming the kind of failure.
    pub fn code(&self) -> &str {
        match self {
            CliError::Api { code, .. } => code,
            CliError::Unreachable { .. } => "unreachable",
            CliError::Invalid { .. } => "invalid",
            CliError::Io { .. } => "io",
            CliError::Integrity { .. } => "integrity",
            CliError::Protocol(_) => "protocol",
        }
    }

    /// The error as `{"error": {"code", "message", "field"?, "status"?}}`, the
    /// server's shape, for `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        let message = match self {
            CliError::Api { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let mut error = serde_json::json!({ "code": self.code(), "message": message });
        match self {
            CliError::Api { status, field, .. } => {
                error["status"] = (*status).into();
                if let Some(f) = field {
                    error["field"] = f.clone().into();
                }
            }
            CliError::Invalid { field, .. } => error["field"] = field.clone().into(),
            _ => {}
        }
        serde_json::json!({ "error": error })
    }
}

/// `Result` with [`CliError`].
pub type Result<T, E = CliError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_the_servers_shape() {
        let e = CliError::Api {
            status: 422,
            code: "invalid".into(),
            message: "prompt must not be empty".into(),
            field: Some("prompt".into()),
        };
        assert_eq!(
            e.to_string(),
            "prompt must not be empty (invalid, HTTP 422)"
        );
        assert_eq!(
            e.to_json(),
            serde_json::json!({"error": {"code": "invalid", "message": "prompt must not be empty", "status": 422, "field": "prompt"}})
        );
        assert_eq!(e.exit(), Exit::Error);
        assert_eq!(CliError::invalid("--params", "x").exit(), Exit::Usage);
    }

    #[test]
    fn exit_codes_are_distinct() {
        let all = [
            Exit::Success,
            Exit::Error,
            Exit::Usage,
            Exit::JobFailed,
            Exit::JobCancelled,
            Exit::Interrupted,
        ];
        let mut codes: Vec<u8> = all.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
