//! Workflows: `POST /api/jobs/batch/` (several jobs at once, all or none,
//! depending on each other by local reference) and `GET /api/projects/`
//! (the caller's projects, their jobs counted per status).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use projectengine_core::workflow::BatchJob;
use projectengine_core::{Project, Submit};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::both;
use crate::auth::Authenticated;
use crate::dto::JobDto;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::ApiState;

/// The workflow routes, each with and without its trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    let r = both(Router::new(), "/api/jobs/batch/", post(batch));
    both(r, "/api/projects/", get(projects))
}

/// Several jobs to create at once, all or none.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// The jobs (1 to 100), in any order: each is created after the jobs
    /// of the batch it depends on.
    pub jobs: Vec<BatchItem>,
}

/// One job of a batch: the fields of a single submission, a local
/// reference, and dependencies by reference or id.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// Its reference in this batch, by which other items name it in their
    /// `depends_on` (unique in the batch; 1 to 64 printable bytes).
    #[serde(default, rename = "ref")]
    #[schema(example = "build")]
    pub reference: Option<String>,
    /// What to do.
    pub prompt: String,
    /// Orchestrator kind; the default kind when absent.
    #[serde(default)]
    pub kind: Option<String>,
    /// Parameters for the orchestrator: a JSON object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    /// Higher runs first.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Attempts allowed.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Per-attempt timeout in seconds.
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Not before this time (RFC 3339).
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    /// A URL to notify when the job ends.
    #[serde(default)]
    pub webhook: Option<String>,
    /// A project of yours the job belongs to.
    #[serde(default)]
    pub project: Option<String>,
    /// A concurrency key of yours (see `concurrency_key` on `POST /api/jobs/`).
    #[serde(default)]
    pub concurrency_key: Option<String>,
    /// The limit that goes with `concurrency_key`.
    #[serde(default)]
    pub concurrency_limit: Option<u32>,
    /// What it waits for: the `ref` of another item of this batch, or the
    /// id of an existing job of yours.
    #[serde(default)]
    #[schema(example = json!(["build"]))]
    pub depends_on: Vec<String>,
    /// Hold a successful result for a person's approval (see `review` on
    /// `POST /api/jobs/`).
    #[serde(default)]
    pub review: bool,
}

impl From<BatchItem> for BatchJob {
    fn from(item: BatchItem) -> Self {
        BatchJob {
            reference: item.reference,
            submit: Submit {
                prompt: item.prompt,
                kind: item.kind,
                params: item.params.map(Value::Object),
                priority: item.priority,
                max_attempts: item.max_attempts,
                timeout: item.timeout_s.map(Duration::from_secs),
                run_at: item.run_at,
                webhook: item.webhook,
                project: item.project,
                depends_on: Vec::new(),
                review: item.review,
                concurrency_key: item.concurrency_key,
                concurrency_limit: item.concurrency_limit,
            },
            depends_on: item.depends_on,
        }
    }
}

/// The jobs a batch created, in the order given.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BatchCreated {
    /// The jobs.
    pub jobs: Vec<JobDto>,
}

/// Creates several jobs at once, all or none: a cycle among their
/// dependencies, an unknown `ref`, an unknown or foreign job id, or one
/// invalid item refuses the whole batch (422, `field` is `jobs`, the
/// message names the item), and nothing is created.
#[utoipa::path(
    post, path = "/api/jobs/batch/", tag = "jobs",
    request_body = CreateBatch,
    responses(
        (status = 201, description = "Created, in the order given", body = BatchCreated),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "An item is invalid, names an unknown reference or job, or the dependencies form a cycle (the message names the item); nothing was created", body = ErrorBody),
        (status = 429, description = "Too many queued jobs for this owner", body = ErrorBody),
        (status = 503, description = "A backend is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn batch(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    ApiJson(req): ApiJson<CreateBatch>,
) -> ApiResult<(StatusCode, Json<BatchCreated>)> {
    let items = req.jobs.into_iter().map(BatchJob::from).collect();
    let jobs = state.engine().submit_batch(&owner, items).await?;
    Ok((
        StatusCode::CREATED,
        Json(BatchCreated {
            jobs: jobs.into_iter().map(JobDto::from).collect(),
        }),
    ))
}

/// A project of the caller's, with its jobs counted per status.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ProjectDto {
    /// Its name.
    pub name: String,
    /// How many of its jobs are in each status (statuses without jobs are
    /// absent).
    #[schema(example = json!({"queued": 2, "succeeded": 5}))]
    pub counts: BTreeMap<String, u64>,
    /// How many jobs it has.
    pub total: u64,
}

impl From<Project> for ProjectDto {
    fn from(p: Project) -> Self {
        Self {
            name: p.name,
            counts: p.counts,
            total: p.total,
        }
    }
}

/// The caller's projects.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ProjectList {
    /// The projects, by name.
    pub items: Vec<ProjectDto>,
}

/// Lists the caller's projects (the names its jobs were submitted with),
/// by name, with their jobs counted per status.
#[utoipa::path(
    get, path = "/api/projects/", tag = "jobs",
    responses(
        (status = 200, description = "The projects, by name", body = ProjectList),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn projects(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
) -> ApiResult<Json<ProjectList>> {
    let items = state.engine().projects(&owner).await?;
    Ok(Json(ProjectList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}
