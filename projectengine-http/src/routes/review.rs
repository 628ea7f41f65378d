//! `/api/jobs/{id}/approve|reject|rerun/`: the review gate, and running a
//! finished job's spec again.

use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use projectengine_core::JobId;
use serde::Deserialize;
use utoipa::ToSchema;

use super::both;
use crate::auth::Authenticated;
use crate::dto::JobDto;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, PathId};
use crate::ApiState;

/// The review routes, each with and without its trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    let r = Router::new();
    let r = both(r, "/api/jobs/{id}/approve/", post(approve));
    let r = both(r, "/api/jobs/{id}/reject/", post(reject));
    both(r, "/api/jobs/{id}/rerun/", post(rerun))
}

/// A reviewer's rejection of a job's result.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectJob {
    /// What the next attempt should change: not blank, at most 16 KiB; its
    /// orchestrator sees it (`review_comment`).
    #[schema(
        example = "use the customer's colours",
        min_length = 1,
        max_length = 16384
    )]
    pub comment: String,
}

/// Approves a job awaiting review: it succeeds.
#[utoipa::path(
    post, path = "/api/jobs/{id}/approve/", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job id")),
    responses(
        (status = 200, description = "The job, succeeded", body = JobDto),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours)", body = ErrorBody),
        (status = 409, description = "The job is not awaiting review", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn approve(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<JobId>,
) -> ApiResult<Json<JobDto>> {
    let job = state.engine().approve(&owner, id).await?;
    Ok(Json(job.into()))
}

/// Rejects a job awaiting review with a comment: it is queued for a new
/// attempt that sees the comment, or fails (error code `rejected`) when its
/// attempts are spent.
#[utoipa::path(
    post, path = "/api/jobs/{id}/reject/", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job id")),
    request_body = RejectJob,
    responses(
        (status = 200, description = "The job, queued again or failed", body = JobDto),
        (status = 400, description = "Bad id, or malformed JSON", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours)", body = ErrorBody),
        (status = 409, description = "The job is not awaiting review", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "The `comment` is missing, blank or too long", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reject(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<JobId>,
    ApiJson(req): ApiJson<RejectJob>,
) -> ApiResult<Json<JobDto>> {
    let job = state.engine().reject(&owner, id, &req.comment).await?;
    Ok(Json(job.into()))
}

/// Submits a new job with a finished job's spec (kind, prompt, params,
/// priority, max_attempts, timeout, webhook, review).
#[utoipa::path(
    post, path = "/api/jobs/{id}/rerun/", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The finished job's id")),
    responses(
        (status = 201, description = "The new job", body = JobDto,
            headers(("Location" = String, description = "The new job's URL"))),
        (status = 400, description = "Bad id, or the job's `webhook` is no longer accepted", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours)", body = ErrorBody),
        (status = 409, description = "The job has not finished", body = ErrorBody),
        (status = 422, description = "The job's spec is outside today's limits (named in `field`)", body = ErrorBody),
        (status = 429, description = "Too many queued jobs for this owner", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rerun(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    OriginalUri(uri): OriginalUri,
    PathId(id): PathId<JobId>,
) -> ApiResult<Response> {
    let job = state
        .engine()
        .rerun(&owner, id)
        .await
        .map_err(|e| match e {
            projectengine_core::Error::Invalid {
                field: "webhook",
                reason,
            } => crate::error::ApiError::bad_param("webhook", reason),
            e => crate::error::ApiError::from(e).rename_field("timeout", "timeout_s"),
        })?;
    tracing::Span::current().record("job_id", tracing::field::display(job.id));
    // `/api/jobs/{id}/rerun/` → `/api/jobs/{new id}/`.
    let path = uri.path().trim_end_matches('/');
    let jobs = path
        .strip_suffix("/rerun")
        .and_then(|p| p.rsplit_once('/'))
        .map_or("/api/jobs", |(jobs, _)| jobs);
    let location = format!("{jobs}/{}/", job.id);
    let mut res = (StatusCode::CREATED, Json(JobDto::from(job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}
