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
    setup_with(models, edit, |_| {}).await
}

/// Like [`setup`], with the builder's settings edited by `configure`.
async fn setup_with(
    models: &[&str],
    edit: impl FnOnce(&mut ProviderProfile),
    configure: impl FnOnce(&mut AppBuilderConfig),
) -> Option<Setup> {
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
    configure(&mut config);
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

/// A build that fails until `index.html` holds the word FIXED.
fn fixable_build() -> Value {
    json!({
        "argv": ["sh", "-ec", "grep -q FIXED index.html || { echo 'index.html: the word FIXED is missing' >&2; exit 1; }; mkdir -p out; cp index.html out/"],
        "output": "out"
    })
}

/// Like [`site_responder`], with the fixer's answers taken from `fixer`
/// in turn (the last one repeated).
fn fixer_script(fixer: Vec<String>) -> impl Fn(&Recorded) -> Reply {
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let site = site_responder(bakery_plan(fixable_build()), "<h1>Bakery</h1>");
    move |r| match agent_of(r) {
        "fixer" => {
            let n = asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Reply::text(&fixer[n.min(fixer.len() - 1)], usage(300, 40))
        }
        _ => site(r),
    }
}

fn fixer_requests(fake: &FakeProvider) -> Vec<Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| agent_of(r) == "fixer")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_patches_are_asked_again_once_and_the_good_answer_is_applied() {
    let Some(s) = setup(&["m1"], |_| {}).await else {
        return;
    };
    let good =
        json!({"patches": [{"path": "index.html", "content": "<h1>Bakery</h1><p>FIXED</p>\n"}]});
    s.fake.respond_with(fixer_script(vec![
        "I added the word FIXED to index.html.".into(),
        good.to_string(),
    ]));
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
    let rounds: Vec<(&str, StepStatus)> = steps(&events)
        .into_iter()
        .filter(|s| s.0.contains("round"))
        .collect();
    assert_eq!(
        rounds,
        [
            ("build round 1", StepStatus::Failed),
            ("fix round 1", StepStatus::Failed),
            ("fix round 1", StepStatus::Completed),
            ("build round 2", StepStatus::Completed),
        ]
    );
    // The second question carries the first answer and says what was wrong.
    let asked = fixer_requests(&s.fake);
    assert_eq!(asked.len(), 2);
    assert!(
        asked[1]
            .last_message()
            .starts_with("Those patches are invalid: the answer is not valid JSON"),
        "{}",
        asked[1].last_message()
    );
    let history = asked[1].body["messages"].as_array().unwrap();
    assert_eq!(
        history[history.len() - 2]["content"],
        "I added the word FIXED to index.html."
    );
    let app = s.engine.app_by_job(&owner, job.id).await.unwrap();
    assert_eq!(app.payload["build"]["rounds"], 2);
    // Both of the fixer's calls are counted.
    let calls = app.payload["usage"]["calls"].as_array().unwrap();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c["purpose"] == "fix round 1")
            .count(),
        2
    );
    let page = s
        .engine
        .open_artifact(&owner, job.id, "source/index.html", None)
        .await
        .unwrap();
    assert!(page.artifact.size > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_invalid_twice_fail_the_fixing_round_clearly() {
    let Some(s) = setup(&["m1"], |_| {}).await else {
        return;
    };
    let escaping = json!({"patches": [{"path": "../index.html", "content": "FIXED"}]});
    s.fake
        .respond_with(fixer_script(vec![escaping.to_string()]));
    let worker = Worker::new(s.engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = s
        .engine
        .submit(&owner, submit("bakery", json!({"max_fix_rounds": 2}), 3))
        .await
        .unwrap();
    let events = watch_to_end(&s.engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    let done = s.engine.get(&owner, job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Failed);
    // Fatal: one attempt, no second build, the fixer asked twice.
    assert_eq!(done.attempts_used, 1);
    let error = done.error.unwrap();
    assert_eq!(error.code, "invalid_patch");
    assert!(
        error.message.starts_with(
            "fix round 1: the fixer's answer is not valid patches, twice: patches[0].path"
        ),
        "{}",
        error.message
    );
    assert_eq!(fixer_requests(&s.fake).len(), 2);
    let rounds: Vec<(&str, StepStatus)> = steps(&events)
        .into_iter()
        .filter(|s| s.0.contains("round"))
        .collect();
    assert_eq!(
        rounds,
        [
            ("build round 1", StepStatus::Failed),
            ("fix round 1", StepStatus::Failed),
            ("fix round 1", StepStatus::Failed),
        ]
    );
    // Each failed try says why.
    let reasons: Vec<Value> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::Step(s) if s.name == "fix round 1" => s.detail.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 2);
    assert_eq!(reasons[1]["try"], 2);
    assert!(reasons[1]["reason"]
        .as_str()
        .unwrap()
        .starts_with("patches[0].path"));
    // Nothing of the bad patch was kept.
    let names: Vec<String> = s
        .engine
        .artifacts(&owner, job.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert!(!names.iter().any(|n| n.contains("..")), "{names:?}");
    assert_eq!(stages(&events).last(), Some(&"FIXING"));
}

/// A real host for deploy commands, on a local port: `PUT /upload/PATH`
/// with the right bearer token stores a file, `GET /sites/PATH` serves it,
/// `GET /ping` answers (to tell whether a command had the network).
struct Host {
    url: String,
    files: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Host {
    async fn start(token: &str) -> Self {
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::{get, put};
        type Files = Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>;
        let files: Files = Arc::default();
        let expected = format!("Bearer {token}");
        let upload = move |State(files): State<Files>,
                           Path(path): Path<String>,
                           headers: HeaderMap,
                           body: axum::body::Bytes| {
            let expected = expected.clone();
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&expected) {
                    return StatusCode::UNAUTHORIZED;
                }
                files.lock().unwrap().insert(path, body.to_vec());
                StatusCode::CREATED
            }
        };
        let serve = |State(files): State<Files>, Path(path): Path<String>| async move {
            match files.lock().unwrap().get(&path) {
                Some(body) => (StatusCode::OK, body.clone()),
                None => (StatusCode::NOT_FOUND, Vec::new()),
            }
        };
        let app = axum::Router::new()
            .route("/ping", get(|| async { "pong" }))
            .route("/upload/{*path}", put(upload))
            .route("/sites/{*path}", get(serve))
            .with_state(files.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, files, task }
    }
}

/// A build that says whether it could reach `host`, then copies the site
/// into `site/`.
fn offline_build(host: &str) -> Value {
    json!({
        "argv": ["sh", "-ec", format!(
            "if curl -s --max-time 3 {host}/ping >/dev/null 2>&1; then echo ONLINE; else echo OFFLINE; fi; mkdir -p site/css; cp index.html site/; cp css/style.css site/css/"
        )],
        "output": "site"
    })
}

fn all_text(events: &[JobEvent]) -> String {
    serde_json::to_string(events).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_command_publishes_the_site_to_a_real_host_and_its_url_is_the_apps() {
    let secret = format!("tok-{}", fastrand::u64(..));
    let host = Host::start(&secret).await;
    let command = format!(
        r#"cd "$DEPLOY_DIR" && for f in $(find . -type f | sed 's|^\./||'); do curl -sf -T "$f" -H "Authorization: Bearer $HOST_TOKEN" "{url}/upload/$DEPLOY_JOB_ID/$f"; echo "uploaded $f"; done; echo "token used: $HOST_TOKEN"; echo "deployed $DEPLOY_NAME to {url}/sites/$DEPLOY_JOB_ID/index.html""#,
        url = host.url
    );
    let deploy = projectengine_orchestrators::app_builder::DeployCommand::new(command)
        .secret("HOST_TOKEN", secret.clone());
    let Some(s) = setup_with(&["m1"], |_| {}, |c| c.deploy = Some(deploy)).await else {
        return;
    };
    s.fake.respond_with(site_responder(
        bakery_plan(Value::Null),
        "<!doctype html><h1>Bakery</h1><p>Fresh bread</p>",
    ));
    let worker = Worker::new(s.engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = s
        .engine
        .submit(
            &owner,
            submit("bakery", json!({"build": offline_build(&host.url)}), 1),
        )
        .await
        .unwrap();
    let events = watch_to_end(&s.engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    let done = s.engine.get(&owner, job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    let logs = logs(&events);
    // The network is the deploy's only: the build could not reach the host.
    assert!(logs.contains(&"[build] OFFLINE"), "{logs:?}");
    assert!(logs.contains(&"[deploy] uploaded index.html"), "{logs:?}");
    assert!(
        logs.contains(&"[deploy] token used: [redacted]"),
        "{logs:?}"
    );
    assert!(
        !all_text(&events).contains(&secret),
        "the secret reached the log"
    );
    let app = s.engine.app_by_job(&owner, job.id).await.unwrap();
    let url = format!("{}/sites/{}/index.html", host.url, job.id);
    assert_eq!(app.payload["deploy_url"], url);
    assert_eq!(app.payload["deploy"]["command_url"], url);
    assert_eq!(
        app.payload["deploy"]["site_url"],
        format!("http://sites.test:8081/sites/{}/", job.id)
    );
    assert!(!app.payload.to_string().contains(&secret));
    // The page is on the host, as built.
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.text().await.unwrap(),
        "<!doctype html><h1>Bakery</h1><p>Fresh bread</p>\n"
    );
    assert!(host
        .files
        .lock()
        .unwrap()
        .contains_key(&format!("{}/css/style.css", job.id)));
    let deploy_step = events
        .iter()
        .find_map(|e| match &e.data {
            EventData::Step(s) if s.name == "deploy" => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(deploy_step.status, StepStatus::Completed);
    assert_eq!(deploy_step.detail.unwrap()["command"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_url_written_to_the_url_file_wins_over_stdout() {
    let command = r#"echo "see http://wrong.example/"; echo "file:///srv/sites/$DEPLOY_JOB_ID/" > "$DEPLOY_URL_FILE""#;
    let deploy = projectengine_orchestrators::app_builder::DeployCommand::new(command);
    let Some(s) = setup_with(&["m1"], |_| {}, |c| c.deploy = Some(deploy)).await else {
        return;
    };
    s.fake
        .respond_with(site_responder(bakery_plan(Value::Null), "<h1>Bakery</h1>"));
    let worker = Worker::new(s.engine.clone(), fast_worker()).spawn();
    let owner = Owner::new("alice");
    let job = s
        .engine
        .submit(&owner, submit("bakery", json!({}), 1))
        .await
        .unwrap();
    watch_to_end(&s.engine, &owner, job.id, 0, WATCH).await;
    worker.shutdown().await;
    let done = s.engine.get(&owner, job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    let app = s.engine.app_by_job(&owner, job.id).await.unwrap();
    assert_eq!(
        app.payload["deploy_url"],
        format!("file:///srv/sites/{}/", job.id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_silent_or_slow_deploy_fails_the_job_in_deploying() {
    let secret = format!("tok-{}", fastrand::u64(..));
    let cases = [
        (
            "echo \"cannot log in with $HOST_TOKEN\" >&2; exit 3",
            Duration::from_secs(60),
            "deploy_failed",
            "exit code 3",
        ),
        (
            "echo uploaded",
            Duration::from_secs(60),
            "deploy_no_url",
            "reported no URL",
        ),
        (
            "echo started; sleep 30; echo http://late.example/",
            Duration::from_secs(1),
            "deploy_failed",
            "timeout",
        ),
    ];
    for (command, timeout, code, says) in cases {
        let deploy = projectengine_orchestrators::app_builder::DeployCommand::new(command)
            .secret("HOST_TOKEN", secret.clone())
            .timeout(timeout);
        let Some(s) = setup_with(&["m1"], |_| {}, |c| c.deploy = Some(deploy)).await else {
            return;
        };
        s.fake
            .respond_with(site_responder(bakery_plan(Value::Null), "<h1>Bakery</h1>"));
        let worker = Worker::new(s.engine.clone(), fast_worker()).spawn();
        let owner = Owner::new("alice");
        let job = s
            .engine
            .submit(&owner, submit("bakery", json!({}), 3))
            .await
            .unwrap();
        let events = watch_to_end(&s.engine, &owner, job.id, 0, WATCH).await;
        worker.shutdown().await;
        let done = s.engine.get(&owner, job.id).await.unwrap();
        assert_eq!(done.status, JobStatus::Failed, "{command}");
        assert_eq!(done.attempts_used, 1, "{command}");
        let error = done.error.unwrap();
        assert_eq!(error.code, code, "{command}: {}", error.message);
        assert!(error.message.contains(says), "{command}: {}", error.message);
        assert!(!error.message.contains(&secret), "{}", error.message);
        assert_eq!(stages(&events).last(), Some(&"DEPLOYING"), "{command}");
        assert_eq!(
            steps(&events).last(),
            Some(&("deploy", StepStatus::Failed)),
            "{command}"
        );
        assert!(!all_text(&events).contains(&secret), "{command}");
        assert!(s.engine.app_by_job(&owner, job.id).await.is_err());
    }
}
