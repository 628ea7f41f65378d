//! One streamed chat completion against an OpenAI-compatible API, and how
//! its failures are classified.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::{Message, Usage};

/// Longest provider message kept in an error.
const MAX_MESSAGE: usize = 300;

/// How one request to one model went wrong.
#[derive(Debug)]
pub(crate) enum CallError {
    /// 429: this model is rate-limited.
    RateLimited(Option<Duration>),
    /// 5xx, 529, a broken or silent stream, a connection failure.
    Unavailable(Option<Duration>, String),
    /// The model does not exist.
    ModelNotFound(String),
    /// Refused for good (401, 403, 400 …).
    Rejected(u16, String),
    /// The cancellation token fired.
    Cancelled,
}

/// What a request produced.
#[derive(Debug)]
pub(crate) struct Reply {
    pub text: String,
    pub usage: Option<Usage>,
}

pub(crate) struct Request<'a> {
    pub http: &'a reqwest::Client,
    pub url: &'a str,
    pub key: Option<&'a str>,
    pub model: &'a str,
    pub messages: &'a [Message],
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub idle_timeout: Duration,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
}

#[derive(Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// `Retry-After` in seconds (or `retry-after-ms`, which some providers send).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    get("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Sends the request and streams the reply, forwarding its text to
/// `deltas` as it comes.
pub(crate) async fn stream(
    req: Request<'_>,
    cancel: &CancellationToken,
    deltas: Option<&UnboundedSender<String>>,
) -> Result<Reply, CallError> {
    let mut body = json!({
        "model": req.model,
        "messages": req.messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(m) = req.max_tokens {
        body["max_tokens"] = json!(m);
    }
    let mut builder = req.http.post(req.url).json(&body);
    if let Some(key) = req.key {
        builder = builder.bearer_auth(key);
    }
    let response = tokio::select! {
        () = cancel.cancelled() => return Err(CallError::Cancelled),
        r = tokio::time::timeout(req.idle_timeout, builder.send()) => match r {
            Err(_) => return Err(CallError::Unavailable(None, "no response in time".into())),
            Ok(Err(e)) => return Err(CallError::Unavailable(None, e.to_string())),
            Ok(Ok(r)) => r,
        },
    };
    let status = response.status();
    if !status.is_success() {
        let wait = retry_after(response.headers());
        let text = tokio::select! {
            () = cancel.cancelled() => return Err(CallError::Cancelled),
            t = response.text() => t.unwrap_or_default(),
        };
        let message = shorten(&text);
        let code = status.as_u16();
        return Err(match code {
            429 => CallError::RateLimited(wait),
            404 => CallError::ModelNotFound(message),
            _ if text.contains("model_not_found") => CallError::ModelNotFound(message),
            408 | 409 | 500..=599 => CallError::Unavailable(wait, format!("{code}: {message}")),
            _ => CallError::Rejected(code, message),
        });
    }
    let mut events = response.bytes_stream().eventsource();
    let mut reply = Reply {
        text: String::new(),
        usage: None,
    };
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return Err(CallError::Cancelled),
            n = tokio::time::timeout(req.idle_timeout, events.next()) => n,
        };
        let event = match next {
            Err(_) => {
                return Err(CallError::Unavailable(
                    None,
                    "the stream went silent".into(),
                ))
            }
            // A stream that ends without [DONE] still carries what came.
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(CallError::Unavailable(None, e.to_string())),
            Ok(Some(Ok(event))) => event,
        };
        let data = event.data.trim();
        if data == "[DONE]" {
            break;
        }
        if data.is_empty() {
            continue;
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| CallError::Unavailable(None, format!("unreadable stream chunk: {e}")))?;
        if let Some(u) = chunk.usage {
            reply.usage = Some(Usage {
                input_tokens: u.prompt_tokens,
                output_tokens: u.completion_tokens,
            });
        }
        for choice in chunk.choices.into_iter().take(1) {
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                if let Some(tx) = deltas {
                    let _ = tx.send(text.clone());
                }
                reply.text.push_str(&text);
            }
        }
    }
    Ok(reply)
}
