//! The agent protocol's request and response bodies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /api/agent/v1/claim`: which kinds, and how long to wait.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Kinds to take a job of; all the token's kinds when absent. Each must
    /// be one of the token's.
    #[serde(default)]
    pub kinds: Option<Vec<String>>,
    /// Seconds to wait for a job (long poll), 0 to the server's maximum
    /// (default 0: answer at once).
    #[serde(default)]
    pub wait_s: Option<u64>,
}

/// What a claimed job's agent needs: the job, its attempt, the lease, and
/// the token that every later call of the attempt carries.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunContext {
    /// The job, as the engine holds it (id, kind, prompt, params, …; after a
    /// reviewer's rejection, `review_comment` says what to change).
    #[schema(value_type = Object)]
    pub job: Value,
    /// The attempt number (1, 2, …).
    pub attempt: u32,
    /// The lease runs until then unless renewed by a heartbeat.
    pub lease_expires_at: DateTime<Utc>,
    /// Seconds between heartbeats.
    pub heartbeat_s: f64,
    /// The bearer token of every later call of this attempt.
    pub attempt_token: String,
    /// What the job allows the agent to do on its machine.
    pub policy: Policy,
}

/// What a job allows the agent to do on its machine.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Policy {
    /// Directories the job asks to write in (its `writable_roots` parameter);
    /// the agent intersects them with its own configuration.
    pub writable_roots: Vec<String>,
}

/// `POST …/attempt/heartbeat`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatReply {
    /// The lease now runs until then.
    pub lease_expires_at: DateTime<Utc>,
    /// The owner asked to cancel: stop, and finish `cancelled`.
    pub cancel_requested: bool,
}

/// `POST …/attempt/events`: a numbered batch of reports, in order.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    /// The batch's number: 1, 2, 3 … per attempt. A number already applied
    /// (a retry) changes nothing.
    pub batch: u64,
    /// `stage`, `step`, `progress`, `log` or `error` events, each
    /// `{"type", "data"}` as in the event log.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
}

/// `POST …/attempt/events`' answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsReply {
    /// The batch's number.
    pub batch: u64,
    /// `false` when it had been applied already.
    pub applied: bool,
    /// The seqs its events got (empty when not applied now).
    pub seqs: Vec<u64>,
}

/// `POST …/attempt/app`: the job's App.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppRequest {
    /// Its name.
    pub name: String,
    /// The result: any JSON.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// How the attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishOutcome {
    /// The run succeeded.
    Succeeded,
    /// A transient failure: retried while attempts remain.
    Retryable,
    /// A permanent failure.
    Fatal,
    /// Stopped on the owner's cancel.
    Cancelled,
}

/// `POST …/attempt/finish`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    /// How the attempt ended.
    pub outcome: FinishOutcome,
    /// A stable code for a failure (default `agent_error`).
    #[serde(default)]
    pub code: Option<String>,
    /// A message for a failure.
    #[serde(default)]
    pub message: Option<String>,
    /// For `retryable`: seconds before the next attempt (default: the
    /// engine's backoff).
    #[serde(default)]
    pub retry_after_s: Option<f64>,
}

/// `POST …/attempt/children`: a child job of the attempt's job, under a key.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChildRequest {
    /// The child's key among the job's children (e.g. `frontend`): the
    /// first submission of a key creates the child, later ones answer it.
    pub key: String,
    /// The child's submission, as `POST /api/jobs/` takes it.
    pub job: crate::dto::CreateJob,
}

/// `POST …/attempt/children`' answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ChildReply {
    /// Whether this request created the child (`false`: the key had one).
    pub created: bool,
    /// The child, as the engine holds it.
    #[schema(value_type = Object)]
    pub job: Value,
}
