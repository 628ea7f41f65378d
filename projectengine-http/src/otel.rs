//! OpenTelemetry traces (feature `otel`): the `tracing` spans of requests and
//! attempts exported over OTLP (HTTP/protobuf), and one trace per job, from
//! the request that submits it to the attempts that run it.
//!
//! - [`Otel`] builds the exporter and the `tracing` layer
//!   ([`tracing_opentelemetry`]) that turns spans into OpenTelemetry spans.
//! - [`instrument`](crate::instrument) continues the trace of an incoming
//!   W3C `traceparent` header, when there is one, in the request's span.
//! - [`OtelPropagator`], installed with
//!   [`Engine::set_trace_propagator`](projectengine_core::Engine::set_trace_propagator),
//!   stores the submitting request's trace context on the job
//!   (`Job::trace_parent`) and makes the worker's `attempt` span its child, so
//!   the attempt's spans and events (callbacks, the finish) join the
//!   submitter's trace, in this process or in another worker process.
//!
//! ```no_run
//! use projectengine_core::{Engine, Registry, StubOrchestrator};
//! use projectengine_http::{Otel, OtelPropagator};
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! let otel = Otel::otlp("http://127.0.0.1:4318", "my-service").unwrap();
//! tracing_subscriber::registry().with(otel.layer()).init();
//! let engine = Engine::in_memory(Registry::new().register("stub", StubOrchestrator::default()));
//! engine.set_trace_propagator(OtelPropagator);
//! // … serve, run workers; at exit:
//! otel.shutdown().unwrap();
//! ```

use std::collections::HashMap;
use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use projectengine_core::TracePropagator;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

const TRACEPARENT: &str = "traceparent";

/// Why traces cannot be exported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The exporter could not be built (e.g. a malformed endpoint).
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    /// Flushing or shutting down failed.
    #[error("cannot export the traces: {0}")]
    Export(String),
}

/// The OTLP trace exporter and its provider. Keep it for the life of the
/// process and [`shutdown`](Otel::shutdown) at exit, which sends what is
/// still buffered.
#[derive(Clone, Debug)]
pub struct Otel {
    provider: SdkTracerProvider,
}

impl Otel {
    /// Exports to the OTLP/HTTP collector at `endpoint` (its base URL, such as
    /// `http://collector:4318`; spans go to `{endpoint}/v1/traces` as
    /// protobuf), in batches, naming the service `service_name`.
    pub fn otlp(endpoint: &str, service_name: &str) -> Result<Self, OtelError> {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OtelError::Exporter(e.to_string()))?;
        let resource = Resource::builder()
            .with_service_name(service_name.to_owned())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Self { provider })
    }

    /// The `tracing` layer that records spans into OpenTelemetry, for a
    /// `tracing_subscriber` registry.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("projectengine"))
    }

    /// Sends the finished spans buffered so far, and waits for it (blocking:
    /// from async code, call it in `spawn_blocking`).
    pub fn flush(&self) -> Result<(), OtelError> {
        self.provider
            .force_flush()
            .map_err(|e| OtelError::Export(e.to_string()))
    }

    /// Sends what is buffered and stops exporting (blocking, like
    /// [`Otel::flush`]).
    pub fn shutdown(&self) -> Result<(), OtelError> {
        self.provider
            .shutdown()
            .map_err(|e| OtelError::Export(e.to_string()))
    }
}

/// The [`TracePropagator`] of OpenTelemetry's W3C trace context: the current
/// span's context as a `traceparent` at submission, the parent of the
/// worker's `attempt` span. Needs the [`Otel::layer`] in the subscriber (without
/// it, spans have no context and jobs carry none).
#[derive(Clone, Copy, Debug, Default)]
pub struct OtelPropagator;

impl TracePropagator for OtelPropagator {
    fn current(&self) -> Option<String> {
        let cx = tracing::Span::current().context();
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        carrier.remove(TRACEPARENT)
    }

    fn attach(&self, span: &tracing::Span, trace_parent: &str) {
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), trace_parent.to_owned())]);
        set_parent(span, &carrier);
    }
}

/// Makes a request's span continue the trace of its `traceparent` header
/// (and `tracestate`), when it has a valid one.
pub(crate) fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let carrier: HashMap<String, String> = [TRACEPARENT, "tracestate"]
        .into_iter()
        .filter_map(|name| {
            let value = headers.get(name)?.to_str().ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    if carrier.contains_key(TRACEPARENT) {
        set_parent(span, &carrier);
    }
}

fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    let cx = TraceContextPropagator::new().extract(carrier);
    if cx.span().span_context().is_valid() {
        // Fails only for a span already started or not recorded: then it
        // keeps its own trace.
        let _ = span.set_parent(cx);
    }
}
