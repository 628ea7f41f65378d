//! Schedules: jobs created from a template at the ticks of a cron expression.
//!
//! A [`Schedule`] holds a cron expression (five fields, or six with seconds
//! first), an IANA time zone, a [`JobTemplate`], an [`OverlapPolicy`] and a
//! [`MisfirePolicy`]. The expression is evaluated by the `croner` crate, in
//! the time zone (`chrono-tz`), with the DST rules of the Open Cron Pattern
//! Specification: in a spring-forward gap a fixed-time tick runs right after
//! the gap and interval ticks inside it are skipped; in a fall-back overlap a
//! fixed-time tick runs once and interval ticks run in both passes.
//!
//! Every worker runs the ticker ([`fire_due`]); any number may tick at once.
//! Each tick is fired by [`Store::fire_schedule`](crate::Store::fire_schedule):
//! one transaction that advances the schedule's `next_fire_at` by
//! compare-and-set on the value the ticker read, records the tick's
//! [`ScheduleRun`] (unique per schedule and tick), and creates the tick's job
//! under a deterministic id ([`tick_job_id`]). A second worker firing the same
//! tick finds `next_fire_at` moved and creates nothing; a worker killed in the
//! middle of a tick leaves either all of it or none of it.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Changed, Engine, Error, JobId, NewJob, Owner, Page, Result, Submit};

/// The id of a [`Schedule`] (UUID v7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScheduleId(pub uuid::Uuid);

impl ScheduleId {
    /// A new, time-ordered (UUID v7) id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl Default for ScheduleId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ScheduleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ScheduleId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

/// What to do when a tick comes while the schedule's previous job is still
/// queued or running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OverlapPolicy {
    /// Create no job for the tick; its run is recorded as skipped (`overlap`).
    #[default]
    Skip,
    /// Create the tick's job anyway.
    Allow,
}

impl OverlapPolicy {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            OverlapPolicy::Skip => "skip",
            OverlapPolicy::Allow => "allow",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "skip" => Some(OverlapPolicy::Skip),
            "allow" => Some(OverlapPolicy::Allow),
            _ => None,
        }
    }
}

/// What to do with ticks missed while no worker ticked (downtime): a tick
/// is missed when it is more than the ticker's grace period in the past.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MisfirePolicy {
    /// Fire nothing for the missed ticks (the first is recorded as skipped,
    /// `misfire`) and go on with the next tick in the future.
    #[default]
    Skip,
    /// Fire one job for all the missed ticks (under the first's id), then go
    /// on with the next tick in the future.
    RunOnce,
}

impl MisfirePolicy {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            MisfirePolicy::Skip => "skip",
            MisfirePolicy::RunOnce => "run_once",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "skip" => Some(MisfirePolicy::Skip),
            "run_once" => Some(MisfirePolicy::RunOnce),
            _ => None,
        }
    }
}

/// The job a schedule creates at each tick: a submission without `run_at`
/// (a tick's job is due at once). Unset fields take the engine's defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobTemplate {
    /// What to do.
    pub prompt: String,
    /// Orchestrator kind (must be registered); the default kind when `None`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Parameters: a JSON object.
    #[serde(default)]
    pub params: Option<Value>,
    /// Higher runs first.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Attempts allowed.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Per-attempt timeout, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl JobTemplate {
    /// The submission this template makes.
    pub fn to_submit(&self) -> Submit {
        Submit {
            prompt: self.prompt.clone(),
            kind: self.kind.clone(),
            params: self.params.clone(),
            priority: self.priority,
            max_attempts: self.max_attempts,
            timeout: self.timeout_ms.map(Duration::from_millis),
            run_at: None,
            webhook: None,
            review: false,
            project: None,
            depends_on: Vec::new(),
            concurrency_key: None,
            concurrency_limit: None,
        }
    }
}

/// A schedule, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Its id.
    pub id: ScheduleId,
    /// Who owns it (and its jobs).
    pub owner: Owner,
    /// A name for people.
    pub name: String,
    /// The cron expression (five fields, or six with seconds first).
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// The job each tick creates.
    pub template: JobTemplate,
    /// When a tick finds the previous job unfinished.
    pub overlap: OverlapPolicy,
    /// When ticks were missed.
    pub misfire: MisfirePolicy,
    /// A paused schedule does not fire.
    pub enabled: bool,
    /// The next tick to fire; `None` when paused or when the expression has
    /// no tick left.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The job of the latest fired tick.
    pub last_job_id: Option<JobId>,
    /// Bumped by every change of the settings; an update names the revision
    /// it was made from.
    pub revision: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its last change of settings.
    pub updated_at: DateTime<Utc>,
}

/// A schedule's settings, validated: what [`Store::create_schedule`] and
/// [`Store::update_schedule`] write (with the first tick after now).
///
/// [`Store::create_schedule`]: crate::Store::create_schedule
/// [`Store::update_schedule`]: crate::Store::update_schedule
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSettings {
    /// A name for people.
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub timezone: String,
    /// The job each tick creates.
    pub template: JobTemplate,
    /// Overlap policy.
    pub overlap: OverlapPolicy,
    /// Misfire policy.
    pub misfire: MisfirePolicy,
    /// Whether it fires.
    pub enabled: bool,
    /// The first tick to fire (`None` when paused or without a tick left).
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// A new schedule, as handed to [`Store::create_schedule`](crate::Store::create_schedule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewSchedule {
    /// The id to create it with.
    pub id: ScheduleId,
    /// Its owner.
    pub owner: Owner,
    /// Its settings.
    pub settings: ScheduleSettings,
}

/// What a client may submit to create a schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateSchedule {
    /// A name for people (default: the cron expression).
    pub name: Option<String>,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone (default `UTC`).
    pub timezone: Option<String>,
    /// The job each tick creates.
    pub template: JobTemplate,
    /// Overlap policy (default `skip`).
    pub overlap: Option<OverlapPolicy>,
    /// Misfire policy (default `skip`).
    pub misfire: Option<MisfirePolicy>,
    /// Whether it fires (default `true`).
    pub enabled: Option<bool>,
}

/// A change of a schedule's settings: each set field replaces the current one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedulePatch {
    /// New name.
    pub name: Option<String>,
    /// New cron expression.
    pub cron: Option<String>,
    /// New time zone.
    pub timezone: Option<String>,
    /// New template.
    pub template: Option<JobTemplate>,
    /// New overlap policy.
    pub overlap: Option<OverlapPolicy>,
    /// New misfire policy.
    pub misfire: Option<MisfirePolicy>,
    /// Pause (`false`) or resume (`true`).
    pub enabled: Option<bool>,
}

/// Why a tick created no job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// The previous job was still unfinished ([`OverlapPolicy::Skip`]).
    Overlap,
    /// The tick was missed during downtime ([`MisfirePolicy::Skip`]).
    Misfire,
    /// The template no longer makes a valid job (e.g. its kind is gone).
    Invalid,
}

impl SkipReason {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Overlap => "overlap",
            SkipReason::Misfire => "misfire",
            SkipReason::Invalid => "invalid",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "overlap" => Some(SkipReason::Overlap),
            "misfire" => Some(SkipReason::Misfire),
            "invalid" => Some(SkipReason::Invalid),
            _ => None,
        }
    }
}

/// One fired tick of a schedule: its job, or why it had none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRun {
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// The tick.
    pub tick: DateTime<Utc>,
    /// The job created for it.
    pub job_id: Option<JobId>,
    /// Why none was.
    pub skipped: Option<SkipReason>,
    /// When it was fired.
    pub fired_at: DateTime<Utc>,
}

/// One tick to fire, planned by [`plan_fire`] and executed by
/// [`Store::fire_schedule`](crate::Store::fire_schedule) in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleFire {
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// The tick fired: the run's key.
    pub tick: DateTime<Utc>,
    /// The `next_fire_at` the plan starts from (compare-and-set).
    pub expected_next_fire_at: DateTime<Utc>,
    /// The `next_fire_at` after it.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The job to create (with its [`tick_job_id`]), or why none is.
    pub job: std::result::Result<NewJob, SkipReason>,
    /// Skip the job (`overlap`) while the schedule's last job is not finished.
    pub skip_if_running: bool,
}

/// What [`Store::fire_schedule`](crate::Store::fire_schedule) did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
// Answered once per tick and matched at once: boxing the job would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Fired {
    /// The tick's job was created (with its first event).
    Job(Changed),
    /// The tick was recorded without a job.
    Skipped(SkipReason),
    /// The schedule's `next_fire_at` was no longer the plan's (another worker
    /// fired the tick, the schedule changed or is gone): nothing was done.
    AlreadyFired,
}

/// A parsed cron expression in its time zone.
#[derive(Clone, Debug)]
pub struct CronSpec {
    cron: Cron,
    tz: Tz,
}

impl CronSpec {
    /// Parses `cron` (five fields, or six with seconds first; `@daily` and
    /// the like) and `timezone` (an IANA name such as `Europe/Paris`).
    /// A bad expression is [`Error::Invalid`] naming `cron`, an unknown time
    /// zone one naming `timezone`.
    pub fn parse(cron: &str, timezone: &str) -> Result<Self> {
        let tz: Tz = timezone
            .parse()
            .map_err(|_| Error::invalid("timezone", format!("unknown time zone `{timezone}`")))?;
        if cron.trim().is_empty() {
            return Err(Error::invalid("cron", "must not be empty"));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| Error::invalid("cron", e.to_string()))?;
        Ok(Self { cron, tz })
    }

    /// The first tick strictly after `after`, if any.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Up to `n` ticks strictly after `after`, in order.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }
}

/// The deterministic id of a schedule's job for a tick: a UUID v7 whose
/// timestamp is the tick's and whose random bits are a SHA-256 of the
/// schedule id and the tick, so every worker names the tick's job alike and
/// the owner's job list stays in time order.
pub fn tick_job_id(schedule: ScheduleId, tick: DateTime<Utc>) -> JobId {
    let mut h = Sha256::new();
    h.update(b"projectengine schedule tick\0");
    h.update(schedule.0.as_bytes());
    h.update(tick.timestamp().to_be_bytes());
    h.update(tick.timestamp_subsec_nanos().to_be_bytes());
    let digest = h.finalize();
    let mut rand = [0u8; 10];
    rand.copy_from_slice(&digest[..10]);
    let millis = u64::try_from(tick.timestamp_millis()).unwrap_or(0);
    JobId(uuid::Builder::from_unix_timestamp_millis(millis, &rand).into_uuid())
}

/// Plans the firing of `schedule`'s due tick at `now`: `None` when it has no
/// tick due. A tick more than `grace` in the past was missed, and its
/// [`MisfirePolicy`] decides; otherwise the tick fires and the next is the
/// one after it (so a short stall catches up tick by tick). `job` is the
/// template's job (validated by the engine) or why there is none.
pub fn plan_fire(
    schedule: &Schedule,
    spec: &CronSpec,
    now: DateTime<Utc>,
    grace: Duration,
    job: std::result::Result<NewJob, SkipReason>,
) -> Option<ScheduleFire> {
    let tick = schedule.next_fire_at?;
    if !schedule.enabled || tick > now {
        return None;
    }
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let missed = now - tick > grace;
    let (next_fire_at, job) = if missed {
        let job = match schedule.misfire {
            MisfirePolicy::Skip => Err(SkipReason::Misfire),
            MisfirePolicy::RunOnce => job,
        };
        (spec.next_after(now), job)
    } else {
        (spec.next_after(tick), job)
    };
    let job = job.map(|mut j| {
        j.id = tick_job_id(schedule.id, tick);
        j.owner = schedule.owner.clone();
        j
    });
    Some(ScheduleFire {
        schedule_id: schedule.id,
        tick,
        expected_next_fire_at: tick,
        next_fire_at,
        job,
        skip_if_running: schedule.overlap == OverlapPolicy::Skip,
    })
}

/// What one pass of the ticker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Jobs created.
    pub created: usize,
    /// Ticks recorded without a job.
    pub skipped: usize,
    /// Ticks another worker fired first.
    pub lost_races: usize,
}

/// Most ticks one schedule fires in one pass (a schedule that fell far
/// behind within the grace period catches up over a few passes).
const MAX_TICKS_PER_PASS: usize = 100;

/// One pass of the ticker: every due schedule fires its due ticks, each in
/// one [`Store::fire_schedule`](crate::Store::fire_schedule); created jobs
/// are published and pushed to their queue. Safe with any number of workers
/// at once. A job created whose push was lost is pushed by recovery.
pub async fn fire_due(engine: &Engine, grace: Duration) -> Result<TickReport> {
    let mut report = TickReport::default();
    for schedule in engine.store().due_schedules(256).await? {
        let spec = match CronSpec::parse(&schedule.cron, &schedule.timezone) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::warn!(schedule_id = %schedule.id, error = %e, "schedule has a bad cron expression; not fired");
                continue;
            }
        };
        let mut schedule = schedule;
        for _ in 0..MAX_TICKS_PER_PASS {
            let job = engine
                .validate(&schedule.owner, schedule.template.to_submit())
                .map(|mut j| {
                    j.max_queued = None;
                    j
                })
                .map_err(|e| {
                    tracing::warn!(schedule_id = %schedule.id, error = %e, "schedule's template makes no valid job");
                    SkipReason::Invalid
                });
            let Some(plan) = plan_fire(&schedule, &spec, Utc::now(), grace, job) else {
                break;
            };
            let next = plan.next_fire_at;
            let tick = plan.tick;
            match engine.store().fire_schedule(plan).await? {
                Fired::Job(changed) => {
                    report.created += 1;
                    tracing::info!(schedule_id = %schedule.id, job_id = %changed.job.id, %tick, "schedule fired");
                    engine.metrics().submitted(&changed.job.kind);
                    tokio::join!(
                        engine.publish(&changed.job.kind, &changed.events),
                        engine.wake(&changed.job)
                    );
                    schedule.last_job_id = Some(changed.job.id);
                }
                Fired::Skipped(reason) => {
                    report.skipped += 1;
                    tracing::info!(schedule_id = %schedule.id, %tick, reason = reason.as_str(), "schedule tick skipped");
                }
                Fired::AlreadyFired => {
                    report.lost_races += 1;
                    break;
                }
            }
            schedule.next_fire_at = next;
        }
    }
    Ok(report)
}

/// Runs [`fire_due`] every `every` until `stop` fires.
pub(crate) async fn run(
    engine: Engine,
    every: Duration,
    grace: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = fire_due(&engine, grace).await {
            tracing::warn!(error = %e, "schedule ticker pass failed; will try again");
        }
    }
}

/// How many upcoming ticks [`Engine::next_fire_times`] shows at most.
pub const MAX_UPCOMING: usize = 100;

impl Engine {
    fn schedule_settings(
        &self,
        owner: &Owner,
        s: ScheduleSettingsDraft,
        now: DateTime<Utc>,
    ) -> Result<ScheduleSettings> {
        let spec = CronSpec::parse(&s.cron, &s.timezone)?;
        if s.name.len() > 200 {
            return Err(Error::invalid("name", "must be at most 200 bytes"));
        }
        if s.template.timeout_ms == Some(0) {
            return Err(Error::invalid("timeout_ms", "must be positive"));
        }
        // The template must make a valid job now: its kind registered, its
        // fields within the limits.
        self.validate(owner, s.template.to_submit())?;
        let next_fire_at = if s.enabled {
            spec.next_after(now)
        } else {
            None
        };
        Ok(ScheduleSettings {
            name: s.name,
            cron: s.cron,
            timezone: s.timezone,
            template: s.template,
            overlap: s.overlap,
            misfire: s.misfire,
            enabled: s.enabled,
            next_fire_at,
        })
    }

    /// Creates the owner's schedule; it first fires at the first tick after now.
    pub async fn create_schedule(&self, owner: &Owner, req: CreateSchedule) -> Result<Schedule> {
        let draft = ScheduleSettingsDraft {
            name: req
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| req.cron.clone()),
            timezone: req.timezone.unwrap_or_else(|| "UTC".to_owned()),
            cron: req.cron,
            template: req.template,
            overlap: req.overlap.unwrap_or_default(),
            misfire: req.misfire.unwrap_or_default(),
            enabled: req.enabled.unwrap_or(true),
        };
        let settings = self.schedule_settings(owner, draft, Utc::now())?;
        self.store()
            .create_schedule(NewSchedule {
                id: ScheduleId::new(),
                owner: owner.clone(),
                settings,
            })
            .await
    }

    /// The owner's schedule.
    pub async fn schedule(&self, owner: &Owner, id: ScheduleId) -> Result<Schedule> {
        match self.store().get_schedule(id).await? {
            Some(s) if &s.owner == owner => Ok(s),
            _ => Err(Error::not_found("schedule")),
        }
    }

    /// A page of the owner's schedules, oldest first, after `cursor`.
    pub async fn list_schedules(
        &self,
        owner: &Owner,
        cursor: Option<ScheduleId>,
        limit: usize,
    ) -> Result<Page<Schedule>> {
        let limit = if limit == 0 { 50 } else { limit.clamp(1, 500) };
        let mut items = self
            .store()
            .list_schedules(owner, cursor, limit + 1)
            .await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|s| s.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Changes the owner's schedule: the set fields replace the current
    /// ones, and the next tick is computed again from now. A concurrent
    /// change of the same schedule is a [`Error::Conflict`].
    pub async fn update_schedule(
        &self,
        owner: &Owner,
        id: ScheduleId,
        patch: SchedulePatch,
    ) -> Result<Schedule> {
        let current = self.schedule(owner, id).await?;
        let draft = ScheduleSettingsDraft {
            name: patch.name.unwrap_or(current.name),
            cron: patch.cron.unwrap_or(current.cron),
            timezone: patch.timezone.unwrap_or(current.timezone),
            template: patch.template.unwrap_or(current.template),
            overlap: patch.overlap.unwrap_or(current.overlap),
            misfire: patch.misfire.unwrap_or(current.misfire),
            enabled: patch.enabled.unwrap_or(current.enabled),
        };
        let settings = self.schedule_settings(owner, draft, Utc::now())?;
        self.store()
            .update_schedule(id, current.revision, settings)
            .await
    }

    /// Deletes the owner's schedule (its jobs stay).
    pub async fn delete_schedule(&self, owner: &Owner, id: ScheduleId) -> Result<()> {
        self.schedule(owner, id).await?;
        self.store().delete_schedule(id).await
    }

    /// The owner's schedule's fired ticks, newest first, before `before`.
    pub async fn schedule_runs(
        &self,
        owner: &Owner,
        id: ScheduleId,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<ScheduleRun>> {
        self.schedule(owner, id).await?;
        let limit = if limit == 0 { 50 } else { limit.clamp(1, 500) };
        self.store().schedule_runs(id, before, limit).await
    }

    /// The schedule's next `n` ticks (at most [`MAX_UPCOMING`]), from its
    /// `next_fire_at`; none when it is paused.
    pub fn next_fire_times(&self, schedule: &Schedule, n: usize) -> Vec<DateTime<Utc>> {
        let (Some(first), Ok(spec)) = (
            schedule.next_fire_at,
            CronSpec::parse(&schedule.cron, &schedule.timezone),
        ) else {
            return Vec::new();
        };
        let n = n.min(MAX_UPCOMING);
        if n == 0 {
            return Vec::new();
        }
        let mut out = vec![first];
        out.extend(spec.upcoming(first, n - 1));
        out
    }
}

struct ScheduleSettingsDraft {
    name: String,
    cron: String,
    timezone: String,
    template: JobTemplate,
    overlap: OverlapPolicy,
    misfire: MisfirePolicy,
    enabled: bool,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn seconds_are_optional() {
        let five = CronSpec::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            five.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-01T00:15:00Z"))
        );
        let six = CronSpec::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(
            six.upcoming(utc("2026-01-01T00:00:00Z"), 2),
            vec![utc("2026-01-01T00:00:10Z"), utc("2026-01-01T00:00:20Z")]
        );
    }

    #[test]
    fn bad_input_names_its_field() {
        let e = CronSpec::parse("61 * * * *", "UTC").unwrap_err();
        assert!(matches!(e, Error::Invalid { field: "cron", .. }), "{e}");
        let e = CronSpec::parse("", "UTC").unwrap_err();
        assert!(matches!(e, Error::Invalid { field: "cron", .. }), "{e}");
        let e = CronSpec::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(
            matches!(
                e,
                Error::Invalid {
                    field: "timezone",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn daily_ticks_keep_their_wall_clock_across_dst() {
        // Europe/Paris springs forward on 2026-03-29 (02:00 → 03:00).
        let spec = CronSpec::parse("0 9 * * *", "Europe/Paris").unwrap();
        let ticks = spec.upcoming(utc("2026-03-28T00:00:00Z"), 2);
        // 09:00 CET is 08:00 UTC, 09:00 CEST is 07:00 UTC.
        assert_eq!(
            ticks,
            vec![utc("2026-03-28T08:00:00Z"), utc("2026-03-29T07:00:00Z")]
        );
    }

    #[test]
    fn a_tick_in_the_spring_forward_gap_runs_after_it_once() {
        let spec = CronSpec::parse("30 2 * * *", "Europe/Paris").unwrap();
        let paris = chrono_tz::Europe::Paris;
        let ticks = spec.upcoming(utc("2026-03-28T12:00:00Z"), 2);
        // 02:30 does not exist on the 29th: it runs at 03:00 CEST.
        assert_eq!(
            ticks[0],
            paris
                .with_ymd_and_hms(2026, 3, 29, 3, 0, 0)
                .unwrap()
                .with_timezone(&Utc)
        );
        assert_eq!(
            ticks[1],
            paris
                .with_ymd_and_hms(2026, 3, 30, 2, 30, 0)
                .unwrap()
                .with_timezone(&Utc)
        );
    }

    #[test]
    fn a_tick_in_the_fall_back_overlap_runs_once() {
        // Europe/Paris falls back on 2026-10-25 (03:00 → 02:00): 02:30 happens twice.
        let spec = CronSpec::parse("30 2 * * *", "Europe/Paris").unwrap();
        let ticks = spec.upcoming(utc("2026-10-24T12:00:00Z"), 2);
        assert_eq!(
            ticks,
            vec![utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
        );
    }

    #[test]
    fn tick_job_ids_are_deterministic_v7_in_tick_order() {
        let s = ScheduleId::new();
        let t = utc("2026-01-01T00:00:00Z");
        let a = tick_job_id(s, t);
        assert_eq!(a, tick_job_id(s, t));
        assert_eq!(a.0.get_version(), Some(uuid::Version::SortRand));
        assert_ne!(a, tick_job_id(ScheduleId::new(), t));
        let later = tick_job_id(s, t + chrono::Duration::seconds(1));
        assert!(later > a);
    }

    fn schedule(misfire: MisfirePolicy, next: DateTime<Utc>) -> Schedule {
        Schedule {
            id: ScheduleId::new(),
            owner: Owner::new("o"),
            name: "n".into(),
            cron: "* * * * * *".into(),
            timezone: "UTC".into(),
            template: JobTemplate::default(),
            overlap: OverlapPolicy::Allow,
            misfire,
            enabled: true,
            next_fire_at: Some(next),
            last_job_id: None,
            revision: 1,
            created_at: next,
            updated_at: next,
        }
    }

    #[test]
    fn plans_fire_the_due_tick_or_apply_the_misfire_policy() {
        let spec = CronSpec::parse("* * * * * *", "UTC").unwrap();
        let t = utc("2026-01-01T00:00:00Z");
        let grace = Duration::from_secs(30);
        let job = || Err(SkipReason::Invalid);
        let s = schedule(MisfirePolicy::Skip, t);
        // Not due yet.
        assert!(plan_fire(&s, &spec, t - chrono::Duration::seconds(1), grace, job()).is_none());
        // Due within the grace: the next tick follows this one.
        let p = plan_fire(&s, &spec, t + chrono::Duration::seconds(5), grace, job()).unwrap();
        assert_eq!(p.expected_next_fire_at, t);
        assert_eq!(p.next_fire_at, Some(t + chrono::Duration::seconds(1)));
        // Missed, skip: no job, the next tick is after now.
        let now = t + chrono::Duration::seconds(3600);
        let p = plan_fire(&s, &spec, now, grace, job()).unwrap();
        assert_eq!(p.job, Err(SkipReason::Misfire));
        assert_eq!(p.next_fire_at, Some(now + chrono::Duration::seconds(1)));
        // Paused: nothing.
        let mut paused = s.clone();
        paused.enabled = false;
        assert!(plan_fire(&paused, &spec, now, grace, job()).is_none());
    }
}
