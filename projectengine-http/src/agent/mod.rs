//! The agent protocol, `/api/agent/v1/…`: remote agents claim jobs and run
//! their attempts over HTTP with the guarantees of an in-process worker.
//!
//! An agent authenticates with an agent token ([`AgentAuthenticator`]) to
//! claim; the claim answers a [`RunContext`] with an
//! attempt token, the bearer of every later call of that attempt
//! (heartbeat, events, artifacts, app, finish). Each of those goes through
//! the engine's fenced store calls: once the attempt lost its lease, every
//! call answers 409 `stale_attempt` and changes nothing.

pub mod dto;
mod token;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use futures::TryStreamExt;
use projectengine_core::remote::{RemoteAttempt, RemoteOutcome};
use projectengine_core::{ArtifactBody, Error, EventData, JobError, NewApp, Owner};

pub use token::AttemptTokens;

use crate::auth::{bearer_token, Agent, AgentAuthenticator, AuthError};
use crate::dto::{AppDto, ArtifactDto, JobDto};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::method_not_allowed;
use crate::ApiState;
use dto::{
    AppRequest, ChildReply, ChildRequest, ClaimRequest, EventsReply, EventsRequest, FinishOutcome,
    FinishRequest, HeartbeatReply, Policy, RunContext,
};

/// How the agent routes authenticate agents, sign attempt tokens, and
/// lease attempts.
#[derive(Clone)]
#[non_exhaustive]
pub struct AgentConfig {
    /// Verifies agent tokens.
    pub auth: Arc<dyn AgentAuthenticator>,
    /// Signs and verifies attempt tokens.
    pub tokens: AttemptTokens,
    /// How long a claim or heartbeat holds the lease (default 30 s).
    pub lease: Duration,
    /// How often the agent should heartbeat (default 10 s).
    pub heartbeat: Duration,
    /// Longest claim long poll (default 30 s).
    pub max_wait: Duration,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("lease", &self.lease)
            .field("heartbeat", &self.heartbeat)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    /// Agents verified by `auth`, attempt tokens signed by `tokens`, with
    /// the default lease (30 s), heartbeat (10 s) and longest wait (30 s).
    pub fn new(auth: impl AgentAuthenticator, tokens: AttemptTokens) -> Self {
        Self {
            auth: Arc::new(auth),
            tokens,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            max_wait: Duration::from_secs(30),
        }
    }

    /// Sets the lease and the heartbeat interval (at most a third of it is
    /// advised, so two heartbeats may fail before the lease runs out).
    pub fn lease(mut self, lease: Duration, heartbeat: Duration) -> Self {
        self.lease = lease;
        self.heartbeat = heartbeat;
        self
    }

    /// Sets the longest claim long poll.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }
}

/// An error of the engine as an agent route answers it: a stale attempt
/// is 409 `stale_attempt` (on the user routes, where no attempt is named,
/// it would be an internal error).
fn agent_error(e: Error) -> ApiError {
    match e {
        Error::StaleAttempt => ApiError::new(
            StatusCode::CONFLICT,
            "stale_attempt",
            "this attempt is no longer the job's running attempt",
        ),
        e => ApiError::from(e),
    }
}

/// The state of the agent routes.
#[derive(Clone, Debug)]
struct AgentState {
    api: ApiState,
    agents: Arc<AgentConfig>,
}

/// The agent routes under `/api/agent/v1/`, with the body limit of the
/// state's [`HttpConfig`](crate::HttpConfig) (artifact uploads are limited
/// by the artifact store's limits instead).
pub fn agent_routes(state: ApiState, config: AgentConfig) -> Router {
    let limit = state.config().body_limit;
    let state = AgentState {
        api: state,
        agents: Arc::new(config),
    };
    let json = Router::new()
        .route("/api/agent/v1/claim", post(claim))
        .route("/api/agent/v1/attempt/heartbeat", post(heartbeat))
        .route("/api/agent/v1/attempt/events", post(events))
        .route("/api/agent/v1/attempt/app", post(app))
        .route("/api/agent/v1/attempt/children", post(children))
        .route("/api/agent/v1/attempt/finish", post(finish))
        .layer(axum::extract::DefaultBodyLimit::max(limit));
    let uploads = Router::new()
        .route("/api/agent/v1/attempt/artifacts/{*name}", put(artifact))
        .layer(axum::extract::DefaultBodyLimit::disable());
    json.merge(uploads)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The agent of a request, from its agent token.
struct Authed(Agent);

impl FromRequestParts<AgentState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AgentState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)?.ok_or(AuthError::Missing)?;
        Ok(Authed(state.agents.auth.authenticate_agent(token).await?))
    }
}

/// The attempt of a request, from its attempt token.
struct AttemptOf(RemoteAttempt);

impl FromRequestParts<AgentState> for AttemptOf {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AgentState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)?.ok_or(AuthError::Missing)?;
        let at = state.agents.tokens.verify(token)?;
        tracing::Span::current().record("job_id", tracing::field::display(at.fence.job_id));
        Ok(AttemptOf(at))
    }
}

/// Claims a job of the agent's kinds (and, when its token names owners, of
/// those owners), waiting up to `wait_s` for one.
#[utoipa::path(
    post, path = "/api/agent/v1/claim", tag = "agents",
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "A job, claimed: its run context", body = RunContext),
        (status = 204, description = "No job came within the wait"),
        (status = 401, description = "Not an agent token", body = ErrorBody),
        (status = 403, description = "A kind the token may not serve", body = ErrorBody),
        (status = 422, description = "A kind no agent runs here", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn claim(
    State(state): State<AgentState>,
    Authed(agent): Authed,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> ApiResult<Response> {
    let kinds = match req.kinds {
        Some(kinds) => {
            if let Some(k) = kinds.iter().find(|k| !agent.kinds.contains(k)) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("this agent may not serve kind `{k}`"),
                ));
            }
            kinds
        }
        None => agent.kinds.clone(),
    };
    let owners: Vec<Owner> = agent.owners.iter().map(Owner::new).collect();
    let cfg = &state.agents;
    let wait = Duration::from_secs(req.wait_s.unwrap_or(0)).min(cfg.max_wait);
    let shutdown = state.api.shutdown_token();
    let claimed = tokio::select! {
        r = state.api.engine().claim_remote_for(&kinds, &owners, &agent.name, cfg.lease, wait) => r.map_err(agent_error)?,
        // A server going away answers at once; the agent asks another.
        _ = shutdown.cancelled() => None,
    };
    let Some(claim) = claimed else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let at = RemoteAttempt {
        fence: claim.attempt.fence(),
        kind: claim.job.kind.clone(),
    };
    // The token outlives any run the job allows: the lease, not the token,
    // is what ends an attempt.
    let ttl = claim.job.timeout() + cfg.lease + Duration::from_secs(3600);
    let attempt_token = cfg
        .tokens
        .issue(&agent.name, &at, ttl)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let writable_roots = claim
        .job
        .params
        .get("writable_roots")
        .and_then(|v| v.as_array())
        .map(|roots| {
            roots
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let job = serde_json::to_value(&claim.job).map_err(|e| ApiError::internal(e.to_string()))?;
    let context = RunContext {
        job,
        attempt: at.fence.attempt,
        lease_expires_at: claim.attempt.lease_expires_at,
        heartbeat_s: cfg.heartbeat.as_secs_f64(),
        attempt_token,
        policy: Policy { writable_roots },
    };
    Ok(Json(context).into_response())
}

/// Renews the attempt's lease; says whether the owner asked to cancel.
#[utoipa::path(
    post, path = "/api/agent/v1/attempt/heartbeat", tag = "agents",
    responses(
        (status = 200, description = "Lease renewed", body = HeartbeatReply),
        (status = 401, description = "Not an attempt token", body = ErrorBody),
        (status = 409, description = "`stale_attempt`: the attempt lost its lease", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn heartbeat(
    State(state): State<AgentState>,
    AttemptOf(at): AttemptOf,
) -> ApiResult<Json<HeartbeatReply>> {
    let hb = state
        .api
        .engine()
        .heartbeat_remote(&at, state.agents.lease)
        .await
        .map_err(agent_error)?;
    Ok(Json(HeartbeatReply {
        lease_expires_at: hb.lease_expires_at,
        cancel_requested: hb.cancel_requested,
    }))
}

/// Appends a numbered batch of reports, once.
#[utoipa::path(
    post, path = "/api/agent/v1/attempt/events", tag = "agents",
    request_body = EventsRequest,
    responses(
        (status = 200, description = "Applied now, or applied before (`applied: false`)", body = EventsReply),
        (status = 401, description = "Not an attempt token", body = ErrorBody),
        (status = 409, description = "`stale_attempt`: the attempt lost its lease", body = ErrorBody),
        (status = 422, description = "A bad event, or a batch number past the next", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn events(
    State(state): State<AgentState>,
    AttemptOf(at): AttemptOf,
    ApiJson(req): ApiJson<EventsRequest>,
) -> ApiResult<Json<EventsReply>> {
    let mut events = Vec::with_capacity(req.events.len());
    for (i, value) in req.events.into_iter().enumerate() {
        let data: EventData = serde_json::from_value(value)
            .map_err(|e| ApiError::invalid(format!("events[{i}]"), e))?;
        events.push(data);
    }
    let appended = state
        .api
        .engine()
        .append_remote(&at, req.batch, events)
        .await
        .map_err(agent_error)?;
    Ok(Json(EventsReply {
        batch: req.batch,
        applied: appended.is_some(),
        seqs: appended.unwrap_or_default().iter().map(|e| e.seq).collect(),
    }))
}

/// Uploads an artifact of the attempt, streamed.
#[utoipa::path(
    put, path = "/api/agent/v1/attempt/artifacts/{name}", tag = "agents",
    params(("name" = String, Path, description = "The artifact's name (`/`-separated)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = ArtifactDto),
        (status = 401, description = "Not an attempt token", body = ErrorBody),
        (status = 409, description = "`stale_attempt`: the attempt lost its lease", body = ErrorBody),
        (status = 422, description = "A bad name or media type", body = ErrorBody),
        (status = 429, description = "Past the size limits", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn artifact(
    State(state): State<AgentState>,
    AttemptOf(at): AttemptOf,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let stored = state
        .api
        .engine()
        .put_artifact(
            &at.kind,
            at.fence,
            &name,
            &content_type,
            ArtifactBody::stream(stream),
        )
        .await
        .map_err(agent_error)?;
    Ok((StatusCode::CREATED, Json(ArtifactDto::from(stored))).into_response())
}

/// Publishes the job's App.
#[utoipa::path(
    post, path = "/api/agent/v1/attempt/app", tag = "agents",
    request_body = AppRequest,
    responses(
        (status = 201, description = "Published", body = AppDto),
        (status = 401, description = "Not an attempt token", body = ErrorBody),
        (status = 409, description = "`stale_attempt`, or a second App of this attempt", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn app(
    State(state): State<AgentState>,
    AttemptOf(at): AttemptOf,
    ApiJson(req): ApiJson<AppRequest>,
) -> ApiResult<Response> {
    let app = state
        .api
        .engine()
        .publish_app_remote(
            &at,
            NewApp {
                name: req.name,
                payload: req.payload,
            },
        )
        .await
        .map_err(agent_error)?;
    Ok((StatusCode::CREATED, Json(AppDto::from(app))).into_response())
}

/// Submits a child job of the attempt's job under a key: the first
/// submission of a key creates it (201), a later one — by this attempt or a
/// later one — answers it (200) and changes nothing.
#[utoipa::path(
    post, path = "/api/agent/v1/attempt/children", tag = "agents",
    request_body = ChildRequest,
    responses(
        (status = 200, description = "The key had a child: here it is", body = ChildReply),
        (status = 201, description = "Created", body = ChildReply),
        (status = 401, description = "Not an attempt token", body = ErrorBody),
        (status = 409, description = "`stale_attempt`: the attempt lost its lease", body = ErrorBody),
        (status = 422, description = "A bad field (named in `field`)", body = ErrorBody),
        (status = 429, description = "Too many queued jobs for the owner", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn children(
    State(state): State<AgentState>,
    AttemptOf(at): AttemptOf,
    ApiJson(req): ApiJson<ChildRequest>,
) -> ApiResult<Response> {
    let submit = req.job.into_submit();
    let submitted = state
        .api
        .engine()
        .submit_child(at.fence, &req.key, submit)
        .await
        .map_err(|e| agent_error(e).rename_field("timeout", "timeout_s"))?;
    let status = if submitted.created() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let created = submitted.created();
    let job = serde_json::to_value(submitted.into_job())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((status, Json(ChildReply { created, job })).into_response())
}

/// Ends the attempt.
#[utoipa::path(
    post, path = "/api/agent/v1/attempt/finish", tag = "agents",
    request_body = FinishRequest,
    responses(
        (status = 200, description = "The job after the attempt", body = JobDto),
        (status = 401, description = "Not an attempt token", body = ErrorBody),
        (status = 409, description = "`stale_attempt`: the attempt lost its lease", body = ErrorBody),
        (status = 422, description = "A bad field", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn finish(
    State(state): State<AgentState>,
    AttemptOf(at): AttemptOf,
    ApiJson(req): ApiJson<FinishRequest>,
) -> ApiResult<Json<JobDto>> {
    let error = || {
        JobError::new(
            req.code.clone().unwrap_or_else(|| "agent_error".to_owned()),
            req.message.clone().unwrap_or_default(),
        )
    };
    let outcome = match req.outcome {
        FinishOutcome::Succeeded => RemoteOutcome::Succeeded,
        FinishOutcome::Cancelled => RemoteOutcome::Cancelled,
        FinishOutcome::Fatal => RemoteOutcome::Fatal { error: error() },
        FinishOutcome::Retryable => {
            let retry_in = match req.retry_after_s {
                Some(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => {
                    Some(Duration::from_secs_f64(s))
                }
                Some(_) => {
                    return Err(ApiError::invalid(
                        "retry_after_s",
                        "must be between 0 and 86400",
                    ))
                }
                None => None,
            };
            RemoteOutcome::Retryable {
                error: error(),
                retry_in,
            }
        }
    };
    let job = state
        .api
        .engine()
        .finish_remote(&at, outcome)
        .await
        .map_err(|e| match e {
            // The job moved on without this attempt (lost, or finished).
            Error::Conflict(_) => agent_error(Error::StaleAttempt),
            e => agent_error(e),
        })?;
    Ok(Json(JobDto::from(job)))
}
