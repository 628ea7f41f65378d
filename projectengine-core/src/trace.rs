//! Carrying a trace from the request that submits a job to the worker that
//! runs it.
//!
//! Core knows no tracing backend: a job only carries its submitter's trace
//! context as a string, [`Job::trace_parent`](crate::Job::trace_parent) (a
//! W3C `traceparent`, such as
//! `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`). A
//! [`TracePropagator`], installed on the [`Engine`](crate::Engine) by the
//! layer that exports traces (e.g. `projectengine-http`'s `otel` feature),
//! fills it at [`submit`](crate::Engine::submit) from the current `tracing`
//! span, and makes each attempt's span a child of it in the worker. Without a
//! propagator, jobs carry no trace context and attempts start their own traces.

use std::sync::Arc;

/// The longest trace context a job keeps, in bytes; a longer one is dropped.
pub const MAX_TRACE_PARENT_BYTES: usize = 256;

/// Turns the current `tracing` span into a storable trace context, and a
/// stored one into the parent of a span.
///
/// # Contract
/// - [`current`](TracePropagator::current) answers the context of the
///   current span (`tracing::Span::current()`), or `None` when there is none
///   worth carrying. It is called inside the span of the submitting request.
/// - [`attach`](TracePropagator::attach) makes `span` (a new, not yet entered
///   span: the worker's `attempt`) a child of `trace_parent`; a context it
///   cannot parse leaves the span as it is.
pub trait TracePropagator: Send + Sync + 'static {
    /// The current span's context, as a W3C `traceparent`.
    fn current(&self) -> Option<String>;

    /// Makes `span` a child of the stored context.
    fn attach(&self, span: &tracing::Span, trace_parent: &str);
}

impl<P: TracePropagator + ?Sized> TracePropagator for Arc<P> {
    fn current(&self) -> Option<String> {
        (**self).current()
    }

    fn attach(&self, span: &tracing::Span, trace_parent: &str) {
        (**self).attach(span, trace_parent);
    }
}
