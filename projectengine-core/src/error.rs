//! The one error type of the core crate and of every adapter.

use std::borrow::Cow;

/// Everything that can go wrong in projectEngine.
///
/// Adapters map their driver's errors onto these variants; callers match on
/// these, never on a driver's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thing does not exist, or belongs to another owner.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `job`.
        what: &'static str,
    },
    /// The request is valid but conflicts with the current state
    /// (e.g. cancelling a finished job).
    #[error("conflict: {0}")]
    Conflict(Cow<'static, str>),
    /// A write from an attempt that is no longer the job's running attempt.
    #[error("stale attempt: the attempt no longer holds the job's lease")]
    StaleAttempt,
    /// Bad input, naming the offending field.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// Why it was refused.
        reason: Cow<'static, str>,
    },
    /// A limit was reached (too many queued jobs, too many open streams).
    #[error("limit reached: {0}")]
    LimitExceeded(Cow<'static, str>),
    /// A backend (database, broker) cannot be reached or timed out.
    #[error("unavailable: {0}")]
    Unavailable(Cow<'static, str>),
    /// Anything else: a bug or an unexpected backend answer.
    #[error("internal error: {0}")]
    Internal(Cow<'static, str>),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(what: &'static str) -> Self {
        Error::NotFound { what }
    }

    /// Shorthand for [`Error::Conflict`].
    pub fn conflict(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::Conflict(msg.into())
    }

    /// Shorthand for [`Error::Unavailable`].
    pub fn unavailable(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::Unavailable(msg.into())
    }

    /// Shorthand for [`Error::Internal`].
    pub fn internal(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::Internal(msg.into())
    }

    /// A stable, machine-readable code for the variant (`not_found`, `invalid`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict(_) => "conflict",
            Error::StaleAttempt => "stale_attempt",
            Error::Invalid { .. } => "invalid",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
