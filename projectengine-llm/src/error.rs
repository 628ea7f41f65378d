//! The crate's one error type.

use std::time::Duration;

/// The result of this crate's calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an LLM call or a configuration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is wrong.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field (e.g. `providers[0].base_url`).
        field: String,
        /// Why.
        reason: String,
    },
    /// No agent profile has this name.
    #[error("no agent named {0:?}")]
    UnknownAgent(String),
    /// Every model of the call is rate-limited or overloaded, and stays so
    /// longer than the call may wait: try again after `retry_after`.
    #[error("every model is rate-limited or unavailable; retry after {}s (last: {last})", retry_after.as_secs_f64().ceil())]
    Exhausted {
        /// When a model should be available again.
        retry_after: Duration,
        /// The last failure seen.
        last: String,
    },
    /// No model of the call exists at the provider.
    #[error("no model of the list exists at provider {provider}: {models:?}")]
    NoModel {
        /// The provider.
        provider: String,
        /// The models tried.
        models: Vec<String>,
    },
    /// The provider refused the request for good (bad key, bad request).
    #[error("provider {provider} refused the request ({status}): {message}")]
    Rejected {
        /// The provider.
        provider: String,
        /// The HTTP status.
        status: u16,
        /// The provider's message, shortened.
        message: String,
    },
    /// The call's cancellation token fired.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Whether trying again later may help (then see [`Error::retry_after`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Exhausted { .. })
    }

    /// When to try again, for a retryable error.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Exhausted { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// A stable code for reports: `llm_exhausted`, `llm_rejected`, …
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "llm_invalid_config",
            Self::UnknownAgent(_) => "llm_unknown_agent",
            Self::Exhausted { .. } => "llm_exhausted",
            Self::NoModel { .. } => "llm_no_model",
            Self::Rejected { .. } => "llm_rejected",
            Self::Cancelled => "cancelled",
        }
    }
}
