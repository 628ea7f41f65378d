//! The dispatcher: claims due deliveries from the store's outbox and POSTs
//! them, signed, retrying on a schedule.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use projectengine_core::{
    CancellationToken, DeliveryNext, Destination, Error as CoreError, NewTry, Store,
    WebhookDelivery,
};
use reqwest::Url;

use crate::guard::{AddressPolicy, GuardedResolver};
use crate::payload::Payload;
use crate::schedule::RetrySchedule;
use crate::secret::Secret;
use crate::Error;

/// How a [`Dispatcher`] works.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DispatcherConfig {
    /// The deployment-wide URL, for the deliveries of jobs submitted with
    /// [`Webhooks::notify_deployment`](projectengine_core::Webhooks).
    pub deployment_url: Option<String>,
    /// Signs every delivery.
    pub secret: Secret,
    /// Delays between tries.
    pub schedule: RetrySchedule,
    /// How long one try may take, connection included.
    pub timeout: Duration,
    /// Most deliveries claimed at once.
    pub batch: usize,
    /// Most deliveries sent at once.
    pub concurrency: usize,
    /// How long to wait when nothing was due.
    pub poll_interval: Duration,
    /// Which addresses may be reached.
    pub policy: AddressPolicy,
}

impl DispatcherConfig {
    /// Defaults around `secret`: no deployment URL, the default schedule, a
    /// 10 s timeout, batches of 32 sent 8 at a time, a 1 s poll, private
    /// addresses refused.
    pub fn new(secret: Secret) -> Self {
        Self {
            deployment_url: None,
            secret,
            schedule: RetrySchedule::default(),
            timeout: Duration::from_secs(10),
            batch: 32,
            concurrency: 8,
            poll_interval: Duration::from_secs(1),
            policy: AddressPolicy::default(),
        }
    }

    /// How long a claim hides a delivery: longer than its whole batch can
    /// take (`batch / concurrency` rounds of tries, each up to the timeout),
    /// so a live dispatcher records every try before another may claim the
    /// delivery again.
    pub fn visibility(&self) -> Duration {
        let rounds = self.batch.max(1).div_ceil(self.concurrency.max(1));
        let rounds = u32::try_from(rounds).unwrap_or(u32::MAX).saturating_add(1);
        self.timeout.saturating_mul(rounds) + Duration::from_secs(5)
    }
}

/// Delivers the outbox: claims due deliveries (with a visibility timeout,
/// so any number of dispatchers may run), POSTs each one signed per Standard
/// Webhooks, never following redirects, and records every try with the
/// delivery's next state. At least once: a dispatcher that dies between
/// sending and recording leaves the delivery to be sent again, with the same
/// `webhook-id`.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    config: Arc<DispatcherConfig>,
    deployment_url: Option<Url>,
    client: reqwest::Client,
}

/// The outcome of one send, before it is recorded.
struct Sent {
    status_code: Option<u16>,
    error: Option<String>,
    /// A failure no retry can mend (an IP literal the policy refuses).
    permanent: bool,
}

impl Dispatcher {
    /// A dispatcher over `store`. The deployment URL is checked now (scheme,
    /// and an IP literal against the policy); a host name is checked on
    /// every send, on the addresses it resolves to.
    pub fn new(store: Arc<dyn Store>, config: DispatcherConfig) -> Result<Self, Error> {
        let deployment_url = match &config.deployment_url {
            Some(raw) => {
                let url = Url::parse(raw).map_err(|e| Error::InvalidUrl(format!("{raw}: {e}")))?;
                config
                    .policy
                    .check_url(&url)
                    .map_err(|e| Error::InvalidUrl(format!("{raw}: {e}")))?;
                Some(url)
            }
            None => None,
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host itself, past the guard.
            .no_proxy()
            .dns_resolver(GuardedResolver::new(config.policy))
            .timeout(config.timeout)
            .user_agent(concat!(
                "projectengine-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        Ok(Self {
            store,
            config: Arc::new(config),
            deployment_url,
            client,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    /// Claims one batch of due deliveries, sends them and records their
    /// tries; answers how many it claimed.
    pub async fn dispatch_due(&self) -> projectengine_core::Result<usize> {
        let claimed = self
            .store
            .claim_deliveries(self.config.batch.max(1), self.config.visibility())
            .await?;
        let n = claimed.len();
        futures::stream::iter(claimed)
            .for_each_concurrent(self.config.concurrency.max(1), |d| self.deliver(d))
            .await;
        Ok(n)
    }

    /// Dispatches until `cancel` fires: batch after batch while they come
    /// back full, then a pause of [`DispatcherConfig::poll_interval`].
    pub async fn run(self, cancel: CancellationToken) {
        tracing::info!(
            deployment_url = self.deployment_url.is_some(),
            "webhook dispatcher started"
        );
        while !cancel.is_cancelled() {
            let full = match self.dispatch_due().await {
                Ok(n) => n >= self.config.batch.max(1),
                Err(e) => {
                    tracing::warn!(error = %e, "claiming webhook deliveries failed");
                    false
                }
            };
            if !full {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                }
            }
        }
    }

    /// Sends one delivery and records the try.
    async fn deliver(&self, delivery: WebhookDelivery) {
        let started = Instant::now();
        let sent = self.send(&delivery).await;
        let latency = started.elapsed();
        let tries = delivery.tries.saturating_add(1);
        let next = if sent.error.is_none() {
            DeliveryNext::Delivered
        } else if sent.permanent {
            DeliveryNext::Failed
        } else {
            match self.config.schedule.next_delay(tries) {
                Some(after) => DeliveryNext::Retry { after },
                None => DeliveryNext::Failed,
            }
        };
        if let Some(error) = &sent.error {
            tracing::info!(delivery_id = %delivery.id, job_id = %delivery.job_id, tries, error, "webhook try failed");
        }
        let recorded = self
            .store
            .record_delivery_try(
                delivery.id,
                delivery.tries,
                NewTry {
                    status_code: sent.status_code,
                    latency,
                    error: sent.error,
                },
                next,
            )
            .await;
        match recorded {
            Ok(_) => {}
            // Another dispatcher took it over after our claim lapsed.
            Err(CoreError::Conflict(reason)) => {
                tracing::debug!(delivery_id = %delivery.id, %reason, "webhook try not recorded")
            }
            Err(e) => {
                tracing::warn!(delivery_id = %delivery.id, error = %e, "recording a webhook try failed")
            }
        }
    }

    async fn send(&self, delivery: &WebhookDelivery) -> Sent {
        let failed = |error: String, permanent: bool| Sent {
            status_code: None,
            error: Some(error),
            permanent,
        };
        let url = match (delivery.destination, &delivery.url) {
            (Destination::Job, Some(raw)) => match Url::parse(raw) {
                Ok(url) => url,
                Err(e) => return failed(format!("invalid URL: {e}"), true),
            },
            (Destination::Deployment, _) => match &self.deployment_url {
                Some(url) => url.clone(),
                None => return failed("no deployment webhook URL is configured".into(), false),
            },
            _ => return failed("the delivery names no URL".into(), true),
        };
        // IP literals never reach the resolver: check them here.
        if let Err(e) = self.config.policy.check_url(&url) {
            return failed(format!("refused: {e}"), true);
        }
        let body = match self.body(delivery).await {
            Ok(body) => body,
            Err(e) => return failed(format!("cannot build the body: {e}"), false),
        };
        let id = delivery.id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self.config.secret.sign(&id, timestamp, &body);
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => Sent {
                status_code: Some(r.status().as_u16()),
                error: None,
                permanent: false,
            },
            Ok(r) => {
                let status = r.status();
                let error = if status.is_redirection() {
                    format!("HTTP {status} (redirects are not followed)")
                } else {
                    format!("HTTP {status}")
                };
                Sent {
                    status_code: Some(status.as_u16()),
                    error: Some(error),
                    permanent: false,
                }
            }
            Err(e) => failed(error_chain(&e), false),
        }
    }

    /// The JSON body: the delivery's state, the job's times, its App and its
    /// artifacts.
    async fn body(&self, delivery: &WebhookDelivery) -> projectengine_core::Result<Vec<u8>> {
        let job = self
            .store
            .get_job(delivery.job_id)
            .await?
            .ok_or(CoreError::not_found("job"))?;
        let app = self.store.app_by_job(delivery.job_id).await?;
        let artifacts = self.store.artifacts(delivery.job_id).await?;
        serde_json::to_vec(&Payload::new(delivery, &job, app.as_ref(), &artifacts))
            .map_err(|e| CoreError::internal(format!("encoding a webhook body: {e}")))
    }
}

/// An error with its sources, which say what really failed (a refused
/// address, a timeout, a refused connection).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_outlasts_its_whole_batch() {
        let mut config = DispatcherConfig::new(Secret::parse(&Secret::generate()).expect("secret"));
        config.timeout = Duration::from_secs(10);
        config.batch = 32;
        config.concurrency = 8;
        // Four rounds of sends, one more for the reads and records, and slack.
        assert_eq!(config.visibility(), Duration::from_secs(55));
        config.concurrency = 64;
        assert_eq!(config.visibility(), Duration::from_secs(25));
    }
}
