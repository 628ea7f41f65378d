//! `/api/jobs/{id}/artifacts/…`: list a job's artifacts, download one.
//!
//! A download streams from the artifact store (never loaded whole), with
//! `ETag` (the SHA-256), conditional requests (`If-None-Match` → 304), single
//! byte ranges (`Range` → 206, or 416 when unsatisfiable; `If-Range` honoured)
//! and headers that keep a browser from running what it downloads
//! (`Content-Disposition: attachment`, `nosniff`, a sandboxing CSP).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use projectengine_core::artifact::validate_name;
use projectengine_core::JobId;

use super::both;
use crate::auth::Authenticated;
use crate::dto::{ArtifactDto, ArtifactList};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::PathId;
use crate::ApiState;

/// The artifact routes.
pub(crate) fn routes() -> Router<ApiState> {
    let r = Router::new();
    let r = both(r, "/api/jobs/{id}/artifacts/", get(list));
    r.route("/api/jobs/{id}/artifacts/{*name}", get(download))
}

/// Lists a job's artifacts, by name.
#[utoipa::path(
    get, path = "/api/jobs/{id}/artifacts/", tag = "artifacts",
    params(("id" = String, Path, format = Uuid, description = "The job id")),
    responses(
        (status = 200, description = "The job's artifacts, by name", body = ArtifactList),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<JobId>,
) -> ApiResult<Json<ArtifactList>> {
    let artifacts = state.engine().artifacts(&owner, id).await?;
    Ok(Json(ArtifactList {
        items: artifacts.into_iter().map(ArtifactDto::from).collect(),
    }))
}

/// Downloads an artifact (streamed; ranges and conditional requests honoured).
#[utoipa::path(
    get, path = "/api/jobs/{id}/artifacts/{name}", tag = "artifacts",
    params(
        ("id" = String, Path, format = Uuid, description = "The job id"),
        ("name" = String, Path, description = "The artifact's name; may contain `/`"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`"),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client has"),
        ("If-Range" = Option<String>, Header, description = "Apply `Range` only if this ETag is current"),
    ),
    responses(
        (status = 200, description = "The artifact's bytes, with its `Content-Type`, `Content-Length`, `ETag` (its SHA-256) and `Content-Disposition`",
            content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for, with `Content-Range`",
            content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "The client's copy (`If-None-Match`) is current"),
        (status = 400, description = "Bad id or name", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job or artifact (or not yours)", body = ErrorBody),
        (status = 416, description = "The range lies outside the artifact, with `Content-Range: bytes */size`"),
    ),
    security(("bearer" = []))
)]
pub async fn download(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id: JobId = id
        .parse()
        .map_err(|_| ApiError::bad_param("id", "must be a UUID"))?;
    tracing::Span::current().record("job_id", tracing::field::display(id));
    validate_name(&name).map_err(|e| ApiError::bad_param("name", e))?;
    let engine = state.engine();
    let artifact = engine.artifact(&owner, id, &name).await?;
    let etag = format!("\"{}\"", artifact.sha256);

    if let Some(tags) = header_str(&headers, header::IF_NONE_MATCH) {
        if etag_matches(tags, &etag) {
            let mut res = StatusCode::NOT_MODIFIED.into_response();
            common_headers(res.headers_mut(), &etag);
            return Ok(res);
        }
    }

    let size = artifact.size;
    let range = match header_str(&headers, header::RANGE) {
        // `If-Range` with another validator: the client's partial copy is
        // stale, so it gets the whole artifact.
        Some(_)
            if header_str(&headers, header::IF_RANGE)
                .is_some_and(|v| v.trim() != etag.as_str()) =>
        {
            None
        }
        Some(value) => match http_range_header::parse_range_header(value) {
            // A malformed header is ignored, as RFC 9110 asks.
            Err(_) => None,
            Ok(parsed) => match parsed.validate(size) {
                Err(_) => return Ok(unsatisfiable(size)),
                // Several ranges would need a multipart answer: serving
                // the whole artifact instead is allowed and simpler.
                Ok(ranges) if ranges.len() != 1 => None,
                Ok(ranges) => Some(*ranges[0].start()..*ranges[0].end() + 1),
            },
        },
        None => None,
    };

    let reader = engine
        .open_artifact(&owner, id, &name, range.clone())
        .await?;
    // The metadata may have changed (a replacement) since it was read above.
    let artifact = reader.artifact;
    let etag = format!("\"{}\"", artifact.sha256);
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let length = reader.range.end - reader.range.start;
    let mut res = Response::new(Body::from_stream(reader.body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    common_headers(h, &etag);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(v) = HeaderValue::from_str(&artifact.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(&artifact.name),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let v = format!(
            "bytes {}-{}/{}",
            reader.range.start,
            reader.range.end - 1,
            artifact.size
        );
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(res)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, `*` for any).
fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The headers of every answer about an artifact.
fn common_headers(h: &mut HeaderMap, etag: &str) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Owner-private, and revalidated: a later attempt may replace it.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    // What an orchestrator wrote is never run by a browser on this origin.
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
}

/// 416, saying how big the artifact is.
fn unsatisfiable(size: u64) -> Response {
    let mut res = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
        format!("the range lies outside the artifact's {size} bytes"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        res.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    res
}

/// Characters kept as they are in `filename*` (RFC 8187's `attr-char`).
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment` with the name's last part: an ASCII `filename` for old
/// clients and the exact UTF-8 one in `filename*`.
fn content_disposition(name: &str) -> HeaderValue {
    let base = name.rsplit('/').next().unwrap_or(name);
    let ascii: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let value = format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        utf8_percent_encode(base, ATTR)
    );
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert!(etag_matches("\"a\"", "\"a\""));
        assert!(etag_matches("\"b\", W/\"a\"", "\"a\""));
        assert!(etag_matches("*", "\"a\""));
        assert!(!etag_matches("\"b\"", "\"a\""));
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            content_disposition("dist/site.tar.gz"),
            "attachment; filename=\"site.tar.gz\"; filename*=UTF-8''site.tar.gz"
        );
        assert_eq!(
            content_disposition("été \"x\".txt"),
            "attachment; filename=\"_t_ _x_.txt\"; filename*=UTF-8''%C3%A9t%C3%A9%20%22x%22.txt"
        );
    }
}
