//! The one error type of the core crate and of every adapter.

use std::borrow::Cow;

/// The error a backend failed with, kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in projectEngine.
///
/// Adapters map their driver's errors onto these variants; callers match on
/// these, never on a driver's error. [`Error::Unavailable`] and
/// [`Error::Internal`] keep the driver's error as their
/// [`source`](std::error::Error::source), for logs and error reporters, without
/// its type becoming part of this API.
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
    #[error("unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: Cow<'static, str>,
        /// The backend's own error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// Anything else: a bug or an unexpected backend answer.
    #[error("internal error: {message}")]
    Internal {
        /// What failed.
        message: Cow<'static, str>,
        /// The backend's own error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// An idempotency key sent again with a different request than the one
    /// it was first used with (see [`IdempotencyKey`](crate::IdempotencyKey)).
    #[error("idempotency key reused: this key was used with a different request")]
    IdempotencyKeyReused,
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
        Error::Unavailable {
            message: msg.into(),
            source: None,
        }
    }

    /// Shorthand for [`Error::Internal`].
    pub fn internal(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::Internal {
            message: msg.into(),
            source: None,
        }
    }

    /// Keeps `source` as the cause of an [`Error::Unavailable`] or
    /// [`Error::Internal`]; any other variant is returned as it is.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        if let Error::Unavailable { source: s, .. } | Error::Internal { source: s, .. } = &mut self
        {
            *s = Some(source.into());
        }
        self
    }

    /// A stable, machine-readable code for the variant (`not_found`, `invalid`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict(_) => "conflict",
            Error::StaleAttempt => "stale_attempt",
            Error::Invalid { .. } => "invalid",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::Unavailable { .. } => "unavailable",
            Error::Internal { .. } => "internal",
            Error::IdempotencyKeyReused => "idempotency_key_reused",
        }
    }
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_backend_error_is_kept_as_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::unavailable("PostgreSQL connection failed: refused").with_source(io);
        assert_eq!(e.code(), "unavailable");
        assert_eq!(
            e.to_string(),
            "unavailable: PostgreSQL connection failed: refused"
        );
        let source = e.source().expect("the driver's error");
        assert_eq!(source.to_string(), "refused");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        // Other variants have no source to keep.
        let e = Error::conflict("x").with_source(std::io::Error::other("y"));
        assert!(e.source().is_none());
    }
}
