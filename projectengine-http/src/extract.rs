//! Extractors whose rejections are [`ApiError`]s in our JSON shape and name
//! the field at fault.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use projectengine_core::{AppId, JobId};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::state::ApiState;

/// A JSON body: `Content-Type: application/json`, within the body limit,
/// deserialized with the path of the field at fault on error.
///
/// Malformed JSON is 400 `malformed_json`; a field of the wrong type, a missing
/// or unknown field is 422 `invalid` naming it; too large is 413; another
/// content type is 415.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Like [`ApiJson`], keeping the body's bytes too (to compare requests).
#[derive(Clone, Debug, Default)]
pub struct ApiJsonBytes<T>(pub T, pub Bytes);

impl<T, S> FromRequest<S> for ApiJsonBytes<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_body(req, state).await?;
        let value = parse_json(&bytes)?;
        Ok(ApiJsonBytes(value, bytes))
    }
}

/// The body of a JSON request, within the body limit.
async fn json_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected `Content-Type: application/json`",
        ));
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", r.body_text())
        }
    })?;
    Ok(bytes)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserializes a JSON body, naming the field at fault on error.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Data => {
                ApiError::invalid(field_name(&path, &inner.to_string()), data_reason(&inner))
            }
            Category::Syntax | Category::Eof | Category::Io => malformed(&inner),
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_json",
        format!("malformed JSON: {e}"),
    )
}

/// The serde message without its " at line L column C" suffix.
fn data_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

/// The field a deserialization error is about: its path, or for a missing or
/// unknown field at the root, the name in the message.
fn field_name(path: &str, message: &str) -> String {
    if path != "." && !path.is_empty() {
        return path.to_owned();
    }
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(end) = rest.find('`') {
                return rest[..end].to_owned();
            }
        }
    }
    "body".to_owned()
}

/// A query string, deserialized with the name of the parameter at fault on
/// error (400 `invalid`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

/// Deserializes a query string, naming the parameter at fault on error.
pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        ApiError::bad_param(field_name(&path, &message), message)
    })
}

/// An id from the path, parsed, with the parameter named on error (400).
/// A job id is also recorded as `job_id` on the request's span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathId<T>(pub T);

/// Ids that can come from a path.
pub trait IdParam: FromStr + Send {
    /// Called once parsed; a job id records itself on the request span.
    fn record(&self) {}
}

impl IdParam for JobId {
    fn record(&self) {
        tracing::Span::current().record("job_id", tracing::field::display(self));
    }
}

impl IdParam for AppId {}

impl<T, S> FromRequestParts<S> for PathId<T>
where
    T: IdParam,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::bad_param("path", r.body_text()))?;
        let (name, value) = params
            .iter()
            .last()
            .ok_or_else(|| ApiError::internal("route has no path parameter"))?;
        let id = value
            .parse::<T>()
            .map_err(|_| ApiError::bad_param(name, "must be a UUID"))?;
        id.record();
        Ok(PathId(id))
    }
}

impl FromRequestParts<ApiState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let owner = state.authenticator().authenticate(parts).await?;
        Ok(Authenticated(owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dto::{CreateJob, ListJobsQuery};

    #[test]
    fn body_errors_name_the_field() {
        let e = parse_json::<CreateJob>(br#"{"prompt": 5}"#).unwrap_err();
        assert_eq!((e.status().as_u16(), e.field()), (422, Some("prompt")));
        let e = parse_json::<CreateJob>(br#"{"kind": "stub"}"#).unwrap_err();
        assert_eq!((e.status().as_u16(), e.field()), (422, Some("prompt")));
        let e = parse_json::<CreateJob>(br#"{"prompt": "x", "priorty": 1}"#).unwrap_err();
        assert_eq!((e.status().as_u16(), e.field()), (422, Some("priorty")));
        let e = parse_json::<CreateJob>(br#"{"prompt": "x", "params": [1]}"#).unwrap_err();
        assert_eq!((e.status().as_u16(), e.field()), (422, Some("params")));
        let e = parse_json::<CreateJob>(br#"{"prompt": "x", "run_at": "soon"}"#).unwrap_err();
        assert_eq!((e.status().as_u16(), e.field()), (422, Some("run_at")));
        let e = parse_json::<CreateJob>(br#"{"prompt": "x""#).unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (400, "malformed_json"));
        let e = parse_json::<CreateJob>(br#"{"prompt": "x"} trailing"#).unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (400, "malformed_json"));
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let e = parse_query::<ListJobsQuery>("limit=ten").unwrap_err();
        assert_eq!((e.status().as_u16(), e.field()), (400, Some("limit")));
        let e = parse_query::<ListJobsQuery>("status=sleeping").unwrap_err();
        assert_eq!(e.field(), Some("status"));
        let e = parse_query::<ListJobsQuery>("cursor=nope").unwrap_err();
        assert_eq!(e.field(), Some("cursor"));
        let q = parse_query::<ListJobsQuery>("limit=2&status=queued&order=desc&x=1").unwrap();
        assert_eq!(q.limit, Some(2));
    }
}
