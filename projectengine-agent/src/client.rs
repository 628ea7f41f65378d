//! [`Client`]: the agent protocol's calls, each retried with backoff on a
//! transient failure (no answer, 502, 503, 504).

use std::time::Duration;

use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use projectengine_core::{AppId, ArtifactBody, EventData, Job, JobId, Submit};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use url::Url;

use crate::AgentError;

/// Characters escaped in an artifact name's path segments.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// What a claim answers: the job, its attempt, the lease and the attempt token.
#[derive(Clone, Debug, Deserialize)]
pub struct RunContext {
    /// The job.
    pub job: Job,
    /// The attempt number.
    pub attempt: u32,
    /// Until then the lease holds without a heartbeat.
    pub lease_expires_at: DateTime<Utc>,
    /// Seconds between heartbeats.
    pub heartbeat_s: f64,
    /// The bearer token of the attempt's calls.
    pub attempt_token: String,
    /// What the job allows on this machine.
    #[serde(default)]
    pub policy: Policy,
}

/// What a job allows the agent to do on its machine.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Policy {
    /// Directories the job asks to write in.
    #[serde(default)]
    pub writable_roots: Vec<String>,
}

/// A heartbeat's answer.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct HeartbeatReply {
    /// The lease now runs until then.
    pub lease_expires_at: DateTime<Utc>,
    /// The owner asked to cancel.
    pub cancel_requested: bool,
}

/// An `events` call's answer.
#[derive(Clone, Debug, Deserialize)]
pub struct EventsReply {
    /// The batch's number.
    pub batch: u64,
    /// `false` when it had been applied before (a retry).
    pub applied: bool,
    /// The seqs its events got.
    pub seqs: Vec<u64>,
}

/// A published App, as the server answers it.
#[derive(Clone, Debug, Deserialize)]
pub struct AppReply {
    /// Its id.
    pub id: AppId,
    /// Its job.
    pub job_id: JobId,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Value,
    /// When it was published.
    pub created_at: DateTime<Utc>,
}

/// A child job, as the server answers its submission.
#[derive(Clone, Debug, Deserialize)]
pub struct ChildReply {
    /// Whether this call created it (`false`: the key had a child already).
    pub created: bool,
    /// The child.
    pub job: Job,
}

/// A stored artifact, as the server answers it.
#[derive(Clone, Debug, Deserialize)]
pub struct ArtifactReply {
    /// Its name.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Its media type.
    pub content_type: String,
    /// The attempt that stored it.
    pub attempt: u32,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// How an attempt ended, for [`Client::finish`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Finish {
    /// Succeeded.
    Succeeded,
    /// A transient failure, with an optional delay before the next attempt.
    Retryable {
        /// Stable code.
        code: String,
        /// Message.
        message: String,
        /// Delay before the next attempt (the server's backoff when `None`).
        retry_after: Option<Duration>,
    },
    /// A permanent failure.
    Fatal {
        /// Stable code.
        code: String,
        /// Message.
        message: String,
    },
    /// Stopped on the owner's cancel.
    Cancelled,
}

/// How transient failures are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all (at least 1).
    pub tries: u32,
    /// Delay after the first failure; doubles after each.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            tries: 6,
            base: Duration::from_millis(100),
            max: Duration::from_secs(3),
        }
    }
}

/// The agent protocol's calls against one server.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    retry: Retry,
    timeout: Duration,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

#[derive(Serialize)]
struct ClaimBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    kinds: Option<&'a [String]>,
    wait_s: u64,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Self, AgentError> {
        let base = Url::parse(base).map_err(|e| AgentError::Protocol(format!("bad URL: {e}")))?;
        Ok(Self {
            http: reqwest::Client::new(),
            base,
            retry: Retry::default(),
            timeout: Duration::from_secs(30),
        })
    }

    /// Sets how transient failures are retried.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how long one request may take, claims' long poll aside
    /// (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn url(&self, path: &str) -> Result<Url, AgentError> {
        self.base
            .join(path)
            .map_err(|e| AgentError::Protocol(format!("bad URL: {e}")))
    }

    /// Sends what `make` builds, retrying transient failures; answers the
    /// first response that is not one.
    async fn send(
        &self,
        make: impl Fn() -> Result<RequestBuilder, AgentError>,
    ) -> Result<Response, AgentError> {
        let mut delay = self.retry.base;
        let mut tries = 0;
        loop {
            tries += 1;
            let last = tries >= self.retry.tries.max(1);
            let why = match make()?.send().await {
                Ok(res)
                    if matches!(
                        res.status(),
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    ) =>
                {
                    if last {
                        return Err(refusal(res).await);
                    }
                    format!("status {}", res.status())
                }
                Ok(res) => return Ok(res),
                Err(e) if last => return Err(AgentError::Unavailable(e.to_string().into())),
                Err(e) => e.to_string(),
            };
            tracing::debug!(%why, ?delay, "retrying an agent call");
            let jitter = delay.mul_f64(fastrand::f64() * 0.5);
            tokio::time::sleep(delay + jitter).await;
            delay = (delay * 2).min(self.retry.max);
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
        body: &Value,
    ) -> Result<T, AgentError> {
        let url = self.url(path)?;
        let res = self
            .send(|| {
                Ok(self
                    .http
                    .request(Method::POST, url.clone())
                    .bearer_auth(token)
                    .timeout(self.timeout)
                    .json(body))
            })
            .await?;
        read(res).await
    }

    /// Claims a job of `kinds` (all the token's when `None`), waiting up to
    /// `wait` for one.
    pub async fn claim(
        &self,
        agent_token: &str,
        kinds: Option<&[String]>,
        wait: Duration,
    ) -> Result<Option<RunContext>, AgentError> {
        let url = self.url("api/agent/v1/claim")?;
        let body = ClaimBody {
            kinds,
            wait_s: wait.as_secs(),
        };
        let res = self
            .send(|| {
                Ok(self
                    .http
                    .post(url.clone())
                    .bearer_auth(agent_token)
                    .timeout(self.timeout + wait)
                    .json(&body))
            })
            .await?;
        if res.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        read(res).await.map(Some)
    }

    /// Renews the attempt's lease.
    pub async fn heartbeat(&self, attempt_token: &str) -> Result<HeartbeatReply, AgentError> {
        self.json(attempt_token, "api/agent/v1/attempt/heartbeat", &json!({}))
            .await
    }

    /// Sends the attempt's batch number `batch` of reports; a retry after an
    /// unanswered try sends the same number, so it is applied once.
    pub async fn events(
        &self,
        attempt_token: &str,
        batch: u64,
        events: &[EventData],
    ) -> Result<EventsReply, AgentError> {
        let body = json!({ "batch": batch, "events": events });
        self.json(attempt_token, "api/agent/v1/attempt/events", &body)
            .await
    }

    /// Publishes the job's App.
    pub async fn app(
        &self,
        attempt_token: &str,
        name: &str,
        payload: &Value,
    ) -> Result<AppReply, AgentError> {
        let body = json!({ "name": name, "payload": payload });
        self.json(attempt_token, "api/agent/v1/attempt/app", &body)
            .await
    }

    /// Submits a child job of the attempt's job under `key`; a key the job
    /// has a child for answers that child (`created: false`), so a retried
    /// call creates nothing twice.
    pub async fn submit_child(
        &self,
        attempt_token: &str,
        key: &str,
        spec: &Submit,
    ) -> Result<ChildReply, AgentError> {
        let mut job = serde_json::Map::new();
        job.insert("prompt".into(), json!(spec.prompt));
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(v) = value {
                job.insert(name.into(), v);
            }
        };
        put("kind", spec.kind.as_ref().map(|k| json!(k)));
        put("params", spec.params.clone());
        put("priority", spec.priority.map(|p| json!(p)));
        put("max_attempts", spec.max_attempts.map(|n| json!(n)));
        // The API takes whole seconds; round a shorter timeout up.
        put(
            "timeout_s",
            spec.timeout
                .map(|t| json!(t.as_secs() + u64::from(t.subsec_nanos() > 0))),
        );
        put("run_at", spec.run_at.map(|t| json!(t)));
        put("webhook", spec.webhook.as_ref().map(|w| json!(w)));
        let body = json!({ "key": key, "job": job });
        self.json(attempt_token, "api/agent/v1/attempt/children", &body)
            .await
    }

    /// Uploads an artifact, streamed. A stream body is sent once (it cannot
    /// be replayed); bytes are retried like any call.
    pub async fn put_artifact(
        &self,
        attempt_token: &str,
        name: &str,
        content_type: &str,
        body: ArtifactBody,
    ) -> Result<ArtifactReply, AgentError> {
        let path: Vec<String> = name
            .split('/')
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        let url = self.url(&format!(
            "api/agent/v1/attempt/artifacts/{}",
            path.join("/")
        ))?;
        let request = |body: reqwest::Body| {
            self.http
                .put(url.clone())
                .bearer_auth(attempt_token)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
        };
        let res = match body {
            ArtifactBody::Bytes(bytes) => {
                self.send(|| Ok(request(reqwest::Body::from(bytes.clone()))))
                    .await?
            }
            ArtifactBody::Stream(stream) => request(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .map_err(|e| AgentError::Unavailable(e.to_string().into()))?,
        };
        read(res).await
    }

    /// Ends the attempt; answers the job as it is now.
    pub async fn finish(&self, attempt_token: &str, finish: &Finish) -> Result<Value, AgentError> {
        let body = match finish {
            Finish::Succeeded => json!({ "outcome": "succeeded" }),
            Finish::Cancelled => json!({ "outcome": "cancelled" }),
            Finish::Fatal { code, message } => {
                json!({ "outcome": "fatal", "code": code, "message": message })
            }
            Finish::Retryable {
                code,
                message,
                retry_after,
            } => json!({
                "outcome": "retryable",
                "code": code,
                "message": message,
                "retry_after_s": retry_after.map(|d| d.as_secs_f64()),
            }),
        };
        self.json(attempt_token, "api/agent/v1/attempt/finish", &body)
            .await
    }
}

/// The body of a successful answer, or the refusal.
async fn read<T: DeserializeOwned>(res: Response) -> Result<T, AgentError> {
    if !res.status().is_success() {
        return Err(refusal(res).await);
    }
    res.json()
        .await
        .map_err(|e| AgentError::Protocol(e.to_string()))
}

async fn refusal(res: Response) -> AgentError {
    let status = res.status().as_u16();
    let (code, message) = match res.json::<ErrorBody>().await {
        Ok(body) => (body.error.code, body.error.message),
        Err(_) => ("unknown".to_owned(), format!("status {status}")),
    };
    if status == 409 && code == "stale_attempt" {
        return AgentError::StaleAttempt;
    }
    if status >= 500 {
        return AgentError::Unavailable(format!("{status} {code}: {message}").into());
    }
    AgentError::Refused {
        status,
        code,
        message,
    }
}
