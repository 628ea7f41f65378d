//! `/health`, `/ready`, `/metrics`, `/openapi.json` and `/docs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::TestApp;
use http_body_util::BodyExt;
use projectengine_core::memory::{MemoryNotifier, MemoryStore};
use projectengine_core::{
    Delivery, Engine, Error, JobStatus, Queue, QueueDepth, QueueEntry, Registry, StubOrchestrator,
};
use projectengine_http::{router, JwtAuth};
use serde_json::{json, Value};
use tower::ServiceExt;

#[tokio::test]
async fn health_and_ready_answer_ok() {
    let app = TestApp::idle();
    for uri in ["/health", "/health/", "/ready", "/ready/"] {
        let r = app.call(Method::GET, uri, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.json, json!({"status": "ok"}));
    }
}

/// A queue that cannot be reached.
#[derive(Debug)]
struct DownQueue;

#[async_trait]
impl Queue for DownQueue {
    async fn push(&self, _: &str, _: QueueEntry) -> projectengine_core::Result<bool> {
        Err(Error::unavailable("queue down"))
    }
    async fn pop_many(
        &self,
        _: &[String],
        _: usize,
        _: Duration,
    ) -> projectengine_core::Result<Vec<Delivery>> {
        Err(Error::unavailable("queue down"))
    }
    async fn ack(&self, _: &Delivery) -> projectengine_core::Result<()> {
        Err(Error::unavailable("queue down"))
    }
    async fn nack(&self, _: &Delivery, _: Option<Duration>) -> projectengine_core::Result<()> {
        Err(Error::unavailable("queue down"))
    }
    async fn depth(&self, _: &str) -> projectengine_core::Result<QueueDepth> {
        Err(Error::unavailable("queue down at 10.0.0.7:6379"))
    }
}

#[tokio::test]
async fn ready_is_503_when_the_queue_is_down_and_health_stays_200() {
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(DownQueue),
        Arc::new(MemoryNotifier::default()),
        Registry::new().register("stub", StubOrchestrator::default()),
    );
    let app = router(engine, JwtAuth::hs256(common::SECRET).unwrap());
    let get = |uri: &'static str| {
        let app = app.clone();
        async move {
            let res = app
                .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = res.status();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = get("/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, r#"{"status":"unavailable"}"#);
    assert_eq!(get("/health").await.0, StatusCode::OK);
    // Metrics still render when the queue cannot be read.
    let (status, body) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("projectengine_open_websockets"), "{body}");
    assert!(!body.contains("10.0.0.7"), "{body}");
}

/// The value of one series in a Prometheus text exposition.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_submissions_outcomes_durations_and_queue_depth() {
    let app = TestApp::new();
    let t = app.token("alice");
    let ok = app
        .submit(&t, json!({"prompt": "x", "params": {"steps": 2}}))
        .await;
    let bad = app
        .submit(
            &t,
            json!({"prompt": "x", "kind": "other", "max_attempts": 1, "params": {"fail": "fatal"}}),
        )
        .await;
    app.wait_for("alice", ok, JobStatus::Succeeded).await;
    app.wait_for("alice", bad, JobStatus::Failed).await;
    // Nobody watched these jobs: the outcomes are counted from what the
    // process's engine published. Serving the events later counts nothing twice.
    for id in [ok, bad] {
        let r = app.get(&format!("/api/jobs/{id}/events/"), &t).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let m = &r.text;
    assert_eq!(
        sample(m, r#"projectengine_jobs_submitted_total{kind="stub"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(m, r#"projectengine_jobs_submitted_total{kind="other"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            m,
            r#"projectengine_jobs_finished_total{kind="stub",status="succeeded"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            m,
            r#"projectengine_jobs_finished_total{kind="other",status="failed"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            m,
            r#"projectengine_jobs_finished_total{kind="stub",status="failed"}"#
        ),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(
            m,
            r#"projectengine_attempt_duration_seconds_count{kind="stub"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        m.contains(r#"projectengine_attempt_duration_seconds_bucket{kind="stub",le="+Inf"} 1"#),
        "{m}"
    );
    assert_eq!(
        sample(m, r#"projectengine_running_attempts{kind="stub"}"#),
        Some(0.0),
        "{m}"
    );
    assert_eq!(sample(m, "projectengine_open_websockets"), Some(0.0), "{m}");
    assert!(
        m.contains("# HELP projectengine_jobs_submitted_total"),
        "{m}"
    );
    assert!(
        m.contains("# TYPE projectengine_attempt_duration_seconds histogram"),
        "{m}"
    );
}

#[tokio::test]
async fn queue_depth_is_read_at_scrape_time() {
    let app = TestApp::idle();
    let t = app.token("alice");
    for _ in 0..3 {
        app.submit(&t, json!({"prompt": "x"})).await;
    }
    let r = app.call(Method::GET, "/metrics/", None, None).await;
    assert_eq!(
        sample(
            &r.text,
            r#"projectengine_queue_depth{queue="stub",state="ready"}"#
        ),
        Some(3.0),
        "{}",
        r.text
    );
    assert_eq!(
        sample(
            &r.text,
            r#"projectengine_queue_depth{queue="other",state="ready"}"#
        ),
        Some(0.0),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn two_routers_in_one_process_keep_separate_metrics() {
    let a = TestApp::idle();
    let b = TestApp::idle();
    a.submit(&a.token("alice"), json!({"prompt": "x"})).await;
    let ra = a.call(Method::GET, "/metrics", None, None).await;
    let rb = b.call(Method::GET, "/metrics", None, None).await;
    let series = r#"projectengine_jobs_submitted_total{kind="stub"}"#;
    assert_eq!(sample(&ra.text, series), Some(1.0));
    assert_eq!(sample(&rb.text, series), Some(0.0));
}

/// Every route the router serves, as the document names it.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/jobs/"),
    ("get", "/api/jobs/"),
    ("get", "/api/jobs/{id}/"),
    ("post", "/api/jobs/{id}/cancel/"),
    ("post", "/api/jobs/{id}/retry/"),
    ("post", "/api/jobs/{id}/approve/"),
    ("post", "/api/jobs/{id}/reject/"),
    ("post", "/api/jobs/{id}/rerun/"),
    ("get", "/api/jobs/{id}/events/"),
    ("get", "/api/jobs/{id}/stream/"),
    ("get", "/api/apps/"),
    ("get", "/api/jobs/{id}/artifacts/"),
    ("get", "/api/jobs/{id}/artifacts/{name}"),
    ("get", "/api/jobs/{id}/webhooks/"),
    ("get", "/api/jobs/{id}/children/"),
    ("get", "/api/kinds/"),
    ("get", "/api/queues/"),
    ("get", "/api/jobs/{id}/audit/"),
    ("post", "/api/agent/v1/claim"),
    ("post", "/api/agent/v1/attempt/heartbeat"),
    ("post", "/api/agent/v1/attempt/events"),
    ("put", "/api/agent/v1/attempt/artifacts/{name}"),
    ("post", "/api/agent/v1/attempt/app"),
    ("post", "/api/agent/v1/attempt/children"),
    ("post", "/api/agent/v1/attempt/finish"),
    ("post", "/api/jobs/batch/"),
    ("get", "/api/projects/"),
    ("post", "/api/schedules/"),
    ("get", "/api/schedules/"),
    ("get", "/api/schedules/{id}/"),
    ("patch", "/api/schedules/{id}/"),
    ("delete", "/api/schedules/{id}/"),
    ("get", "/api/schedules/{id}/runs/"),
    ("get", "/api/apps/{id}/"),
    ("get", "/api/apps/by-job/{job_id}/"),
    ("get", "/ws/jobs/{id}/"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
];

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = TestApp::idle();
    let r = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = &r.json;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} missing"
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "{}",
        serde_json::to_string_pretty(paths).unwrap()
    );

    // Each documented operation exists in the router (with and without the slash).
    let t = app.token("alice");
    let id = projectengine_core::JobId::new();
    // The agent routes are served by `router_with_agents` (tested with the
    // agent SDK), not by this router.
    for (method, path) in ROUTES.iter().filter(|(_, p)| !p.starts_with("/api/agent/")) {
        let concrete = path
            .replace("{id}", &id.to_string())
            .replace("{job_id}", &id.to_string());
        let bare = concrete.trim_end_matches('/').to_owned();
        for uri in [
            concrete.clone(),
            bare,
            format!("{}/", concrete.trim_end_matches('/')),
        ] {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app.call(method.clone(), &uri, Some(&t), None).await;
            let unrouted = r.json["error"]["message"] == "route not found"
                || r.status == StatusCode::METHOD_NOT_ALLOWED;
            assert!(!unrouted, "{method} {uri}: {}", r.text);
        }
    }

    // Schemas come from the handlers' types; the bearer scheme is declared.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "CreateJob",
        "JobDto",
        "JobDetail",
        "JobPage",
        "EventDto",
        "EventPage",
        "AppDto",
        "AppPage",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let create = &paths["/api/jobs/"]["post"];
    assert!(create["responses"].get("201").is_some());
    assert_eq!(create["security"], json!([{"bearer": []}]));
    assert!(paths["/health"]["get"].get("security").is_none());
    let required: Vec<Value> = schemas["CreateJob"]["required"].as_array().unwrap().clone();
    assert_eq!(required, vec![json!("prompt")]);
}

#[tokio::test]
async fn the_docs_page_loads_the_document() {
    let app = TestApp::idle();
    for uri in ["/docs", "/docs/"] {
        let r = app.call(Method::GET, uri, None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(r.text.contains("openapi.json"));
        assert!(
            !r.text.contains("://"),
            "the page must load nothing from elsewhere"
        );
    }
}

/// A worker process without a router: the engine's metrics go to the
/// recorder that was current when it was built (here a local one; in a
/// process, the global one).
#[tokio::test]
async fn engine_metrics_reach_the_recorder_current_when_it_was_built() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let registry =
        Registry::new().register("stub", StubOrchestrator::new(2, Duration::from_millis(5)));
    let engine = metrics::with_local_recorder(&recorder, || Engine::in_memory(registry));
    let worker = projectengine_core::Worker::new(
        engine.clone(),
        projectengine_core::WorkerConfig::default(),
    )
    .spawn();
    let owner = projectengine_core::Owner::new("alice");
    let job = engine
        .submit(&owner, projectengine_core::Submit::new("x"))
        .await
        .expect("submit");
    let done = async {
        loop {
            let j = engine.get(&owner, job.id).await.expect("get");
            if j.status == JobStatus::Succeeded {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("the job ran");
    worker.shutdown().await;
    let m = handle.render();
    let expect = [
        (r#"projectengine_jobs_submitted_total{kind="stub"}"#, 1.0),
        (
            r#"projectengine_jobs_finished_total{kind="stub",status="succeeded"}"#,
            1.0,
        ),
        (r#"projectengine_running_attempts{kind="stub"}"#, 0.0),
        (
            r#"projectengine_attempt_duration_seconds_count{kind="stub"}"#,
            1.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&m, series), Some(value), "{series}\n{m}");
    }
}

/// The document states the engine's configured limits, not the defaults.
#[tokio::test]
async fn the_openapi_document_states_the_configured_limits() {
    let limits = projectengine_core::Limits {
        max_prompt_bytes: 100,
        priority: -5..=5,
        max_attempts: 2..=7,
        default_max_attempts: 4,
        timeout: Duration::from_secs(10)..=Duration::from_secs(600),
        default_timeout: Duration::from_secs(60),
        max_page: 20,
        ..projectengine_core::Limits::default()
    };
    let registry = Registry::new().register("stub", StubOrchestrator::default());
    let engine = Engine::with_limits(
        Arc::new(MemoryStore::new()),
        Arc::new(projectengine_core::memory::MemoryQueue::default()),
        Arc::new(MemoryNotifier::default()),
        registry,
        limits,
    );
    let app = router(engine, JwtAuth::hs256(common::SECRET).expect("secret"));
    let res = app
        .oneshot(
            Request::get("/openapi.json")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let doc: Value = serde_json::from_slice(&bytes).expect("json");
    let p = &doc["components"]["schemas"]["CreateJob"]["properties"];
    assert_eq!(p["prompt"]["maxLength"], 100);
    assert_eq!(
        (&p["priority"]["minimum"], &p["priority"]["maximum"]),
        (&json!(-5), &json!(5))
    );
    assert_eq!(
        (&p["max_attempts"]["minimum"], &p["max_attempts"]["maximum"]),
        (&json!(2), &json!(7))
    );
    assert_eq!(p["max_attempts"]["default"], 4);
    assert_eq!(
        (&p["timeout_s"]["minimum"], &p["timeout_s"]["maximum"]),
        (&json!(10), &json!(600))
    );
    assert_eq!(p["timeout_s"]["default"], 60);
    let limit = doc["paths"]["/api/jobs/"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|q| q["name"] == "limit")
        .expect("limit");
    assert!(
        limit["description"]
            .as_str()
            .is_some_and(|d| d.contains("1–20")),
        "{limit}"
    );
}
