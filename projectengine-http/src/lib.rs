#![doc = include_str!("../README.md")]

pub mod agent;
mod auth;
mod cors;
#[cfg(feature = "dashboard")]
pub mod dashboard;
pub mod dto;
mod error;
mod extract;
mod limits;
mod metrics;
mod openapi;
#[cfg(feature = "otel")]
mod otel;
mod routes;
pub mod sites;
mod state;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::get;
use axum::Router;
use projectengine_core::Engine;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use agent::{agent_routes, AgentConfig, AttemptTokens};
#[cfg(feature = "jwks")]
pub use auth::JwksConfig;
pub use auth::{
    bearer_token, Agent, AgentAuthenticator, AuthError, Authenticated, Authenticator, JwtAuth,
    JwtConfigError,
};
pub use cors::{Allowed, Cors, CorsError};
#[cfg(feature = "dashboard")]
pub use dashboard::dashboard_routes;
pub use error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
pub use extract::{ApiJson, ApiQuery, IdParam, PathId};
pub use metrics::{Metrics, OpenGuard};
pub use openapi::{openapi, ApiDoc};
#[cfg(feature = "otel")]
pub use otel::{Otel, OtelError, OtelPropagator};
pub use sites::sites_routes;
pub use state::{ApiState, HttpConfig};

use routes::{both, method_not_allowed, no_route};

/// The header carrying the request id (set when absent, echoed in the response).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The whole API for `engine`, authenticated by `auth`, with the default
/// [`HttpConfig`]: [`api_routes`], [`ws_routes`] and [`health_routes`], a JSON
/// 404 for unknown paths, and request ids and tracing ([`instrument`]).
pub fn router(engine: Engine, auth: impl Authenticator) -> Router {
    router_with(ApiState::new(engine, auth))
}

/// Like [`router`], from a prepared [`ApiState`] (e.g. with a custom
/// [`HttpConfig`]). With [`HttpConfig::cors`] set, its layer answers
/// preflights (before authentication, which a preflight never carries) and adds
/// the CORS headers to every route's responses. With the `dashboard` feature
/// it serves the dashboard at `/ui/` too (`dashboard_routes`).
pub fn router_with(state: ApiState) -> Router {
    assemble(state, None)
}

/// Like [`router_with`], with the agent protocol's routes
/// ([`agent_routes`]) under `/api/agent/v1/`.
pub fn router_with_agents(state: ApiState, agents: AgentConfig) -> Router {
    assemble(state, Some(agents))
}

/// The whole router: the API, the agent protocol when configured, streams,
/// health, the dashboard (feature `dashboard`), CORS when configured.
fn assemble(state: ApiState, agents: Option<AgentConfig>) -> Router {
    let cors = state.config().cors.clone();
    let mut router = Router::new().merge(api_routes(state.clone()));
    if let Some(agents) = agents {
        router = router.merge(agent_routes(state.clone(), agents));
    }
    let router = router
        .merge(ws_routes(state.clone()))
        .merge(health_routes(state));
    #[cfg(feature = "dashboard")]
    let router = router.merge(dashboard::dashboard_routes());
    let mut router = router.fallback(no_route);
    if let Some(cors) = &cors {
        router = cors::apply(router, cors);
    }
    instrument(router)
}

/// The REST routes under `/api` (jobs, their SSE stream, apps), authenticated,
/// with the body limit of the state's [`HttpConfig`].
pub fn api_routes(state: ApiState) -> Router {
    let limit = state.config().body_limit;
    Router::new()
        .merge(routes::jobs::routes())
        .merge(routes::review::routes())
        .merge(routes::kinds::routes())
        .merge(routes::children::routes())
        .merge(routes::queues::routes())
        .merge(routes::artifacts::routes())
        .merge(routes::sse::routes())
        .merge(routes::apps::routes())
        .merge(routes::webhooks::routes())
        .merge(routes::audit::routes())
        .merge(routes::workflow::routes())
        .merge(routes::schedules::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The WebSocket route `/ws/jobs/{id}/`, authenticated.
pub fn ws_routes(state: ApiState) -> Router {
    routes::ws::routes()
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The unauthenticated routes: `/health`, `/ready`, `/metrics`,
/// `/openapi.json` and `/docs`.
pub fn health_routes(state: ApiState) -> Router {
    let r = Router::new();
    let r = both(r, "/health", get(routes::health::health));
    let r = both(r, "/ready", get(routes::health::ready));
    let r = both(r, "/metrics", get(routes::health::metrics));
    let r = both(r, "/openapi.json", get(openapi::openapi_json));
    let r = both(r, "/docs", get(openapi::docs));
    r.method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Adds request ids (`x-request-id`, generated when absent and echoed back) and
/// a tracing span per request carrying `request_id`, the method, the path (never
/// the query, which may hold a token) and, on job routes, `job_id`. With the
/// `otel` feature, a request's W3C `traceparent` header makes its span part
/// of the caller's trace.
pub fn instrument(router: Router) -> Router {
    let header = HeaderName::from_static(REQUEST_ID_HEADER);
    router
        .layer(PropagateRequestIdLayer::new(header.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get(REQUEST_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let span = tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id,
                    job_id = tracing::field::Empty,
                );
                #[cfg(feature = "otel")]
                otel::continue_trace(&span, req.headers());
                span
            }),
        )
        .layer(SetRequestIdLayer::new(header, MakeRequestUuid))
}
