//! The crate's one error type.

/// Why a command could not be started (a command that starts and then fails is
/// an [`Outcome`](crate::Outcome), not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The host cannot provide the isolation asked for (no `bwrap`, user or
    /// network namespaces refused, no `prlimit`), and the sandbox was not
    /// allowed to run unsandboxed.
    #[error("sandbox unavailable: {reason}")]
    Unavailable {
        /// What is missing, with the probe's own words when there are any.
        reason: String,
    },
    /// Bad input: an empty argv, a NUL byte, a path leaving the working
    /// directory, a zero limit. Nothing was run or written.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An operating-system call failed (creating the working directory,
    /// spawning the process).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
