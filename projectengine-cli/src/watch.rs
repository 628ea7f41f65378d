//! Watching a job over `/ws/jobs/{id}/?after=N`, resuming after a dropped
//! connection from the last seq seen, so every event is shown once, in order.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::client::{api_error, Api};
use crate::error::{CliError, Result};
use crate::event::{Event, Outcome};

/// Longest silence on an open socket before it counts as dropped (the
/// server pings every 20 s by default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// First pause before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where the watched events go: a progress bar, lines, JSON.
pub trait EventSink {
    /// The next event, in seq order, each once.
    fn event(&mut self, event: &Event);
    /// Something about the connection the user may want to know (a drop, a
    /// reconnect).
    fn notice(&mut self, message: &str);
}

/// What to watch and how patiently.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Show the events after this seq.
    pub after: u64,
    /// How long to keep trying to reconnect after a drop.
    pub reconnect_for: Duration,
}

/// How one connection ended.
enum Ended {
    /// The terminal event arrived.
    Done(Outcome),
    /// The server closed normally (1000) before a terminal event reached us.
    Closed,
    /// The connection broke, or the server asked us to come back.
    Dropped(String),
}

/// Watches job `id` until it ends, feeding `sink`; answers how it ended.
///
/// After a drop it reconnects with `after` = the last seq seen, and drops
/// anything at or below it, so nothing is shown twice; a seq beyond the next
/// one makes it reconnect rather than skip, so nothing is missed. A refusal
/// (401, 404, …) ends the watch with the server's error; so does a first
/// connection that fails, or reconnecting for longer than `reconnect_for`.
pub async fn watch(
    api: &Api,
    id: &str,
    opts: &WatchOptions,
    sink: &mut dyn EventSink,
) -> Result<Outcome> {
    let mut last = opts.after;
    let mut connected_once = false;
    let mut down_since: Option<Instant> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let url = api.ws_url(id, last);
        let failure = match connect(api, url.as_str()).await {
            Ok(ws) => {
                connected_once = true;
                if down_since.take().is_some() {
                    sink.notice(&format!("reconnected; resuming after #{last}"));
                }
                backoff = FIRST_BACKOFF;
                match pump(ws, &mut last, sink).await {
                    Ended::Done(outcome) => return Ok(outcome),
                    Ended::Closed => match finished(api, id, last).await {
                        Ok(Some(outcome)) => return Ok(outcome),
                        Ok(None) => "the server closed the stream early".to_owned(),
                        Err(e) => e.to_string(),
                    },
                    Ended::Dropped(reason) => reason,
                }
            }
            Err(Connect::Refused(e)) => return Err(e),
            Err(Connect::Failed(e)) if !connected_once => return Err(e),
            Err(Connect::Failed(e)) => e.to_string(),
        };
        let since = *down_since.get_or_insert_with(|| {
            sink.notice(&format!(
                "connection lost ({failure}); reconnecting after #{last}"
            ));
            Instant::now()
        });
        if since.elapsed() >= opts.reconnect_for {
            return Err(CliError::Unreachable {
                url: url.to_string(),
                reason: format!(
                    "gave up reconnecting after {}: {failure}",
                    humantime::format_duration(opts.reconnect_for)
                ),
            });
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Connect {
    /// The server refused for good (a 4xx but 408 and 429).
    Refused(CliError),
    /// Worth trying again.
    Failed(CliError),
}

async fn connect(api: &Api, url: &str) -> Result<Socket, Connect> {
    let mut req = url.into_client_request().map_err(|e| {
        Connect::Refused(CliError::Protocol(format!("bad WebSocket URL {url}: {e}")))
    })?;
    if let Some(t) = api.token() {
        let value = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
            Connect::Refused(CliError::invalid("--token", "is not a valid header value"))
        })?;
        req.headers_mut().insert("authorization", value);
    }
    let attempt = timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await;
    match attempt {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(WsError::Http(res))) => {
            let status = res.status().as_u16();
            let err = api_error(status, res.body().as_deref().unwrap_or_default());
            if (400..500).contains(&status) && status != 408 && status != 429 {
                Err(Connect::Refused(err))
            } else {
                Err(Connect::Failed(err))
            }
        }
        Ok(Err(e)) => Err(Connect::Failed(crate::client::unreachable(url, &e))),
        Err(_) => Err(Connect::Failed(CliError::Unreachable {
            url: url.to_owned(),
            reason: "no answer in 10 s".into(),
        })),
    }
}

/// Forwards the socket's events to `sink`, advancing `last`, until the job
/// ends or the connection does.
async fn pump(mut ws: Socket, last: &mut u64, sink: &mut dyn EventSink) -> Ended {
    loop {
        let msg = match timeout(IDLE_TIMEOUT, ws.next()).await {
            Err(_) => {
                return Ended::Dropped(format!("nothing heard for {}s", IDLE_TIMEOUT.as_secs()))
            }
            Ok(None) => return Ended::Dropped("the connection ended".into()),
            Ok(Some(Err(e))) => return Ended::Dropped(e.to_string()),
            Ok(Some(Ok(msg))) => msg,
        };
        match msg {
            Message::Text(text) => {
                let event = match Event::parse(text.as_str()) {
                    Ok(e) => e,
                    Err(e) => return Ended::Dropped(e.to_string()),
                };
                if event.seq <= *last {
                    continue;
                }
                if event.seq > *last + 1 {
                    return Ended::Dropped(format!(
                        "event #{} arrived after #{}",
                        event.seq, *last
                    ));
                }
                *last = event.seq;
                sink.event(&event);
                if let Some(outcome) = event.outcome() {
                    let _ = timeout(Duration::from_secs(2), ws.close(None)).await;
                    return Ended::Done(outcome);
                }
            }
            Message::Ping(p) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Message::Close(frame) => {
                return match frame {
                    Some(f) if f.code == CloseCode::Normal => Ended::Closed,
                    Some(f) => Ended::Dropped(format!("closed by the server: {}", f.reason)),
                    None => Ended::Dropped("closed by the server".into()),
                }
            }
            _ => {}
        }
    }
}

/// After a normal close without a terminal event: the job's outcome, when it
/// has ended and every event up to its last was seen.
async fn finished(api: &Api, id: &str, last: u64) -> Result<Option<Outcome>> {
    let job = api.job(id).await?;
    let status = job.get("status").and_then(|s| s.as_str()).unwrap_or("");
    let last_seq = job.get("last_seq").and_then(|s| s.as_u64()).unwrap_or(0);
    Ok(Outcome::from_status(status).filter(|_| last_seq <= last))
}
