//! Completion webhooks: the outbox a terminal transition writes, and what a
//! dispatcher records of each try.
//!
//! When a job reaches `succeeded`, `failed` or `cancelled`, the store writes
//! one [`WebhookDelivery`] per destination the job has, **in the same
//! transaction** as that state ([`transition::webhook_destinations`] says
//! which): the notification can be neither lost (the state committed, the
//! delivery did not) nor invented (the delivery committed, the state did not).
//! A job without destinations writes nothing.
//!
//! A dispatcher (the `projectengine-webhooks` crate) claims due deliveries
//! with a visibility timeout ([`Store::claim_deliveries`]), sends them, and
//! records each try with the delivery's next state
//! ([`Store::record_delivery_try`]). Delivery is at least once: a dispatcher
//! that dies after sending but before recording sends again once the
//! visibility lapses, with the same delivery id, which receivers use to drop
//! duplicates.
//!
//! [`transition::webhook_destinations`]: crate::transition::webhook_destinations
//! [`Store::claim_deliveries`]: crate::Store::claim_deliveries
//! [`Store::record_delivery_try`]: crate::Store::record_delivery_try

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{DeliveryId, JobError, JobId, JobStatus, Result};

/// Where a delivery goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Destination {
    /// The job's own URL ([`Job::webhook`](crate::Job::webhook)), recorded on
    /// the delivery.
    Job,
    /// The deployment-wide URL, which the dispatcher holds in its own
    /// configuration (the store knows only that the job must notify it).
    Deployment,
}

impl Destination {
    /// The snake_case name, as in JSON and in a database.
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Job => "job",
            Destination::Deployment => "deployment",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "job" => Some(Destination::Job),
            "deployment" => Some(Destination::Deployment),
            _ => None,
        }
    }
}

/// Where a delivery is in its life: `pending → delivered | failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Not delivered yet: due at [`WebhookDelivery::next_at`].
    Pending,
    /// A try got a 2xx answer.
    Delivered,
    /// Every try of the schedule failed.
    Failed,
}

impl DeliveryStatus {
    /// The snake_case name, as in JSON and in a database.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification of a job's terminal state to one destination: an outbox row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// Its id: the `webhook-id` of every try, stable across retries.
    pub id: DeliveryId,
    /// The job it reports.
    pub job_id: JobId,
    /// Where it goes.
    pub destination: Destination,
    /// The URL, for [`Destination::Job`]; `None` for
    /// [`Destination::Deployment`], whose URL the dispatcher holds.
    pub url: Option<String>,
    /// The status it reports: terminal, or `awaiting_review`.
    pub job_status: JobStatus,
    /// The job's error at that moment.
    pub job_error: Option<JobError>,
    /// When the job reached that status.
    pub occurred_at: DateTime<Utc>,
    /// Where the delivery is.
    pub status: DeliveryStatus,
    /// Tries recorded so far; also the fence of
    /// [`Store::record_delivery_try`](crate::Store::record_delivery_try).
    pub tries: u32,
    /// While pending: when it is due, or until when a claim hides it.
    pub next_at: DateTime<Utc>,
    /// When it was written (with the terminal state).
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One recorded try of a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTry {
    /// 1, 2, 3 … per delivery.
    pub number: u32,
    /// When it was recorded (the store's clock).
    pub at: DateTime<Utc>,
    /// The HTTP status answered, if an answer came.
    pub status_code: Option<u16>,
    /// How long the request took, in milliseconds.
    pub latency_ms: u64,
    /// Why the try failed (no answer, a refused address, a non-2xx status).
    pub error: Option<String>,
}

/// What a dispatcher reports of one try, to
/// [`Store::record_delivery_try`](crate::Store::record_delivery_try).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTry {
    /// The HTTP status answered, if an answer came.
    pub status_code: Option<u16>,
    /// How long the request took.
    pub latency: Duration,
    /// Why the try failed, if it did.
    pub error: Option<String>,
}

/// A delivery's state after a try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryNext {
    /// Still pending: due again after this delay (from the store's now).
    Retry {
        /// The delay.
        after: Duration,
    },
    /// Delivered: no more tries.
    Delivered,
    /// Given up: no more tries.
    Failed,
}

/// A delivery with its tries, by number: what a job's webhook page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryLog {
    /// The delivery.
    pub delivery: WebhookDelivery,
    /// Its tries, by number.
    pub tries: Vec<DeliveryTry>,
}

/// Checks a job's webhook URL at submission: the deployment's policy on
/// schemes and addresses. Implemented by `projectengine-webhooks` (which
/// resolves the host and refuses private addresses); the engine calls it from
/// [`Engine::submit`](crate::Engine::submit).
#[async_trait]
pub trait WebhookCheck: Send + Sync + fmt::Debug + 'static {
    /// `Ok` when `url` may be notified; otherwise the reason, which the
    /// engine reports as [`Error::Invalid`](crate::Error::Invalid) on the
    /// `webhook` field.
    async fn check(&self, url: &str) -> std::result::Result<(), String>;
}

/// An engine's webhook settings ([`Engine::with_webhooks`](crate::Engine::with_webhooks)).
///
/// Whether a job notifies the deployment-wide URL is decided **at submission**
/// and stored with the job ([`Job::notify_deployment`](crate::Job::notify_deployment)),
/// not looked up when the job ends: the store writes the outbox inside the
/// terminal transition, and a store has no configuration of its own (nor
/// should the process that happens to finish the job — a worker, recovery —
/// decide with its own settings). So a job is notified as the deployment was
/// configured when it accepted the job.
#[derive(Clone, Debug, Default)]
pub struct Webhooks {
    /// Jobs submitted now notify the deployment-wide URL.
    pub notify_deployment: bool,
    /// Checks a job's own URL; `None`: jobs may not carry a `webhook`
    /// (a submission with one is refused).
    pub check: Option<Arc<dyn WebhookCheck>>,
}

/// Longest job webhook URL, in bytes.
pub const MAX_WEBHOOK_URL_BYTES: usize = 2048;

/// The checks of a job's webhook URL that need no network: present, short,
/// `http` or `https`, no whitespace.
pub(crate) fn check_url_syntax(url: &str) -> Result<()> {
    use crate::Error;
    if url.len() > MAX_WEBHOOK_URL_BYTES {
        return Err(Error::invalid(
            "webhook",
            format!("must be at most {MAX_WEBHOOK_URL_BYTES} bytes"),
        ));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(Error::invalid("webhook", "must be an http or https URL"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid("webhook", "must not contain whitespace"));
    }
    Ok(())
}
