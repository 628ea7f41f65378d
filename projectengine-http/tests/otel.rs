//! OpenTelemetry: spans exported over OTLP/HTTP to a collector stand-in (axum
//! on 127.0.0.1 decoding `POST /v1/traces` protobuf), and one trace from the
//! request that submits a job to the worker's attempt that runs it.
//!
//! One test in this binary: it installs the global subscriber.
#![cfg(feature = "otel")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use common::TestApp;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use projectengine_core::{JobId, JobStatus};
use projectengine_http::{Otel, OtelPropagator};
use prost::Message;
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

/// A received span: name, trace id, span id, parent span id (hex), and its
/// `job_id` attribute.
#[derive(Clone, Debug)]
struct Received {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    job_id: Option<String>,
}

type Spans = Arc<Mutex<Vec<Received>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn traces(State(spans): State<Spans>, body: Bytes) -> StatusCode {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut spans = spans.lock().unwrap();
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            for s in ss.spans {
                let job_id = s
                    .attributes
                    .iter()
                    .find(|a| a.key == "job_id")
                    .map(|a| format!("{:?}", a.value.as_ref().and_then(|v| v.value.as_ref())));
                spans.push(Received {
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    job_id,
                });
            }
        }
    }
    StatusCode::OK
}

async fn collector() -> (String, Spans) {
    let spans = Spans::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

async fn submit(app: &TestApp, traceparent: Option<&str>) -> JobId {
    let mut req = Request::post("/api/jobs/")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", app.token("alice")),
        )
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let reply = app
        .send(
            req.body(Body::from(json!({"prompt": "p"}).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json["id"].as_str().unwrap().parse().unwrap()
}

/// The spans received so far of the given name whose `job_id` is `id`, or
/// (for `request` spans, which carry the job id once routed) any.
fn named(spans: &Spans, name: &str) -> Vec<Received> {
    spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.name == name)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_submitting_request_to_the_attempt() {
    let (endpoint, spans) = collector().await;
    let otel = tokio::task::spawn_blocking(move || Otel::otlp(&endpoint, "projectengine-test"))
        .await
        .unwrap()
        .expect("exporter");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(otel.layer()))
        .expect("the only subscriber of this binary");

    let app = TestApp::new();
    assert!(app.engine.set_trace_propagator(OtelPropagator));

    // A caller that sends its own trace context: the job joins that trace.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let with_header = submit(
        &app,
        Some(&format!("00-{caller_trace}-00f067aa0ba902b7-01")),
    )
    .await;
    // A caller without one: the request starts the trace.
    let without = submit(&app, None).await;
    app.wait_for("alice", with_header, JobStatus::Succeeded)
        .await;
    app.wait_for("alice", without, JobStatus::Succeeded).await;
    let stored = app.engine.store().get_job(without).await.unwrap().unwrap();
    let stored = stored
        .trace_parent
        .expect("the job keeps its trace context");

    // The attempts' spans end when their finish is written, just before the
    // job reads succeeded: flush until both are exported.
    let mut attempts = Vec::new();
    for _ in 0..50 {
        let o = otel.clone();
        tokio::task::spawn_blocking(move || o.flush())
            .await
            .unwrap()
            .expect("flush");
        attempts = named(&spans, "attempt");
        if attempts.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = named(&spans, "request");
    let attempt_of = |id: JobId| {
        attempts
            .iter()
            .find(|s| {
                s.job_id
                    .as_deref()
                    .is_some_and(|j| j.contains(&id.to_string()))
            })
            .unwrap_or_else(|| panic!("no attempt span of {id}: {attempts:?}"))
            .clone()
    };

    let a = attempt_of(with_header);
    assert_eq!(a.trace_id, caller_trace, "the caller's trace continues");
    let req = requests
        .iter()
        .find(|r| r.trace_id == caller_trace)
        .expect("the submit request's span is in the caller's trace");
    assert_eq!(a.parent, req.span_id, "the attempt is the request's child");
    assert_eq!(
        req.parent, "00f067aa0ba902b7",
        "the request is the caller's child"
    );

    let b = attempt_of(without);
    assert_ne!(b.trace_id, caller_trace);
    let req = requests
        .iter()
        .find(|r| r.trace_id == b.trace_id)
        .expect("one trace id covers the submit request and the attempt");
    assert_eq!(a.parent.len(), 16);
    assert_eq!(b.parent, req.span_id, "the attempt is the request's child");
    assert_eq!(
        stored,
        format!("00-{}-{}-01", req.trace_id, req.span_id),
        "the job stores the request's context as a W3C traceparent"
    );
    // The attempt's writes are its children: its reports (written by the
    // callbacks), its app and its finish.
    for name in ["report", "publish_app", "finish"] {
        let children = named(&spans, name);
        for attempt in [&a, &b] {
            assert!(
                children
                    .iter()
                    .any(|c| c.trace_id == attempt.trace_id && c.parent == attempt.span_id),
                "no `{name}` span under the attempt {attempt:?}: {children:?}"
            );
        }
    }
    otel.shutdown().expect("shutdown");
}
