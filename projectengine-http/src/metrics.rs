//! Prometheus metrics, one recorder per router (never the global one, so any
//! number of routers can live in one process).
//!
//! Every figure is this process's own, the usual Prometheus way (sum across
//! instances for the fleet):
//! - submissions it accepted;
//! - terminal statuses, running attempts and attempt durations, from every
//!   event its [`Engine`] publishes (an [`EventObserver`] registered by
//!   [`Metrics::new`]): the attempts its own workers run, and the cancels of
//!   queued jobs it accepted. A worker process serves them on its own `/metrics`;
//! - queue depth, read from the queue at scrape time;
//! - its own open WebSockets and SSE streams.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use projectengine_core::{Engine, EventObserver, JobEvent, JobId, JobStatus};

const SUBMITTED: &str = "projectengine_jobs_submitted_total";
const FINISHED: &str = "projectengine_jobs_finished_total";
const RUNNING: &str = "projectengine_running_attempts";
const ATTEMPT_SECONDS: &str = "projectengine_attempt_duration_seconds";
const QUEUE_DEPTH: &str = "projectengine_queue_depth";
const OPEN_WEBSOCKETS: &str = "projectengine_open_websockets";
const OPEN_SSE: &str = "projectengine_open_sse_streams";

/// How many (job, seq) pairs are remembered to count each event once.
const SEEN_CAPACITY: usize = 20_000;

/// The metrics of one router; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    kinds: Mutex<HashMap<String, KindMetrics>>,
    queues: Vec<(String, [Gauge; 3])>,
    open_websockets: Gauge,
    open_sse: Gauge,
    seen: Mutex<Seen>,
}

#[derive(Clone)]
struct KindMetrics {
    submitted: Counter,
    succeeded: Counter,
    failed: Counter,
    cancelled: Counter,
    running: Gauge,
    attempt_seconds: Histogram,
}

/// Events already counted, and attempts seen starting (bounded FIFOs).
#[derive(Default)]
struct Seen {
    events: HashSet<(JobId, u64)>,
    order: VecDeque<(JobId, u64)>,
    running: HashMap<(JobId, u32), (String, DateTime<Utc>)>,
    running_order: VecDeque<(JobId, u32)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh recorder, with a series per kind and per queue of `engine`'s registry.
    pub fn new(engine: &Engine) -> Self {
        let buckets = [
            0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
        ];
        // Fails only for an empty bucket list; then the histogram renders as a summary.
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(ATTEMPT_SECONDS.to_owned()), &buckets)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        describe(&recorder);
        let handle = recorder.handle();
        let queues = engine
            .registry()
            .queues()
            .into_iter()
            .map(|q| {
                let gauges = ["ready", "delayed", "in_flight"].map(|state| {
                    gauge(
                        &recorder,
                        QUEUE_DEPTH,
                        vec![Label::new("queue", q.clone()), Label::new("state", state)],
                    )
                });
                (q, gauges)
            })
            .collect();
        let open_websockets = gauge(&recorder, OPEN_WEBSOCKETS, vec![]);
        let open_sse = gauge(&recorder, OPEN_SSE, vec![]);
        let this = Self {
            inner: Arc::new(Inner {
                recorder,
                handle,
                kinds: Mutex::default(),
                queues,
                open_websockets,
                open_sse,
                seen: Mutex::default(),
            }),
        };
        for kind in engine.registry().kinds() {
            this.kind(kind);
        }
        engine.add_observer(Arc::new(this.clone()));
        this
    }

    /// Counts a submission accepted for `kind`.
    pub fn job_submitted(&self, kind: &str) {
        self.kind(kind).submitted.increment(1);
    }

    /// Counts what `events` of a job of `kind` show: terminal statuses and
    /// attempt durations. Each (job, seq) is counted once per process. Called
    /// for every event the engine publishes; call it yourself only for events
    /// that did not go through this process's engine.
    pub fn observe(&self, kind: &str, events: &[JobEvent]) {
        if events.is_empty() {
            return;
        }
        let m = self.kind(kind);
        let mut seen = lock(&self.inner.seen);
        for ev in events {
            if !seen.first_time(ev.job_id, ev.seq) {
                continue;
            }
            let Some(status) = ev.status() else { continue };
            if status == JobStatus::Running {
                if let Some(evicted) = seen.start(ev.job_id, ev.attempt, kind, ev.at) {
                    self.kind(&evicted).running.decrement(1.0);
                }
                m.running.increment(1.0);
                continue;
            }
            if let Some((started_kind, started)) = seen.end(ev.job_id, ev.attempt) {
                let km = if started_kind == kind {
                    m.clone()
                } else {
                    self.kind(&started_kind)
                };
                km.running.decrement(1.0);
                let secs = (ev.at - started).num_milliseconds().max(0) as f64 / 1000.0;
                km.attempt_seconds.record(secs);
            }
            match status {
                JobStatus::Succeeded => m.succeeded.increment(1),
                JobStatus::Failed => m.failed.increment(1),
                JobStatus::Cancelled => m.cancelled.increment(1),
                _ => {}
            }
        }
    }

    /// Marks a WebSocket open until the guard drops.
    pub fn websocket_opened(&self) -> OpenGuard {
        OpenGuard::new(self.inner.open_websockets.clone())
    }

    /// Marks an SSE stream open until the guard drops.
    pub fn sse_opened(&self) -> OpenGuard {
        OpenGuard::new(self.inner.open_sse.clone())
    }

    /// Reads the queue depths from `engine` and renders everything in the
    /// Prometheus text format.
    pub async fn render(&self, engine: &Engine) -> String {
        for (queue, [ready, delayed, in_flight]) in &self.inner.queues {
            match engine.queue().depth(queue).await {
                Ok(d) => {
                    ready.set(d.ready as f64);
                    delayed.set(d.delayed as f64);
                    in_flight.set(d.in_flight as f64);
                }
                Err(e) => tracing::warn!(%queue, error = %e, "reading the queue depth failed"),
            }
        }
        self.inner.handle.run_upkeep();
        self.inner.handle.render()
    }

    fn kind(&self, kind: &str) -> KindMetrics {
        let mut kinds = lock(&self.inner.kinds);
        if let Some(m) = kinds.get(kind) {
            return m.clone();
        }
        let r = &self.inner.recorder;
        let label = || Label::new("kind", kind.to_owned());
        let finished = |status: &'static str| {
            counter(r, FINISHED, vec![label(), Label::new("status", status)])
        };
        let m = KindMetrics {
            submitted: counter(r, SUBMITTED, vec![label()]),
            succeeded: finished("succeeded"),
            failed: finished("failed"),
            cancelled: finished("cancelled"),
            running: gauge(r, RUNNING, vec![label()]),
            attempt_seconds: r.register_histogram(
                &Key::from_parts(ATTEMPT_SECONDS, vec![label()]),
                &metadata(),
            ),
        };
        kinds.insert(kind.to_owned(), m.clone());
        m
    }
}

impl Seen {
    fn first_time(&mut self, job: JobId, seq: u64) -> bool {
        if !self.events.insert((job, seq)) {
            return false;
        }
        self.order.push_back((job, seq));
        if self.order.len() > SEEN_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.events.remove(&old);
            }
        }
        true
    }

    /// Records a start; answers the kind of an evicted start, if one was.
    fn start(&mut self, job: JobId, attempt: u32, kind: &str, at: DateTime<Utc>) -> Option<String> {
        if self
            .running
            .insert((job, attempt), (kind.to_owned(), at))
            .is_some()
        {
            return None;
        }
        self.running_order.push_back((job, attempt));
        while self.running_order.len() > SEEN_CAPACITY {
            let old = self.running_order.pop_front()?;
            if let Some((kind, _)) = self.running.remove(&old) {
                return Some(kind);
            }
        }
        None
    }

    fn end(&mut self, job: JobId, attempt: u32) -> Option<(String, DateTime<Utc>)> {
        let started = self.running.remove(&(job, attempt))?;
        self.running_order.retain(|k| *k != (job, attempt));
        Some(started)
    }
}

/// Decrements its gauge when dropped.
#[derive(Debug)]
pub struct OpenGuard {
    gauge: Gauge,
}

impl OpenGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self { gauge }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

fn counter(r: &PrometheusRecorder, name: &'static str, labels: Vec<Label>) -> Counter {
    r.register_counter(&Key::from_parts(name, labels), &metadata())
}

fn gauge(r: &PrometheusRecorder, name: &'static str, labels: Vec<Label>) -> Gauge {
    r.register_gauge(&Key::from_parts(name, labels), &metadata())
}

fn describe(r: &PrometheusRecorder) {
    let help = |s: &'static str| SharedString::from(s);
    r.describe_counter(
        KeyName::from(SUBMITTED),
        None,
        help("Jobs submitted through this API, by kind."),
    );
    r.describe_counter(
        KeyName::from(FINISHED),
        None,
        help("Jobs seen reaching a terminal status in the events this process served, by kind and status."),
    );
    r.describe_gauge(
        KeyName::from(RUNNING),
        None,
        help("Attempts seen starting, and not yet seen ending, in the events this process served."),
    );
    r.describe_histogram(
        KeyName::from(ATTEMPT_SECONDS),
        Some(metrics::Unit::Seconds),
        help("Duration of attempts whose start and end this process served, by kind."),
    );
    r.describe_gauge(
        KeyName::from(QUEUE_DEPTH),
        None,
        help("Entries in each named queue, by state, read at scrape time."),
    );
    r.describe_gauge(
        KeyName::from(OPEN_WEBSOCKETS),
        None,
        help("WebSocket connections open on this process."),
    );
    r.describe_gauge(
        KeyName::from(OPEN_SSE),
        None,
        help("Server-sent event streams open on this process."),
    );
}

impl EventObserver for Metrics {
    fn observe(&self, kind: &str, events: &[JobEvent]) {
        Metrics::observe(self, kind, events);
    }
}
