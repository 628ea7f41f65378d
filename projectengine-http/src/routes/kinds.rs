//! `/api/kinds/`: the kinds of job this deployment runs.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::both;
use crate::auth::Authenticated;
use crate::dto::{KindDto, KindList};
use crate::error::{ApiResult, ErrorBody};
use crate::ApiState;

/// The kinds route, with and without its trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    both(Router::new(), "/api/kinds/", get(list))
}

/// Lists the registered kinds, by name; the default one is marked.
#[utoipa::path(
    get, path = "/api/kinds/", tag = "jobs",
    responses(
        (status = 200, description = "The kinds a job may name, by name", body = KindList),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Authenticated(_owner): Authenticated,
) -> ApiResult<Json<KindList>> {
    let registry = state.engine().registry();
    let default = registry.default_kind();
    Ok(Json(KindList {
        items: registry
            .kinds()
            .map(|name| KindDto {
                name: name.to_owned(),
                default: Some(name) == default,
            })
            .collect(),
    }))
}
