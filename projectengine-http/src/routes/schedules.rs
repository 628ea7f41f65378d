//! `/api/schedules/…`: cron schedules that create jobs from a template,
//! with their next fire times and their runs.

use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use projectengine_core::schedule::MAX_UPCOMING;
use projectengine_core::{
    CreateSchedule, Engine, JobId, JobTemplate, MisfirePolicy, OverlapPolicy, Schedule, ScheduleId,
    SchedulePatch, ScheduleRun, SkipReason,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::both;
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IdParam, PathId};
use crate::ApiState;

impl IdParam for ScheduleId {}

/// Upcoming ticks a schedule is shown with, unless `upcoming` says otherwise.
const DEFAULT_UPCOMING: usize = 5;

/// The schedule routes, each with and without its trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    let r = Router::new();
    let r = both(r, "/api/schedules/", axum::routing::post(create).get(list));
    let r = both(
        r,
        "/api/schedules/{id}/",
        get(detail).patch(update).delete(delete),
    );
    both(r, "/api/schedules/{id}/runs/", get(runs))
}

/// The job a schedule creates at each tick.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateDto {
    /// What to do (1 byte up to the configured limit, not only whitespace).
    #[schema(example = "write the nightly report", min_length = 1)]
    pub prompt: String,
    /// Orchestrator kind; the default kind when absent. Must be registered.
    #[serde(default)]
    pub kind: Option<String>,
    /// Parameters for the orchestrator: a JSON object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    /// Higher runs first, within the configured bounds.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Attempts allowed, within the configured bounds.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Per-attempt timeout in seconds, within the configured bounds.
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

impl TemplateDto {
    fn into_core(self) -> ApiResult<JobTemplate> {
        let timeout_ms = match self.timeout_s {
            Some(s) => Some(
                s.checked_mul(1000)
                    .ok_or_else(|| ApiError::invalid("timeout_s", "is too large"))?,
            ),
            None => None,
        };
        Ok(JobTemplate {
            prompt: self.prompt,
            kind: self.kind,
            params: self.params.map(Value::Object),
            priority: self.priority,
            max_attempts: self.max_attempts,
            timeout_ms,
        })
    }
}

impl From<JobTemplate> for TemplateDto {
    fn from(t: JobTemplate) -> Self {
        Self {
            prompt: t.prompt,
            kind: t.kind,
            params: match t.params {
                Some(Value::Object(m)) => Some(m),
                _ => None,
            },
            priority: t.priority,
            max_attempts: t.max_attempts,
            timeout_s: t.timeout_ms.map(|ms| ms / 1000),
        }
    }
}

/// What to do when a tick finds the previous job unfinished.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverlapName {
    /// Create no job for the tick (the run is recorded as skipped).
    Skip,
    /// Create the tick's job anyway.
    Allow,
}

/// What to do with ticks missed while no worker ran.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MisfireName {
    /// Fire nothing for them; go on with the next tick.
    Skip,
    /// Fire one job for them all, then go on with the next tick.
    RunOnce,
}

impl From<OverlapName> for OverlapPolicy {
    fn from(o: OverlapName) -> Self {
        match o {
            OverlapName::Skip => OverlapPolicy::Skip,
            OverlapName::Allow => OverlapPolicy::Allow,
        }
    }
}

impl From<MisfireName> for MisfirePolicy {
    fn from(m: MisfireName) -> Self {
        match m {
            MisfireName::Skip => MisfirePolicy::Skip,
            MisfireName::RunOnce => MisfirePolicy::RunOnce,
        }
    }
}

/// A new schedule.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScheduleBody {
    /// A name for people (default: the cron expression).
    #[serde(default)]
    pub name: Option<String>,
    /// A cron expression: five fields (minute hour day-of-month month
    /// day-of-week), or six with seconds first; `@daily` and the like.
    #[schema(example = "0 30 2 * * MON-FRI")]
    pub cron: String,
    /// The IANA time zone the expression is read in (default `UTC`); DST
    /// gaps and overlaps follow the Open Cron Pattern Specification.
    #[serde(default)]
    #[schema(example = "Europe/Paris")]
    pub timezone: Option<String>,
    /// The job each tick creates.
    pub template: TemplateDto,
    /// `skip` (default) or `allow`.
    #[serde(default)]
    pub overlap: Option<OverlapName>,
    /// `skip` (default) or `run_once`.
    #[serde(default)]
    pub misfire: Option<MisfireName>,
    /// Whether it fires (default `true`).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A change of a schedule: each field given replaces the current one.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchScheduleBody {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New cron expression.
    #[serde(default)]
    pub cron: Option<String>,
    /// New IANA time zone.
    #[serde(default)]
    pub timezone: Option<String>,
    /// New template (whole).
    #[serde(default)]
    pub template: Option<TemplateDto>,
    /// New overlap policy.
    #[serde(default)]
    pub overlap: Option<OverlapName>,
    /// New misfire policy.
    #[serde(default)]
    pub misfire: Option<MisfireName>,
    /// `false` pauses, `true` resumes.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A schedule.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ScheduleDto {
    /// Its id.
    #[schema(value_type = String, format = Uuid)]
    pub id: ScheduleId,
    /// Its name.
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub timezone: String,
    /// The job each tick creates.
    pub template: TemplateDto,
    /// `skip` or `allow`.
    #[schema(value_type = OverlapName)]
    pub overlap: &'static str,
    /// `skip` or `run_once`.
    #[schema(value_type = MisfireName)]
    pub misfire: &'static str,
    /// Whether it fires.
    pub enabled: bool,
    /// The next tick to fire (none when paused or without a tick left).
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The next ticks, from `next_fire_at` (as many as `upcoming` asked).
    pub next_fire_times: Vec<DateTime<Utc>>,
    /// The job of the latest fired tick.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub last_job_id: Option<JobId>,
    /// Bumped by every change of settings.
    pub revision: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its last change of settings.
    pub updated_at: DateTime<Utc>,
}

impl ScheduleDto {
    fn new(engine: &Engine, s: Schedule, upcoming: usize) -> Self {
        let next_fire_times = engine.next_fire_times(&s, upcoming);
        Self {
            id: s.id,
            name: s.name,
            cron: s.cron,
            timezone: s.timezone,
            template: s.template.into(),
            overlap: s.overlap.as_str(),
            misfire: s.misfire.as_str(),
            enabled: s.enabled,
            next_fire_at: s.next_fire_at,
            next_fire_times,
            last_job_id: s.last_job_id,
            revision: s.revision,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A page of schedules.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SchedulePage {
    /// The schedules, oldest first.
    pub items: Vec<ScheduleDto>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// One fired tick: its job, or why it had none.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RunDto {
    /// The tick.
    pub tick: DateTime<Utc>,
    /// The job created for it.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub job_id: Option<JobId>,
    /// Why none was: `overlap`, `misfire` or `invalid`.
    #[schema(value_type = Option<String>)]
    pub skipped: Option<&'static str>,
    /// When it was fired.
    pub fired_at: DateTime<Utc>,
}

impl From<ScheduleRun> for RunDto {
    fn from(r: ScheduleRun) -> Self {
        Self {
            tick: r.tick,
            job_id: r.job_id,
            skipped: r.skipped.map(SkipReason::as_str),
            fired_at: r.fired_at,
        }
    }
}

/// The runs of a schedule.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RunPage {
    /// Newest tick first.
    pub items: Vec<RunDto>,
}

/// How many upcoming ticks to show.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpcomingQuery {
    /// Next fire times to show (default 5, at most 100).
    #[param(minimum = 0, maximum = 100)]
    pub upcoming: Option<usize>,
}

/// `GET /api/schedules/` parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListSchedulesQuery {
    /// Page size (default 50, at most 500).
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<String>, format = Uuid)]
    pub cursor: Option<ScheduleId>,
    /// Next fire times to show per schedule (default 5, at most 100).
    #[param(minimum = 0, maximum = 100)]
    pub upcoming: Option<usize>,
}

/// `GET /api/schedules/{id}/runs/` parameters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Page size (default 50, at most 500).
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<usize>,
    /// Only ticks before this time (RFC 3339): the `tick` of the last run
    /// of the previous page.
    pub before: Option<DateTime<Utc>>,
}

fn upcoming(n: Option<usize>) -> ApiResult<usize> {
    match n {
        Some(n) if n > MAX_UPCOMING => Err(ApiError::bad_param(
            "upcoming",
            format!("must be at most {MAX_UPCOMING}"),
        )),
        Some(n) => Ok(n),
        None => Ok(DEFAULT_UPCOMING),
    }
}

fn api_error(e: projectengine_core::Error) -> ApiError {
    ApiError::from(e).rename_field("timeout", "timeout_s")
}

/// Creates a schedule; it fires first at the next tick after now.
#[utoipa::path(
    post, path = "/api/schedules/", tag = "schedules",
    request_body = CreateScheduleBody,
    responses(
        (status = 201, description = "Created", body = ScheduleDto,
            headers(("Location" = String, description = "The schedule's URL"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`: `cron`, `timezone`, `kind`, …)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    OriginalUri(uri): OriginalUri,
    ApiJson(req): ApiJson<CreateScheduleBody>,
) -> ApiResult<Response> {
    let engine = state.engine();
    let create = CreateSchedule {
        name: req.name,
        cron: req.cron,
        timezone: req.timezone,
        template: req.template.into_core()?,
        overlap: req.overlap.map(Into::into),
        misfire: req.misfire.map(Into::into),
        enabled: req.enabled,
    };
    let s = engine
        .create_schedule(&owner, create)
        .await
        .map_err(api_error)?;
    let location = format!("{}/{}/", uri.path().trim_end_matches('/'), s.id);
    let dto = ScheduleDto::new(engine, s, DEFAULT_UPCOMING);
    let mut res = (StatusCode::CREATED, Json(dto)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Lists the caller's schedules, a cursor page at a time.
#[utoipa::path(
    get, path = "/api/schedules/", tag = "schedules",
    params(ListSchedulesQuery),
    responses(
        (status = 200, description = "A page of schedules", body = SchedulePage),
        (status = 400, description = "A parameter is invalid (named in `field`)", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    ApiQuery(q): ApiQuery<ListSchedulesQuery>,
) -> ApiResult<Json<SchedulePage>> {
    let n = upcoming(q.upcoming)?;
    let engine = state.engine();
    let page = engine
        .list_schedules(&owner, q.cursor, q.limit.unwrap_or(0))
        .await?;
    Ok(Json(SchedulePage {
        items: page
            .items
            .into_iter()
            .map(|s| ScheduleDto::new(engine, s, n))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Reads a schedule, with its next fire times.
#[utoipa::path(
    get, path = "/api/schedules/{id}/", tag = "schedules",
    params(("id" = String, Path, format = Uuid, description = "The schedule id"), UpcomingQuery),
    responses(
        (status = 200, description = "The schedule", body = ScheduleDto),
        (status = 400, description = "Bad id or parameter", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such schedule of the caller's", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn detail(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<ScheduleId>,
    ApiQuery(q): ApiQuery<UpcomingQuery>,
) -> ApiResult<Json<ScheduleDto>> {
    let n = upcoming(q.upcoming)?;
    let engine = state.engine();
    let s = engine.schedule(&owner, id).await?;
    Ok(Json(ScheduleDto::new(engine, s, n)))
}

/// Changes a schedule: its next tick is computed again from now.
#[utoipa::path(
    patch, path = "/api/schedules/{id}/", tag = "schedules",
    params(("id" = String, Path, format = Uuid, description = "The schedule id")),
    request_body = PatchScheduleBody,
    responses(
        (status = 200, description = "The schedule as changed", body = ScheduleDto),
        (status = 400, description = "Malformed JSON or bad id", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such schedule of the caller's", body = ErrorBody),
        (status = 409, description = "Changed by another request meanwhile", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<ScheduleId>,
    ApiJson(req): ApiJson<PatchScheduleBody>,
) -> ApiResult<Json<ScheduleDto>> {
    let engine = state.engine();
    let patch = SchedulePatch {
        name: req.name,
        cron: req.cron,
        timezone: req.timezone,
        template: req.template.map(TemplateDto::into_core).transpose()?,
        overlap: req.overlap.map(Into::into),
        misfire: req.misfire.map(Into::into),
        enabled: req.enabled,
    };
    let s = engine
        .update_schedule(&owner, id, patch)
        .await
        .map_err(api_error)?;
    Ok(Json(ScheduleDto::new(engine, s, DEFAULT_UPCOMING)))
}

/// Deletes a schedule (the jobs it created stay).
#[utoipa::path(
    delete, path = "/api/schedules/{id}/", tag = "schedules",
    params(("id" = String, Path, format = Uuid, description = "The schedule id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such schedule of the caller's", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<ScheduleId>,
) -> ApiResult<StatusCode> {
    state.engine().delete_schedule(&owner, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a schedule's fired ticks, newest first: each one's job, or why it
/// had none.
#[utoipa::path(
    get, path = "/api/schedules/{id}/runs/", tag = "schedules",
    params(("id" = String, Path, format = Uuid, description = "The schedule id"), RunsQuery),
    responses(
        (status = 200, description = "The runs", body = RunPage),
        (status = 400, description = "Bad id or parameter", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such schedule of the caller's", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn runs(
    State(state): State<ApiState>,
    Authenticated(owner): Authenticated,
    PathId(id): PathId<ScheduleId>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<Json<RunPage>> {
    let runs = state
        .engine()
        .schedule_runs(&owner, id, q.before, q.limit.unwrap_or(0))
        .await?;
    Ok(Json(RunPage {
        items: runs.into_iter().map(Into::into).collect(),
    }))
}
