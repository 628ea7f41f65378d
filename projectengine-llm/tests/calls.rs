//! Calls against a fake OpenAI-compatible provider on a local port.

use std::time::Duration;

use projectengine_llm::fake::{FakeProvider, Reply};
use projectengine_llm::{
    AgentProfile, Error, Llm, LlmConfig, Message, Price, ProviderProfile, Usage,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
    }
}

fn llm(fake: &FakeProvider, models: &[&str], edit: impl FnOnce(&mut ProviderProfile)) -> Llm {
    let mut provider = ProviderProfile::new(
        "fake",
        fake.base_url(),
        models.iter().map(|m| (*m).to_owned()).collect(),
    );
    provider.backoff_ms = 50;
    edit(&mut provider);
    let agent = AgentProfile::new("writer", "fake", "You write.");
    Llm::new(LlmConfig::new(vec![provider], vec![agent]).unwrap()).unwrap()
}

async fn ask(llm: &Llm, text: &str) -> projectengine_llm::Result<projectengine_llm::Completion> {
    llm.complete(
        "writer",
        &[Message::user(text)],
        &CancellationToken::new(),
        None,
    )
    .await
}

#[tokio::test]
async fn a_streamed_answer_arrives_whole_with_its_usage_model_and_cost() {
    let fake = FakeProvider::start().await.unwrap();
    fake.push(
        "m1",
        Reply::text("Hello, bakery world! Fresh bread daily.", usage(12, 9)),
    );
    let llm = llm(&fake, &["m1"], |p| {
        p.prices.insert(
            "m1".into(),
            Price {
                input_per_million: 1.0,
                output_per_million: 2.0,
            },
        );
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let done = llm
        .complete(
            "writer",
            &[Message::user("hi")],
            &CancellationToken::new(),
            Some(&tx),
        )
        .await
        .unwrap();
    drop(tx);
    assert_eq!(done.text, "Hello, bakery world! Fresh bread daily.");
    assert_eq!(done.model, "m1");
    assert_eq!(done.usage, usage(12, 9));
    assert!(!done.usage_estimated);
    let cost = done.cost_usd.unwrap();
    assert!((cost - (12.0 + 18.0) / 1e6).abs() < 1e-12, "{cost}");
    // The text came in pieces, as streamed.
    let mut pieces = Vec::new();
    while let Some(p) = rx.recv().await {
        pieces.push(p);
    }
    assert!(pieces.len() >= 3, "{pieces:?}");
    assert_eq!(pieces.concat(), done.text);
    // The request carried the system prompt, the message and asked to stream.
    let req = &fake.requests()[0];
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.body["messages"][0]["role"], "system");
    assert_eq!(req.body["messages"][0]["content"], "You write.");
    assert_eq!(req.last_message(), "hi");
}

#[tokio::test]
async fn a_429_with_retry_after_moves_to_the_next_model_and_the_wait_is_honoured() {
    let fake = FakeProvider::start().await.unwrap();
    fake.push("first", Reply::status(429, Some(1)));
    fake.respond_with(|r| Reply::text(&format!("from {}", r.model), usage(1, 1)));
    let llm = llm(&fake, &["first", "second"], |_| {});

    let done = ask(&llm, "one").await.unwrap();
    assert_eq!(done.model, "second");
    assert_eq!(done.text, "from second");
    // Within the Retry-After, the first model is not asked again.
    let done = ask(&llm, "two").await.unwrap();
    assert_eq!(done.model, "second");
    let asked: Vec<String> = fake.requests().iter().map(|r| r.model.clone()).collect();
    assert_eq!(asked, ["first", "second", "second"]);
    // After it, the first model is back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let done = ask(&llm, "three").await.unwrap();
    assert_eq!(done.model, "first");
}

#[tokio::test]
async fn when_every_model_is_limited_the_call_waits_for_the_first_to_cool_down() {
    let fake = FakeProvider::start().await.unwrap();
    fake.push("a", Reply::status(429, Some(1)));
    fake.push("b", Reply::status(503, Some(3)));
    fake.respond_with(|r| Reply::text(&format!("from {}", r.model), usage(1, 1)));
    let llm = llm(&fake, &["a", "b"], |_| {});
    let start = Instant::now();
    let done = ask(&llm, "x").await.unwrap();
    let waited = start.elapsed();
    assert_eq!(done.model, "a");
    assert!(waited >= Duration::from_millis(1000), "{waited:?}");
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
}

#[tokio::test]
async fn a_retry_after_longer_than_the_call_may_wait_ends_it_as_exhausted_with_that_wait() {
    let fake = FakeProvider::start().await.unwrap();
    fake.push("a", Reply::status(429, Some(30)));
    fake.push("b", Reply::status(429, Some(45)));
    let llm = llm(&fake, &["a", "b"], |p| p.max_wait_ms = 5_000);
    let start = Instant::now();
    let err = ask(&llm, "x").await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(err.is_retryable(), "{err}");
    let after = err.retry_after().unwrap();
    assert!(
        after > Duration::from_secs(28) && after <= Duration::from_secs(30),
        "{after:?}"
    );
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn overloaded_models_are_retried_in_rounds_with_backoff_then_exhausted() {
    let fake = FakeProvider::start().await.unwrap();
    fake.respond_with(|_| Reply::status(500, None));
    let llm = llm(&fake, &["a", "b"], |p| p.max_retries = 2);
    let err = ask(&llm, "x").await.unwrap_err();
    assert!(matches!(err, Error::Exhausted { .. }), "{err}");
    // Three rounds over two models.
    assert_eq!(fake.requests().len(), 6);
}

#[tokio::test]
async fn a_missing_model_is_skipped_and_a_list_of_missing_models_is_fatal() {
    let fake = FakeProvider::start().await.unwrap();
    fake.push("gone", Reply::status(404, None));
    fake.push("there", Reply::text("ok", usage(1, 1)));
    let llm1 = llm(&fake, &["gone", "there"], |_| {});
    assert_eq!(ask(&llm1, "x").await.unwrap().model, "there");

    fake.push("gone", Reply::status(404, None));
    let llm2 = llm(&fake, &["gone"], |_| {});
    let err = ask(&llm2, "x").await.unwrap_err();
    assert!(matches!(err, Error::NoModel { .. }), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_refused_request_is_fatal_at_once() {
    let fake = FakeProvider::start().await.unwrap();
    fake.push("a", Reply::status(401, None));
    let llm = llm(&fake, &["a", "b"], |_| {});
    let err = ask(&llm, "x").await.unwrap_err();
    assert!(matches!(err, Error::Rejected { status: 401, .. }), "{err}");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn cancel_during_a_stream_stops_the_call_and_closes_the_connection() {
    let fake = FakeProvider::start().await.unwrap();
    fake.push(
        "a",
        Reply::Endless {
            delay: Duration::from_millis(20),
        },
    );
    let llm = llm(&fake, &["a"], |_| {});
    let cancel = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let call = {
        let llm = llm.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            llm.complete("writer", &[Message::user("x")], &cancel, Some(&tx))
                .await
        })
    };
    // Text is flowing.
    rx.recv().await.unwrap();
    assert_eq!(fake.open_streams(), 1);
    let start = Instant::now();
    cancel.cancel();
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Cancelled));
    assert!(start.elapsed() < Duration::from_millis(200));
    // The server sees the connection go.
    let deadline = Instant::now() + Duration::from_secs(2);
    while fake.open_streams() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.open_streams(), 0);
}

#[tokio::test]
async fn the_request_limiter_spaces_calls_of_all_users() {
    let fake = FakeProvider::start().await.unwrap();
    fake.respond_with(|_| Reply::text("ok", usage(1, 1)));
    // Two a minute: the third call waits ~30 s; give up well before.
    let llm = llm(&fake, &["a"], |p| p.requests_per_minute = Some(2));
    ask(&llm, "1").await.unwrap();
    ask(&llm, "2").await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(500), ask(&llm, "3")).await;
    assert!(third.is_err(), "the third call went through at once");
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn a_provider_without_usage_gets_an_estimate_marked_as_such() {
    let fake = FakeProvider::start().await.unwrap();
    fake.push(
        "a",
        Reply::Text {
            chunks: vec!["abcdefgh".into()],
            usage: None,
            delay: Duration::ZERO,
        },
    );
    let llm = llm(&fake, &["a"], |_| {});
    let done = ask(&llm, "x").await.unwrap();
    assert!(done.usage_estimated);
    assert_eq!(done.usage.output_tokens, 2);
    assert!(done.usage.input_tokens > 0);
}

#[test]
fn bad_configurations_are_refused_naming_the_field() {
    let err = LlmConfig::from_json(
        r#"{"providers": [{"name": "p", "base_url": "ftp://x", "models": ["m"]}]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("providers[0].base_url"), "{err}");
    let err = LlmConfig::from_json(
        r#"{"providers": [{"name": "p", "base_url": "http://x", "models": ["m"]}],
            "agents": [{"name": "a", "provider": "q", "system_prompt": "s"}]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("agents[0].provider"), "{err}");
    let err = LlmConfig::from_json(r#"{"providers": [], "surprise": 1}"#).unwrap_err();
    assert!(err.to_string().contains("surprise"), "{err}");
    let mut p = ProviderProfile::new("p", "http://x", vec!["m".into()]);
    p.api_key_env = Some("PROJECTENGINE_TEST_SURELY_UNSET_KEY".into());
    let err = Llm::new(LlmConfig::new(vec![p], vec![]).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("PROJECTENGINE_TEST_SURELY_UNSET_KEY"),
        "{err}"
    );
}
