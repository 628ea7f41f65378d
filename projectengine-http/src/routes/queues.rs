//! `/api/queues/`: how many entries wait in each of the deployment's queues.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::both;
use crate::auth::Authenticated;
use crate::dto::{QueueDto, QueueList};
use crate::error::{ApiResult, ErrorBody};
use crate::ApiState;

/// The queues route, with and without its trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    both(Router::new(), "/api/queues/", get(list))
}

/// The depth of every queue the registered kinds use, by name: the whole
/// deployment's entries, not only the caller's (as `/metrics` shows them).
#[utoipa::path(
    get, path = "/api/queues/", tag = "jobs",
    responses(
        (status = 200, description = "Each queue's depth, by name", body = QueueList),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The queue is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Authenticated(_owner): Authenticated,
) -> ApiResult<Json<QueueList>> {
    let engine = state.engine();
    let mut items = Vec::new();
    for name in engine.registry().queues() {
        let depth = engine.queue().depth(&name).await?;
        items.push(QueueDto {
            name,
            ready: depth.ready,
            delayed: depth.delayed,
            in_flight: depth.in_flight,
        });
    }
    Ok(Json(QueueList { items }))
}
