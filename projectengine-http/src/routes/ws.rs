//! `/ws/jobs/{id}/?after=N`: a job's events over a WebSocket, replayed from
//! `after + 1`, then live, closed with 1000 after the terminal event.

use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use projectengine_core::{EventStream, JobEvent, JobId};
use tokio::time::{timeout, Instant};
use tracing::Instrument;

use super::both;
use crate::auth::stream_owner;
use crate::dto::{EventDto, StreamQuery};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, PathId};
use crate::{ApiState, HttpConfig};

/// How long the closing handshake may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Bytes read from a socket at a time.
const WS_READ_BUFFER: usize = 4 * 1024;

/// The WebSocket route, with and without its trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    both(Router::new(), "/ws/jobs/{id}/", get(watch))
}

/// Streams a job's events over a WebSocket.
///
/// The token comes from the `Authorization` header, a `Sec-WebSocket-Protocol:
/// bearer, <token>` pair (answered with the `bearer` subprotocol) or `?token=`.
/// Each event is a text frame `{job_id, seq, attempt, at, type, data}`, in seq
/// order from `after + 1`, each once. After the terminal event the server
/// closes with 1000. A client too slow to keep up is closed with 1013 and
/// should reconnect with `after` = the last seq it got; a malformed client
/// message is closed with 1003, an oversized one with 1009.
#[utoipa::path(
    get, path = "/ws/jobs/{id}/", tag = "streams",
    params(("id" = String, Path, format = Uuid, description = "The job id"), StreamQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "A parameter is invalid, or not a WebSocket request", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours)", body = ErrorBody),
        (status = 426, description = "Upgrade required", body = ErrorBody),
        (status = 429, description = "Too many open streams for this owner", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn watch(State(state): State<ApiState>, req: Request) -> ApiResult<Response> {
    // Everything is checked before the upgrade, so a refusal is a plain HTTP answer.
    let (mut parts, _body) = req.into_parts();
    let ApiQuery(q) = ApiQuery::<StreamQuery>::from_request_parts(&mut parts, &state).await?;
    let owner = stream_owner(state.authenticator(), &parts, q.token.as_deref(), true).await?;
    let PathId(id) = PathId::<JobId>::from_request_parts(&mut parts, &state).await?;
    let engine = state.engine();
    let job = engine.get(&owner, id).await?;
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state)
        .await
        .map_err(|r| ApiError::new(r.status(), "not_websocket", r.body_text()))?;
    let slot = state
        .streams()
        .acquire(&owner, state.config().max_streams_per_owner)?;
    let after = q.after.unwrap_or(0);
    // A finished job with nothing after `after` has nothing more to say.
    let events = if job.status.is_terminal() && after >= job.last_seq {
        None
    } else {
        Some(engine.watch(&owner, id, after).await?)
    };
    let cfg = state.config();
    let upgrade = upgrade
        .protocols(["bearer"])
        .max_message_size(cfg.ws_max_message)
        .max_frame_size(cfg.ws_max_message)
        // Each frame is written and flushed before the next is taken from the
        // stream, so at most one frame waits in memory: a client that stops
        // reading makes the send time out (1013) instead of growing a buffer.
        .write_buffer_size(0)
        // The client sends little (pings, closes); and tungstenite zero-fills
        // the free part of its read buffer before every read, so its 128 KiB
        // default costs a 128 KiB memset per read, a large share of the CPU of
        // a server with many concurrent sockets. Larger messages still
        // arrive: the buffer grows for them.
        .read_buffer_size(WS_READ_BUFFER);
    let span = tracing::Span::current();
    Ok(upgrade.on_upgrade(move |socket| {
        async move {
            let _slot = slot;
            let _open = state.metrics().websocket_opened();
            let conn = Connection {
                socket,
                state: state.clone(),
            };
            conn.run(events).await;
        }
        .instrument(span)
    }))
}

struct Connection {
    socket: WebSocket,
    state: ApiState,
}

impl Connection {
    async fn run(mut self, events: Option<EventStream>) {
        let close = match events {
            Some(events) => self.pump(events).await,
            None => Some((close_code::NORMAL, "job finished")),
        };
        if let Some((code, reason)) = close {
            self.close(code, reason).await;
        }
    }

    /// Forwards events until the job ends, the client goes or misbehaves;
    /// answers the close to send, if any.
    async fn pump(&mut self, mut events: EventStream) -> Option<(u16, &'static str)> {
        let cfg: HttpConfig = self.state.config().clone();
        let mut ping =
            tokio::time::interval_at(Instant::now() + cfg.ws_ping_interval, cfg.ws_ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sent = Instant::now();
        let mut last_heard = Instant::now();
        let shutdown = self.state.shutdown_token();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    return Some((close_code::AWAY, "server shutting down: reconnect with after=<last seq>"));
                }
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        match self.send_event(&ev, cfg.ws_send_timeout).await {
                            Sent::Ok => last_sent = Instant::now(),
                            Sent::Gone => return None,
                            Sent::TooSlow => {
                                tracing::info!(seq = ev.seq, "client too slow; disconnecting");
                                return Some((close_code::AGAIN, "too slow: reconnect with after=<last seq>"));
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "event stream failed");
                        return Some((close_code::ERROR, "stream interrupted: reconnect with after=<last seq>"));
                    }
                    None => return Some((close_code::NORMAL, "job finished")),
                },
                msg = self.socket.recv() => {
                    last_heard = Instant::now();
                    match msg {
                        None | Some(Ok(Message::Close(_))) => return None,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Text(text))) => {
                            // Reserved for commands: a JSON object is accepted and ignored.
                            if !serde_json::from_str::<serde_json::Value>(text.as_str()).is_ok_and(|v| v.is_object()) {
                                return Some((close_code::UNSUPPORTED, "malformed message: expected a JSON object"));
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            return Some((close_code::UNSUPPORTED, "binary messages are not supported"));
                        }
                        Some(Err(e)) => {
                            let too_big = e
                                .into_inner()
                                .downcast_ref::<tungstenite::Error>()
                                .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)));
                            if too_big {
                                return Some((close_code::SIZE, "message too big"));
                            }
                            return None;
                        }
                    }
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() >= cfg.ws_idle_timeout {
                        return Some((close_code::POLICY, "no answer to pings"));
                    }
                    if last_sent.elapsed() >= cfg.ws_ping_interval {
                        match timeout(cfg.ws_send_timeout, self.socket.send(Message::Ping(Default::default()))).await {
                            Ok(Ok(())) => last_sent = Instant::now(),
                            Ok(Err(_)) => return None,
                            Err(_) => return Some((close_code::AGAIN, "too slow: reconnect with after=<last seq>")),
                        }
                    }
                }
            }
        }
    }

    async fn send_event(&mut self, ev: &JobEvent, limit: Duration) -> Sent {
        let text = match serde_json::to_string(&EventDto::from(ev)) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, seq = ev.seq, "serializing an event failed");
                return Sent::Gone;
            }
        };
        match timeout(limit, self.socket.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => Sent::Ok,
            Ok(Err(_)) => Sent::Gone,
            Err(_) => Sent::TooSlow,
        }
    }

    /// Sends a close frame and waits briefly for the client's answer.
    async fn close(mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let sent = timeout(CLOSE_GRACE, self.socket.send(Message::Close(Some(frame)))).await;
        if !matches!(sent, Ok(Ok(()))) {
            return;
        }
        let _ = timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = self.socket.recv().await {}
        })
        .await;
    }
}

enum Sent {
    Ok,
    Gone,
    TooSlow,
}
