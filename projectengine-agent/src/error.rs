//! The agent's error type.

use std::borrow::Cow;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The attempt is no longer the job's running attempt (409 `stale_attempt`).
    #[error("the attempt lost its lease")]
    StaleAttempt,
    /// The server refused the request (a 4xx other than `stale_attempt`).
    #[error("refused with {status} {code}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error's stable code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The server could not be reached, or failed, even after the retries.
    #[error("the server is unavailable: {0}")]
    Unavailable(Cow<'static, str>),
    /// The server's answer could not be read.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl From<AgentError> for projectengine_core::Error {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::StaleAttempt => projectengine_core::Error::StaleAttempt,
            AgentError::Refused {
                status: 429,
                message,
                ..
            } => projectengine_core::Error::LimitExceeded(message.into()),
            AgentError::Refused {
                status: 409,
                message,
                ..
            } => projectengine_core::Error::conflict(message),
            AgentError::Refused { message, .. } => {
                projectengine_core::Error::invalid("request", message)
            }
            other => projectengine_core::Error::unavailable(other.to_string()),
        }
    }
}
