//! The real server built with `otel`, as separate web and worker processes on
//! PostgreSQL and Redis, exporting to a collector stand-in (axum on 127.0.0.1
//! decoding `POST /v1/traces` protobuf): the trace of the request that
//! submits a job continues in the other process's attempt, through the
//! job's stored `traceparent`.
#![cfg(feature = "otel")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::json;
use support::{deployment, migrate, submit, token, wait_status, Server};

/// (service, span name, trace id, span id, parent span id), ids in hex.
type Span = (String, String, String, String, String);
type Spans = Arc<Mutex<Vec<Span>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn traces(State(spans): State<Spans>, body: Bytes) -> StatusCode {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut spans = spans.lock().expect("spans");
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_ref()?.value.as_ref())
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
            spans.push((
                service.clone(),
                s.name,
                hex(&s.trace_id),
                hex(&s.span_id),
                hex(&s.parent_span_id),
            ));
        }
    }
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_one_trace_across_web_and_worker_processes() {
    let Some(env) = deployment().await else {
        return;
    };
    let spans = Spans::default();
    let collector = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, collector).await });

    migrate(&env);
    let with = |service: &str| {
        let mut env = env.clone();
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()));
        env.push(("OTEL_SERVICE_NAME", service.to_owned()));
        env
    };
    let mut web = Server::start("web", &with("pe-web"));
    let mut worker = Server::start("worker", &with("pe-worker"));
    let t = token("alice");
    let id = submit(web.addr(), &t, &json!({"prompt": "traced"})).await;
    wait_status(web.addr(), &t, &id, "succeeded", Duration::from_secs(30)).await;
    // A graceful stop sends what the exporters still hold.
    assert!(worker.terminate().success());
    assert!(web.terminate().success());

    let spans = spans.lock().expect("spans").clone();
    let of = |service: &str, name: &str| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| s.0.contains(service) && s.1 == name)
            .cloned()
            .collect()
    };
    let attempts = of("pe-worker", "attempt");
    assert_eq!(attempts.len(), 1, "{spans:?}");
    let attempt = &attempts[0];
    let submit_span = of("pe-web", "request")
        .into_iter()
        .find(|r| r.2 == attempt.2)
        .unwrap_or_else(|| panic!("no web request span in the attempt's trace: {spans:?}"));
    assert_eq!(
        attempt.4, submit_span.3,
        "the attempt is the submit's child"
    );
    let finish = of("pe-worker", "finish");
    assert!(
        finish.iter().any(|f| f.2 == attempt.2 && f.4 == attempt.3),
        "the finish is the attempt's child: {spans:?}"
    );
}
