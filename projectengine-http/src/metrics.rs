//! Prometheus export: one recorder per router (never the global one, so any
//! number of routers can live in one process, each with its own figures).
//!
//! The job and attempt metrics are emitted by core, where things happen
//! (see [`projectengine_core::metrics`]); [`Metrics::new`] binds the engine's
//! handles to this router's recorder. An engine serves one router's
//! `/metrics`: a second router over the same engine shows only its own
//! streams. This crate adds what only it knows: its open WebSockets and SSE
//! streams. The queue depth is read from the queue at scrape time.

use std::sync::Arc;

use metrics::{Gauge, Key, KeyName, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use projectengine_core::metrics::ATTEMPT_DURATION;
use projectengine_core::Engine;

const OPEN_WEBSOCKETS: &str = "projectengine_open_websockets";
const OPEN_SSE: &str = "projectengine_open_sse_streams";

/// The metrics of one router; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    handle: PrometheusHandle,
    open_websockets: Gauge,
    open_sse: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh recorder, to which `engine`'s metrics are bound (unless another
    /// router bound them first).
    pub fn new(engine: &Engine) -> Self {
        let buckets = [
            0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
        ];
        // Fails only for an empty bucket list; then the histogram renders as a summary.
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(ATTEMPT_DURATION.to_owned()), &buckets)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        if !engine.bind_metrics(&recorder) {
            tracing::debug!("the engine's metrics are exported by another router already");
        }
        describe(&recorder);
        let open_websockets = gauge(&recorder, OPEN_WEBSOCKETS);
        let open_sse = gauge(&recorder, OPEN_SSE);
        Self {
            inner: Arc::new(Inner {
                handle: recorder.handle(),
                open_websockets,
                open_sse,
            }),
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
        engine.read_queue_depth().await;
        self.inner.handle.run_upkeep();
        self.inner.handle.render()
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

fn gauge(r: &PrometheusRecorder, name: &'static str) -> Gauge {
    let metadata = Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
    r.register_gauge(&Key::from_name(name), &metadata)
}

fn describe(r: &PrometheusRecorder) {
    let help = |s: &'static str| SharedString::from(s);
    r.describe_gauge(
        KeyName::from(OPEN_WEBSOCKETS),
        None,
        help("WebSocket connections open on this router."),
    );
    r.describe_gauge(
        KeyName::from(OPEN_SSE),
        None,
        help("Server-sent event streams open on this router."),
    );
}
