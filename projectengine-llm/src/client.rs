//! [`Llm`]: agents' calls with model rotation, retries and limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::limiter::Limiter;
use crate::usage::estimate_tokens;
use crate::wire::{self, CallError};
use crate::{AgentProfile, Error, LlmConfig, ProviderProfile, Result, Usage};

/// Who speaks in a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The request.
    User,
    /// The model's earlier answer.
    Assistant,
}

/// A chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A finished call: the text, the model that wrote it, and the tokens used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The whole text.
    pub text: String,
    /// The provider.
    pub provider: String,
    /// The model that answered.
    pub model: String,
    /// Tokens used by the answering request.
    pub usage: Usage,
    /// The provider reported no usage: `usage` is an estimate.
    pub usage_estimated: bool,
    /// What the call cost in US dollars, when the model's price is known.
    pub cost_usd: Option<f64>,
}

struct Provider {
    profile: ProviderProfile,
    url: String,
    key: Option<String>,
    limiter: Limiter,
    /// Models that are rate-limited or overloaded, until when.
    cooling: Mutex<HashMap<String, Instant>>,
}

/// The LLM client of a process: one per worker, shared by every attempt,
/// so the limits and the models' cool-downs hold across all of them.
/// Cheap to clone.
///
/// A call ([`Llm::complete`]) tries the agent's models in order. A model
/// that answers 429 or is overloaded (5xx, a broken stream) cools down for
/// its `Retry-After` (or the backoff) and the next model is tried at once;
/// a model that does not exist is skipped. When every model failed, the call
/// waits for the first to cool down (at least the backoff, doubled each
/// round, with jitter) and goes round again, up to `max_retries` times;
/// when the wait would exceed `max_wait_ms`, or the rounds are spent, it
/// ends with [`Error::Exhausted`] carrying the provider's retry-after.
#[derive(Clone)]
pub struct Llm {
    inner: Arc<Inner>,
}

struct Inner {
    config: LlmConfig,
    providers: HashMap<String, Provider>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("providers", &self.inner.config.providers.len())
            .field("agents", &self.inner.config.agents.len())
            .finish()
    }
}

impl Llm {
    /// A client for `config`. A provider's key is read now from its
    /// `api_key_env`; a variable that is named but unset is
    /// [`Error::Invalid`].
    pub fn new(config: LlmConfig) -> Result<Self> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::invalid("http client", e.to_string()))?;
        let mut providers = HashMap::new();
        for p in &config.providers {
            let key = match &p.api_key_env {
                None => None,
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    Error::invalid(
                        format!("providers.{}.api_key_env", p.name),
                        format!("the environment variable {var} is not set"),
                    )
                })?),
            };
            providers.insert(
                p.name.clone(),
                Provider {
                    url: format!("{}/chat/completions", p.base_url.trim_end_matches('/')),
                    key,
                    limiter: Limiter::new(p.requests_per_minute, p.tokens_per_minute),
                    cooling: Mutex::new(HashMap::new()),
                    profile: p.clone(),
                },
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                providers,
                http,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.inner.config
    }

    /// The agent of this name.
    pub fn agent(&self, name: &str) -> Result<&AgentProfile> {
        self.inner
            .config
            .agent(name)
            .ok_or_else(|| Error::UnknownAgent(name.to_owned()))
    }

    /// Calls agent `agent` with its system prompt and `messages`, streaming
    /// the text into `deltas` as it comes (text of a request that then fails
    /// may have been sent: a retry starts over). Stops with
    /// [`Error::Cancelled`] as soon as `cancel` fires, dropping the
    /// connection.
    pub async fn complete(
        &self,
        agent: &str,
        messages: &[Message],
        cancel: &CancellationToken,
        deltas: Option<&UnboundedSender<String>>,
    ) -> Result<Completion> {
        let agent = self.agent(agent)?;
        let provider = self
            .inner
            .providers
            .get(&agent.provider)
            .ok_or_else(|| Error::invalid("agent.provider", agent.provider.clone()))?;
        let profile = &provider.profile;
        let models = if agent.models.is_empty() {
            &profile.models
        } else {
            &agent.models
        };
        let mut all = Vec::with_capacity(messages.len() + 1);
        all.push(Message {
            role: Role::System,
            content: agent.system_prompt.clone(),
        });
        all.extend_from_slice(messages);
        let prompt_tokens: u64 = all.iter().map(|m| estimate_tokens(&m.content)).sum();
        let estimate = prompt_tokens + u64::from(agent.max_tokens.unwrap_or(1024));

        let mut missing = std::collections::HashSet::new();
        let mut last = String::from("no request made");
        for round in 0..=profile.max_retries {
            for model in models {
                if missing.contains(model) {
                    continue;
                }
                if provider.cooling_until(model).is_some() {
                    continue;
                }
                provider.limiter.acquire(estimate, cancel).await?;
                let span = tracing::info_span!("llm_call", provider = %profile.name, %model, agent = %agent.name);
                let result = wire::stream(
                    wire::Request {
                        http: &self.inner.http,
                        url: &provider.url,
                        key: provider.key.as_deref(),
                        model,
                        messages: &all,
                        temperature: agent.temperature,
                        max_tokens: agent.max_tokens,
                        idle_timeout: profile.idle_timeout(),
                    },
                    cancel,
                    deltas,
                )
                .instrument(span)
                .await;
                match result {
                    Ok(reply) => {
                        let (usage, usage_estimated) = match reply.usage {
                            Some(u) => (u, false),
                            None => (
                                Usage {
                                    input_tokens: prompt_tokens,
                                    output_tokens: estimate_tokens(&reply.text),
                                },
                                true,
                            ),
                        };
                        provider.limiter.settle(estimate, usage.total());
                        return Ok(Completion {
                            text: reply.text,
                            provider: profile.name.clone(),
                            model: model.clone(),
                            usage,
                            usage_estimated,
                            cost_usd: profile.prices.get(model).map(|p| p.cost(usage)),
                        });
                    }
                    Err(CallError::Cancelled) => return Err(Error::Cancelled),
                    Err(CallError::Rejected(status, message)) => {
                        return Err(Error::Rejected {
                            provider: profile.name.clone(),
                            status,
                            message,
                        })
                    }
                    Err(CallError::ModelNotFound(message)) => {
                        tracing::warn!(provider = %profile.name, %model, %message, "model not found: next model");
                        last = format!("{model}: not found");
                        missing.insert(model.clone());
                    }
                    Err(CallError::RateLimited(wait)) => {
                        let wait = wait.unwrap_or_else(|| backoff(profile.backoff(), round));
                        tracing::warn!(provider = %profile.name, %model, wait_ms = wait.as_millis() as u64, "rate-limited: next model");
                        last = format!("{model}: rate-limited");
                        provider.cool(model, wait);
                    }
                    Err(CallError::Unavailable(wait, message)) => {
                        let wait = wait.unwrap_or_else(|| backoff(profile.backoff(), round));
                        tracing::warn!(provider = %profile.name, %model, %message, "unavailable: next model");
                        last = format!("{model}: {message}");
                        provider.cool(model, wait);
                    }
                }
            }
            if missing.len()
                == models
                    .iter()
                    .collect::<std::collections::HashSet<_>>()
                    .len()
            {
                return Err(Error::NoModel {
                    provider: profile.name.clone(),
                    models: models.clone(),
                });
            }
            let now = Instant::now();
            let soonest = models
                .iter()
                .filter(|m| !missing.contains(*m))
                .filter_map(|m| provider.cooling_until(m))
                .min()
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
            if round == profile.max_retries || soonest > profile.max_wait() {
                return Err(Error::Exhausted {
                    retry_after: soonest.max(profile.backoff()),
                    last,
                });
            }
            let wait = soonest.max(jitter(backoff(profile.backoff(), round)));
            tokio::select! {
                () = cancel.cancelled() => return Err(Error::Cancelled),
                () = tokio::time::sleep(wait) => {}
            }
        }
        unreachable!("the last round returns")
    }
}

impl Provider {
    fn cool(&self, model: &str, wait: Duration) {
        let mut c = self.cooling.lock().unwrap_or_else(|e| e.into_inner());
        c.insert(model.to_owned(), Instant::now() + wait);
    }

    /// When a cooling model may be used again (none: now).
    fn cooling_until(&self, model: &str) -> Option<Instant> {
        let c = self.cooling.lock().unwrap_or_else(|e| e.into_inner());
        c.get(model).copied().filter(|t| *t > Instant::now())
    }
}

/// `base` doubled `round` times, at most a minute.
fn backoff(base: Duration, round: u32) -> Duration {
    base.saturating_mul(1 << round.min(16))
        .min(Duration::from_secs(60))
}

/// Between half and all of `d`.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64() * 0.5)
}
