//! `/api/jobs/{id}/webhooks/`: a job's webhook deliveries and their tries.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use projectengine_core::JobId;

use super::both;
use crate::auth::Authenticated;
use crate::dto::DeliveryList;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::PathId;
use crate::ApiState;

/// The webhook routes, with and without their trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    both(Router::new(), "/api/jobs/{id}/webhooks/", get(list))
}

/// Lists a job's webhook deliveries with their tries.
#[utoipa::path(
    get, path = "/api/jobs/{id}/webhooks/", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job id")),
    responses(
        (status = 200, description = "The job's deliveries, oldest first", body = DeliveryList),
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
) -> ApiResult<Json<DeliveryList>> {
    let logs = state.engine().deliveries(&owner, id).await?;
    Ok(Json(DeliveryList {
        items: logs.into_iter().map(Into::into).collect(),
    }))
}
