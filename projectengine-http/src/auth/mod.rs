//! Authentication: the [`Authenticator`] trait an application implements (or
//! takes [`JwtAuth`] for), and the extractor handlers use. This module
//! depends on [`crate::error`] (an [`AuthError`] becomes an [`ApiError`]),
//! never the other way round.

#[cfg(feature = "jwks")]
mod jwks;
mod jwt;

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use projectengine_core::Owner;

#[cfg(feature = "jwks")]
pub use jwks::JwksConfig;
pub use jwt::{JwtAuth, JwtConfigError};

use crate::error::ApiError;

/// Why a request could not be authenticated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials were presented.
    #[error("missing bearer token")]
    Missing,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// The credentials are not acceptable (bad signature, wrong algorithm or
    /// key, not yet valid, wrong issuer or audience, malformed …).
    #[error("invalid token: {0}")]
    Invalid(Cow<'static, str>),
    /// The authenticator's own backend cannot be reached (answered with 503).
    #[error("authentication unavailable: {0}")]
    Unavailable(Cow<'static, str>),
}

impl AuthError {
    /// Shorthand for [`AuthError::Invalid`].
    pub fn invalid(reason: impl Into<Cow<'static, str>>) -> Self {
        AuthError::Invalid(reason.into())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unavailable(detail) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "authentication is unavailable; try again later",
            )
            .with_detail(detail.into_owned()),
            other => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", other.to_string())
                .with_challenge(),
        }
    }
}

/// Turns a request, or a bare token, into the [`Owner`] it speaks for.
///
/// # Contract
/// - [`authenticate_token`](Authenticator::authenticate_token) checks a bearer
///   token; it is what the WebSocket route calls when the token came as a
///   subprotocol or a `?token=` parameter.
/// - [`authenticate`](Authenticator::authenticate) checks a request; the default
///   reads `Authorization: Bearer <token>`. Override it for cookies, API keys or
///   a gateway's headers.
/// - Failures are [`AuthError`]s: every variant but `Unavailable` is answered
///   with 401 and `WWW-Authenticate: Bearer`.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Authenticates a bearer token.
    async fn authenticate_token(&self, token: &str) -> Result<Owner, AuthError>;

    /// Authenticates a request (by default, its `Authorization: Bearer` header).
    async fn authenticate(&self, parts: &Parts) -> Result<Owner, AuthError> {
        let token = bearer_token(&parts.headers)?.ok_or(AuthError::Missing)?;
        self.authenticate_token(token).await
    }
}

#[async_trait]
impl<A: Authenticator + ?Sized> Authenticator for Arc<A> {
    async fn authenticate_token(&self, token: &str) -> Result<Owner, AuthError> {
        (**self).authenticate_token(token).await
    }

    async fn authenticate(&self, parts: &Parts) -> Result<Owner, AuthError> {
        (**self).authenticate(parts).await
    }
}

/// A remote agent, as its token names it: a name, the kinds it serves and
/// the owners whose jobs it may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// The agent's name (the token's subject); attempts record it as their worker.
    pub name: String,
    /// The kinds whose jobs it may claim.
    pub kinds: Vec<String>,
    /// The owners whose jobs it may claim; empty: every owner's.
    pub owners: Vec<String>,
}

/// Turns an agent token into the [`Agent`] it names.
///
/// # Contract
/// An agent token is not a user token: an implementation accepts only
/// tokens made for agents (with [`JwtAuth`], the `agent` role), and an
/// [`Authenticator`] used beside it must refuse them. Failures are
/// [`AuthError`]s, answered like an [`Authenticator`]'s.
#[async_trait]
pub trait AgentAuthenticator: Send + Sync + 'static {
    /// Authenticates an agent's bearer token.
    async fn authenticate_agent(&self, token: &str) -> Result<Agent, AuthError>;
}

/// The token of an `Authorization: Bearer <token>` header: `Ok(None)` without
/// the header, an error when it is present but not a bearer token.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::invalid("the Authorization header is not text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| AuthError::invalid("expected `Authorization: Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::invalid("expected the Bearer scheme"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(Some(token))
}

/// The owner of a streaming request (WebSocket or SSE), whose client may not be
/// able to set headers. The token is looked for, in order, in the
/// `Authorization` header, in a `Sec-WebSocket-Protocol: bearer, <token>` pair
/// (when `subprotocol` is allowed), and in `?token=`; without any, the
/// authenticator's own scheme decides.
pub(crate) async fn stream_owner(
    auth: &dyn Authenticator,
    parts: &Parts,
    query_token: Option<&str>,
    subprotocol: bool,
) -> Result<Owner, AuthError> {
    if parts.headers.contains_key(header::AUTHORIZATION) {
        return auth.authenticate(parts).await;
    }
    if subprotocol {
        if let Some(token) = protocol_token(&parts.headers) {
            return auth.authenticate_token(token).await;
        }
    }
    match query_token {
        Some(token) if !token.is_empty() => auth.authenticate_token(token).await,
        _ => auth.authenticate(parts).await,
    }
}

/// The token of a `Sec-WebSocket-Protocol: bearer, <token>` pair.
fn protocol_token(headers: &HeaderMap) -> Option<&str> {
    let mut items = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    items.find(|p| p.eq_ignore_ascii_case("bearer"))?;
    items.next().filter(|t| !t.is_empty())
}

/// The authenticated owner of a request: the extractor every protected handler
/// takes first (it asks the state's [`Authenticator`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated(pub Owner);
