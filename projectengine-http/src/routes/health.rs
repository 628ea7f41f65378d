//! `/health`, `/ready` and `/metrics`: unauthenticated, for orchestrators and scrapers.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use crate::dto::HealthDto;
use crate::ApiState;

/// Whether the process is alive: always 200.
#[utoipa::path(
    get, path = "/health", tag = "health",
    responses((status = 200, description = "Alive", body = HealthDto))
)]
pub async fn health() -> Json<HealthDto> {
    Json(HealthDto {
        status: "ok".to_owned(),
    })
}

/// Whether the store and the queue answer: 200, or 503.
#[utoipa::path(
    get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "Store and queue reachable", body = HealthDto),
        (status = 503, description = "A backend is unreachable", body = HealthDto),
    )
)]
pub async fn ready(State(state): State<ApiState>) -> (StatusCode, Json<HealthDto>) {
    match state.engine().ready().await {
        Ok(()) => (
            StatusCode::OK,
            Json(HealthDto {
                status: "ok".to_owned(),
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(HealthDto {
                    status: "unavailable".to_owned(),
                }),
            )
        }
    }
}

/// Metrics in the Prometheus text format.
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let body = state.metrics().render(state.engine()).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
