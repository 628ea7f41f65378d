//! The `app-builder` kind in the real server binary, with a fake
//! OpenAI-compatible provider on a local port: from a prompt to a page
//! fetched over HTTP from the sites listener, on an origin of its own.

mod support;

use std::time::Duration;

use projectengine_llm::fake::{FakeProvider, Recorded, Reply};
use projectengine_llm::Usage;
use projectengine_orchestrators::app_builder::{GENERATOR_PROMPT, PLANNER_PROMPT};
use serde_json::json;
use support::{client, http, submit, token, wait_status, ws_watch, Server};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

const PAGE: &str = "<!doctype html><title>Bakery</title><h1>Crumb &amp; Co</h1><script>document.title = typeof localStorage;</script>";

fn responder(r: &Recorded) -> Reply {
    let usage = |i, o| Usage {
        input_tokens: i,
        output_tokens: o,
    };
    match r.body["messages"][0]["content"].as_str() {
        Some(PLANNER_PROMPT) => Reply::text(
            &json!({"name": "Crumb & Co", "description": "A bakery",
                    "files": [{"path": "index.html", "purpose": "menu and contact form"}]})
            .to_string(),
            usage(120, 40),
        ),
        Some(GENERATOR_PROMPT) => Reply::text(PAGE, usage(300, 90)),
        _ => Reply::status(400, None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_becomes_a_page_served_on_its_own_sandboxed_origin() {
    if !support::sandbox_installed() {
        return;
    }
    let fake = FakeProvider::start().await.unwrap();
    fake.respond_with(responder);
    let sites = format!("127.0.0.1:{}", free_port());
    let server = Server::start(
        "all",
        &[
            ("PROJECTENGINE_LLM_BASE_URL", fake.base_url()),
            ("PROJECTENGINE_LLM_MODELS", "fake-large,fake-small".into()),
            ("PROJECTENGINE_SITES_BIND", sites.clone()),
        ],
    );
    let addr = server.addr();
    let t = token("alice");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "a landing page for my bakery with a menu and a contact form", "kind": "app-builder"}),
    )
    .await;
    let job = wait_status(addr, &t, &id, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(job["progress"], 100);
    // Every stage was visible live.
    let watched = ws_watch(addr, &id, 0, &t, None).await;
    let stages: Vec<&str> = watched
        .iter()
        .filter(|e| e["type"] == "stage")
        .filter_map(|e| e["data"]["stage"].as_str())
        .collect();
    assert_eq!(stages, ["PLANNING", "GENERATING", "BUILDING", "DEPLOYING"]);

    let (code, app) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{id}/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(code, 200, "{app}");
    let payload = &app["payload"];
    assert_eq!(payload["usage"]["input_tokens"], 420);
    assert_eq!(payload["usage"]["output_tokens"], 130);
    assert_eq!(payload["usage"]["calls"][0]["model"], "fake-large");
    let url = payload["deploy_url"]
        .as_str()
        .expect("a deploy URL")
        .to_owned();
    assert_eq!(url, format!("http://{sites}/sites/{id}/"));
    // Another origin than the API's.
    assert!(!url.starts_with(&format!("http://{addr}")));

    let page = client().get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.starts_with("sandbox") && !csp.contains("allow-same-origin"),
        "{csp}"
    );
    assert!(page.headers().get("set-cookie").is_none());
    assert!(page.headers().get("access-control-allow-origin").is_none());
    assert_eq!(page.text().await.unwrap(), format!("{PAGE}\n"));
    // The API is not on the sites listener.
    let api = client()
        .get(format!("http://{sites}/api/jobs/{id}/"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
}
