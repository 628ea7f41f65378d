//! Metrics of jobs and attempts, emitted through the [`metrics`] facade where
//! things happen: a submission in [`Engine::submit`](crate::Engine::submit),
//! an attempt in the worker, a terminal status wherever one is persisted
//! (an attempt's end, a cancel, recovery). Every figure is this process's own;
//! sum across processes for the fleet.
//!
//! An [`Engine`](crate::Engine) registers its handles (one set per kind and
//! per queue of its registry) when it is built, with the recorder current
//! then: the global one (`metrics::set_global_recorder`, e.g. a Prometheus
//! exporter's `install`), so a worker process without any HTTP router has
//! them too. [`Engine::bind_metrics`](crate::Engine::bind_metrics) registers
//! them with another recorder instead, once: the HTTP crate gives each router
//! its own, so that several routers (and engines) live in one process with
//! separate figures. Handles are registered up front: emitting one costs an
//! atomic operation, never an allocation or a lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::{JobEvent, JobStatus, Queue, Registry};

/// Jobs submitted, by `kind`.
pub const JOBS_SUBMITTED: &str = "projectengine_jobs_submitted_total";
/// Jobs that reached a terminal status, by `kind` and `status`.
pub const JOBS_FINISHED: &str = "projectengine_jobs_finished_total";
/// Attempts running, by `kind`.
pub const RUNNING_ATTEMPTS: &str = "projectengine_running_attempts";
/// Attempt durations in seconds, by `kind`.
pub const ATTEMPT_DURATION: &str = "projectengine_attempt_duration_seconds";
/// Queue entries, by `queue` and `state` (`ready`, `delayed`, `in_flight`).
pub const QUEUE_DEPTH: &str = "projectengine_queue_depth";

/// The handles of one kind.
pub(crate) struct KindMetrics {
    submitted: Counter,
    succeeded: Counter,
    failed: Counter,
    cancelled: Counter,
    running: Gauge,
    attempt_seconds: Histogram,
}

/// An engine's handles, registered with one recorder.
#[derive(Clone)]
pub(crate) struct EngineMetrics {
    kinds: HashMap<String, Arc<KindMetrics>, foldhash::fast::RandomState>,
    queues: Vec<(String, [Gauge; 3])>,
}

impl EngineMetrics {
    /// Registers the handles of `registry`'s kinds and queues with the
    /// current recorder, and describes them.
    pub(crate) fn register(registry: &Registry) -> Self {
        describe();
        let kinds = registry
            .kinds()
            .map(|kind| {
                let k = kind.to_owned();
                let finished = |status: &'static str| {
                    metrics::counter!(JOBS_FINISHED, "kind" => k.clone(), "status" => status)
                };
                let m = KindMetrics {
                    submitted: metrics::counter!(JOBS_SUBMITTED, "kind" => k.clone()),
                    succeeded: finished("succeeded"),
                    failed: finished("failed"),
                    cancelled: finished("cancelled"),
                    running: metrics::gauge!(RUNNING_ATTEMPTS, "kind" => k.clone()),
                    attempt_seconds: metrics::histogram!(ATTEMPT_DURATION, "kind" => k.clone()),
                };
                (k, Arc::new(m))
            })
            .collect();
        let queues = registry
            .queues()
            .into_iter()
            .map(|q| {
                let gauges = ["ready", "delayed", "in_flight"].map(
                    |state| metrics::gauge!(QUEUE_DEPTH, "queue" => q.clone(), "state" => state),
                );
                (q, gauges)
            })
            .collect();
        Self { kinds, queues }
    }

    /// Like [`register`](Self::register), with `recorder`.
    pub(crate) fn register_with(recorder: &dyn metrics::Recorder, registry: &Registry) -> Self {
        metrics::with_local_recorder(recorder, || Self::register(registry))
    }

    pub(crate) fn kind(&self, kind: &str) -> Option<&Arc<KindMetrics>> {
        self.kinds.get(kind)
    }

    /// Counts a submission.
    pub(crate) fn submitted(&self, kind: &str) {
        if let Some(m) = self.kind(kind) {
            m.submitted.increment(1);
        }
    }

    /// Counts the terminal statuses among persisted `events` of a job of `kind`.
    pub(crate) fn persisted(&self, kind: &str, events: &[JobEvent]) {
        for ev in events {
            let Some(status) = ev.status() else { continue };
            if !status.is_terminal() {
                continue;
            }
            let Some(m) = self.kind(kind) else { return };
            match status {
                JobStatus::Succeeded => m.succeeded.increment(1),
                JobStatus::Failed => m.failed.increment(1),
                JobStatus::Cancelled => m.cancelled.increment(1),
                _ => {}
            }
        }
    }

    /// Reads each queue's depth into its gauges.
    pub(crate) async fn read_queue_depth(&self, queue: &dyn Queue) {
        for (name, [ready, delayed, in_flight]) in &self.queues {
            match queue.depth(name).await {
                Ok(d) => {
                    ready.set(d.ready as f64);
                    delayed.set(d.delayed as f64);
                    in_flight.set(d.in_flight as f64);
                }
                Err(e) => {
                    tracing::warn!(queue = %name, error = %e, "reading the queue depth failed")
                }
            }
        }
    }
}

/// An attempt running: counted in the running gauge until dropped, when its
/// duration is recorded.
pub(crate) struct RunningAttempt {
    metrics: Option<Arc<KindMetrics>>,
    started: Instant,
}

impl RunningAttempt {
    pub(crate) fn start(metrics: Option<&Arc<KindMetrics>>) -> Self {
        if let Some(m) = metrics {
            m.running.increment(1.0);
        }
        Self {
            metrics: metrics.cloned(),
            started: Instant::now(),
        }
    }
}

impl Drop for RunningAttempt {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            m.running.decrement(1.0);
            m.attempt_seconds
                .record(self.started.elapsed().as_secs_f64());
        }
    }
}

/// Describes every metric to the current recorder.
fn describe() {
    metrics::describe_counter!(
        JOBS_SUBMITTED,
        "Jobs submitted through this process's engine, by kind."
    );
    metrics::describe_counter!(
        JOBS_FINISHED,
        "Jobs this process moved to a terminal status (its workers' attempts, its cancels of queued jobs, its recovery), by kind and status."
    );
    metrics::describe_gauge!(
        RUNNING_ATTEMPTS,
        "Attempts running in this process's workers, by kind."
    );
    metrics::describe_histogram!(
        ATTEMPT_DURATION,
        Unit::Seconds,
        "Duration of the attempts this process's workers ran, by kind."
    );
    metrics::describe_gauge!(
        QUEUE_DEPTH,
        "Entries in each named queue, by state, read when the metrics are rendered."
    );
}
