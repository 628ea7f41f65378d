//! The server's webhook settings: what the engine accepts at submission, and
//! the dispatcher its workers run.

use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args};
use projectengine_core::{Store, Webhooks};
use projectengine_webhooks::{
    AddressPolicy, Dispatcher, DispatcherConfig, RetrySchedule, Secret, UrlGuard,
};

use crate::config::{positive_duration, ConfigError};

/// Completion webhooks, signed per Standard Webhooks.
#[derive(Args, Clone, Debug)]
pub struct WebhookConfig {
    /// URL notified of every job's end, signed (unset: only jobs' own `webhook` URLs)
    #[arg(long = "webhook-url", env = "PROJECTENGINE_WEBHOOK_URL", value_parser = http_url)]
    pub url: Option<String>,

    /// Signing secret, `whsec_` then base64 of 24 to 64 bytes (unset: no webhooks are sent, and a job's `webhook` is refused)
    #[arg(long = "webhook-secret", env = "PROJECTENGINE_WEBHOOK_SECRET", hide_env_values = true, value_parser = secret)]
    pub secret: Option<Secret>,

    /// Delays between the tries of a failed delivery, comma-separated; then it is failed
    #[arg(long = "webhook-retries", env = "PROJECTENGINE_WEBHOOK_RETRIES", default_value = "5s,5m,30m,2h,5h,10h", value_parser = schedule)]
    pub retries: RetrySchedule,

    /// How long one try may take
    #[arg(long = "webhook-timeout", env = "PROJECTENGINE_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub timeout: Duration,

    /// Allow webhooks to loopback, private and link-local addresses (true or false)
    #[arg(long = "webhook-allow-private", env = "PROJECTENGINE_WEBHOOK_ALLOW_PRIVATE", default_value = "false", value_parser = switch, action = ArgAction::Set)]
    pub allow_private: bool,
}

impl WebhookConfig {
    /// The checks that involve more than one variable.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.url.is_some() && self.secret.is_none() {
            return Err(ConfigError::new(
                "PROJECTENGINE_WEBHOOK_SECRET",
                "must be set when PROJECTENGINE_WEBHOOK_URL is (webhooks are signed)",
            ));
        }
        if let Some(url) = &self.url {
            let parsed = url::Url::parse(url)
                .map_err(|e| ConfigError::new("PROJECTENGINE_WEBHOOK_URL", e.to_string()))?;
            self.policy().check_url(&parsed).map_err(|e| {
                ConfigError::new(
                    "PROJECTENGINE_WEBHOOK_URL",
                    format!("{e} (set PROJECTENGINE_WEBHOOK_ALLOW_PRIVATE=true to allow it)"),
                )
            })?;
        }
        Ok(())
    }

    fn policy(&self) -> AddressPolicy {
        AddressPolicy {
            allow_private: self.allow_private,
        }
    }

    /// The engine's settings: with a secret, jobs may carry a `webhook`
    /// (checked against the address policy), and notify the deployment's URL
    /// when one is set.
    pub fn engine(&self) -> Webhooks {
        if self.secret.is_none() {
            return Webhooks::default();
        }
        Webhooks {
            notify_deployment: self.url.is_some(),
            check: Some(Arc::new(UrlGuard::new(self.policy()))),
        }
    }

    /// The dispatcher a worker runs, when webhooks are on.
    pub fn dispatcher(&self, store: Arc<dyn Store>) -> Result<Option<Dispatcher>, ConfigError> {
        let Some(secret) = self.secret.clone() else {
            return Ok(None);
        };
        let mut config = DispatcherConfig::new(secret);
        config.deployment_url = self.url.clone();
        config.schedule = self.retries.clone();
        config.timeout = self.timeout;
        config.policy = self.policy();
        Dispatcher::new(store, config)
            .map(Some)
            .map_err(|e| ConfigError::new("PROJECTENGINE_WEBHOOK_URL", e.to_string()))
    }
}

fn http_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(s.to_owned()),
        _ => Err("must be an http:// or https:// URL".into()),
    }
}

fn secret(s: &str) -> Result<Secret, String> {
    Secret::parse(s).map_err(|e| e.to_string())
}

fn schedule(s: &str) -> Result<RetrySchedule, String> {
    s.parse::<RetrySchedule>().map_err(|e| e.to_string())
}

fn switch(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("`{other}` is not true or false")),
    }
}
