//! The dispatcher against real HTTP receivers on 127.0.0.1, on the in-memory
//! store; signatures verified with the `standardwebhooks` crate.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use projectengine_core::memory::MemoryStore;
use projectengine_core::testkit::assert::eventually;
use projectengine_core::{
    CancellationToken, DeliveryLog, DeliveryStatus, Engine, Error, JobId, JobStatus, Outcome,
    Owner, Registry, Store, StubOrchestrator, Submit, Webhooks,
};
use projectengine_webhooks::{
    AddressPolicy, Dispatcher, DispatcherConfig, Payload, RetrySchedule, Secret, UrlGuard,
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OPEN: AddressPolicy = AddressPolicy {
    allow_private: true,
};

/// A request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A local HTTP receiver that answers the statuses it is given, in order
/// (then 200), and keeps what it got.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(answers: &[u16]) -> (Self, SocketAddr) {
        let receiver = Receiver {
            answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
            ..Default::default()
        };
        let app = Router::new()
            .route("/hook", post(answer))
            .route("/other", post(answer))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, addr)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }
}

async fn answer(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    r.got.lock().expect("lock").push(Received {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    let status = r.answers.lock().expect("lock").pop_front().unwrap_or(200);
    if status == 302 {
        return (StatusCode::FOUND, [("location", "/other")]).into_response();
    }
    StatusCode::from_u16(status)
        .expect("a status")
        .into_response()
}

/// Verifies a request as any Standard Webhooks receiver would, with the
/// specification's reference implementation.
fn verify(r: &Received) {
    standardwebhooks::Webhook::new(SECRET)
        .expect("secret")
        .verify(&r.body, &r.headers)
        .expect("the signature verifies");
}

fn header(r: &Received, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .expect(name)
        .to_owned()
}

fn config(policy: AddressPolicy, schedule: &str) -> DispatcherConfig {
    let mut config = DispatcherConfig::new(Secret::parse(SECRET).expect("secret"));
    config.policy = policy;
    config.schedule = schedule.parse::<RetrySchedule>().expect("schedule");
    config.timeout = Duration::from_secs(5);
    config.poll_interval = Duration::from_millis(20);
    config
}

fn engine(store: Arc<dyn Store>, webhooks: Webhooks) -> Engine {
    let registry = Registry::new().register("stub", StubOrchestrator::default());
    Engine::new(
        store,
        Arc::new(projectengine_core::memory::MemoryQueue::default()),
        Arc::new(projectengine_core::memory::MemoryNotifier::default()),
        registry,
    )
    .with_webhooks(webhooks)
}

fn guarded(policy: AddressPolicy, deployment: bool) -> Webhooks {
    Webhooks {
        notify_deployment: deployment,
        check: Some(Arc::new(UrlGuard::new(policy))),
    }
}

/// Runs a submitted job to `succeeded` through the store, as a worker would.
async fn succeed(store: &Arc<dyn Store>, id: JobId) {
    let claim = store
        .claim(id, "w", Duration::from_secs(30))
        .await
        .expect("claim")
        .expect("claimable");
    store
        .finish(claim.attempt.fence(), Outcome::Succeeded)
        .await
        .expect("finish");
}

/// Like [`succeed`], with an artifact stored by the attempt first.
async fn succeed_with_artifact(store: &Arc<dyn Store>, id: JobId) {
    let claim = store
        .claim(id, "w", Duration::from_secs(30))
        .await
        .expect("claim")
        .expect("claimable");
    let fence = claim.attempt.fence();
    store
        .put_artifact(
            fence,
            projectengine_core::NewArtifact {
                name: "dist/index.html".into(),
                content_type: "text/html".into(),
                size: 512,
                sha256: "ab".repeat(32),
                blob: "b".into(),
                max_job_bytes: None,
            },
        )
        .await
        .expect("put_artifact");
    store
        .finish(fence, Outcome::Succeeded)
        .await
        .expect("finish");
}

async fn deliveries(store: &Arc<dyn Store>, id: JobId) -> Vec<DeliveryLog> {
    store.deliveries(id).await.expect("deliveries")
}

#[tokio::test]
async fn a_delivery_is_signed_per_standard_webhooks() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engine = engine(store.clone(), guarded(OPEN, false));
    let (receiver, addr) = Receiver::start(&[]).await;
    let owner = Owner::new("o");
    let job = engine
        .submit(
            &owner,
            Submit::new("p").webhook(format!("http://{addr}/hook")),
        )
        .await
        .expect("submit");
    assert_eq!(
        job.webhook.as_deref(),
        Some(&*format!("http://{addr}/hook"))
    );
    succeed_with_artifact(&store, job.id).await;
    let dispatcher = Dispatcher::new(store.clone(), config(OPEN, "")).expect("dispatcher");
    assert_eq!(dispatcher.dispatch_due().await.expect("dispatch"), 1);
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    verify(&got[0]);
    let logs = deliveries(&store, job.id).await;
    assert_eq!(
        header(&got[0], "webhook-id"),
        logs[0].delivery.id.to_string()
    );
    assert_eq!(header(&got[0], "content-type"), "application/json");
    let body: Payload = serde_json::from_slice(&got[0].body).expect("a payload");
    assert_eq!(body.kind, "job.succeeded");
    assert_eq!(body.data.job_id, job.id);
    assert_eq!(body.data.status, JobStatus::Succeeded);
    assert_eq!(body.data.error, None);
    let raw: serde_json::Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(
        raw["data"]["artifacts"],
        serde_json::json!([{"name": "dist/index.html", "size": 512,
            "sha256": "ab".repeat(32), "content_type": "text/html"}]),
        "{raw}"
    );
    assert_eq!(logs[0].delivery.status, DeliveryStatus::Delivered);
    assert_eq!(logs[0].tries.len(), 1);
    assert_eq!(logs[0].tries[0].status_code, Some(200));
    // A tampered body fails the reference verification.
    let mut tampered = got[0].clone();
    let forged = String::from_utf8_lossy(&got[0].body).replace("succeeded", "failed");
    tampered.body = Bytes::from(forged);
    assert!(standardwebhooks::Webhook::new(SECRET)
        .expect("secret")
        .verify(&tampered.body, &tampered.headers)
        .is_err());
    // Nothing is due any more.
    assert_eq!(dispatcher.dispatch_due().await.expect("dispatch"), 0);
}

#[tokio::test]
async fn three_failures_then_a_success_make_four_tries_under_one_id() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engine = engine(store.clone(), guarded(OPEN, false));
    let (receiver, addr) = Receiver::start(&[500, 500, 500]).await;
    let owner = Owner::new("o");
    let job = engine
        .submit(
            &owner,
            Submit::new("p").webhook(format!("http://{addr}/hook")),
        )
        .await
        .expect("submit");
    succeed(&store, job.id).await;
    let dispatcher =
        Dispatcher::new(store.clone(), config(OPEN, "50ms,50ms,50ms,50ms")).expect("dispatcher");
    let cancel = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(cancel.clone()));
    eventually("the delivery is delivered", Duration::from_secs(10), || {
        let store = store.clone();
        async move {
            (deliveries(&store, job.id).await[0].delivery.status == DeliveryStatus::Delivered)
                .then_some(())
        }
    })
    .await;
    // Let a stray extra send show up if there were one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel.cancel();
    running.await.expect("the dispatcher stops");
    let got = receiver.got();
    assert_eq!(got.len(), 4, "{got:?}");
    let id = header(&got[0], "webhook-id");
    for r in &got {
        assert_eq!(header(r, "webhook-id"), id, "stable across retries");
        verify(r);
    }
    let logs = deliveries(&store, job.id).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].delivery.id.to_string(), id);
    let codes: Vec<Option<u16>> = logs[0].tries.iter().map(|t| t.status_code).collect();
    assert_eq!(codes, [Some(500), Some(500), Some(500), Some(200)]);
    assert_eq!(
        logs[0].tries.iter().filter(|t| t.error.is_none()).count(),
        1,
        "exactly one success"
    );
    let numbers: Vec<u32> = logs[0].tries.iter().map(|t| t.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
}

#[tokio::test]
async fn a_spent_schedule_fails_the_delivery() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engine = engine(store.clone(), guarded(OPEN, false));
    let (receiver, addr) = Receiver::start(&[503, 503, 503]).await;
    let job = engine
        .submit(
            &Owner::new("o"),
            Submit::new("p").webhook(format!("http://{addr}/hook")),
        )
        .await
        .expect("submit");
    succeed(&store, job.id).await;
    let dispatcher = Dispatcher::new(store.clone(), config(OPEN, "10ms")).expect("dispatcher");
    dispatcher.dispatch_due().await.expect("first");
    tokio::time::sleep(Duration::from_millis(100)).await;
    dispatcher.dispatch_due().await.expect("second");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(dispatcher.dispatch_due().await.expect("none left"), 0);
    let logs = deliveries(&store, job.id).await;
    assert_eq!(logs[0].delivery.status, DeliveryStatus::Failed);
    assert_eq!(logs[0].tries.len(), 2);
    assert_eq!(receiver.got().len(), 2);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engine = engine(store.clone(), guarded(OPEN, false));
    let (receiver, addr) = Receiver::start(&[302]).await;
    let job = engine
        .submit(
            &Owner::new("o"),
            Submit::new("p").webhook(format!("http://{addr}/hook")),
        )
        .await
        .expect("submit");
    succeed(&store, job.id).await;
    let dispatcher = Dispatcher::new(store.clone(), config(OPEN, "")).expect("dispatcher");
    dispatcher.dispatch_due().await.expect("dispatch");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let paths: Vec<String> = receiver.got().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/hook"], "the redirect's target was never asked");
    let logs = deliveries(&store, job.id).await;
    assert_eq!(logs[0].tries[0].status_code, Some(302));
    let error = logs[0].tries[0].error.clone().expect("a failed try");
    assert!(error.contains("redirect"), "{error}");
    assert_eq!(logs[0].delivery.status, DeliveryStatus::Failed);
}

#[tokio::test]
async fn private_destinations_are_refused_when_not_allowed() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (receiver, addr) = Receiver::start(&[]).await;
    // Submit-time: the engine refuses a private URL, an IP literal or a name.
    let strict = engine(store.clone(), guarded(AddressPolicy::default(), false));
    let owner = Owner::new("o");
    for url in [
        format!("http://{addr}/hook"),
        format!("http://localhost:{}/hook", addr.port()),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]/hook".to_owned(),
        "ftp://example.com/hook".to_owned(),
    ] {
        let err = strict
            .submit(&owner, Submit::new("p").webhook(url.clone()))
            .await
            .expect_err(&url);
        assert!(
            matches!(
                err,
                Error::Invalid {
                    field: "webhook",
                    ..
                }
            ),
            "{url}: {err:?}"
        );
    }
    let listed = strict.list(&owner, Default::default()).await.expect("list");
    assert!(listed.items.is_empty(), "nothing was stored");
    // A deployment without webhooks refuses any.
    let none = engine(store.clone(), Webhooks::default());
    assert!(matches!(
        none.submit(&owner, Submit::new("p").webhook("https://example.com/"))
            .await,
        Err(Error::Invalid {
            field: "webhook",
            ..
        })
    ));

    // Send-time: jobs whose URLs got past submission (written straight to
    // the store) are not sent to private addresses either.
    let mut ids = Vec::new();
    for url in [
        format!("http://localhost:{}/hook", addr.port()),
        format!("http://{addr}/hook"),
    ] {
        let mut new = projectengine_core::testkit::store::new_job(&owner);
        new.webhook = Some(url);
        let id = store.create_job(new).await.expect("create").job.id;
        succeed(&store, id).await;
        ids.push(id);
    }
    let dispatcher =
        Dispatcher::new(store.clone(), config(AddressPolicy::default(), "1h")).expect("dispatcher");
    assert_eq!(dispatcher.dispatch_due().await.expect("dispatch"), 2);
    assert!(receiver.got().is_empty(), "nothing reached the receiver");
    // The name: the resolver dropped its loopback addresses; retried later,
    // since DNS may change.
    let by_name = &deliveries(&store, ids[0]).await[0];
    let error = by_name.tries[0].error.clone().expect("refused");
    assert!(error.contains("private"), "{error}");
    assert_eq!(by_name.delivery.status, DeliveryStatus::Pending);
    // The IP literal: refused for good.
    let literal = &deliveries(&store, ids[1]).await[0];
    let error = literal.tries[0].error.clone().expect("refused");
    assert!(error.contains("private"), "{error}");
    assert_eq!(literal.delivery.status, DeliveryStatus::Failed);
}

#[tokio::test]
async fn the_deployment_url_is_notified_of_every_job() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (receiver, addr) = Receiver::start(&[]).await;
    let engine = engine(store.clone(), guarded(OPEN, true));
    let owner = Owner::new("o");
    let plain = engine
        .submit(&owner, Submit::new("p"))
        .await
        .expect("submit");
    assert!(plain.notify_deployment);
    let cancelled = engine
        .submit(&owner, Submit::new("p"))
        .await
        .expect("submit");
    succeed(&store, plain.id).await;
    engine.cancel(&owner, cancelled.id).await.expect("cancel");
    let mut config = config(OPEN, "");
    config.deployment_url = Some(format!("http://{addr}/hook"));
    let dispatcher = Dispatcher::new(store.clone(), config).expect("dispatcher");
    assert_eq!(dispatcher.dispatch_due().await.expect("dispatch"), 2);
    let mut types: Vec<String> = receiver
        .got()
        .iter()
        .map(|r| {
            verify(r);
            serde_json::from_slice::<Payload>(&r.body)
                .expect("payload")
                .kind
        })
        .collect();
    types.sort();
    assert_eq!(types, ["job.cancelled", "job.succeeded"]);
    // A private deployment URL is refused when building the dispatcher.
    let mut bad = self::config(AddressPolicy::default(), "");
    bad.deployment_url = Some("http://10.0.0.1/hook".into());
    assert!(Dispatcher::new(store, bad).is_err());
}
