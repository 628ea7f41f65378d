//! The [`Engine`]: the one API that HTTP handlers and embedders call.

use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::artifact::{self, ArtifactBody, ArtifactReader, ArtifactStore, NewArtifact};
use crate::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use crate::metrics::EngineMetrics;
use crate::trace::TracePropagator;
use crate::watch::{self, EventStream, WatchConfig};
use crate::{
    App, AppId, Artifact, Attempt, DeliveryLog, Error, Fence, Job, JobDetail, JobEvent, JobId,
    JobQuery, NewJob, Notifier, Owner, Page, Queue, QueueEntry, Registry, Result, Store, Webhooks,
};

/// What a client may submit. Unset fields take the [`Limits`]' defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Submit {
    /// What to do (required, 1 byte to [`Limits::max_prompt_bytes`]).
    pub prompt: String,
    /// Orchestrator kind; the registry's default when `None`.
    pub kind: Option<String>,
    /// Parameters: a JSON object.
    pub params: Option<Value>,
    /// Higher runs first.
    pub priority: Option<i32>,
    /// Attempts allowed.
    pub max_attempts: Option<u32>,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// Not before this time.
    pub run_at: Option<DateTime<Utc>>,
    /// A URL to notify when the job ends (`http` or `https`; checked by the
    /// engine's [`WebhookCheck`](crate::WebhookCheck)).
    pub webhook: Option<String>,
    /// Hold a successful attempt's result in `awaiting_review` until a
    /// person approves or rejects it (see [`crate::review`]).
    pub review: bool,
    /// The owner's project the job belongs to (see
    /// [`workflow::check_project`](crate::workflow::check_project)).
    pub project: Option<String>,
    /// The owner's jobs that must succeed before this one is queued (see
    /// [`crate::workflow`]).
    pub depends_on: Vec<JobId>,
    /// A concurrency key: at most `concurrency_limit` of the owner's jobs
    /// with this key run at once (see [`crate::concurrency`]).
    pub concurrency_key: Option<String>,
    /// The limit that goes with `concurrency_key` (both or neither).
    pub concurrency_limit: Option<u32>,
}

impl Submit {
    /// A submission with just a prompt.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            ..Self::default()
        }
    }

    /// Sets the kind.
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Sets the parameters.
    pub fn params(mut self, params: Value) -> Self {
        self.params = Some(params);
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the number of attempts allowed.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the earliest start.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Sets the URL notified when the job ends.
    pub fn webhook(mut self, url: impl Into<String>) -> Self {
        self.webhook = Some(url.into());
        self
    }

    /// Holds a successful result for review ([`Submit::review`]).
    pub fn review(mut self, review: bool) -> Self {
        self.review = review;
        self
    }

    /// Sets the project.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Sets the jobs this one depends on.
    pub fn depends_on(mut self, ids: impl IntoIterator<Item = JobId>) -> Self {
        self.depends_on = ids.into_iter().collect();
        self
    }

    /// Runs at most `limit` of the owner's jobs with `key` at once (see
    /// [`crate::concurrency`]).
    pub fn concurrency(mut self, key: impl Into<String>, limit: u32) -> Self {
        self.concurrency_key = Some(key.into());
        self.concurrency_limit = Some(limit);
        self
    }
}

/// Validation bounds and defaults for submissions.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Longest prompt, in bytes.
    pub max_prompt_bytes: usize,
    /// Largest `params`, serialized, in bytes.
    pub max_params_bytes: usize,
    /// Allowed priorities.
    pub priority: RangeInclusive<i32>,
    /// Allowed `max_attempts`.
    pub max_attempts: RangeInclusive<u32>,
    /// Default `max_attempts`.
    pub default_max_attempts: u32,
    /// Allowed timeouts.
    pub timeout: RangeInclusive<Duration>,
    /// Default timeout.
    pub default_timeout: Duration,
    /// How far ahead `run_at` may be.
    pub max_schedule_ahead: Duration,
    /// Largest page of a listing.
    pub max_page: usize,
    /// Most jobs one owner may have `queued` at once; a submission beyond it
    /// is [`Error::LimitExceeded`]. Counted by the store, atomically with the
    /// insert, so concurrent submissions never pass it. `None`: no quota.
    pub max_queued_per_owner: Option<u32>,
    /// How long an idempotency key is kept from its first use (see
    /// [`Engine::submit_idempotent`]); default 24 hours.
    pub idempotency_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_prompt_bytes: 32 * 1024,
            max_params_bytes: 256 * 1024,
            priority: -100..=100,
            max_attempts: 1..=100,
            default_max_attempts: 3,
            timeout: Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600),
            default_timeout: Duration::from_secs(3600),
            // Any date an RFC 3339 timestamp can hold; tighten it if you need to.
            max_schedule_ahead: Duration::from_secs(10_000 * 365 * 24 * 3600),
            max_page: 500,
            max_queued_per_owner: None,
            idempotency_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// The API over a store, a queue and a notifier: submit, read, cancel, retry and
/// watch jobs; read apps. Cheap to clone.
///
/// Every call is scoped to an [`Owner`]: another owner's job or app is
/// [`Error::NotFound`], never "forbidden".
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Sees every event an [`Engine`] publishes — that is, every event persisted
/// through this process: submissions, cancels and retries of its web side, and
/// the attempts its workers run — with the kind of the event's job. For metrics
/// and audit trails; it is called inline, so it must be quick and never block.
pub trait EventObserver: Send + Sync + 'static {
    /// Called once per published batch, after it was persisted.
    fn observe(&self, kind: &str, events: &[JobEvent]);
}

/// The settings an engine may be rebuilt with.
struct Settings {
    watch: WatchConfig,
    artifacts: ArtifactStore,
    webhooks: Webhooks,
    fair_queues: bool,
}

struct Inner {
    observers: std::sync::RwLock<Vec<Arc<dyn EventObserver>>>,
    /// Whether `observers` is non-empty, so that publishing without observers
    /// does not touch the lock (a cache line every thread would share).
    observed: std::sync::atomic::AtomicBool,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    notifier: Arc<dyn Notifier>,
    registry: Registry,
    limits: Limits,
    watch: WatchConfig,
    artifacts: ArtifactStore,
    webhooks: Webhooks,
    /// Handles registered with the recorder current when the engine was built.
    metrics: EngineMetrics,
    /// Carries trace contexts from submissions to attempts, when installed.
    trace: std::sync::OnceLock<Arc<dyn TracePropagator>>,
    /// Handles registered by [`Engine::bind_metrics`]; they win when set.
    bound_metrics: std::sync::OnceLock<EngineMetrics>,
    /// Whether queue entries carry their job's owner as fairness group.
    fair_queues: bool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.inner.store)
            .field("queue", &self.inner.queue)
            .field("notifier", &self.inner.notifier)
            .field("registry", &self.inner.registry)
            .finish()
    }
}

impl Engine {
    /// An engine over the given backends, running the kinds of `registry`.
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        notifier: Arc<dyn Notifier>,
        registry: Registry,
    ) -> Self {
        Self::with_limits(store, queue, notifier, registry, Limits::default())
    }

    /// Like [`Engine::new`], with explicit limits.
    pub fn with_limits(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        notifier: Arc<dyn Notifier>,
        registry: Registry,
        limits: Limits,
    ) -> Self {
        Self::build(
            store,
            queue,
            notifier,
            registry,
            limits,
            Settings {
                watch: WatchConfig::default(),
                artifacts: ArtifactStore::in_memory(),
                webhooks: Webhooks::default(),
                fair_queues: false,
            },
        )
    }

    fn build(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        notifier: Arc<dyn Notifier>,
        registry: Registry,
        limits: Limits,
        settings: Settings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                observers: Default::default(),
                observed: Default::default(),
                store,
                queue,
                notifier,
                metrics: EngineMetrics::register(&registry),
                bound_metrics: Default::default(),
                trace: Default::default(),
                registry,
                limits,
                watch: settings.watch,
                artifacts: settings.artifacts,
                webhooks: settings.webhooks,
                fair_queues: settings.fair_queues,
            }),
        }
    }

    /// An engine on the in-memory store, queue and notifier: the embedded default.
    pub fn in_memory(registry: Registry) -> Self {
        Self::new(
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryQueue::default()),
            Arc::new(MemoryNotifier::default()),
            registry,
        )
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.queue
    }

    /// The notifier.
    pub fn notifier(&self) -> &Arc<dyn Notifier> {
        &self.inner.notifier
    }

    /// The registered orchestrators.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The submission limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// This engine with other [`WatchConfig`] settings for its watches. The
    /// answer is a new engine over the same backends and registry, with the
    /// observers registered so far; clones made before keep the old settings.
    pub fn with_watch_config(self, watch: WatchConfig) -> Self {
        self.rebuild(|i| i.watch = watch)
    }

    /// This engine with its artifacts' bytes in `artifacts` (by default, in
    /// memory). Like [`Engine::with_watch_config`], the answer is a new engine;
    /// clones made before keep the old store.
    pub fn with_artifacts(self, artifacts: ArtifactStore) -> Self {
        self.rebuild(|i| i.artifacts = artifacts)
    }

    /// This engine with other [`Webhooks`] settings: whether jobs submitted
    /// through it notify the deployment-wide URL, and how a job's own URL is
    /// checked. Like [`Engine::with_watch_config`], the answer is a new engine
    /// over the same backends, registry and observers.
    pub fn with_webhooks(self, webhooks: Webhooks) -> Self {
        self.rebuild(|i| i.webhooks = webhooks)
    }

    /// The webhook settings.
    pub fn webhooks(&self) -> &Webhooks {
        &self.inner.webhooks
    }

    /// A new engine over the same backends, registry, observers and bound
    /// metrics, with the settings `change` makes to a copy of this one's.
    fn rebuild(&self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings {
            watch: self.inner.watch.clone(),
            artifacts: self.inner.artifacts.clone(),
            webhooks: self.inner.webhooks.clone(),
            fair_queues: self.inner.fair_queues,
        };
        change(&mut settings);
        let i = &self.inner;
        let observers = i
            .observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let engine = Self::build(
            i.store.clone(),
            i.queue.clone(),
            i.notifier.clone(),
            i.registry.clone(),
            i.limits.clone(),
            settings,
        );
        for o in observers {
            engine.add_observer(o);
        }
        if let Some(bound) = i.bound_metrics.get() {
            let _ = engine.inner.bound_metrics.set(bound.clone());
        }
        if let Some(trace) = i.trace.get() {
            let _ = engine.inner.trace.set(trace.clone());
        }
        engine
    }

    /// Where artifacts' bytes are kept, with their size limits.
    pub fn artifact_store(&self) -> &ArtifactStore {
        &self.inner.artifacts
    }

    /// Installs the [`TracePropagator`] that stores the submitting request's
    /// trace context with each new job and parents its attempts' spans on it
    /// (see [`crate::trace`]). Once per engine, shared by its clones: `false`
    /// when one is installed already (which stays).
    pub fn set_trace_propagator(&self, propagator: impl TracePropagator) -> bool {
        self.inner.trace.set(Arc::new(propagator)).is_ok()
    }

    /// The installed [`TracePropagator`], if any.
    pub fn trace_propagator(&self) -> Option<&dyn TracePropagator> {
        self.inner.trace.get().map(|p| &**p)
    }

    /// The settings of this engine's watches.
    pub fn watch_config(&self) -> &WatchConfig {
        &self.inner.watch
    }

    /// Validates a submission into a [`NewJob`] without storing anything.
    /// A `webhook` is checked for its syntax here; its address, which needs
    /// its host resolved, is checked by [`Engine::submit`].
    pub fn validate(&self, owner: &Owner, req: Submit) -> Result<NewJob> {
        let l = &self.inner.limits;
        if req.prompt.trim().is_empty() {
            return Err(Error::invalid("prompt", "must not be empty"));
        }
        if req.prompt.len() > l.max_prompt_bytes {
            return Err(Error::invalid(
                "prompt",
                format!("must be at most {} bytes", l.max_prompt_bytes),
            ));
        }
        let kind = match req.kind {
            Some(k) => k,
            None => self
                .inner
                .registry
                .default_kind()
                .ok_or_else(|| {
                    Error::invalid("kind", "no kind given and no default kind registered")
                })?
                .to_owned(),
        };
        let queue = match self.inner.registry.get(&kind) {
            Some(r) => r.queue.clone(),
            None => return Err(Error::invalid("kind", format!("unknown kind `{kind}`"))),
        };
        let params = req
            .params
            .unwrap_or_else(|| Value::Object(Default::default()));
        if !params.is_object() {
            return Err(Error::invalid("params", "must be a JSON object"));
        }
        if serialized_len(&params) > l.max_params_bytes {
            return Err(Error::invalid(
                "params",
                format!("must be at most {} bytes", l.max_params_bytes),
            ));
        }
        let priority = req.priority.unwrap_or(0);
        if !l.priority.contains(&priority) {
            return Err(Error::invalid(
                "priority",
                format!(
                    "must be between {} and {}",
                    l.priority.start(),
                    l.priority.end()
                ),
            ));
        }
        let max_attempts = req.max_attempts.unwrap_or(l.default_max_attempts);
        if !l.max_attempts.contains(&max_attempts) {
            return Err(Error::invalid(
                "max_attempts",
                format!(
                    "must be between {} and {}",
                    l.max_attempts.start(),
                    l.max_attempts.end()
                ),
            ));
        }
        let timeout = req.timeout.unwrap_or(l.default_timeout);
        if !l.timeout.contains(&timeout) {
            return Err(Error::invalid(
                "timeout",
                format!(
                    "must be between {} s and {} s",
                    l.timeout.start().as_secs(),
                    l.timeout.end().as_secs()
                ),
            ));
        }
        let now = Utc::now();
        let run_at = match req.run_at {
            Some(at)
                if at
                    > now
                        + chrono::Duration::from_std(l.max_schedule_ahead)
                            .unwrap_or(chrono::Duration::MAX) =>
            {
                return Err(Error::invalid("run_at", "is too far in the future"))
            }
            Some(at) => at.max(now),
            None => now,
        };
        if let Some(url) = &req.webhook {
            if self.inner.webhooks.check.is_none() {
                return Err(Error::invalid(
                    "webhook",
                    "this deployment does not send webhooks",
                ));
            }
            crate::webhook::check_url_syntax(url)?;
        }
        if let Some(project) = &req.project {
            crate::workflow::check_project(project)?;
        }
        crate::concurrency::check(req.concurrency_key.as_deref(), req.concurrency_limit)?;
        let id = JobId::new();
        crate::workflow::check_dependencies(id, &req.depends_on)?;
        Ok(NewJob {
            id,
            owner: owner.clone(),
            kind,
            queue,
            prompt: req.prompt,
            params,
            priority,
            max_attempts,
            timeout_ms: timeout.as_millis() as u64,
            run_at,
            max_queued: l.max_queued_per_owner,
            webhook: req.webhook,
            notify_deployment: self.inner.webhooks.notify_deployment,
            trace_parent: self
                .trace_propagator()
                .and_then(|p| p.current())
                .filter(|t| t.len() <= crate::trace::MAX_TRACE_PARENT_BYTES),
            review: req.review,
            parent_id: None,
            child_key: None,
            project: req.project,
            depends_on: req.depends_on,
            concurrency_key: req.concurrency_key,
            concurrency_limit: req.concurrency_limit,
        })
    }

    /// Validates and stores a job, publishes its first event and wakes a worker.
    ///
    /// Once this returns, the job is durable: if the queue cannot be reached,
    /// recovery pushes it later.
    pub async fn submit(&self, owner: &Owner, req: Submit) -> Result<Job> {
        let new = self.validate(owner, req)?;
        self.check_webhook(&new).await?;
        let changed = self.inner.store.create_job(new).await?;
        self.submitted(&changed).await;
        Ok(changed.job)
    }

    /// Checks the address of a validated submission's webhook, which needs
    /// its host resolved.
    pub(crate) async fn check_webhook(&self, new: &NewJob) -> Result<()> {
        if let (Some(url), Some(check)) = (&new.webhook, &self.inner.webhooks.check) {
            check
                .check(url)
                .await
                .map_err(|reason| Error::invalid("webhook", reason))?;
        }
        Ok(())
    }

    /// Counts a created job, publishes its first event and wakes a worker.
    pub(crate) async fn submitted(&self, changed: &crate::Changed) {
        self.metrics().submitted(&changed.job.kind);
        // Independent: watchers order events by seq whatever arrives first.
        tokio::join!(
            self.publish(&changed.job.kind, &changed.events),
            self.wake_queued(&changed.job)
        );
    }

    /// The webhook deliveries of the owner's job, oldest first, with their tries.
    pub async fn deliveries(&self, owner: &Owner, id: JobId) -> Result<Vec<DeliveryLog>> {
        self.get(owner, id).await?;
        self.inner.store.deliveries(id).await
    }

    /// The owner's job.
    pub async fn get(&self, owner: &Owner, id: JobId) -> Result<Job> {
        match self.inner.store.get_job(id).await? {
            Some(job) if &job.owner == owner => Ok(job),
            _ => Err(Error::not_found("job")),
        }
    }

    /// A page of the owner's jobs. `query.limit` is clamped to 1..=`max_page`
    /// (0 means 50).
    pub async fn list(&self, owner: &Owner, query: JobQuery) -> Result<Page<Job>> {
        let limit = self.page_size(query.limit);
        let mut q = query;
        q.limit = limit + 1;
        let mut items = self.inner.store.list_jobs(owner, &q).await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|j| j.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Cancels the owner's job: a queued job at once, a running one within a
    /// heartbeat of its worker.
    pub async fn cancel(&self, owner: &Owner, id: JobId) -> Result<Job> {
        self.get(owner, id).await?;
        let changed = self.inner.store.request_cancel(id).await?;
        self.announce(&changed).await;
        Ok(changed.job)
    }

    /// Starts a failed or cancelled job again, with a fresh attempt budget.
    pub async fn retry(&self, owner: &Owner, id: JobId) -> Result<Job> {
        self.get(owner, id).await?;
        let changed = self.inner.store.retry(id).await?;
        self.publish(&changed.job.kind, &changed.events).await;
        self.wake(&changed.job).await;
        Ok(changed.job)
    }

    /// The job's events after `after`, at most `limit` (clamped like a page).
    pub async fn events(
        &self,
        owner: &Owner,
        id: JobId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JobEvent>> {
        self.get(owner, id).await?;
        self.inner
            .store
            .events(id, after, self.page_size(limit))
            .await
    }

    /// The owner's job with its whole event log and its attempts (what a job
    /// page shows), read together by [`Store::job_detail`].
    pub async fn detail(&self, owner: &Owner, id: JobId) -> Result<JobDetail> {
        match self.inner.store.job_detail(id).await? {
            Some(detail) if &detail.job.owner == owner => Ok(detail),
            _ => Err(Error::not_found("job")),
        }
    }

    /// The job's attempts.
    pub async fn attempts(&self, owner: &Owner, id: JobId) -> Result<Vec<Attempt>> {
        self.get(owner, id).await?;
        self.inner.store.attempts(id).await
    }

    /// Streams the job's events with `seq > after`: in order, each once, without
    /// gaps — first from the store, then live. The stream ends after a terminal
    /// status event that is the job's latest.
    pub async fn watch(&self, owner: &Owner, id: JobId, after: u64) -> Result<EventStream> {
        self.get(owner, id).await?;
        Ok(watch::watch(
            self.inner.store.clone(),
            self.inner.notifier.clone(),
            self.inner.watch.clone(),
            id,
            after,
        )
        .await)
    }

    /// The owner's app.
    pub async fn app(&self, owner: &Owner, id: AppId) -> Result<App> {
        match self.inner.store.get_app(id).await? {
            Some(app) if &app.owner == owner => Ok(app),
            _ => Err(Error::not_found("app")),
        }
    }

    /// The app the owner's job published.
    pub async fn app_by_job(&self, owner: &Owner, job_id: JobId) -> Result<App> {
        self.get(owner, job_id).await?;
        self.inner
            .store
            .app_by_job(job_id)
            .await?
            .ok_or(Error::not_found("app"))
    }

    /// A page of the owner's apps, oldest first.
    pub async fn apps(
        &self,
        owner: &Owner,
        cursor: Option<AppId>,
        limit: usize,
    ) -> Result<Page<App>> {
        let limit = self.page_size(limit);
        let mut items = self.inner.store.list_apps(owner, cursor, limit + 1).await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|a| a.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// The artifacts of the owner's job, by name.
    pub async fn artifacts(&self, owner: &Owner, job_id: JobId) -> Result<Vec<Artifact>> {
        self.get(owner, job_id).await?;
        self.inner.store.artifacts(job_id).await
    }

    /// The artifact `name` of the owner's job.
    pub async fn artifact(&self, owner: &Owner, job_id: JobId, name: &str) -> Result<Artifact> {
        self.get(owner, job_id).await?;
        self.inner
            .store
            .artifact(job_id, name)
            .await?
            .ok_or(Error::not_found("artifact"))
    }

    /// Opens the artifact `name` of the owner's job for reading: all of it, or
    /// the bytes `range` (which must lie within it, else
    /// [`Error::Invalid`]). The bytes stream as they are read, never held
    /// whole.
    pub async fn open_artifact(
        &self,
        owner: &Owner,
        job_id: JobId,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<ArtifactReader> {
        let mut artifact = self.artifact(owner, job_id, name).await?;
        // A later attempt may replace the artifact between the read of its
        // metadata and the read of its bytes, whose old blob is then gone:
        // read the metadata again, once.
        for last in [false, true] {
            let range = range.clone().unwrap_or(0..artifact.size);
            if range.start > range.end || range.end > artifact.size {
                return Err(Error::invalid("range", "must lie within the artifact"));
            }
            match self
                .inner
                .artifacts
                .read(&artifact.blob, range.clone())
                .await
            {
                Ok(body) => {
                    return Ok(ArtifactReader {
                        artifact,
                        range,
                        body,
                    })
                }
                Err(Error::NotFound { .. }) if !last => {
                    artifact = self.artifact(owner, job_id, name).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::not_found("artifact"))
    }

    /// Uploads an artifact of the attempt `fence` (of a job of `kind`), then
    /// makes it visible (fenced) and publishes its event: on any refusal, the
    /// upload is deleted and nothing is visible. What
    /// [`JobCallbacks::put_artifact`](crate::JobCallbacks::put_artifact) does
    /// in process, and the agent protocol's upload does for a remote agent.
    pub async fn put_artifact(
        &self,
        kind: &str,
        fence: Fence,
        name: &str,
        content_type: &str,
        body: ArtifactBody,
    ) -> Result<Artifact> {
        artifact::validate_name(name)?;
        artifact::validate_content_type(content_type)?;
        let blobs = &self.inner.artifacts;
        let up = blobs.upload(fence.job_id, fence.attempt, body).await?;
        let new = NewArtifact {
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            size: up.size,
            sha256: up.sha256,
            blob: up.blob.clone(),
            max_job_bytes: Some(blobs.limits().max_job_bytes),
        };
        let saved = match self.inner.store.put_artifact(fence, new).await {
            Ok(saved) => saved,
            Err(e) => {
                blobs.delete(&up.blob).await;
                return Err(e);
            }
        };
        self.publish(kind, &saved.events).await;
        if let Some(old) = saved.replaced {
            blobs.delete(&old.blob).await;
        }
        Ok(saved.artifact)
    }

    /// Checks that the store and the queue answer.
    pub async fn ready(&self) -> Result<()> {
        self.inner.store.ping().await?;
        let queue = self
            .inner
            .registry
            .queues()
            .into_iter()
            .next()
            .unwrap_or_else(|| "default".to_owned());
        self.inner.queue.depth(&queue).await?;
        Ok(())
    }

    /// Registers this engine's [metrics](crate::metrics) with `recorder`
    /// instead of the recorder current when it was built (the global one).
    /// Only the first binding counts: `false` if the engine was bound before.
    /// Bind before work runs: an attempt keeps the handles it started with.
    pub fn bind_metrics(&self, recorder: &dyn ::metrics::Recorder) -> bool {
        let mut fresh = false;
        self.inner.bound_metrics.get_or_init(|| {
            fresh = true;
            EngineMetrics::register_with(recorder, &self.inner.registry)
        });
        fresh
    }

    /// Sets the queue-depth gauges from the queue: call it before rendering
    /// the [metrics](crate::metrics).
    pub async fn read_queue_depth(&self) {
        self.metrics().read_queue_depth(&*self.inner.queue).await;
    }

    pub(crate) fn metrics(&self) -> &EngineMetrics {
        self.inner
            .bound_metrics
            .get()
            .unwrap_or(&self.inner.metrics)
    }

    /// Registers an observer of every event this engine publishes.
    pub fn add_observer(&self, observer: Arc<dyn EventObserver>) {
        self.inner
            .observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(observer);
        self.inner
            .observed
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Publishes persisted events of a job of `kind` to the notifier and the
    /// observers; a notifier failure is logged, not returned, because watchers
    /// catch up from the store.
    pub(crate) async fn publish(&self, kind: &str, events: &[JobEvent]) {
        if events.is_empty() {
            return;
        }
        self.metrics().persisted(kind, events);
        if self
            .inner
            .observed
            .load(std::sync::atomic::Ordering::Acquire)
        {
            for observer in self
                .inner
                .observers
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                observer.observe(kind, events);
            }
        }
        if let Err(e) = self.inner.notifier.publish(events).await {
            tracing::warn!(error = %e, job_id = %events[0].job_id, "publishing events failed; watchers will read them from the store");
        }
    }

    /// Pushes a queued job to its queue; a queue failure is logged, not
    /// returned, because recovery pushes due jobs again.
    pub(crate) async fn wake(&self, job: &Job) {
        // A job due by its own last change (a submission for now) is due now:
        // no need to read the clock.
        let delayed = job.run_at > job.updated_at && job.run_at > Utc::now();
        let entry = QueueEntry {
            job_id: job.id,
            priority: job.priority,
            not_before: delayed.then_some(job.run_at),
            group: self.queue_group(&job.owner),
        };
        if let Err(e) = self.inner.queue.push(&job.queue, entry).await {
            tracing::warn!(error = %e, job_id = %job.id, "waking a worker failed; recovery will push the job again");
        }
    }

    /// Pushes `job` to its queue if it is `queued` (a `waiting` job is
    /// pushed when its dependencies release it).
    pub(crate) async fn wake_queued(&self, job: &Job) {
        if job.status == crate::JobStatus::Queued {
            self.wake(job).await;
        }
    }

    /// Publishes a store change: the job's events, and each dependent's it
    /// moved; wakes every job of it that is `queued` now.
    pub(crate) async fn announce(&self, changed: &crate::Changed) {
        self.publish(&changed.job.kind, &changed.events).await;
        self.wake_queued(&changed.job).await;
        for dependent in &changed.dependents {
            self.publish(&dependent.job.kind, &dependent.events).await;
            self.wake_queued(&dependent.job).await;
        }
    }

    pub(crate) fn page_size(&self, limit: usize) -> usize {
        if limit == 0 {
            50
        } else {
            limit.min(self.inner.limits.max_page)
        }
    }

    /// This engine with fair queues on or off (default: off). When on, every
    /// job this engine (and its workers' recovery) pushes to a queue carries
    /// its owner as the entry's [`group`](QueueEntry::group): within a
    /// priority, owners with a backlog then take turns (see the [`Queue`]
    /// contract), so one owner's 10 000 queued jobs delay another owner's job
    /// by a few job durations, not by 10 000. When off, entries carry no group
    /// and a priority is served first-in first-out. Like
    /// [`Engine::with_watch_config`], the answer is a new engine over the same
    /// backends, registry and observers.
    pub fn with_fair_queues(self, on: bool) -> Self {
        self.rebuild(|s| s.fair_queues = on)
    }

    /// Whether fair queues are on (see [`Engine::with_fair_queues`]).
    pub fn fair_queues(&self) -> bool {
        self.inner.fair_queues
    }

    /// The fairness group of a job of `owner`: the owner when fair queues
    /// are on.
    pub(crate) fn queue_group(&self, owner: &Owner) -> Option<String> {
        self.inner.fair_queues.then(|| owner.as_str().to_owned())
    }
}

/// The length of `value` serialized as JSON, without building the text.
fn serialized_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => 0,
    }
}
