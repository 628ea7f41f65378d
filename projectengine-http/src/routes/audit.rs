//! `/api/jobs/{id}/audit/`: the file-access checks a job's agents recorded
//! (`fs_audit` events), filtered by operation and result.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use projectengine_core::{EventData, FsOp, JobId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::both;
use crate::auth::Authenticated;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiQuery, PathId};
use crate::ApiState;

/// The audit route, with and without its trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    both(Router::new(), "/api/jobs/{id}/audit/", get(list))
}

/// `GET /api/jobs/{id}/audit/` parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only checks of this operation.
    #[param(value_type = Option<String>, example = "write")]
    pub op: Option<AuditOp>,
    /// Only checks with this result.
    #[param(value_type = Option<String>, example = "denied")]
    pub result: Option<AuditResult>,
}

/// A file operation (`read`, `write`, `delete`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOp {
    /// Reading.
    Read,
    /// Writing.
    Write,
    /// Deleting.
    Delete,
}

/// What a check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    /// Inside a writable root.
    Allowed,
    /// Refused.
    Denied,
}

/// One recorded check.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// The event's seq.
    pub seq: u64,
    /// The attempt that checked.
    pub attempt: u32,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The path as asked for.
    pub path: String,
    /// The operation.
    pub op: AuditOp,
    /// The result.
    pub result: AuditResult,
}

/// A job's recorded checks, in seq order.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// The checks.
    pub items: Vec<AuditEntry>,
}

/// Lists the file-access checks of a job's agents.
#[utoipa::path(
    get, path = "/api/jobs/{id}/audit/", tag = "jobs",
    params(("id" = String, Path, format = Uuid, description = "The job id"), AuditQuery),
    responses(
        (status = 200, description = "The job's checks, in seq order", body = AuditList),
        (status = 400, description = "Bad id or parameter", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<JobId>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditList>> {
    let detail = state.engine().detail(&owner, id).await?;
    let items = detail
        .events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::FsAudit(a) => Some(AuditEntry {
                seq: e.seq,
                attempt: e.attempt,
                at: e.at,
                path: a.path.clone(),
                op: match a.op {
                    FsOp::Read => AuditOp::Read,
                    FsOp::Write => AuditOp::Write,
                    FsOp::Delete => AuditOp::Delete,
                },
                result: if a.allowed {
                    AuditResult::Allowed
                } else {
                    AuditResult::Denied
                },
            }),
            _ => None,
        })
        .filter(|a| q.op.is_none_or(|op| op == a.op))
        .filter(|a| q.result.is_none_or(|r| r == a.result))
        .collect();
    Ok(Json(AuditList { items }))
}
