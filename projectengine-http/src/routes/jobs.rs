//! `/api/jobs/…`: submit, list, read, cancel, retry, and the event log.

use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use projectengine_core::{JobId, JobQuery, Submitted};
use serde_json::Value;

use super::both;
use crate::auth::Authenticated;
use crate::dto::{
    CreateJob, EventDto, EventPage, EventsQuery, JobDetail, JobDto, JobPage, ListJobsQuery, Order,
    StepDto,
};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJsonBytes, ApiQuery, PathId};
use crate::ApiState;

/// The job routes, each with and without its trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    let r = Router::new();
    let r = both(r, "/api/jobs/", post(create).get(list));
    let r = both(r, "/api/jobs/{id}/", get(detail));
    let r = both(r, "/api/jobs/{id}/cancel/", post(cancel));
    let r = both(r, "/api/jobs/{id}/retry/", post(retry));
    both(r, "/api/jobs/{id}/events/", get(events))
}

/// Submits a job.
///
/// With an `Idempotency-Key` header, a retried request creates no second
/// job: the first request with a key answers 201 with the job it created;
/// while the key is kept (a configured time, 24 hours by default), the same
/// key with the same body (compared as canonical JSON) answers 200 with that
/// job as it is now, and with a different body 422 `idempotency_key_reused`.
/// Keys are per caller. Of concurrent requests with one key, exactly one
/// creates the job.
#[utoipa::path(
    post, path = "/api/jobs/", tag = "jobs",
    request_body = CreateJob,
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "Makes retries of this request safe: 1 to 255 printable ASCII characters, unique per request of the caller"),
    ),
    responses(
        (status = 200, description = "An earlier request with this Idempotency-Key and the same body created the job: here it is", body = JobDto,
            headers(("Location" = String, description = "The job's URL"))),
        (status = 201, description = "Created", body = JobDto,
            headers(("Location" = String, description = "The job's URL"))),
        (status = 400, description = "Malformed JSON, a bad `Idempotency-Key` (empty, longer than 255, not printable ASCII), or a `webhook` URL refused (not http or https, a private address, a host that does not resolve, or a deployment without webhooks)", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`), a job of `depends_on` is unknown, another owner's, failed or cancelled, or the `Idempotency-Key` was used with a different body (`idempotency_key_reused`)", body = ErrorBody),
        (status = 429, description = "Too many queued jobs for this owner", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    ApiJsonBytes(req, body): ApiJsonBytes<CreateJob>,
) -> ApiResult<Response> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_param(IDEMPOTENCY_KEY, "must be printable ASCII"))?,
        ),
        None => None,
    };
    let submit = req.into_submit();
    let engine = state.engine();
    let submitted = match key {
        None => engine.submit(&owner, submit).await.map(Submitted::Created),
        Some(key) => {
            // The body parsed as `CreateJob`, so it is JSON.
            let request: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::internal(format!("a parsed body no longer parses: {e}")))?;
            engine
                .submit_idempotent(&owner, submit, key, &request)
                .await
        }
    };
    let submitted = submitted.map_err(|e| match e {
        // A refused destination is a bad request, not a value out of bounds.
        projectengine_core::Error::Invalid {
            field: "webhook",
            reason,
        } => ApiError::bad_param("webhook", reason),
        projectengine_core::Error::Invalid {
            field: "idempotency_key",
            reason,
        } => ApiError::bad_param(IDEMPOTENCY_KEY, reason),
        e => ApiError::from(e).rename_field("timeout", "timeout_s"),
    })?;
    let status = if submitted.created() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let job = submitted.into_job();
    tracing::Span::current().record("job_id", tracing::field::display(job.id));
    let location = format!("{}/{}/", uri.path().trim_end_matches('/'), job.id);
    let mut res = (status, Json(JobDto::from(job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// The request header that makes a submission idempotent.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Lists the caller's jobs, a cursor page at a time.
#[utoipa::path(
    get, path = "/api/jobs/", tag = "jobs",
    params(ListJobsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "A parameter is invalid (named in `field`)", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    ApiQuery(q): ApiQuery<ListJobsQuery>,
) -> ApiResult<Json<JobPage>> {
    let query = JobQuery {
        status: q.status,
        cursor: q.cursor,
        limit: q.limit.unwrap_or(0),
        newest_first: q.order == Some(Order::Desc),
        project: q.project,
        kind: q.kind,
    };
    let page = state.engine().list(&owner, query).await?;
    Ok(Json(page.into()))
}

/// Reads a job, with its steps in order and its attempts.
#[utoipa::path(
    get, path = "/api/jobs/{id}/", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job id")),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn detail(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<JobId>,
) -> ApiResult<Json<JobDetail>> {
    let engine = state.engine();
    let (detail, children) =
        tokio::try_join!(engine.detail(&owner, id), engine.children(&owner, id))?;
    Ok(Json(JobDetail {
        job: detail.job.into(),
        steps: detail
            .events
            .iter()
            .filter_map(StepDto::from_event)
            .collect(),
        attempts: detail.attempts.into_iter().map(Into::into).collect(),
        children: children.into_iter().map(Into::into).collect(),
    }))
}

/// Cancels a job: a queued one at once, a running one within a heartbeat.
#[utoipa::path(
    post, path = "/api/jobs/{id}/cancel/", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job id")),
    responses(
        (status = 200, description = "The job after the request", body = JobDto),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours)", body = ErrorBody),
        (status = 409, description = "The job has finished", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<JobId>,
) -> ApiResult<Json<JobDto>> {
    let job = state.engine().cancel(&owner, id).await?;
    Ok(Json(job.into()))
}

/// Starts a failed or cancelled job again, with a fresh attempt budget.
#[utoipa::path(
    post, path = "/api/jobs/{id}/retry/", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job id")),
    responses(
        (status = 200, description = "The job, queued again", body = JobDto),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours)", body = ErrorBody),
        (status = 409, description = "The job is not failed or cancelled", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn retry(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<JobId>,
) -> ApiResult<Json<JobDto>> {
    let job = state.engine().retry(&owner, id).await?;
    Ok(Json(job.into()))
}

/// Reads a job's event log after a seq.
#[utoipa::path(
    get, path = "/api/jobs/{id}/events/", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job id"), EventsQuery),
    responses(
        (status = 200, description = "Events in seq order", body = EventPage),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<JobId>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventPage>> {
    let engine = state.engine();
    let after = q.after.unwrap_or(0);
    let events = engine
        .events(&owner, id, after, q.limit.unwrap_or(0))
        .await?;
    let next_after = events.last().map_or(after, |e| e.seq);
    Ok(Json(EventPage {
        items: events.iter().map(EventDto::from).collect(),
        next_after,
    }))
}
