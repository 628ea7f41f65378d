//! A fake OpenAI-compatible provider for tests: an axum app on a local port
//! that answers chat requests from a script, streams like the real thing,
//! and records what it was asked.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::Usage;

/// How the fake answers one request.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Reply {
    /// A streamed answer: these pieces, `delay` apart, then the usage.
    Text {
        /// The pieces of text, one chunk each.
        chunks: Vec<String>,
        /// The usage reported at the end (none: no usage chunk).
        usage: Option<Usage>,
        /// Pause before each chunk.
        delay: Duration,
    },
    /// An error status with an optional `Retry-After` (seconds) and a body.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header, in seconds.
        retry_after: Option<u64>,
        /// The body.
        body: String,
    },
    /// A stream that never ends: a chunk every `delay`.
    Endless {
        /// Pause between chunks.
        delay: Duration,
    },
}

impl Reply {
    /// `text` in chunks of about 16 bytes, with the given usage, 5 ms apart.
    pub fn text(text: &str, usage: Usage) -> Self {
        let mut chunks = Vec::new();
        let mut piece = String::new();
        for c in text.chars() {
            piece.push(c);
            if piece.len() >= 16 {
                chunks.push(std::mem::take(&mut piece));
            }
        }
        if !piece.is_empty() {
            chunks.push(piece);
        }
        Self::Text {
            chunks,
            usage: Some(usage),
            delay: Duration::from_millis(5),
        }
    }

    /// An error status.
    pub fn status(status: u16, retry_after: Option<u64>) -> Self {
        Self::Status {
            status,
            retry_after,
            body: json!({"error": {"message": format!("fake status {status}")}}).to_string(),
        }
    }
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The model asked for.
    pub model: String,
    /// When it came.
    pub at: Instant,
    /// The whole JSON body.
    pub body: Value,
}

impl Recorded {
    /// The content of the last message.
    pub fn last_message(&self) -> &str {
        self.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
    }
}

type Responder = Box<dyn Fn(&Recorded) -> Reply + Send + Sync>;

#[derive(Default)]
struct Shared {
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    responder: Mutex<Option<Responder>>,
    requests: Mutex<Vec<Recorded>>,
    open_streams: AtomicUsize,
}

/// The fake provider, serving until dropped (its task is aborted).
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProvider {
    /// Starts a fake on a free local port.
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// The base URL to configure: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues `reply` as the next answer to `model`.
    pub fn push(&self, model: &str, reply: Reply) {
        let mut s = self.shared.script.lock().unwrap_or_else(|e| e.into_inner());
        s.entry(model.to_owned()).or_default().push_back(reply);
    }

    /// Answers requests whose model has nothing queued (without a responder,
    /// they get a 500).
    pub fn respond_with(&self, responder: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        *self
            .shared
            .responder
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(responder));
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Responses still streaming (a client that hung up closes its stream).
    pub fn open_streams(&self) -> usize {
        self.shared.open_streams.load(Ordering::SeqCst)
    }
}

/// Decrements the open-stream count when its stream is dropped.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn chunk(text: &str) -> Bytes {
    sse(&json!({"object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": text}}]}))
}

async fn chat(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let recorded = Recorded {
        model: body["model"].as_str().unwrap_or("").to_owned(),
        at: Instant::now(),
        body,
    };
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(recorded.clone());
    let scripted = shared
        .script
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&recorded.model)
        .and_then(VecDeque::pop_front);
    let reply = match scripted {
        Some(r) => r,
        None => match &*shared.responder.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(f) => f(&recorded),
            None => Reply::status(500, None),
        },
    };
    match reply {
        Reply::Status {
            status,
            retry_after,
            body,
        } => {
            let mut response = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Reply::Text {
            chunks,
            usage,
            delay,
        } => {
            shared.open_streams.fetch_add(1, Ordering::SeqCst);
            let open = Open(shared.clone());
            let mut items: VecDeque<Bytes> = chunks.iter().map(|c| chunk(c)).collect();
            if let Some(u) = usage {
                items.push_back(sse(&json!({"choices": [], "usage": {
                    "prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                    "total_tokens": u.total()}})));
            }
            items.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
            let stream =
                futures::stream::unfold((items, open), move |(mut items, open)| async move {
                    let item = items.pop_front()?;
                    tokio::time::sleep(delay).await;
                    Some((Ok::<_, std::io::Error>(item), (items, open)))
                });
            stream_response(Body::from_stream(stream))
        }
        Reply::Endless { delay } => {
            shared.open_streams.fetch_add(1, Ordering::SeqCst);
            let open = Open(shared.clone());
            let stream = futures::stream::unfold(open, move |open| async move {
                tokio::time::sleep(delay).await;
                Some((Ok::<_, std::io::Error>(chunk("more ")), open))
            });
            stream_response(Body::from_stream(stream))
        }
    }
}

fn stream_response(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
