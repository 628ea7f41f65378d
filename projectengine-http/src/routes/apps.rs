//! `/api/apps/…`: the Apps jobs published.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use projectengine_core::{AppId, JobId};

use super::both;
use crate::auth::Authenticated;
use crate::dto::{AppDto, AppPage, ListAppsQuery};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiQuery, PathId};
use crate::ApiState;

/// The app routes, each with and without its trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    let r = Router::new();
    let r = both(r, "/api/apps/", get(list));
    let r = both(r, "/api/apps/by-job/{job_id}/", get(by_job));
    both(r, "/api/apps/{id}/", get(detail))
}

/// Lists the caller's apps, oldest first, a cursor page at a time.
#[utoipa::path(
    get, path = "/api/apps/", tag = "apps",
    params(ListAppsQuery),
    responses(
        (status = 200, description = "A page of apps", body = AppPage),
        (status = 400, description = "A parameter is invalid (named in `field`)", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    ApiQuery(q): ApiQuery<ListAppsQuery>,
) -> ApiResult<Json<AppPage>> {
    let page = state
        .engine()
        .apps(&owner, q.cursor, q.limit.unwrap_or(0))
        .await?;
    Ok(Json(page.into()))
}

/// Reads an app.
#[utoipa::path(
    get, path = "/api/apps/{id}/", tag = "apps",
    params(("id" = String, Path, format = Uuid, description = "The app id")),
    responses(
        (status = 200, description = "The app", body = AppDto),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such app (or not yours)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn detail(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<AppId>,
) -> ApiResult<Json<AppDto>> {
    Ok(Json(state.engine().app(&owner, id).await?.into()))
}

/// Reads the app a job published.
#[utoipa::path(
    get, path = "/api/apps/by-job/{job_id}/", tag = "apps",
    params(("job_id" = String, Path, format = Uuid, description = "The job id")),
    responses(
        (status = 200, description = "The job's app", body = AppDto),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours), or no app yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn by_job(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(job_id): PathId<JobId>,
) -> ApiResult<Json<AppDto>> {
    Ok(Json(
        state.engine().app_by_job(&owner, job_id).await?.into(),
    ))
}
