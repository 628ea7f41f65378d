//! The `app-builder` orchestrator through a real Engine (in-memory
//! adapters), a real worker, the real sandbox and a fake OpenAI-compatible
//! provider on a local port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::testkit::assert::{assert_gap_free, eventually, watch_to_end};
use projectengine_core::testkit::scenarios::fast_worker;
use projectengine_core::*;
use projectengine_llm::fake::{FakeProvider, Recorded, Reply};
use projectengine_llm::{Llm, LlmConfig, ProviderProfile, Usage};
use projectengine_orchestrators::app_builder::{
    default_agents, FIXER_PROMPT, GENERATOR_PROMPT, PLANNER_PROMPT,
};
use projectengine_orchestrators::{AppBuilder, AppBuilderConfig};
use projectengine_sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};

const WATCH: Duration = Duration::from_secs(120);

fn required() -> bool {
    std::env::var("PROJECTENGINE_REQUIRE_SERVICES").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn usage(i: u64, o: u64) -> Usage {
    Usage {
        input_tokens: i,
        output_tokens: o,
    }
}

/// Which agent a request is for, by its system prompt.
fn agent_of(r: &Recorded) -> &'static str {
    match r.body["messages"][0]["content"].as_str() {
        Some(PLANNER_PROMPT) => "planner",
        Some(GENERATOR_PROMPT) => "generator",
        Some(FIXER_PROMPT) => "fixer",
        _ => "unknown",
    }
}

struct Setup {
    engine: Engine,
    fake: FakeProvider,
    _root: tempfile::TempDir,
}

/// An engine with the app builder on `fake`; `None` (SKIPPED) when the host
/// cannot isolate and PROJECTENGINE_REQUIRE_SERVICES is unset.
async fn setup(models: &[&str], edit: impl FnOnce(&mut ProviderProfile)) -> Option<Setup> {
    let root = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::default();
    config.workdir_root = root.path().to_path_buf();
    let sandbox = match Sandbox::new(config).await {
        Ok(sandbox) => sandbox,
        Err(error) if !required() => {
            eprintln!("SKIPPED: {error}; set PROJECTENGINE_REQUIRE_SERVICES=1 to fail instead");
            return None;
        }
        Err(error) => {
            panic!("the sandbox is required (PROJECTENGINE_REQUIRE_SERVICES is set): {error}")
        }
    };
    let fake = FakeProvider::start().await.unwrap();
    let mut provider = ProviderProfile::new(
        "fake",
        fake.base_url(),
        models.iter().map(|m| (*m).to_owned()).collect(),
    );
    provider.backoff_ms = 50;
    edit(&mut provider);
    let llm = Llm::new(LlmConfig::new(vec![provider], default_agents("fake")).unwrap()).unwrap();
    let mut config = AppBuilderConfig::default();
    config.deploy_base_url = Some("http://sites.test:8081".into());
    config.log_interval = Duration::from_millis(100);
    let builder = AppBuilder::with_sandbox(llm, config, sandbox);
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new(Duration::from_secs(1))),
        Arc::new(MemoryNotifier::default()),
        Registry::new().register("app-builder", builder),
    );
    Some(Setup {
        engine,
        fake,
        _root: root,
    })
}

fn submit(prompt: &str, params: Value, max_attempts: u32) -> Submit {
    let mut submit = Submit::new(prompt);
    submit.kind = Some("app-builder".into());
    submit.params = Some(params);
    submit.max_attempts = Some(max_attempts);
    submit
}

fn bakery_plan(build: Value) -> String {
    json!({
        "name": "Bakery",
        "description": "A landing page for a bakery",
        "files": [
            {"path": "index.html", "purpose": "the page: menu and contact form"},
            {"path": "css/style.css", "purpose": "the styles"}
        ],
        "build": build,
    })
    .to_string()
}

/// Answers like a well-behaved model: the plan, then each file.
fn site_responder(plan: String, index: &'static str) -> impl Fn(&Recorded) -> Reply {
    move |r| {
        match agent_of(r) {
        "planner" => Reply::text(&format!("```json\n{plan}\n```"), usage(100, 50)),
        "generator" if r.last_message().contains("`index.html`") => {
            Reply::text(&format!("```html\n{index}\n```"), usage(200, 80))
        }
        "generator" => Reply::text("body { font-family: serif; }", usage(150, 20)),
        "fixer" => Reply::text(
            &json!({"patches": [{"path": "index.html", "content": "<h1>Bakery</h1><p>FIXED</p>\n"}]})
                .to_string(),
            usage(300, 40),
        ),
        _ => Reply::status(400, None),
    }
    }
}

fn stages(events: &[JobEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Stage { stage } => Some(stage.as_str()),
            _ => None,
        })
        .collect()
}

fn steps(events: &[JobEvent]) -> Vec<(&str, StepStatus)> {
    events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Step(s) => Some((s.name.as_str(), s.status)),
            _ => None,
        })
        .collect()
}

fn logs(events: &[JobEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Log(l) => Some(l.message.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_becomes_a_planned_generated_built_and_deployed_site() {
    let Some(s) = setup(&["m1"], |_| {}).await else {
        return;
    };
    s.fake.respond_with(site_responder(
        bakery_plan(Value::Null),
        "<!doctype html><h1>Bakery</h1><ul><li>Bread</li></ul><form></form>",
    ));
    let worker = Worker::new(s.engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = s
        .engine
        .submit(&owner, submit("a landing page for my bakery", json!({}), 1))
        .await
        .unwrap();
    let events = watch_to_end(&s.engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    assert_gap_free(&events, 1);
    let done = s.engine.get(&owner, job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    assert_eq!(
        stages(&events),
        ["PLANNING", "GENERATING", "BUILDING", "DEPLOYING"]
    );
    let steps = steps(&events);
    let names: Vec<&str> = steps.iter().map(|s| s.0).collect();
    assert_eq!(
        names,
        [
            "plan",
            "generate index.html",
            "generate css/style.css",
            "build round 1",
            "deploy"
        ]
    );
    // The model's text reached the log as it streamed, coalesced.
    let logs = logs(&events);
    let planner_lines: Vec<&&str> = logs
        .iter()
        .filter(|l| l.starts_with("[planner] "))
        .collect();
    assert!(!planner_lines.is_empty());
    let streamed: usize = planner_lines.iter().map(|l| l.len()).sum();
    assert!(
        planner_lines.len() * 16 < streamed,
        "one event per chunk: {planner_lines:?}"
    );

    let app = s.engine.app_by_job(&owner, job.id).await.unwrap();
    let p = &app.payload;
    assert_eq!(app.name, "Bakery");
    assert_eq!(p["plan"]["files"].as_array().unwrap().len(), 2);
    assert_eq!(
        p["deploy_url"],
        format!("http://sites.test:8081/sites/{}/", job.id)
    );
    assert_eq!(p["deploy"]["prefix"], "site/");
    assert_eq!(p["build"]["rounds"], 1);
    // Usage: one plan call and two file calls, summed.
    assert_eq!(p["usage"]["input_tokens"], 100 + 200 + 150);
    assert_eq!(p["usage"]["output_tokens"], 50 + 80 + 20);
    assert_eq!(p["usage"]["calls"].as_array().unwrap().len(), 3);
    assert_eq!(p["usage"]["calls"][0]["model"], "m1");

    let names: Vec<String> = s
        .engine
        .artifacts(&owner, job.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    for name in [
        "source/index.html",
        "source/css/style.css",
        "site/index.html",
        "site/css/style.css",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
    let page = s
        .engine
        .open_artifact(&owner, job.id, "site/index.html", None)
        .await
        .unwrap();
    assert!(
        page.artifact.content_type.starts_with("text/html"),
        "{}",
        page.artifact.content_type
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_build_is_fixed_in_round_two_and_both_rounds_are_steps() {
    let Some(s) = setup(&["m1"], |_| {}).await else {
        return;
    };
    let build = json!({
        "argv": ["sh", "-ec", "grep -q FIXED index.html || { echo 'index.html: the word FIXED is missing' >&2; exit 1; }; mkdir -p out; cp index.html out/"],
        "output": "out"
    });
    s.fake
        .respond_with(site_responder(bakery_plan(build), "<h1>Bakery</h1>"));
    let worker = Worker::new(s.engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = s
        .engine
        .submit(&owner, submit("bakery", json!({}), 1))
        .await
        .unwrap();
    let events = watch_to_end(&s.engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    let done = s.engine.get(&owner, job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    assert_eq!(
        stages(&events),
        [
            "PLANNING",
            "GENERATING",
            "BUILDING",
            "FIXING",
            "BUILDING",
            "DEPLOYING"
        ]
    );
    let steps = steps(&events);
    let rounds: Vec<(&str, StepStatus)> = steps
        .into_iter()
        .filter(|s| s.0.contains("round"))
        .collect();
    assert_eq!(
        rounds,
        [
            ("build round 1", StepStatus::Failed),
            ("fix round 1", StepStatus::Completed),
            ("build round 2", StepStatus::Completed),
        ]
    );
    // The fixer was shown the build's error and the failing file.
    let fix = s
        .fake
        .requests()
        .into_iter()
        .find(|r| agent_of(r) == "fixer")
        .unwrap();
    assert!(fix.last_message().contains("the word FIXED is missing"));
    assert!(fix
        .last_message()
        .contains("=== index.html ===\n<h1>Bakery</h1>"));
    let app = s.engine.app_by_job(&owner, job.id).await.unwrap();
    assert_eq!(app.payload["build"]["rounds"], 2);
    assert_eq!(app.payload["deploy"]["prefix"], "out/");
    let logs = logs(&events);
    assert!(logs.iter().any(|l| l.contains("the word FIXED is missing")));
    let names: Vec<String> = s
        .engine
        .artifacts(&owner, job.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert!(names.contains(&"out/index.html".to_owned()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_plan_is_asked_again_once_then_fails_clearly() {
    let Some(s) = setup(&["m1"], |_| {}).await else {
        return;
    };
    s.fake.respond_with(|r| match agent_of(r) {
        "planner" => Reply::text(
            r#"{"name": "x", "files": [{"path": "../escape.html"}]}"#,
            usage(10, 10),
        ),
        _ => Reply::status(400, None),
    });
    let worker = Worker::new(s.engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = s
        .engine
        .submit(&owner, submit("x", json!({}), 3))
        .await
        .unwrap();
    let events = watch_to_end(&s.engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    let done = s.engine.get(&owner, job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Failed);
    let error = done.error.unwrap();
    assert_eq!(error.code, "invalid_plan");
    assert!(error.message.contains("files[0].path"), "{}", error.message);
    // Fatal: one attempt, two questions, the second saying what was wrong.
    assert_eq!(done.attempts_used, 1);
    let asked = s.fake.requests();
    assert_eq!(asked.len(), 2);
    assert!(asked[1]
        .last_message()
        .contains("That plan is invalid: files[0].path"));
    assert_eq!(steps(&events), [("plan", StepStatus::Failed)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_plan_answered_well_the_second_time_goes_on() {
    let Some(s) = setup(&["m1"], |_| {}).await else {
        return;
    };
    s.fake.push(
        "m1",
        Reply::text("Sure! Here is a plan: a nice page.", usage(10, 10)),
    );
    s.fake
        .respond_with(site_responder(bakery_plan(Value::Null), "<h1>Bakery</h1>"));
    let worker = Worker::new(s.engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = s
        .engine
        .submit(&owner, submit("x", json!({}), 1))
        .await
        .unwrap();
    watch_to_end(&s.engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    let done = s.engine.get(&owner, job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    let app = s.engine.app_by_job(&owner, job.id).await.unwrap();
    assert_eq!(app.payload["usage"]["calls"].as_array().unwrap().len(), 4);
    assert_eq!(app.payload["usage"]["input_tokens"], 10 + 100 + 200 + 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_model_is_rate_limited_the_attempt_is_retried_not_failed() {
    let Some(s) = setup(&["a", "b"], |p| p.max_wait_ms = 1_000).await else {
        return;
    };
    s.fake.respond_with(|_| Reply::status(429, Some(60)));
    let worker = Worker::new(s.engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = s
        .engine
        .submit(&owner, submit("x", json!({}), 5))
        .await
        .unwrap();
    let id = job.id;
    let engine = s.engine.clone();
    let o = owner.clone();
    let retried = eventually(
        "the first attempt to end",
        Duration::from_secs(30),
        move || {
            let engine = engine.clone();
            let o = o.clone();
            async move {
                let job = engine.get(&o, id).await.unwrap();
                (job.attempts_used >= 1 && job.error.is_some()).then_some(job)
            }
        },
    )
    .await;
    s.engine.cancel(&owner, id).await.unwrap();
    worker.shutdown().await;
    assert_eq!(retried.status, JobStatus::Queued);
    // The retry waits for the provider's Retry-After (60 s), not the short
    // backoff of the test's worker.
    assert!(
        retried.run_at - retried.updated_at >= chrono::Duration::seconds(59),
        "retry at {} after the failure at {}",
        retried.run_at,
        retried.updated_at
    );
    let error = retried.error.unwrap();
    assert_eq!(error.code, "llm_exhausted");
    assert!(
        error.message.contains("retry after 60s"),
        "{}",
        error.message
    );
    let events = s.engine.events(&owner, id, 0, 1000).await.unwrap();
    assert!(events.iter().any(|e| matches!(&e.data,
        EventData::Status { status: JobStatus::Queued, error: Some(err), .. } if err.code == "llm_exhausted")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_a_streaming_call_stops_it_within_a_heartbeat() {
    let Some(s) = setup(&["m1"], |_| {}).await else {
        return;
    };
    s.fake.push(
        "m1",
        Reply::Endless {
            delay: Duration::from_millis(20),
        },
    );
    let worker = Worker::new(s.engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = s
        .engine
        .submit(&owner, submit("x", json!({}), 1))
        .await
        .unwrap();
    let id = job.id;
    // Wait for the planner's text to stream into the log.
    let engine = s.engine.clone();
    let o = owner.clone();
    eventually("streamed text in the log", Duration::from_secs(30), move || {
        let engine = engine.clone();
        let o = o.clone();
        async move {
            let events = engine.events(&o, id, 0, 1000).await.unwrap();
            events
                .iter()
                .any(|e| matches!(&e.data, EventData::Log(l) if l.message.starts_with("[planner] more")))
                .then_some(())
        }
    })
    .await;
    assert_eq!(s.fake.open_streams(), 1);
    let start = Instant::now();
    s.engine.cancel(&owner, id).await.unwrap();
    let engine = s.engine.clone();
    let o = owner.clone();
    eventually("the job cancelled", Duration::from_secs(10), move || {
        let engine = engine.clone();
        let o = o.clone();
        async move { (engine.get(&o, id).await.unwrap().status == JobStatus::Cancelled).then_some(()) }
    })
    .await;
    let took = start.elapsed();
    // The heartbeat (100 ms) delivers the cancel; the stream stops at once.
    assert!(took < Duration::from_millis(100 + 400), "{took:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while s.fake.open_streams() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        s.fake.open_streams(),
        0,
        "the provider's stream is still open"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_params_fail_the_job_before_any_call() {
    let Some(s) = setup(&["m1"], |_| {}).await else {
        return;
    };
    let worker = Worker::new(s.engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = s
        .engine
        .submit(
            &owner,
            submit(
                "x",
                json!({"build": {"argv": ["make"], "output": "../up"}}),
                1,
            ),
        )
        .await
        .unwrap();
    watch_to_end(&s.engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    let done = s.engine.get(&owner, job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Failed);
    assert_eq!(done.error.unwrap().code, "invalid_params");
    assert!(s.fake.requests().is_empty());
}
