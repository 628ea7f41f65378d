//! Provider and agent profiles, read from a JSON file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Price, Result};

/// An OpenAI-compatible provider: where it is, its key, its models (tried in
/// order), its limits and its retry policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ProviderProfile {
    /// Its name, which agents refer to.
    pub name: String,
    /// The API's base URL, e.g. `https://api.openai.com/v1`; chat goes to
    /// `{base_url}/chat/completions`.
    pub base_url: String,
    /// The environment variable holding the API key (none: no
    /// `Authorization` header).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Models in order of preference: the next is used when one is
    /// rate-limited, overloaded or missing.
    pub models: Vec<String>,
    /// Most requests a minute, shared by every call of the process (none:
    /// unlimited).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Most tokens (in and out) a minute, shared likewise (none: unlimited).
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    /// Rounds over the model list after the first, per call.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First backoff between rounds, in milliseconds (doubled each round,
    /// with jitter).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Longest wait a call accepts before its next round (a longer
    /// `Retry-After` ends the call with [`Error::Exhausted`]), in
    /// milliseconds.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// Longest silence of a streaming response, in milliseconds.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Prices by model, for the cost of a job.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
}

fn default_retries() -> u32 {
    2
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_max_wait_ms() -> u64 {
    20_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}

impl ProviderProfile {
    /// A provider at `base_url` with these models and the default policy.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>, models: Vec<String>) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            api_key_env: None,
            models,
            requests_per_minute: None,
            tokens_per_minute: None,
            max_retries: default_retries(),
            backoff_ms: default_backoff_ms(),
            max_wait_ms: default_max_wait_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            prices: BTreeMap::new(),
        }
    }

    pub(crate) fn backoff(&self) -> Duration {
        Duration::from_millis(self.backoff_ms)
    }

    pub(crate) fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

/// An agent: a role with its provider, models and system prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AgentProfile {
    /// Its name (e.g. `planner`).
    pub name: String,
    /// What it does, in a few words (shown in reports).
    #[serde(default)]
    pub role: String,
    /// The provider's name.
    pub provider: String,
    /// Models to use instead of the provider's list (empty: the provider's).
    #[serde(default)]
    pub models: Vec<String>,
    /// The system prompt of its every call.
    pub system_prompt: String,
    /// Sampling temperature (none: the provider's default).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Most completion tokens a call may produce (none: the provider's
    /// default).
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

impl AgentProfile {
    /// An agent using `provider`'s models.
    pub fn new(
        name: impl Into<String>,
        provider: impl Into<String>,
        system_prompt: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            role: String::new(),
            provider: provider.into(),
            models: Vec::new(),
            system_prompt: system_prompt.into(),
            temperature: None,
            max_tokens: None,
        }
    }
}

/// Every provider and agent: the content of the LLM configuration file.
///
/// ```json
/// {
///   "providers": [{"name": "openai", "base_url": "https://api.openai.com/v1",
///                  "api_key_env": "OPENAI_API_KEY", "models": ["gpt-4o-mini", "gpt-4.1-mini"],
///                  "requests_per_minute": 60, "tokens_per_minute": 200000}],
///   "agents": [{"name": "planner", "role": "plans the site", "provider": "openai",
///               "system_prompt": "You plan small websites."}]
/// }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LlmConfig {
    /// The providers.
    #[serde(default)]
    pub providers: Vec<ProviderProfile>,
    /// The agents.
    #[serde(default)]
    pub agents: Vec<AgentProfile>,
}

impl LlmConfig {
    /// A configuration of these providers and agents (checked by
    /// [`LlmConfig::validate`]).
    pub fn new(providers: Vec<ProviderProfile>, agents: Vec<AgentProfile>) -> Result<Self> {
        let config = Self { providers, agents };
        config.validate()?;
        Ok(config)
    }

    /// Parses and checks a JSON configuration.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self =
            serde_json::from_str(text).map_err(|e| Error::invalid("llm config", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and checks a JSON configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid("llm config", format!("{}: {e}", path.display())))?;
        Self::from_json(&text)
    }

    /// Checks names are unique, URLs are HTTP(S), lists are not empty and
    /// every agent's provider exists.
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let field = |f: &str| format!("providers[{i}].{f}");
            if p.name.is_empty() || !seen.insert(p.name.as_str()) {
                return Err(Error::invalid(
                    field("name"),
                    "must be non-empty and unique",
                ));
            }
            if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
                return Err(Error::invalid(field("base_url"), "must be an http(s) URL"));
            }
            if p.models.is_empty() || p.models.iter().any(String::is_empty) {
                return Err(Error::invalid(
                    field("models"),
                    "must list at least one model, none empty",
                ));
            }
            if p.requests_per_minute == Some(0) || p.tokens_per_minute == Some(0) {
                return Err(Error::invalid(
                    field("requests_per_minute"),
                    "limits must be at least 1",
                ));
            }
        }
        let mut agents = std::collections::BTreeSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            let field = |f: &str| format!("agents[{i}].{f}");
            if a.name.is_empty() || !agents.insert(a.name.as_str()) {
                return Err(Error::invalid(
                    field("name"),
                    "must be non-empty and unique",
                ));
            }
            if self.provider(&a.provider).is_none() {
                return Err(Error::invalid(
                    field("provider"),
                    format!("no provider named {:?}", a.provider),
                ));
            }
        }
        Ok(())
    }

    /// The provider of this name.
    pub fn provider(&self, name: &str) -> Option<&ProviderProfile> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The agent of this name.
    pub fn agent(&self, name: &str) -> Option<&AgentProfile> {
        self.agents.iter().find(|a| a.name == name)
    }
}
