//! Deployed sites over a real socket: served from the App's artifacts under
//! its deploy prefix, nothing else, in a CSP sandbox with no credentials.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::testkit::assert::watch_to_end;
use projectengine_core::testkit::scenarios::fast_worker;
use projectengine_core::*;
use projectengine_http::sites::SITE_CSP;
use serde_json::json;

/// Leaves a site under `site/`, a secret beside it, and an App that
/// deploys `site/` when the prompt says "deploy".
struct SiteMaker;

#[async_trait]
impl Orchestrator for SiteMaker {
    async fn run(&self, job: &Job, cb: &dyn JobCallbacks) -> Result<(), OrchestratorError> {
        for (name, ct, body) in [
            (
                "site/index.html",
                "text/html; charset=utf-8",
                "<h1>Bakery</h1>",
            ),
            ("site/css/a.css", "text/css", "h1 { color: brown }"),
            ("secret/token.txt", "text/plain", "s3cr3t"),
        ] {
            cb.put_artifact(
                name,
                ct,
                ArtifactBody::Bytes(body.as_bytes().to_vec().into()),
            )
            .await?;
        }
        let payload = if job.prompt == "deploy" {
            json!({"deploy": {"prefix": "site/"}})
        } else {
            json!({})
        };
        cb.publish_app(NewApp {
            name: "site".into(),
            payload,
        })
        .await?;
        Ok(())
    }
}

async fn setup() -> (Engine, String, JobId, JobId) {
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new(Duration::from_secs(1))),
        Arc::new(MemoryNotifier::default()),
        Registry::new().register("site", SiteMaker),
    );
    let worker = Worker::new(engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let mut ids = Vec::new();
    for prompt in ["deploy", "keep"] {
        let job = engine.submit(&owner, Submit::new(prompt)).await.unwrap();
        watch_to_end(&engine, &owner, job.id, 0, Duration::from_secs(30)).await;
        assert_eq!(
            engine.get(&owner, job.id).await.unwrap().status,
            JobStatus::Succeeded
        );
        ids.push(job.id);
    }
    worker.shutdown().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = projectengine_http::sites_routes(engine.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (engine, format!("http://{addr}"), ids[0], ids[1])
}

fn assert_sandboxed(response: &reqwest::Response) {
    let h = response.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert_eq!(csp, SITE_CSP);
    assert!(csp.starts_with("sandbox "));
    // Without allow-same-origin the page runs in an opaque origin: no
    // storage or cookies of any origin are readable.
    assert!(!csp.contains("allow-same-origin"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.get("set-cookie").is_none());
    assert!(h.get("access-control-allow-origin").is_none());
    assert!(h.get("access-control-allow-credentials").is_none());
}

#[tokio::test]
async fn a_deployed_site_is_served_sandboxed_and_nothing_else_is() {
    let (_engine, base, deployed, kept) = setup().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let r = http
        .get(format!("{base}/sites/{deployed}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_sandboxed(&r);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.text().await.unwrap(), "<h1>Bakery</h1>");

    let r = http
        .get(format!("{base}/sites/{deployed}/css/a.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_sandboxed(&r);
    assert_eq!(r.text().await.unwrap(), "h1 { color: brown }");

    let r = http
        .get(format!("{base}/sites/{deployed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], format!("/sites/{deployed}/"));

    // Outside the prefix, a job that deployed nothing, unknown ids: 404.
    for path in [
        format!("/sites/{deployed}/../secret/token.txt"),
        format!("/sites/{deployed}/%2E%2E/secret/token.txt"),
        format!("/sites/{deployed}/missing.html"),
        format!("/sites/{kept}/"),
        format!("/sites/{kept}/index.html"),
        format!("/sites/{}/", JobId::new()),
        "/sites/not-an-id/".to_owned(),
        "/api/jobs/".to_owned(),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_sandboxed(&r);
        assert!(!r.text().await.unwrap().contains("s3cr3t"), "{path}");
    }
}
