//! Idempotent submissions (`Idempotency-Key`) and child jobs, over a real
//! socket.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use common::{worker_config, TestApp, SECRET};
use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::testkit::assert::wait_for_status;
use projectengine_core::{
    Engine, Job, JobCallbacks, JobId, JobStatus, Orchestrator, OrchestratorError, Owner, Registry,
    StubOrchestrator, Submit, Worker,
};
use projectengine_http::{router_with, ApiState, HttpConfig, JwtAuth};
use serde_json::{json, Value};

struct Answer {
    status: StatusCode,
    body: Value,
    text: String,
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    key: Option<&str>,
    body: &str,
) -> Answer {
    let mut req = http
        .post(format!("{base}/api/jobs/"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let res = req.send().await.expect("request");
    let status = StatusCode::from_u16(res.status().as_u16()).expect("status");
    let text = res.text().await.expect("body");
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

async fn count_jobs(http: &reqwest::Client, base: &str, token: &str) -> usize {
    let page: Value = http
        .get(format!("{base}/api/jobs/?limit=100"))
        .bearer_auth(token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    page["items"].as_array().expect("items").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_requests_with_one_key_create_one_job() {
    // No worker: the job does not move, so every answer shows it as created.
    let app = TestApp::idle();
    let base = format!("http://{}", app.serve().await);
    let alice = app.token("alice");
    let http = reqwest::Client::new();
    let body = r#"{"prompt": "build once", "params": {"b": 1, "a": 2}}"#;

    let answers = futures::future::join_all(
        (0..16).map(|_| post(&http, &base, &alice, Some("order-42"), body)),
    )
    .await;
    let created = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    let replayed = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    assert_eq!(
        (created, replayed),
        (1, 15),
        "one 201, fifteen 200: {:?}",
        answers.iter().map(|a| &a.text).collect::<Vec<_>>()
    );
    let bodies: HashSet<&str> = answers.iter().map(|a| a.text.as_str()).collect();
    assert_eq!(bodies.len(), 1, "every answer is the same job: {bodies:?}");
    assert_eq!(count_jobs(&http, &base, &alice).await, 1);
    let first = &answers[0].body;
    assert_eq!(first["prompt"], "build once");

    // The same body with its members in another order and other spacing is
    // the same request.
    let reordered = r#"{"params":{"a":2,"b":1},"prompt":"build once"}"#;
    let again = post(&http, &base, &alice, Some("order-42"), reordered).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body, *first);

    // Another body with the key: refused, nothing created.
    let other = post(
        &http,
        &base,
        &alice,
        Some("order-42"),
        r#"{"prompt": "build twice"}"#,
    )
    .await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.text
    );
    assert_eq!(other.body["error"]["code"], "idempotency_key_reused");
    assert_eq!(other.body["error"]["field"], "Idempotency-Key");
    assert_eq!(count_jobs(&http, &base, &alice).await, 1);

    // Keys are per caller: bob's "order-42" is his own.
    let bob = app.token("bob");
    let his = post(&http, &base, &bob, Some("order-42"), body).await;
    assert_eq!(his.status, StatusCode::CREATED, "{}", his.text);
    assert_ne!(his.body["id"], first["id"]);

    // A key longer than 255 characters is a bad request and stores nothing.
    let long = "k".repeat(256);
    let bad = post(&http, &base, &alice, Some(&long), body).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert_eq!(bad.body["error"]["field"], "Idempotency-Key");
    let longest = "k".repeat(255);
    let fine = post(&http, &base, &alice, Some(&longest), body).await;
    assert_eq!(fine.status, StatusCode::CREATED, "{}", fine.text);
    assert_eq!(count_jobs(&http, &base, &alice).await, 2);

    // A body the API refuses keeps the key free.
    let invalid = post(
        &http,
        &base,
        &alice,
        Some("fresh"),
        r#"{"prompt": "x", "priority": 100000}"#,
    )
    .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.body["error"]["code"], "invalid");
    let valid = post(&http, &base, &alice, Some("fresh"), r#"{"prompt": "x"}"#).await;
    assert_eq!(valid.status, StatusCode::CREATED, "{}", valid.text);

    // Without the header, every request is a new job.
    for _ in 0..2 {
        let plain = post(&http, &base, &alice, None, body).await;
        assert_eq!(plain.status, StatusCode::CREATED);
    }
    assert_eq!(count_jobs(&http, &base, &alice).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_key_creates_a_new_job() {
    let limits = projectengine_core::Limits {
        idempotency_ttl: Duration::from_millis(200),
        ..projectengine_core::Limits::default()
    };
    let app = TestApp::build_with_limits(false, HttpConfig::default(), limits);
    let base = format!("http://{}", app.serve().await);
    let alice = app.token("alice");
    let http = reqwest::Client::new();
    let a = post(&http, &base, &alice, Some("k"), r#"{"prompt": "a"}"#).await;
    assert_eq!(a.status, StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = post(&http, &base, &alice, Some("k"), r#"{"prompt": "b"}"#).await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.text);
    assert_ne!(a.body["id"], b.body["id"]);
}

/// Submits two children, `frontend` and `backend`; its first attempt then
/// fails (retryably), and the second submits them again and succeeds.
struct Parent;

#[async_trait]
impl Orchestrator for Parent {
    async fn run(&self, _job: &Job, cb: &dyn JobCallbacks) -> Result<(), OrchestratorError> {
        for key in ["frontend", "backend"] {
            let spec = Submit::new(format!("build the {key}"))
                .kind("stub")
                .params(json!({ "part": key }));
            cb.submit_child(key, spec).await?;
        }
        // The validation of any submission applies to children.
        let bad = cb
            .submit_child("nowhere", Submit::new("x").kind("no-such-kind"))
            .await;
        match bad {
            Err(projectengine_core::Error::Invalid { field: "kind", .. }) => {}
            other => return Err(OrchestratorError::fatal(format!("{other:?}"))),
        }
        if cb.attempt() == 1 {
            return Err(OrchestratorError::retryable("first attempt fails"));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_attempt_creates_no_duplicate_children_and_the_detail_lists_them() {
    let registry = Registry::new()
        .register("parent", Parent)
        .register("stub", StubOrchestrator::new(1, Duration::from_millis(5)));
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::default()),
        Arc::new(MemoryNotifier::default()),
        registry,
    );
    let auth = JwtAuth::hs256(SECRET).expect("secret");
    let state = ApiState::with_config(engine.clone(), auth.clone(), HttpConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = router_with(state);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let worker = Worker::new(engine.clone(), worker_config()).spawn();
    let alice = auth.mint("alice", Duration::from_secs(600)).expect("mint");
    let http = reqwest::Client::new();

    let created = post(
        &http,
        &base,
        &alice,
        None,
        r#"{"prompt": "split me", "kind": "parent", "max_attempts": 3}"#,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let parent: JobId = created.body["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let owner = Owner::new("alice");
    let job = wait_for_status(
        &engine,
        &owner,
        parent,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        job.attempt, 2,
        "the first attempt failed, the second succeeded"
    );

    let detail: Value = http
        .get(format!("{base}/api/jobs/{parent}/"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("detail")
        .json()
        .await
        .expect("json");
    assert_eq!(detail["parent_id"], Value::Null);
    let children = detail["children"].as_array().expect("children");
    let keys: Vec<&str> = children
        .iter()
        .map(|c| c["child_key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, ["frontend", "backend"], "each once, oldest first");
    for child in children {
        assert_eq!(child["parent_id"], parent.to_string());
        assert_eq!(child["kind"], "stub");
    }

    let listed = http
        .get(format!("{base}/api/jobs/{parent}/children/"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("children");
    assert_eq!(listed.status().as_u16(), 200);
    let listed: Value = listed.json().await.expect("json");
    assert_eq!(listed["items"], Value::Array(children.clone()));

    // A child is a job like any other: it runs, and its page names its parent.
    let child: JobId = children[0]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    wait_for_status(
        &engine,
        &owner,
        child,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    let page: Value = http
        .get(format!("{base}/api/jobs/{child}/"))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("child")
        .json()
        .await
        .expect("json");
    assert_eq!(page["parent_id"], parent.to_string());
    assert_eq!(page["child_key"], "frontend");
    assert_eq!(page["params"]["part"], "frontend");
    assert_eq!(page["children"], json!([]));

    // The parent's log says what its attempts did with each key.
    let events = engine.events(&owner, parent, 0, 500).await.expect("events");
    let lines: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.data {
            projectengine_core::EventData::Log(line) => Some(line.message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("child job `frontend` submitted"))
            .count(),
        1,
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("child job `frontend` exists already"))
            .count(),
        1,
        "{lines:?}"
    );

    // Another owner sees neither the parent nor its children.
    let bob = auth.mint("bob", Duration::from_secs(600)).expect("mint");
    let hidden = http
        .get(format!("{base}/api/jobs/{parent}/children/"))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("children");
    assert_eq!(hidden.status().as_u16(), 404);
    worker.shutdown().await;
}
