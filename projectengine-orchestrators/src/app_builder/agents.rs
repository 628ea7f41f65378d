//! The builder's agents: their default profiles, and a call that streams
//! the model's text to the job's log (coalesced) and records its usage.

use std::time::Duration;

use projectengine_core::{JobCallbacks, LogLevel, OrchestratorError};
use projectengine_llm::{AgentProfile, Completion, Llm, Message, Usage};
use serde::Serialize;
use serde_json::{json, Value};

/// The planner's default system prompt.
pub const PLANNER_PROMPT: &str =
    "You plan small websites. Answer with one JSON object and nothing else.";
/// The generator's default system prompt.
pub const GENERATOR_PROMPT: &str = "You write the files of small websites: plain, valid, accessible HTML, CSS and JavaScript. Answer with the file's content only, no commentary, no code fences.";
/// The fixer's default system prompt.
pub const FIXER_PROMPT: &str =
    "You fix builds of small websites. Answer with one JSON object and nothing else.";

/// The three agents the builder uses (`planner`, `generator`, `fixer`), on
/// `provider` with its models.
pub fn default_agents(provider: &str) -> Vec<AgentProfile> {
    let mut planner = AgentProfile::new("planner", provider, PLANNER_PROMPT);
    planner.role = "plans the site: its files and build".into();
    let mut generator = AgentProfile::new("generator", provider, GENERATOR_PROMPT);
    generator.role = "writes each file of the plan".into();
    let mut fixer = AgentProfile::new("fixer", provider, FIXER_PROMPT);
    fixer.role = "patches files after a failed build".into();
    vec![planner, generator, fixer]
}

/// One call's record in the App.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CallRecord {
    agent: String,
    purpose: String,
    provider: String,
    model: String,
    input_tokens: u64,
    output_tokens: u64,
    usage_estimated: bool,
    cost_usd: Option<f64>,
}

/// Every call of the attempt.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    calls: Vec<CallRecord>,
}

impl Ledger {
    fn record(&mut self, agent: &str, purpose: &str, c: &Completion) {
        self.calls.push(CallRecord {
            agent: agent.to_owned(),
            purpose: purpose.to_owned(),
            provider: c.provider.clone(),
            model: c.model.clone(),
            input_tokens: c.usage.input_tokens,
            output_tokens: c.usage.output_tokens,
            usage_estimated: c.usage_estimated,
            cost_usd: c.cost_usd,
        });
    }

    /// Tokens of every call.
    pub(crate) fn total(&self) -> Usage {
        let mut total = Usage::default();
        for c in &self.calls {
            total.add(Usage {
                input_tokens: c.input_tokens,
                output_tokens: c.output_tokens,
            });
        }
        total
    }

    /// The usage section of the App: totals, cost (null when a model's price
    /// is unknown) and each call.
    pub(crate) fn report(&self) -> Value {
        let total = self.total();
        let cost: Option<f64> = self.calls.iter().map(|c| c.cost_usd).sum();
        json!({
            "input_tokens": total.input_tokens,
            "output_tokens": total.output_tokens,
            "calls": self.calls,
            "cost_usd": cost,
        })
    }
}

/// An LLM error as the attempt's error: exhausted models are retryable, no
/// sooner than the provider's `Retry-After`; a cancel is a cancel; the rest
/// fatal.
pub(crate) fn llm_error(e: projectengine_llm::Error) -> OrchestratorError {
    use projectengine_core::ErrorKind;
    match &e {
        projectengine_llm::Error::Cancelled => OrchestratorError::cancelled(),
        _ if e.is_retryable() => {
            let err = OrchestratorError::new(ErrorKind::Retryable, e.code(), e.to_string());
            match e.retry_after() {
                Some(after) => err.with_retry_after(after),
                None => err,
            }
        }
        _ => OrchestratorError::new(ErrorKind::Fatal, e.code(), e.to_string()),
    }
}

/// Calls `agent`, logging its text as it streams (one log line per
/// `interval` at most, as `[agent] text`), and records the call.
pub(crate) async fn call(
    llm: &Llm,
    cb: &dyn JobCallbacks,
    ledger: &mut Ledger,
    interval: Duration,
    agent: &str,
    purpose: &str,
    messages: &[Message],
) -> Result<Completion, OrchestratorError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let request = async {
        let tx = tx;
        llm.complete(agent, messages, cb.cancellation(), Some(&tx))
            .await
    };
    let logs = async {
        let mut buffer = String::new();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                piece = rx.recv() => match piece {
                    Some(p) => buffer.push_str(&p),
                    None => break,
                },
                _ = tick.tick() => flush(cb, agent, &mut buffer).await,
            }
        }
        flush(cb, agent, &mut buffer).await;
    };
    let (result, ()) = tokio::join!(request, logs);
    let completion = result.map_err(llm_error)?;
    ledger.record(agent, purpose, &completion);
    Ok(completion)
}

async fn flush(cb: &dyn JobCallbacks, agent: &str, buffer: &mut String) {
    if buffer.is_empty() {
        return;
    }
    let text = std::mem::take(buffer).replace('\0', "\u{FFFD}");
    // A failed log means the attempt cannot report any more; its
    // cancellation token fires too, which stops the call.
    let _ = cb.log(LogLevel::Info, &format!("[{agent}] {text}")).await;
}
