//! The dashboard in a real browser (headless Chromium over WebDriver) against
//! the real server binary on PostgreSQL + Redis: sign in with the printed
//! token, submit from the form and watch it live, reload mid-job, cancel,
//! download an artifact, job text shown as text, another owner's job hidden.

mod browser;
mod support;

use std::time::Duration;

use browser::Browser;
use serde_json::{json, Value};
use support::{deployment, events, http, migrate, submit, token, wait_status, Server};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_the_printed_token_submit_from_the_form_and_watch_it_live() {
    let Some(env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    let (server, printed) = Server::start_with_printed_token("all", &env);
    let addr = server.addr();
    b.sign_in(addr, &printed).await;
    // A new owner has no jobs: the page says what to do.
    let empty = b
        .until(
            "the empty state",
            LIMIT,
            "const e = document.querySelector('.empty'); return e && e.textContent",
        )
        .await;
    assert!(empty.as_str().unwrap().contains("Submit a job"), "{empty}");
    // The token is in this tab's session storage, never in the URL.
    let url = b.client.current_url().await.unwrap();
    assert!(!url.as_str().contains(&printed));
    let kept = b
        .js(
            "return sessionStorage.getItem('projectengine.token')",
            vec![],
        )
        .await;
    assert_eq!(kept, json!(printed));

    b.go("#/new").await;
    b.until(
        "the kinds",
        LIMIT,
        "return document.querySelectorAll('#kind option').length >= 3",
    )
    .await;
    // Bad params are caught before anything is sent.
    b.fill("#prompt", "a todo app").await;
    b.fill("#params", "{\"steps\": ").await;
    b.click("form button[type=submit]").await;
    let err = b
        .until(
            "the params error",
            LIMIT,
            "return document.querySelector('#params-error').textContent || null",
        )
        .await;
    assert!(err.as_str().unwrap().starts_with("Not valid JSON"), "{err}");
    assert_eq!(b.js("return location.hash", vec![]).await, json!("#/new"));
    // A value the server refuses is shown next to its field: a kind that
    // the select offered but the server no longer runs.
    b.fill("#params", r#"{"steps": 1}"#).await;
    b.js(
        "document.querySelector('#kind').append(new Option('retired', 'retired', true, true));",
        vec![],
    )
    .await;
    b.click("form button[type=submit]").await;
    let err = b
        .until(
            "the kind error",
            LIMIT,
            "return document.querySelector('#kind-error').textContent || null",
        )
        .await;
    assert!(
        err.as_str().unwrap().contains("unknown kind `retired`"),
        "{err}"
    );
    assert_eq!(b.js("return location.hash", vec![]).await, json!("#/new"));
    let (_, page) = http(addr, "GET", "/api/jobs/", Some(&printed), None).await;
    assert_eq!(page["items"], json!([]), "nothing was submitted");
    b.client
        .find(fantoccini::Locator::Css("#kind"))
        .await
        .unwrap()
        .select_by_value("stub")
        .await
        .unwrap();
    b.fill(
        "#params",
        r#"{"steps": 6, "delay_ms": 400, "progress": true, "log_lines": 1}"#,
    )
    .await;
    b.click("form button[type=submit]").await;
    let id = b
        .until(
            "the job page",
            LIMIT,
            "const m = location.hash.match(/^#\\/jobs\\/(.+)$/); return m && m[1]",
        )
        .await;
    let id = id.as_str().unwrap().to_owned();

    // The steps appear one by one and the bar moves, live.
    let mut seen_steps = Vec::new();
    let mut seen_progress = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let s = b
            .js("return [document.querySelectorAll('#steps li').length, document.querySelector('#progress') ? document.querySelector('#progress').value : -1, document.querySelector('#progress-text') ? document.querySelector('#progress-text').textContent : '']", vec![])
            .await;
        let steps = s[0].as_u64().unwrap();
        let progress = s[1].as_f64().unwrap();
        if seen_steps.last() != Some(&steps) {
            seen_steps.push(steps);
        }
        if seen_progress.last() != Some(&progress) {
            seen_progress.push(progress);
        }
        if s[2] == "100 %" {
            break;
        }
        assert!(started.elapsed() < LIMIT, "progress stopped at {s}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        seen_steps.iter().any(|&n| n > 0 && n < 6),
        "steps appeared live, not all at once: {seen_steps:?}"
    );
    assert!(
        seen_progress.iter().any(|&p| p > 0.0 && p < 100.0),
        "the bar moved: {seen_progress:?}"
    );
    assert_eq!(seen_progress.last(), Some(&100.0));
    b.until(
        "succeeded",
        LIMIT,
        "return !!document.querySelector('#status [data-status=succeeded]')",
    )
    .await;
    let names = b
        .js(
            "return [...document.querySelectorAll('#steps li')].map(l => l.dataset.name)",
            vec![],
        )
        .await;
    let want: Vec<String> = (1..=6).map(|i| format!("step {i} of 6")).collect();
    assert_eq!(names, json!(want));
    // The App's JSON arrives with the end.
    b.until(
        "the App",
        LIMIT,
        "return document.querySelector('#app').textContent.includes('\"steps\": 6')",
    )
    .await;
    // The job is the signed-in owner's, as the API says.
    let (status, job) = http(
        addr,
        "GET",
        &format!("/api/jobs/{id}/"),
        Some(&printed),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["progress"], 100);

    // Signing out forgets the token.
    b.click("#signout").await;
    b.until(
        "the sign-in page",
        LIMIT,
        "return location.hash === '#/signin'",
    )
    .await;
    let kept = b
        .js(
            "return sessionStorage.getItem('projectengine.token')",
            vec![],
        )
        .await;
    assert_eq!(kept, Value::Null);
    b.go("#/jobs").await;
    b.until(
        "back to sign in",
        LIMIT,
        "return location.hash === '#/signin'",
    )
    .await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_mid_job_continues_the_log_without_gaps_or_repeats() {
    let Some(env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("alice");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "slow and chatty", "kind": "stub",
                "params": {"steps": 12, "delay_ms": 250, "log_lines": 3}}),
    )
    .await;
    b.sign_in(addr, &t).await;
    b.go(&format!("#/jobs/{id}")).await;
    b.until(
        "some log",
        LIMIT,
        "return document.querySelectorAll('#log li').length >= 6",
    )
    .await;
    b.js("window.beforeReload = true;", vec![]).await;
    b.client.refresh().await.expect("reload");
    let fresh = b
        .js("return window.beforeReload === undefined", vec![])
        .await;
    assert_eq!(fresh, json!(true), "a fresh page");
    let running = b
        .until(
            "the reloaded page",
            LIMIT,
            "const s = document.querySelector('#status'); return s && s.textContent",
        )
        .await;
    assert_eq!(running, json!("running"), "reloaded mid-job");
    b.until(
        "the end",
        LIMIT,
        "return !!document.querySelector('#status [data-status=succeeded]')",
    )
    .await;
    let (shown, want) = log_seqs(&b, addr, &t, &id).await;
    assert_eq!(want.as_array().unwrap().len(), 36);
    assert_eq!(shown, want, "every log line once, in order");
    let lines = b
        .js("return [...document.querySelectorAll('#log li')].map(l => l.lastChild.textContent.trim())", vec![])
        .await;
    assert_eq!(lines[0], "step 1, line 0");
    assert_eq!(lines[35], "step 12, line 2");
    b.quit().await;
}

/// The seqs of the log lines the page shows, and those of the job's log.
async fn log_seqs(b: &Browser, addr: std::net::SocketAddr, t: &str, id: &str) -> (Value, Value) {
    let shown = b
        .js(
            "return [...document.querySelectorAll('#log li')].map(l => Number(l.dataset.seq))",
            vec![],
        )
        .await;
    let want: Vec<u64> = events(addr, t, id)
        .await
        .iter()
        .filter(|e| e["type"] == "log")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    (shown, json!(want))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_resumes_after_the_web_process_restarts() {
    let Some(env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    migrate(&env);
    let _worker = Server::start("worker", &env);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut web_env = env.clone();
    web_env.push(("PROJECTENGINE_BIND", format!("127.0.0.1:{port}")));
    let mut web = Server::start("web", &web_env);
    let addr = web.addr();
    let t = token("alice");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "survive a restart", "kind": "stub",
                "params": {"steps": 10, "delay_ms": 400, "log_lines": 2}}),
    )
    .await;
    b.sign_in(addr, &t).await;
    b.go(&format!("#/jobs/{id}")).await;
    b.until(
        "a few steps, live",
        LIMIT,
        "return document.querySelectorAll('#steps li').length >= 2 && document.querySelector('#live').textContent === 'Live.'",
    )
    .await;
    web.kill();
    b.until(
        "the page notices",
        LIMIT,
        "return document.querySelector('#live').textContent === 'Reconnecting…'",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let web = Server::start("web", &web_env);
    assert_eq!(web.addr(), addr);
    b.until(
        "the end",
        LIMIT,
        "return !!document.querySelector('#status [data-status=succeeded]')",
    )
    .await;
    let (shown, want) = log_seqs(&b, addr, &t, &id).await;
    assert_eq!(want.as_array().unwrap().len(), 20);
    assert_eq!(
        shown, want,
        "every log line once, in order, across the restart"
    );
    let steps = b
        .js(
            "return document.querySelectorAll('#steps li').length",
            vec![],
        )
        .await;
    assert_eq!(steps, json!(10));
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_page_lists_its_webhook_deliveries() {
    let Some(mut env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    // A receiver that answers 204 to every delivery.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    env.push(("PROJECTENGINE_WEBHOOK_ALLOW_PRIVATE", "true".into()));
    env.push((
        "PROJECTENGINE_WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
    ));
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("alice");
    let url = format!("http://{hook}/hook");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "tell me", "kind": "stub", "webhook": url,
                "params": {"steps": 1, "delay_ms": 10}}),
    )
    .await;
    wait_status(addr, &t, &id, "succeeded", LIMIT).await;
    b.sign_in(addr, &t).await;
    b.go(&format!("#/jobs/{id}")).await;
    let row = b
        .until("a delivered row", LIMIT, "const r = document.querySelector('#webhooks tbody tr'); return r && r.querySelector('[data-status=delivered]') && [...r.cells].map(c => c.textContent)")
        .await;
    assert_eq!(row, json!([url, "job.succeeded", "delivered", "1", "204"]));
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_job_is_cancelled_from_its_page() {
    let Some(env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("alice");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "forever", "kind": "stub", "params": {"steps": 1000, "delay_ms": 500}}),
    )
    .await;
    wait_status(addr, &t, &id, "running", LIMIT).await;
    b.sign_in(addr, &t).await;
    b.go(&format!("#/jobs/{id}")).await;
    b.until(
        "running",
        LIMIT,
        "return !!document.querySelector('#status [data-status=running]')",
    )
    .await;
    assert!(b.text("#retry").await.is_none(), "no retry while running");
    b.click("#cancel").await;
    b.until(
        "cancelled",
        LIMIT,
        "return !!document.querySelector('#status [data-status=cancelled]')",
    )
    .await;
    wait_status(addr, &t, &id, "cancelled", LIMIT).await;
    // A cancelled job can be retried, and not cancelled again.
    b.until(
        "the retry button",
        LIMIT,
        "return !!document.querySelector('#retry') && !document.querySelector('#cancel')",
    )
    .await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_downloads_from_the_job_page() {
    let Some(env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("alice");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "a report", "kind": "stub",
                "params": {"steps": 1, "artifacts": {"out/report.bin": 70000}}}),
    )
    .await;
    wait_status(addr, &t, &id, "succeeded", LIMIT).await;
    b.sign_in(addr, &t).await;
    b.go(&format!("#/jobs/{id}")).await;
    b.click("[data-artifact='out/report.bin']").await;
    let path = b.downloaded("report.bin", LIMIT).await;
    // Wait for the browser to finish writing it.
    let mut bytes = Vec::new();
    for _ in 0..100 {
        bytes = std::fs::read(&path).unwrap();
        if bytes.len() == 70000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let want: Vec<u8> = (0..70000u64)
        .map(projectengine_core::StubOrchestrator::artifact_byte)
        .collect();
    assert!(
        bytes == want,
        "the downloaded bytes are the artifact's ({} bytes)",
        bytes.len()
    );
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_text_is_shown_as_text_and_runs_nothing() {
    let Some(env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("alice");
    let evil = "<img src=x onerror=alert(1)>";
    b.sign_in(addr, &t).await;
    b.go("#/new").await;
    b.until(
        "the kinds",
        LIMIT,
        "return document.querySelectorAll('#kind option').length >= 1",
    )
    .await;
    b.fill("#prompt", evil).await;
    b.fill("#params", r#"{"steps": 1, "delay_ms": 10}"#).await;
    b.click("form button[type=submit]").await;
    b.until(
        "succeeded",
        LIMIT,
        "return !!document.querySelector('#status [data-status=succeeded]')",
    )
    .await;
    assert_eq!(b.text("#prompt").await.as_deref(), Some(evil));
    b.go("#/jobs").await;
    let cell = b
        .until(
            "the list",
            LIMIT,
            "const c = document.querySelector('td.prompt'); return c && c.textContent",
        )
        .await;
    assert_eq!(cell, json!(evil));
    let imgs = b
        .js("return document.querySelectorAll('img').length", vec![])
        .await;
    assert_eq!(imgs, json!(0), "no element was made from the prompt");
    assert!(
        b.client.get_alert_text().await.is_err(),
        "no script ran: no alert is open"
    );
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_owners_job_is_not_found() {
    let Some(env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let bobs = submit(
        addr,
        &token("bob"),
        &json!({"prompt": "bob's secret", "kind": "stub"}),
    )
    .await;
    let t = token("alice");
    b.sign_in(addr, &t).await;
    b.client
        .goto(&format!("http://{addr}/ui/#/jobs/{bobs}"))
        .await
        .unwrap();
    let shown = b
        .until("not found", LIMIT, "const e = document.querySelector('h1'); return e && e.textContent === 'Job not found' && document.body.innerText")
        .await;
    assert!(!shown.as_str().unwrap().contains("bob's secret"), "{shown}");
    // Nor does it appear among alice's jobs.
    b.go("#/jobs").await;
    b.until(
        "the empty state",
        LIMIT,
        "return !!document.querySelector('.empty')",
    )
    .await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_phone_and_labels_its_controls() {
    let Some(env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(390, 844).await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("alice");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "a rather long prompt that would not fit on one line of a phone's screen at all", "kind": "stub",
                "params": {"steps": 2, "delay_ms": 10, "log_lines": 1, "artifacts": {"a/very/long/artifact/name.txt": 10}}}),
    )
    .await;
    wait_status(addr, &t, &id, "succeeded", LIMIT).await;
    b.sign_in(addr, &t).await;
    // Every form control has a label; the page is no wider than the screen.
    const CHECK: &str = "const unlabelled = [...document.querySelectorAll('input, select, textarea, progress')]
            .filter(c => c.labels.length === 0 && !c.getAttribute('aria-labelledby')).map(c => c.id || c.name);
        return JSON.stringify({unlabelled, wide: document.documentElement.scrollWidth > window.innerWidth});";
    for (hash, ready) in [
        ("#/signin", "#token"),
        ("#/jobs", "tr[data-job]"),
        ("#/new", "#kind option"),
        (&*format!("#/jobs/{id}"), "[data-artifact]"),
        ("#/overview", "#counts dd"),
    ] {
        if hash == "#/signin" {
            // Shown again after a sign-out; sign in once more afterwards.
            b.click("#signout").await;
        }
        b.go(hash).await;
        b.until(
            hash,
            LIMIT,
            &format!("return !!document.querySelector({ready:?})"),
        )
        .await;
        let report = b.js(CHECK, vec![]).await;
        assert_eq!(
            report,
            json!(r#"{"unlabelled":[],"wide":false}"#),
            "on {hash}"
        );
        if hash == "#/signin" {
            b.sign_in(addr, &t).await;
        }
    }
    // The keyboard reaches the main navigation first, after the skip link.
    b.js("document.activeElement.blur();", vec![]).await;
    b.client
        .find(fantoccini::Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("\u{E004}")
        .await
        .unwrap();
    let focused = b
        .js("return document.activeElement.textContent", vec![])
        .await;
    assert_eq!(focused, json!("Skip to content"));
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_queues_counts_and_recent_failures() {
    let Some(env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("alice");
    let failed = submit(
        addr,
        &t,
        &json!({"prompt": "doomed", "kind": "stub", "max_attempts": 1, "params": {"fail": "fatal"}}),
    )
    .await;
    wait_status(addr, &t, &failed, "failed", LIMIT).await;
    submit(
        addr,
        &t,
        &json!({"prompt": "later", "kind": "stub", "run_at": "2999-01-01T00:00:00Z"}),
    )
    .await;
    b.sign_in(addr, &t).await;
    b.go("#/overview").await;
    let shown = b
        .until("the overview", LIMIT, "const q = document.querySelector('[data-queue=stub]'); return q && [document.querySelector('#queued').textContent, document.querySelector('#running').textContent, [...q.cells].map(c => c.textContent), document.querySelector('#failures').textContent]")
        .await;
    assert_eq!(shown[0], "1", "one job waits: {shown}");
    assert_eq!(shown[1], "0", "{shown}");
    assert_eq!(shown[2], json!(["stub", "0", "1", "0"]), "{shown}");
    let failures = shown[3].as_str().unwrap();
    assert!(
        failures.contains(&failed[failed.len() - 12..]),
        "{failures}"
    );
    assert!(failures.contains("asked to fail (fatal)"), "{failures}");
    b.quit().await;
}

/// Projects, dependencies, review and schedules as the dashboard shows them:
/// the Jobs page filters by project through the API, a waiting job links its
/// dependency, the overview counts waiting and reviewed jobs and lists the
/// projects and schedules, and approving a result releases its dependent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_show_on_the_jobs_job_and_overview_pages() {
    let Some(env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(1280, 900).await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("alice");
    let reviewed = submit(
        addr,
        &t,
        &json!({"prompt": "design", "kind": "stub", "project": "site", "review": true}),
    )
    .await;
    let dependent = submit(
        addr,
        &t,
        &json!({"prompt": "build", "kind": "stub", "project": "site", "depends_on": [reviewed]}),
    )
    .await;
    let elsewhere = submit(
        addr,
        &t,
        &json!({"prompt": "other", "kind": "stub", "project": "other"}),
    )
    .await;
    wait_status(addr, &t, &reviewed, "awaiting_review", LIMIT).await;
    let (status, schedule) = http(
        addr,
        "POST",
        "/api/schedules/",
        Some(&t),
        Some(&json!({"name": "nightly", "cron": "0 0 3 * * *", "template": {"prompt": "report", "kind": "stub"}})),
    )
    .await;
    assert_eq!(status, 201, "{schedule}");

    b.sign_in(addr, &t).await;
    b.go("#/jobs").await;
    b.until(
        "the project filter",
        LIMIT,
        "return document.querySelector('#filter-project option[value=site]') !== null",
    )
    .await;
    b.js(
        "const s = document.querySelector('#filter-project'); s.value = 'site'; s.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await;
    let rows = b
        .until(
            "the project's jobs",
            LIMIT,
            &format!("const ids = [...document.querySelectorAll('[data-job]')].map(r => r.dataset.job); return ids.includes('{dependent}') && ids.length === 2 ? ids : null"),
        )
        .await;
    assert!(
        !rows
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == elsewhere.as_str()),
        "another project's job is filtered out by the API: {rows}"
    );

    b.go(&format!("#/jobs/{dependent}")).await;
    let link = b
        .until(
            "the dependency link",
            LIMIT,
            "const a = document.querySelector('#depends-on a'); return a && [a.textContent, document.querySelector('#status').textContent]",
        )
        .await;
    assert_eq!(link[0], reviewed.as_str(), "{link}");
    assert!(link[1].as_str().unwrap().contains("waiting"), "{link}");

    b.go("#/overview").await;
    let shown = b
        .until(
            "the overview",
            LIMIT,
            "const p = document.querySelector('[data-project=site]'); const s = document.querySelector('[data-schedule]'); return p && s && [document.querySelector('#waiting').textContent, document.querySelector('#awaiting-review').textContent, [...p.cells].map(c => c.textContent), s.textContent]",
        )
        .await;
    assert_eq!(shown[0], "1", "the dependent waits: {shown}");
    assert_eq!(shown[1], "1", "the result awaits review: {shown}");
    assert_eq!(shown[2][0], "site", "{shown}");
    assert_eq!(shown[2][1], "2", "{shown}");
    assert!(shown[3].as_str().unwrap().contains("nightly"), "{shown}");

    b.go(&format!("#/jobs/{reviewed}")).await;
    b.until(
        "the approve button",
        LIMIT,
        "return document.querySelector('#approve') !== null",
    )
    .await;
    b.click("#approve").await;
    b.until(
        "the approval",
        LIMIT,
        "return document.querySelector('#status').textContent.includes('succeeded') || null",
    )
    .await;
    wait_status(addr, &t, &dependent, "succeeded", LIMIT).await;
    b.quit().await;
}

/// Writes `docs/dashboard.png`, the README's picture of a job's page, from a
/// real job on the real server. Not a check: run it to refresh the picture,
/// `cargo test --test dashboard -- --ignored readme_screenshot`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "refreshes docs/dashboard.png; run on demand"]
async fn readme_screenshot() {
    let Some(env) = deployment().await else {
        return;
    };
    let Some(b) = Browser::start(1100, 1300).await else {
        return;
    };
    let server = Server::start("all", &env);
    let addr = server.addr();
    let t = token("dev");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "A todo app with due dates", "kind": "stub",
                "params": {"steps": 5, "delay_ms": 100, "progress": true, "log_lines": 2,
                           "artifacts": {"dist/index.html": 2048}}}),
    )
    .await;
    wait_status(addr, &t, &id, "succeeded", LIMIT).await;
    b.sign_in(addr, &t).await;
    b.go(&format!("#/jobs/{id}")).await;
    b.until("the page", LIMIT, "const a = document.querySelector('#app'); return !!a && a.textContent.includes('steps') && !!document.querySelector('[data-artifact]')").await;
    let png = b.client.screenshot().await.expect("a screenshot");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, png).unwrap();
    b.quit().await;
}
