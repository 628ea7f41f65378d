//! The error of this crate: bad configuration.

/// What can be wrong with a webhook configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The signing secret is not `whsec_` followed by base64 of 24 to 64 bytes.
    #[error("invalid webhook secret: {0}")]
    InvalidSecret(String),
    /// The retry schedule is not a comma-separated list of durations.
    #[error("invalid webhook retry schedule: {0}")]
    InvalidSchedule(String),
    /// The deployment-wide URL is refused.
    #[error("invalid webhook URL: {0}")]
    InvalidUrl(String),
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}
