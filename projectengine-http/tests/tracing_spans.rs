//! Each request runs in a span carrying its request id (and `job_id` on job
//! routes); a 500 is logged inside it. A small capturing subscriber records
//! spans and events; the tests run on one thread, where it is the default.

mod common;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::TestApp;
use projectengine_core::memory::{MemoryNotifier, MemoryQueue};
use projectengine_core::testkit::MockStore;
use projectengine_core::{Engine, Error, Registry, StubOrchestrator};
use projectengine_http::{router, JwtAuth};
use serde_json::json;
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Fields = HashMap<String, String>;

#[derive(Default)]
struct Captured {
    spans: HashMap<u64, (String, Fields)>,
    meta: HashMap<u64, &'static Metadata<'static>>,
    stack: Vec<u64>,
    /// Each event's fields and the spans it happened in.
    events: Vec<(Fields, Vec<(String, Fields)>)>,
}

#[derive(Clone, Default)]
struct Capture {
    data: Arc<Mutex<Captured>>,
    next: Arc<AtomicU64>,
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        let mut data = self.data.lock().unwrap();
        data.spans
            .insert(id, (attrs.metadata().name().to_owned(), fields));
        data.meta.insert(id, attrs.metadata());
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut data = self.data.lock().unwrap();
        if let Some((_, fields)) = data.spans.get_mut(&span.into_u64()) {
            values.record(&mut Visitor(fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        let mut data = self.data.lock().unwrap();
        let spans = data
            .stack
            .iter()
            .filter_map(|id| data.spans.get(id).cloned())
            .collect();
        data.events.push((fields, spans));
    }
    fn current_span(&self) -> tracing_core::span::Current {
        let data = self.data.lock().unwrap();
        match data
            .stack
            .last()
            .and_then(|id| Some((*id, *data.meta.get(id)?)))
        {
            Some((id, meta)) => tracing_core::span::Current::new(Id::from_u64(id), meta),
            None => tracing_core::span::Current::none(),
        }
    }
    fn enter(&self, span: &Id) {
        self.data.lock().unwrap().stack.push(span.into_u64());
    }
    fn exit(&self, span: &Id) {
        let mut data = self.data.lock().unwrap();
        if let Some(i) = data.stack.iter().rposition(|s| *s == span.into_u64()) {
            data.stack.remove(i);
        }
    }
}

fn request_spans(c: &Capture) -> Vec<Fields> {
    c.data
        .lock()
        .unwrap()
        .spans
        .values()
        .filter(|(name, _)| name == "request")
        .map(|(_, f)| f.clone())
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_job_route_span_carries_the_request_id_and_the_job_id() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let app = TestApp::idle();
    let t = app.token("alice");
    let id = app.submit(&t, json!({"prompt": "x"})).await;
    let req = Request::get(format!("/api/jobs/{id}/events/?token=do-not-log"))
        .header(header::AUTHORIZATION, format!("Bearer {t}"))
        .header("x-request-id", "req-7")
        .body(Body::empty())
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-request-id"], "req-7");

    let spans = request_spans(&capture);
    let span = spans
        .iter()
        .find(|f| f.get("request_id").map(String::as_str) == Some("req-7"))
        .expect("a request span with the request id");
    assert_eq!(span.get("job_id"), Some(&id.to_string()));
    assert_eq!(span.get("path"), Some(&format!("/api/jobs/{id}/events/")));
    assert_eq!(span.get("method").map(String::as_str), Some("GET"));
    // The submission's span got the new job's id too.
    assert!(spans
        .iter()
        .any(|f| f.get("path").map(String::as_str) == Some("/api/jobs/")
            && f.get("job_id") == Some(&id.to_string())));
    // Never the query string, which may hold a token.
    assert!(spans
        .iter()
        .all(|f| f.values().all(|v| !v.contains("do-not-log"))));
}

#[tokio::test(flavor = "current_thread")]
async fn a_500_is_logged_with_its_detail_inside_the_request_span() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let mut store = MockStore::new();
    store
        .expect_get_job()
        .returning(|_| Err(Error::internal("disk on fire")));
    let engine = Engine::new(
        Arc::new(store),
        Arc::new(MemoryQueue::default()),
        Arc::new(MemoryNotifier::default()),
        Registry::new().register("stub", StubOrchestrator::default()),
    );
    let auth = JwtAuth::hs256(common::SECRET).unwrap();
    let token = auth.mint("alice", Duration::from_secs(60)).unwrap();
    let id = projectengine_core::JobId::new();
    let res = router(engine, auth)
        .oneshot(
            Request::get(format!("/api/jobs/{id}/"))
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header("x-request-id", "req-500")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let data = capture.data.lock().unwrap();
    let (fields, spans) = data
        .events
        .iter()
        .find(|(f, _)| {
            f.get("message")
                .is_some_and(|m| m.contains("request failed"))
        })
        .expect("the failure is logged");
    assert!(fields["detail"].contains("disk on fire"), "{fields:?}");
    let (_, span) = spans
        .iter()
        .find(|(name, _)| name == "request")
        .expect("logged inside the request span");
    assert_eq!(span.get("request_id").map(String::as_str), Some("req-500"));
    assert_eq!(span.get("job_id"), Some(&id.to_string()));
}
