use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

mod dependencies;

use super::hash::{IdMap, IdSet};
use crate::artifact::check_job_bytes;
use crate::concurrency;
use crate::retention::{self, Purged};
use crate::schedule::{
    Fired, NewSchedule, Schedule, ScheduleFire, ScheduleId, ScheduleRun, ScheduleSettings,
    SkipReason,
};
use crate::transition::{self, lease_until, CancelPlan};
use crate::{
    App, AppId, Artifact, ArtifactStored, Attempt, AttemptId, AttemptStatus, Changed, Claim,
    Created, DeliveryId, DeliveryLog, DeliveryNext, DeliveryStatus, DeliveryTry, Destination,
    DueJob, Error, EventData, Fence, Heartbeat, IdempotencyKey, Job, JobEvent, JobId, JobQuery,
    JobStatus, NewApp, NewArtifact, NewJob, NewTry, Outcome, Owner, Project, Result,
    ReviewDecision, SavedArtifact, Store, WebhookDelivery,
};

/// A [`Store`] in this process's memory: one lock over everything, so every
/// change is trivially atomic.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: IdMap<JobId, Record>,
    /// Ids by owner: one map entry per owner, so adding a job neither clones
    /// the owner nor compares owner strings at every level of a big tree.
    by_owner: BTreeMap<Owner, BTreeSet<JobId>>,
    running: IdSet<JobId>,
    queued: BTreeSet<(DateTime<Utc>, JobId)>,
    /// How many `queued` jobs each owner has, for quotas.
    queued_per_owner: HashMap<Owner, u32>,
    /// How many `running` jobs each owner has per concurrency key.
    running_per_key: HashMap<(Owner, String), u64>,
    apps: IdMap<AppId, App>,
    apps_by_owner: BTreeMap<Owner, BTreeSet<AppId>>,
    app_by_job: IdMap<JobId, AppId>,
    /// Jobs' artifacts, by name; only jobs that have some are here.
    artifacts: IdMap<JobId, BTreeMap<String, Artifact>>,
    /// The webhook outbox, with each delivery's tries.
    deliveries: BTreeMap<DeliveryId, DeliveryLog>,
    deliveries_by_job: IdMap<JobId, Vec<DeliveryId>>,
    /// Pending deliveries by `next_at`.
    due_deliveries: BTreeSet<(DateTime<Utc>, DeliveryId)>,
    /// Child jobs by parent, then by key.
    children: IdMap<JobId, BTreeMap<String, JobId>>,
    /// Idempotency keys by owner and key: the request's hash, the job, and
    /// when the key expires.
    idempotency: HashMap<(Owner, String), (String, JobId, DateTime<Utc>)>,
    /// The same keys by expiry, to drop the expired ones.
    idempotency_expiry: BTreeSet<(DateTime<Utc>, Owner, String)>,
    /// The jobs that depend on a job, by its id.
    dependents: IdMap<JobId, Vec<JobId>>,
    /// Schedules, and their runs by schedule and tick.
    schedules: BTreeMap<ScheduleId, Schedule>,
    schedule_runs: BTreeMap<(ScheduleId, DateTime<Utc>), ScheduleRun>,
}

/// Events a job's log has room for from the start: a job without retries or
/// logs has its status events, a few steps and its app, so this usually
/// spares the log every regrowth. 11 [`Logged`] events take 968 bytes,
/// just under glibc's 1 KiB "large request" size, which would make every
/// job's log consolidate the allocator's fast bins.
const EVENTS_RESERVED: usize = 11;

/// Adds `id` to `owner`'s ids, cloning the owner only for its first entry.
fn index_owner<I: Ord>(index: &mut BTreeMap<Owner, BTreeSet<I>>, owner: &Owner, id: I) {
    match index.get_mut(owner) {
        Some(ids) => {
            ids.insert(id);
        }
        None => {
            index.insert(owner.clone(), BTreeSet::from([id]));
        }
    }
}

#[derive(Debug)]
struct Record {
    job: Job,
    /// The event with seq `n` is at index `n - 1`.
    events: Vec<Logged>,
    attempts: Vec<Attempt>,
    /// The last numbered batch applied by [`Store::append_batch`]: the
    /// attempt's number and the batch's. Only the running attempt appends,
    /// so the last attempt's number is all there is to remember.
    last_batch: (u32, u64),
}

/// A [`JobEvent`] in its job's log, without what the log already knows (the
/// job id, and the seq, which is the index + 1): 88 bytes instead of 112.
#[derive(Debug)]
struct Logged {
    at: DateTime<Utc>,
    attempt: u32,
    data: EventData,
}

impl Record {
    fn push(&mut self, data: EventData, now: DateTime<Utc>) -> JobEvent {
        let copy = data.clone();
        self.push_copy(data, copy, now)
    }

    /// Like [`Record::push`], with the returned event's copy of `data` made by
    /// the caller, before it took the store's lock.
    fn push_copy(&mut self, data: EventData, copy: EventData, now: DateTime<Utc>) -> JobEvent {
        let seq = self.job.last_seq + 1;
        self.job.last_seq = seq;
        self.job.updated_at = now;
        self.events.push(Logged {
            at: now,
            attempt: self.job.attempt,
            data,
        });
        JobEvent {
            job_id: self.job.id,
            seq,
            attempt: self.job.attempt,
            at: now,
            data: copy,
        }
    }

    /// Appends an attempt's reports (checked by [`appendable`]), updating
    /// the job's stage and progress.
    fn append(
        &mut self,
        events: Vec<EventData>,
        copies: Vec<EventData>,
        now: DateTime<Utc>,
    ) -> Vec<JobEvent> {
        let mut out = Vec::with_capacity(events.len());
        for (data, copy) in events.into_iter().zip(copies) {
            match &data {
                EventData::Stage { stage } => self.job.stage = Some(stage.clone()),
                EventData::Progress { progress } => self.job.progress = *progress,
                _ => {}
            }
            out.push(self.push_copy(data, copy, now));
        }
        out
    }

    /// Events with `seq > after`, at most `limit`.
    fn events_after(&self, after: u64, limit: usize) -> Vec<JobEvent> {
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(self.events.len());
        self.events[start..]
            .iter()
            .take(limit)
            .zip(start as u64 + 1..)
            .map(|(e, seq)| JobEvent {
                job_id: self.job.id,
                seq,
                attempt: e.attempt,
                at: e.at,
                data: e.data.clone(),
            })
            .collect()
    }

    /// The running attempt the fence names, or `StaleAttempt`.
    fn fenced(&mut self, fence: Fence) -> Result<usize> {
        if !transition::holds(&self.job, fence) {
            return Err(Error::StaleAttempt);
        }
        let idx = self
            .attempts
            .iter()
            .rposition(|a| a.number == fence.attempt)
            .ok_or(Error::StaleAttempt)?;
        if self.attempts[idx].status != AttemptStatus::Running {
            return Err(Error::StaleAttempt);
        }
        Ok(idx)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied change:
        // every method validates before it writes.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Deletes a finished job and everything it left (its idempotency keys
    /// aside: see `purge_finished`).
    fn purge(&mut self, id: JobId) -> Purged {
        let rec = self.jobs.remove(&id).expect("a purged job exists");
        let job = rec.job;
        if let Some(ids) = self.by_owner.get_mut(&job.owner) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_owner.remove(&job.owner);
            }
        }
        if let Some(app_id) = self.app_by_job.remove(&id) {
            self.apps.remove(&app_id);
            if let Some(ids) = self.apps_by_owner.get_mut(&job.owner) {
                ids.remove(&app_id);
                if ids.is_empty() {
                    self.apps_by_owner.remove(&job.owner);
                }
            }
        }
        let blobs = self
            .artifacts
            .remove(&id)
            .into_iter()
            .flat_map(|named| named.into_values().map(|a| a.blob))
            .collect();
        for delivery in self.deliveries_by_job.remove(&id).into_iter().flatten() {
            self.deliveries.remove(&delivery);
        }
        self.children.remove(&id);
        if let (Some(parent), Some(key)) = (job.parent_id, &job.child_key) {
            if let Some(children) = self.children.get_mut(&parent) {
                children.remove(key);
            }
        }
        self.dependents.remove(&id);
        for dependency in &job.depends_on {
            if let Some(dependents) = self.dependents.get_mut(dependency) {
                dependents.retain(|d| *d != id);
            }
        }
        Purged { job_id: id, blobs }
    }
    /// Writes the outbox rows of a job that a transition just left as `job`:
    /// nothing unless it ended and has destinations.
    fn write_outbox(&mut self, job: &Job, now: DateTime<Utc>) {
        for destination in transition::webhook_destinations(job) {
            let delivery = WebhookDelivery {
                id: DeliveryId::new(),
                job_id: job.id,
                destination,
                url: match destination {
                    Destination::Job => job.webhook.clone(),
                    _ => None,
                },
                job_status: job.status,
                job_error: job.error.clone(),
                occurred_at: job.finished_at.unwrap_or(now),
                status: DeliveryStatus::Pending,
                tries: 0,
                next_at: now,
                created_at: now,
                updated_at: now,
            };
            let id = delivery.id;
            self.due_deliveries.insert((now, id));
            self.deliveries_by_job.entry(job.id).or_default().push(id);
            self.deliveries.insert(
                id,
                DeliveryLog {
                    delivery,
                    tries: Vec::new(),
                },
            );
        }
    }

    fn record(&mut self, id: JobId) -> Result<&mut Record> {
        self.jobs.get_mut(&id).ok_or(Error::not_found("job"))
    }

    /// Keeps the status indexes in step with a status change (`old` is
    /// `None` for a new job).
    fn reindex(
        &mut self,
        id: JobId,
        old: Option<(JobStatus, DateTime<Utc>)>,
        new: (JobStatus, DateTime<Utc>),
    ) {
        match old {
            Some((JobStatus::Running, _)) => {
                self.running.remove(&id);
            }
            Some((JobStatus::Queued, at)) => {
                self.queued.remove(&(at, id));
            }
            _ => {}
        }
        match new.0 {
            JobStatus::Running => {
                self.running.insert(id);
            }
            JobStatus::Queued => {
                self.queued.insert((new.1, id));
            }
            _ => {}
        }
        let was_running = matches!(old, Some((JobStatus::Running, _)));
        let is_running = new.0 == JobStatus::Running;
        if was_running != is_running {
            let job = &self.jobs[&id].job;
            if let Some(key) = &job.concurrency_key {
                let slot = (job.owner.clone(), key.clone());
                if is_running {
                    *self.running_per_key.entry(slot).or_default() += 1;
                } else if let Some(n) = self.running_per_key.get_mut(&slot) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.running_per_key.remove(&slot);
                    }
                }
            }
        }
        let was = matches!(old, Some((JobStatus::Queued, _)));
        let is = new.0 == JobStatus::Queued;
        if was != is {
            let owner = &self.jobs[&id].job.owner;
            let n = self.queued_per_owner.get_mut(owner);
            match (n, is) {
                (Some(n), true) => *n += 1,
                (Some(n), false) => *n = n.saturating_sub(1),
                (None, true) => {
                    self.queued_per_owner.insert(owner.clone(), 1);
                }
                (None, false) => {}
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_job(&self, new: NewJob) -> Result<Changed> {
        // Everything that allocates is prepared before taking the lock, which
        // every worker thread contends for.
        let now = Utc::now();
        let record = new_record(&new, now);
        let mut inner = self.lock();
        let changed = inner.insert(&new, record, &[], now)?;
        drop(inner);
        Ok(changed)
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        Ok(self.lock().jobs.get(&id).map(|r| r.job.clone()))
    }

    async fn list_jobs(&self, owner: &Owner, query: &JobQuery) -> Result<Vec<Job>> {
        let inner = self.lock();
        let Some(ids) = inner.by_owner.get(owner) else {
            return Ok(Vec::new());
        };
        let keep = |id: &&JobId| {
            let job = &inner.jobs[*id].job;
            query.status.is_none_or(|s| job.status == s)
                && query
                    .project
                    .as_ref()
                    .is_none_or(|p| job.project.as_ref() == Some(p))
                && query.kind.as_ref().is_none_or(|k| &job.kind == k)
        };
        let jobs: Vec<Job> = if query.newest_first {
            ids.iter()
                .rev()
                .filter(|id| query.cursor.is_none_or(|c| **id < c))
                .filter(keep)
                .take(query.limit)
                .map(|id| inner.jobs[id].job.clone())
                .collect()
        } else {
            ids.iter()
                .filter(|id| query.cursor.is_none_or(|c| **id > c))
                .filter(keep)
                .take(query.limit)
                .map(|id| inner.jobs[id].job.clone())
                .collect()
        };
        Ok(jobs)
    }

    async fn claim(&self, id: JobId, worker_id: &str, lease: Duration) -> Result<Option<Claim>> {
        let now = Utc::now();
        // The attempt (and the copy kept) are made before taking the lock; the
        // number is filled in under it.
        let mut attempt = Attempt {
            id: AttemptId::new(),
            job_id: id,
            number: 0,
            worker_id: worker_id.to_owned(),
            status: AttemptStatus::Running,
            lease_expires_at: lease_until(now, lease),
            started_at: now,
            finished_at: None,
            error: None,
        };
        let mut stored = attempt.clone();
        let plan = transition::plan_claim();
        let mut inner = self.lock();
        let Some(rec) = inner.jobs.get(&id) else {
            return Ok(None);
        };
        if !transition::claimable(&rec.job, now) {
            return Ok(None);
        }
        if let (Some(key), Some(limit)) = (&rec.job.concurrency_key, rec.job.concurrency_limit) {
            let running = inner
                .running_per_key
                .get(&(rec.job.owner.clone(), key.clone()))
                .copied()
                .unwrap_or(0);
            if !concurrency::admits(running, limit) {
                return Ok(None);
            }
        }
        let Some(rec) = inner.jobs.get_mut(&id) else {
            return Ok(None);
        };
        let old = (rec.job.status, rec.job.run_at);
        plan.apply_to(&mut rec.job, now);
        attempt.number = rec.job.attempt;
        stored.number = rec.job.attempt;
        // Most jobs run once: grow the list one attempt at a time.
        rec.attempts.reserve_exact(1);
        rec.attempts.push(stored);
        let events: Vec<JobEvent> = plan.events.into_iter().map(|d| rec.push(d, now)).collect();
        let job = rec.job.clone();
        inner.reindex(id, Some(old), (job.status, job.run_at));
        Ok(Some(Claim {
            job,
            attempt,
            events,
        }))
    }

    async fn append(&self, fence: Fence, events: Vec<EventData>) -> Result<Vec<JobEvent>> {
        transition::check_appendable(&events)?;
        let now = Utc::now();
        // The copies to return are made before taking the lock.
        let copies = events.clone();
        let mut inner = self.lock();
        let rec = inner
            .record(fence.job_id)
            .map_err(|_| Error::StaleAttempt)?;
        rec.fenced(fence)?;
        Ok(rec.append(events, copies, now))
    }

    async fn append_batch(
        &self,
        fence: Fence,
        batch: u64,
        events: Vec<EventData>,
    ) -> Result<Option<Vec<JobEvent>>> {
        transition::check_appendable(&events)?;
        if batch == 0 {
            return Err(Error::invalid("batch", "must be at least 1"));
        }
        let now = Utc::now();
        let copies = events.clone();
        let mut inner = self.lock();
        let rec = inner
            .record(fence.job_id)
            .map_err(|_| Error::StaleAttempt)?;
        rec.fenced(fence)?;
        let last = match rec.last_batch {
            (attempt, last) if attempt == fence.attempt => last,
            _ => 0,
        };
        transition::check_batch(last, batch)?;
        if batch <= last {
            return Ok(None);
        }
        rec.last_batch = (fence.attempt, batch);
        Ok(Some(rec.append(events, copies, now)))
    }

    async fn heartbeat(&self, fence: Fence, lease: Duration) -> Result<Heartbeat> {
        let now = Utc::now();
        let mut inner = self.lock();
        let rec = inner
            .record(fence.job_id)
            .map_err(|_| Error::StaleAttempt)?;
        let idx = rec.fenced(fence)?;
        let heartbeat = transition::plan_heartbeat(&rec.job, now, lease);
        rec.attempts[idx].lease_expires_at = heartbeat.lease_expires_at;
        Ok(heartbeat)
    }

    async fn finish(&self, fence: Fence, outcome: Outcome) -> Result<Changed> {
        let now = Utc::now();
        let mut inner = self.lock();
        let rec = inner
            .record(fence.job_id)
            .map_err(|_| Error::StaleAttempt)?;
        let idx = rec.fenced(fence)?;
        let plan =
            transition::plan_finish(&rec.job, rec.attempts[idx].lease_expires_at, &outcome, now)?;
        let old = (rec.job.status, rec.job.run_at);
        plan.apply_to(&mut rec.job, now);
        let attempt = &mut rec.attempts[idx];
        attempt.status = plan.attempt_status;
        attempt.error = plan.attempt_error;
        attempt.finished_at = Some(now);
        let events: Vec<JobEvent> = plan.events.into_iter().map(|d| rec.push(d, now)).collect();
        let job = rec.job.clone();
        inner.reindex(fence.job_id, Some(old), (job.status, job.run_at));
        inner.write_outbox(&job, now);
        let dependents = inner.settle_dependents(&job, now);
        Ok(Changed {
            job,
            events,
            dependents,
        })
    }

    async fn save_app(&self, fence: Fence, app: NewApp) -> Result<(App, Vec<JobEvent>)> {
        let now = Utc::now();
        // The copies (the App kept and the App returned, the event's name kept
        // and returned) are made before taking the lock.
        let fresh_id = AppId::new();
        let stored_payload = app.payload.clone();
        let stored_name = app.name.clone();
        let (logged_name, event_name) = (app.name.clone(), app.name.clone());
        let mut inner = self.lock();
        let existing = inner
            .app_by_job
            .get(&fence.job_id)
            .and_then(|id| inner.apps.get(id))
            .map(|a| (a.id, a.attempt));
        let rec = inner
            .record(fence.job_id)
            .map_err(|_| Error::StaleAttempt)?;
        rec.fenced(fence)?;
        if existing.is_some_and(|(_, attempt)| attempt == fence.attempt) {
            return Err(Error::conflict(
                "this attempt already published the job's app",
            ));
        }
        let app_id = existing.map_or(fresh_id, |(id, _)| id);
        let stored = App {
            id: app_id,
            job_id: fence.job_id,
            attempt: fence.attempt,
            owner: rec.job.owner.clone(),
            name: stored_name,
            payload: stored_payload,
            created_at: now,
        };
        let ev = rec.push_copy(
            EventData::App {
                app_id,
                name: logged_name,
            },
            EventData::App {
                app_id,
                name: event_name,
            },
            now,
        );
        let owner = stored.owner.clone();
        inner.app_by_job.insert(fence.job_id, app_id);
        index_owner(&mut inner.apps_by_owner, &owner, app_id);
        inner.apps.insert(app_id, stored);
        drop(inner);
        let app = App {
            id: app_id,
            job_id: fence.job_id,
            attempt: fence.attempt,
            owner,
            name: app.name,
            payload: app.payload,
            created_at: now,
        };
        Ok((app, vec![ev]))
    }

    async fn put_artifact(&self, fence: Fence, new: NewArtifact) -> Result<SavedArtifact> {
        let now = Utc::now();
        let event = EventData::Artifact(Box::new(ArtifactStored {
            name: new.name.clone(),
            size: new.size,
            sha256: new.sha256.clone(),
            content_type: new.content_type.clone(),
        }));
        let mut inner = self.lock();
        let others: u64 = inner.artifacts.get(&fence.job_id).map_or(0, |by_name| {
            by_name
                .values()
                .filter(|a| a.name != new.name)
                .map(|a| a.size)
                .sum()
        });
        let rec = inner
            .record(fence.job_id)
            .map_err(|_| Error::StaleAttempt)?;
        rec.fenced(fence)?;
        check_job_bytes(others, new.size, new.max_job_bytes)?;
        let ev = rec.push(event, now);
        let artifact = Artifact {
            job_id: fence.job_id,
            name: new.name,
            attempt: fence.attempt,
            size: new.size,
            sha256: new.sha256,
            content_type: new.content_type,
            blob: new.blob,
            created_at: now,
        };
        let replaced = inner
            .artifacts
            .entry(fence.job_id)
            .or_default()
            .insert(artifact.name.clone(), artifact.clone());
        Ok(SavedArtifact {
            artifact,
            replaced,
            events: vec![ev],
        })
    }

    async fn artifacts(&self, job_id: JobId) -> Result<Vec<Artifact>> {
        let inner = self.lock();
        Ok(inner
            .artifacts
            .get(&job_id)
            .map(|by_name| by_name.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn artifact(&self, job_id: JobId, name: &str) -> Result<Option<Artifact>> {
        let inner = self.lock();
        Ok(inner
            .artifacts
            .get(&job_id)
            .and_then(|by_name| by_name.get(name).cloned()))
    }

    async fn request_cancel(&self, id: JobId) -> Result<Changed> {
        let now = Utc::now();
        let mut inner = self.lock();
        let rec = inner.record(id)?;
        let plan = transition::plan_cancel(&rec.job)?;
        if plan == CancelPlan::Pending {
            return Ok(Changed::of(rec.job.clone(), vec![]));
        }
        let old = (rec.job.status, rec.job.run_at);
        plan.apply_to(&mut rec.job, now);
        let events = plan
            .events()
            .iter()
            .map(|d| rec.push(d.clone(), now))
            .collect();
        let job = rec.job.clone();
        inner.reindex(id, Some(old), (job.status, job.run_at));
        inner.write_outbox(&job, now);
        let dependents = inner.settle_dependents(&job, now);
        Ok(Changed {
            job,
            events,
            dependents,
        })
    }

    async fn retry(&self, id: JobId) -> Result<Changed> {
        let now = Utc::now();
        let mut inner = self.lock();
        let rec = inner.record(id)?;
        let plan = transition::plan_retry(&rec.job, now)?;
        let old = (rec.job.status, rec.job.run_at);
        plan.apply_to(&mut rec.job);
        let events = plan.events.into_iter().map(|d| rec.push(d, now)).collect();
        let job = rec.job.clone();
        inner.reindex(id, Some(old), (job.status, job.run_at));
        Ok(Changed::of(job, events))
    }

    async fn review(&self, id: JobId, decision: ReviewDecision) -> Result<Changed> {
        let now = Utc::now();
        let mut inner = self.lock();
        let rec = inner.record(id)?;
        let plan = transition::plan_review(&rec.job, &decision, now)?;
        let old = (rec.job.status, rec.job.run_at);
        plan.apply_to(&mut rec.job, now);
        let events = plan.events.into_iter().map(|d| rec.push(d, now)).collect();
        let job = rec.job.clone();
        inner.reindex(id, Some(old), (job.status, job.run_at));
        inner.write_outbox(&job, now);
        // An approval releases the job's dependents; a final rejection
        // cancels them.
        let dependents = inner.settle_dependents(&job, now);
        Ok(Changed {
            job,
            events,
            dependents,
        })
    }

    async fn events(&self, id: JobId, after: u64, limit: usize) -> Result<Vec<JobEvent>> {
        let inner = self.lock();
        Ok(inner
            .jobs
            .get(&id)
            .map(|r| r.events_after(after, limit))
            .unwrap_or_default())
    }

    async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>> {
        Ok(self
            .lock()
            .jobs
            .get(&id)
            .map(|r| r.attempts.clone())
            .unwrap_or_default())
    }

    async fn get_app(&self, id: AppId) -> Result<Option<App>> {
        Ok(self.lock().apps.get(&id).cloned())
    }

    async fn app_by_job(&self, job_id: JobId) -> Result<Option<App>> {
        let inner = self.lock();
        Ok(inner
            .app_by_job
            .get(&job_id)
            .and_then(|id| inner.apps.get(id))
            .cloned())
    }

    async fn list_apps(
        &self,
        owner: &Owner,
        cursor: Option<AppId>,
        limit: usize,
    ) -> Result<Vec<App>> {
        let inner = self.lock();
        let Some(ids) = inner.apps_by_owner.get(owner) else {
            return Ok(Vec::new());
        };
        let from = cursor.unwrap_or(AppId(uuid::Uuid::nil()));
        Ok(ids
            .range(from..)
            .filter(|id| cursor.is_none_or(|c| **id > c))
            .take(limit)
            .map(|id| inner.apps[id].clone())
            .collect())
    }

    async fn expired_leases(&self, limit: usize) -> Result<Vec<Fence>> {
        let now = Utc::now();
        let inner = self.lock();
        Ok(inner
            .running
            .iter()
            .filter_map(|id| {
                let rec = &inner.jobs[id];
                let a = rec.attempts.last()?;
                (a.status == AttemptStatus::Running && a.lease_expires_at <= now).then(|| a.fence())
            })
            .take(limit)
            .collect())
    }

    async fn due_jobs(&self, overdue: Duration, limit: usize) -> Result<Vec<DueJob>> {
        let now =
            Utc::now() - chrono::Duration::from_std(overdue).unwrap_or(chrono::Duration::zero());
        let inner = self.lock();
        Ok(inner
            .queued
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .map(|(at, id)| {
                let job = &inner.jobs[id].job;
                DueJob {
                    id: *id,
                    queue: job.queue.clone(),
                    priority: job.priority,
                    run_at: *at,
                    owner: job.owner.clone(),
                }
            })
            .collect())
    }

    async fn purge_finished(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Purged>> {
        let mut inner = self.lock();
        let mut old: Vec<(DateTime<Utc>, JobId)> = inner
            .jobs
            .values()
            .filter(|r| retention::finished_before(&r.job, before))
            .filter(|r| inner.children.get(&r.job.id).is_none_or(|c| c.is_empty()))
            .filter(|r| {
                inner
                    .deliveries_by_job
                    .get(&r.job.id)
                    .into_iter()
                    .flatten()
                    .all(|d| inner.deliveries[d].delivery.status != DeliveryStatus::Pending)
            })
            .filter_map(|r| Some((r.job.finished_at?, r.job.id)))
            .collect();
        old.sort_unstable();
        old.truncate(limit);
        let gone: IdSet<JobId> = old.iter().map(|(_, id)| *id).collect();
        let mut purged = Vec::with_capacity(old.len());
        for (_, id) in old {
            purged.push(inner.purge(id));
        }
        if !gone.is_empty() {
            inner
                .idempotency
                .retain(|_, (_, job, _)| !gone.contains(job));
            let Inner {
                idempotency,
                idempotency_expiry,
                ..
            } = &mut *inner;
            idempotency_expiry
                .retain(|(_, o, k)| idempotency.contains_key(&(o.clone(), k.clone())));
        }
        Ok(purged)
    }

    async fn claim_deliveries(
        &self,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<WebhookDelivery>> {
        let now = Utc::now();
        let until = lease_until(now, visibility);
        let mut inner = self.lock();
        let due: Vec<(DateTime<Utc>, DeliveryId)> = inner
            .due_deliveries
            .range(..=(now, DeliveryId(uuid::Uuid::max())))
            .take(limit)
            .copied()
            .collect();
        let mut claimed = Vec::with_capacity(due.len());
        for key in due {
            inner.due_deliveries.remove(&key);
            inner.due_deliveries.insert((until, key.1));
            if let Some(log) = inner.deliveries.get_mut(&key.1) {
                log.delivery.next_at = until;
                log.delivery.updated_at = now;
                claimed.push(log.delivery.clone());
            }
        }
        Ok(claimed)
    }

    async fn record_delivery_try(
        &self,
        id: DeliveryId,
        claimed_tries: u32,
        attempt: NewTry,
        next: DeliveryNext,
    ) -> Result<WebhookDelivery> {
        let now = Utc::now();
        let mut inner = self.lock();
        let log = inner
            .deliveries
            .get_mut(&id)
            .ok_or(Error::not_found("delivery"))?;
        let d = &mut log.delivery;
        transition::check_delivery_try(d.status, d.tries, claimed_tries)?;
        let old_next = d.next_at;
        d.tries += 1;
        d.status = transition::delivery_status_after(next);
        if let DeliveryNext::Retry { after } = next {
            d.next_at = lease_until(now, after);
        }
        d.updated_at = now;
        log.tries.push(DeliveryTry {
            number: d.tries,
            at: now,
            status_code: attempt.status_code,
            latency_ms: u64::try_from(attempt.latency.as_millis()).unwrap_or(u64::MAX),
            error: attempt.error,
        });
        let delivery = log.delivery.clone();
        inner.due_deliveries.remove(&(old_next, id));
        if delivery.status == DeliveryStatus::Pending {
            inner.due_deliveries.insert((delivery.next_at, id));
        }
        Ok(delivery)
    }

    async fn deliveries(&self, job_id: JobId) -> Result<Vec<DeliveryLog>> {
        let inner = self.lock();
        Ok(inner
            .deliveries_by_job
            .get(&job_id)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| inner.deliveries.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn create_schedule(&self, new: NewSchedule) -> Result<Schedule> {
        let now = Utc::now();
        let s = new.settings;
        let schedule = Schedule {
            id: new.id,
            owner: new.owner,
            name: s.name,
            cron: s.cron,
            timezone: s.timezone,
            template: s.template,
            overlap: s.overlap,
            misfire: s.misfire,
            enabled: s.enabled,
            next_fire_at: s.next_fire_at,
            last_job_id: None,
            revision: 1,
            created_at: now,
            updated_at: now,
        };
        let mut inner = self.lock();
        if inner.schedules.contains_key(&schedule.id) {
            return Err(Error::conflict("a schedule with this id exists"));
        }
        inner.schedules.insert(schedule.id, schedule.clone());
        Ok(schedule)
    }

    async fn get_schedule(&self, id: ScheduleId) -> Result<Option<Schedule>> {
        Ok(self.lock().schedules.get(&id).cloned())
    }

    async fn list_schedules(
        &self,
        owner: &Owner,
        cursor: Option<ScheduleId>,
        limit: usize,
    ) -> Result<Vec<Schedule>> {
        let inner = self.lock();
        Ok(inner
            .schedules
            .values()
            .filter(|s| &s.owner == owner && cursor.is_none_or(|c| s.id > c))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn update_schedule(
        &self,
        id: ScheduleId,
        revision: u64,
        s: ScheduleSettings,
    ) -> Result<Schedule> {
        let now = Utc::now();
        let mut inner = self.lock();
        let Some(current) = inner.schedules.get_mut(&id) else {
            return Err(Error::not_found("schedule"));
        };
        if current.revision != revision {
            return Err(Error::conflict("the schedule changed meanwhile"));
        }
        current.name = s.name;
        current.cron = s.cron;
        current.timezone = s.timezone;
        current.template = s.template;
        current.overlap = s.overlap;
        current.misfire = s.misfire;
        current.enabled = s.enabled;
        current.next_fire_at = s.next_fire_at;
        current.revision += 1;
        current.updated_at = now;
        Ok(current.clone())
    }

    async fn delete_schedule(&self, id: ScheduleId) -> Result<()> {
        let mut inner = self.lock();
        if inner.schedules.remove(&id).is_none() {
            return Err(Error::not_found("schedule"));
        }
        inner.schedule_runs.retain(|(s, _), _| *s != id);
        Ok(())
    }

    async fn due_schedules(&self, limit: usize) -> Result<Vec<Schedule>> {
        let now = Utc::now();
        let inner = self.lock();
        let mut due: Vec<Schedule> = inner
            .schedules
            .values()
            .filter(|s| s.enabled && s.next_fire_at.is_some_and(|t| t <= now))
            .cloned()
            .collect();
        due.sort_by_key(|s| (s.next_fire_at, s.id));
        due.truncate(limit);
        Ok(due)
    }

    async fn fire_schedule(&self, fire: ScheduleFire) -> Result<Fired> {
        let now = Utc::now();
        let prepared = fire.job.map(|j| {
            let record = new_record(&j, now);
            (j, record)
        });
        let mut inner = self.lock();
        let Some(schedule) = inner.schedules.get(&fire.schedule_id) else {
            return Ok(Fired::AlreadyFired);
        };
        if !schedule.enabled
            || schedule.next_fire_at != Some(fire.expected_next_fire_at)
            || inner
                .schedule_runs
                .contains_key(&(fire.schedule_id, fire.tick))
        {
            return Ok(Fired::AlreadyFired);
        }
        let previous_running = schedule
            .last_job_id
            .and_then(|id| inner.jobs.get(&id))
            .is_some_and(|r| !r.job.status.is_terminal());
        let outcome = match prepared {
            Ok(_) if fire.skip_if_running && previous_running => Err(SkipReason::Overlap),
            Ok((new, record)) => {
                if inner.jobs.contains_key(&new.id) {
                    return Ok(Fired::AlreadyFired);
                }
                Ok(inner.insert(&new, record, &[], now)?)
            }
            Err(reason) => Err(reason),
        };
        let run = ScheduleRun {
            schedule_id: fire.schedule_id,
            tick: fire.tick,
            job_id: outcome.as_ref().ok().map(|c| c.job.id),
            skipped: outcome.as_ref().err().copied(),
            fired_at: now,
        };
        inner
            .schedule_runs
            .insert((fire.schedule_id, fire.tick), run);
        if let Some(schedule) = inner.schedules.get_mut(&fire.schedule_id) {
            schedule.next_fire_at = fire.next_fire_at;
            if let Ok(c) = &outcome {
                schedule.last_job_id = Some(c.job.id);
            }
        }
        Ok(match outcome {
            Ok(changed) => Fired::Job(changed),
            Err(reason) => Fired::Skipped(reason),
        })
    }

    async fn schedule_runs(
        &self,
        id: ScheduleId,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<ScheduleRun>> {
        let inner = self.lock();
        let upper = match before {
            Some(b) => std::ops::Bound::Excluded((id, b)),
            None => std::ops::Bound::Included((id, DateTime::<Utc>::MAX_UTC)),
        };
        Ok(inner
            .schedule_runs
            .range((
                std::ops::Bound::Included((id, DateTime::<Utc>::MIN_UTC)),
                upper,
            ))
            .rev()
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn create_child(&self, fence: Fence, new: NewJob) -> Result<Created> {
        let key = crate::children::check_child(fence, &new)?.to_owned();
        let now = Utc::now();
        let record = new_record(&new, now);
        let mut inner = self.lock();
        inner
            .record(fence.job_id)
            .map_err(|_| Error::StaleAttempt)?
            .fenced(fence)?;
        let existing = inner
            .children
            .get(&fence.job_id)
            .and_then(|keys| keys.get(&key))
            .copied();
        if let Some(id) = existing {
            return Ok(Created::Existing(inner.jobs[&id].job.clone()));
        }
        let changed = inner.insert(&new, record, &[], now)?;
        Ok(Created::New(changed))
    }

    async fn children(&self, parent: JobId) -> Result<Vec<Job>> {
        let inner = self.lock();
        let mut jobs: Vec<Job> = inner
            .children
            .get(&parent)
            .into_iter()
            .flat_map(|keys| keys.values())
            .map(|id| inner.jobs[id].job.clone())
            .collect();
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    async fn create_job_idempotent(&self, new: NewJob, key: &IdempotencyKey) -> Result<Created> {
        let now = Utc::now();
        let record = new_record(&new, now);
        let mut inner = self.lock();
        let slot = (new.owner.clone(), key.key.clone());
        if let Some((hash, id, expires_at)) = inner.idempotency.get(&slot) {
            if *expires_at > now {
                if *hash != key.request_hash {
                    return Err(Error::IdempotencyKeyReused);
                }
                let job = inner.jobs.get(id).ok_or(Error::not_found("job"))?;
                return Ok(Created::Existing(job.job.clone()));
            }
        }
        let changed = inner.insert(&new, record, &[], now)?;
        let job_id = changed.job.id;
        let expires_at = now + chrono::Duration::from_std(key.ttl).unwrap_or(chrono::Duration::MAX);
        if let Some((_, _, old)) = inner
            .idempotency
            .insert(slot.clone(), (key.request_hash.clone(), job_id, expires_at))
        {
            inner
                .idempotency_expiry
                .remove(&(old, slot.0.clone(), slot.1.clone()));
        }
        inner
            .idempotency_expiry
            .insert((expires_at, slot.0, slot.1));
        // Drop a few expired keys as we go, so that keys never used again do
        // not accumulate.
        for _ in 0..8 {
            match inner.idempotency_expiry.first() {
                Some((at, _, _)) if *at <= now => {}
                _ => break,
            }
            if let Some((_, owner, k)) = inner.idempotency_expiry.pop_first() {
                inner.idempotency.remove(&(owner, k));
            }
        }
        Ok(Created::New(changed))
    }

    async fn create_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Changed>> {
        let now = Utc::now();
        let records: Vec<Record> = jobs.iter().map(|new| new_record(new, now)).collect();
        let mut inner = self.lock();
        // Every job is planned before any is inserted: all or none.
        let mut planned: Vec<Job> = Vec::with_capacity(jobs.len());
        for new in &jobs {
            if inner.jobs.contains_key(&new.id) || planned.iter().any(|j| j.id == new.id) {
                return Err(Error::conflict("a job with this id exists"));
            }
            let earlier: Vec<&Job> = planned.iter().collect();
            let plan = inner.plan_create(new, &earlier)?;
            if new.max_queued.is_some() {
                let queued = inner.queued_per_owner.get(&new.owner).copied().unwrap_or(0);
                let batch = planned
                    .iter()
                    .filter(|j| j.status == JobStatus::Queued && j.owner == new.owner)
                    .count();
                transition::check_quota(u64::from(queued) + batch as u64, new.max_queued)?;
            }
            let mut job = records[planned.len()].job.clone();
            job.status = plan.status;
            planned.push(job);
        }
        let mut out = Vec::with_capacity(jobs.len());
        for (new, record) in jobs.iter().zip(records) {
            out.push(inner.insert(new, record, &[], now)?);
        }
        Ok(out)
    }

    async fn projects(&self, owner: &Owner) -> Result<Vec<Project>> {
        let inner = self.lock();
        let Some(ids) = inner.by_owner.get(owner) else {
            return Ok(Vec::new());
        };
        Ok(Project::from_counts(ids.iter().filter_map(|id| {
            let job = &inner.jobs[id].job;
            job.project.clone().map(|p| (p, job.status, 1))
        })))
    }
}

/// A new job's record, before its first status is planned.
fn new_record(new: &NewJob, now: DateTime<Utc>) -> Record {
    let job = Job {
        id: new.id,
        owner: new.owner.clone(),
        kind: new.kind.clone(),
        queue: new.queue.clone(),
        prompt: new.prompt.clone(),
        params: new.params.clone(),
        status: JobStatus::Queued,
        stage: None,
        progress: 0,
        priority: new.priority,
        max_attempts: new.max_attempts,
        timeout_ms: new.timeout_ms,
        run_at: new.run_at,
        attempt: 0,
        attempts_used: 0,
        cancel_requested: false,
        error: None,
        created_at: now,
        started_at: None,
        finished_at: None,
        updated_at: now,
        last_seq: 0,
        webhook: new.webhook.clone(),
        notify_deployment: new.notify_deployment,
        trace_parent: new.trace_parent.clone(),
        review: new.review,
        review_comment: None,
        parent_id: new.parent_id,
        child_key: new.child_key.clone(),
        project: new.project.clone(),
        depends_on: new.depends_on.clone(),
        concurrency_key: new.concurrency_key.clone(),
        concurrency_limit: new.concurrency_limit,
    };
    Record {
        job,
        events: Vec::with_capacity(EVENTS_RESERVED),
        attempts: Vec::new(),
        last_batch: (0, 0),
    }
}

impl Inner {
    /// Inserts a new job (its record from [`new_record`]) as
    /// [`Store::create_job`] says, with its dependencies among the store's
    /// jobs or `earlier`.
    fn insert(
        &mut self,
        new: &NewJob,
        mut rec: Record,
        earlier: &[&Job],
        now: DateTime<Utc>,
    ) -> Result<Changed> {
        if self.jobs.contains_key(&new.id) {
            return Err(Error::conflict("a job with this id exists"));
        }
        let plan = self.plan_create(new, earlier)?;
        if new.max_queued.is_some() {
            let queued = self.queued_per_owner.get(&new.owner).copied().unwrap_or(0);
            transition::check_quota(u64::from(queued), new.max_queued)?;
        }
        rec.job.status = plan.status;
        let events: Vec<JobEvent> = plan.events.into_iter().map(|d| rec.push(d, now)).collect();
        let job = rec.job.clone();
        index_owner(&mut self.by_owner, &job.owner, job.id);
        self.index_dependencies(&job);
        if let (Some(parent), Some(key)) = (job.parent_id, &job.child_key) {
            self.children
                .entry(parent)
                .or_default()
                .insert(key.clone(), job.id);
        }
        self.jobs.insert(job.id, rec);
        self.reindex(job.id, None, (job.status, job.run_at));
        Ok(Changed::of(job, events))
    }
}

#[cfg(test)]
mod tests {
    use super::{Logged, EVENTS_RESERVED};

    #[test]
    fn a_fresh_log_is_a_small_allocation() {
        // glibc serves requests up to 1000 bytes from its small bins.
        assert!(std::mem::size_of::<Logged>() * EVENTS_RESERVED <= 1000);
    }
}
