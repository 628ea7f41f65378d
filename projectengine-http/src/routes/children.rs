//! `/api/jobs/{id}/children/`: the child jobs a job's attempts submitted.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use projectengine_core::JobId;

use super::both;
use crate::auth::Authenticated;
use crate::dto::ChildList;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::PathId;
use crate::ApiState;

/// The children route, with and without its trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    both(Router::new(), "/api/jobs/{id}/children/", get(list))
}

/// Lists a job's children, oldest first: the jobs its running attempts
/// submitted, one per key.
#[utoipa::path(
    get, path = "/api/jobs/{id}/children/", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The parent job's id")),
    responses(
        (status = 200, description = "Its children, oldest first", body = ChildList),
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
) -> ApiResult<Json<ChildList>> {
    let children = state.engine().children(&owner, id).await?;
    Ok(Json(ChildList {
        items: children.into_iter().map(Into::into).collect(),
    }))
}
