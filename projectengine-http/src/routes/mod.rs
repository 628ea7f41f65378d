//! The route handlers, a module per resource.

pub mod apps;
pub mod artifacts;
pub mod audit;
pub mod children;
pub mod health;
pub mod jobs;
pub mod kinds;
pub mod queues;
pub mod review;
pub mod schedules;
pub mod sse;
pub mod webhooks;
pub mod workflow;
pub mod ws;

use axum::routing::MethodRouter;
use axum::Router;

use crate::error::ApiError;
use crate::ApiState;

/// Routes `path` both with and without its trailing slash.
pub(crate) fn both(
    router: Router<ApiState>,
    path: &str,
    method_router: MethodRouter<ApiState>,
) -> Router<ApiState> {
    let bare = path.trim_end_matches('/');
    router
        .route(bare, method_router.clone())
        .route(&format!("{bare}/"), method_router)
}

/// The answer for a path no route matches: 404 in our JSON shape.
pub(crate) async fn no_route() -> ApiError {
    ApiError::not_found("route")
}

/// The answer for a known path with an unsupported method: 405 in our JSON shape.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this path",
    )
}
