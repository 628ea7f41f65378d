//! The one error type of the HTTP layer and its JSON shape:
//! `{"error": {"code", "message", "field"?}}`.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use projectengine_core::Error;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answered to a client: a status, a stable code, a message, and the
/// field at fault when there is one.
///
/// Server-side failures (5xx) are logged with their detail inside the request's
/// span (which carries the request id); the client sees only a generic message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    field: Option<String>,
    /// Logged, never shown.
    detail: Option<String>,
    challenge: bool,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong: a stable code, a message, and the field at fault.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code, e.g. `not_found`, `invalid`, `malformed_json`.
    #[schema(example = "invalid")]
    pub code: String,
    /// Human-readable message.
    #[schema(example = "invalid prompt: must not be empty")]
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "prompt")]
    pub field: Option<String>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            detail: None,
            challenge: false,
        }
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// A body field that failed validation: 422 `invalid`.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        let field = field.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("invalid {field}: {reason}"),
        )
        .with_field(field)
    }

    /// A path, query or header parameter that cannot be parsed: 400 `invalid`.
    pub fn bad_param(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        let field = field.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("invalid {field}: {reason}"),
        )
        .with_field(field)
    }

    /// A thing that does not exist (or belongs to someone else): 404 `not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// A server-side failure: 500 `internal`. `detail` is logged, not shown.
    pub fn internal(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        );
        e.detail = Some(detail.into());
        e
    }

    /// Adds a detail that is logged, never shown.
    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Answers with `WWW-Authenticate: Bearer` (for a 401).
    pub(crate) fn with_challenge(mut self) -> Self {
        self.challenge = true;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message shown to the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// Renames the field at fault (the core names fields by their domain name,
    /// the API by their wire name, e.g. `timeout` → `timeout_s`).
    pub(crate) fn rename_field(mut self, from: &str, to: &str) -> Self {
        if self.field.as_deref() == Some(from) {
            self.field = Some(to.to_owned());
            self.message = self.message.replacen(from, to, 1);
        }
        self
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.clone().into_owned(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { what } => ApiError::not_found(what),
            Error::Conflict(msg) => ApiError::new(StatusCode::CONFLICT, "conflict", msg),
            Error::Invalid { field, reason } => ApiError::invalid(field, reason),
            Error::IdempotencyKeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
            )
            .with_field("Idempotency-Key"),
            Error::LimitExceeded(msg) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "limit_exceeded", msg)
            }
            Error::Unavailable { message: msg, .. } => {
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a backend is unavailable; try again later",
                );
                err.detail = Some(msg.into_owned());
                err
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            // Inside the request span, so the log line carries the request id.
            tracing::error!(
                status = self.status.as_u16(),
                code = %self.code,
                detail = self.detail.as_deref().unwrap_or(""),
                "request failed"
            );
        } else {
            tracing::debug!(status = self.status.as_u16(), code = %self.code, message = %self.message, "request refused");
        }
        let mut res = (self.status, Json(self.body())).into_response();
        if self.challenge {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// `Result` with [`ApiError`] as the error.
pub type ApiResult<T> = Result<T, ApiError>;
