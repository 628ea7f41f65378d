//! The background task that owns the subscriber connection: it fans messages
//! out to the per-job channels, unsubscribes jobs nobody watches any more,
//! checks the connection's health, and reconnects with backoff.

use std::sync::Arc;
use std::time::Duration;

use projectengine_core::{CancellationToken, Error, JobEvent, JobId, Notification, Result};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::Shared;
use crate::{error, link};

/// Channels per `SUBSCRIBE` when subscribing again after a reconnect.
const RESUBSCRIBE_CHUNK: usize = 500;

/// The subscriber connection, while there is one.
#[derive(Default)]
pub(crate) struct Control {
    conn: Option<MultiplexedConnection>,
}

/// A subscriber connection with every watched job subscribed, and its pushes.
pub(crate) struct Connected {
    conn: MultiplexedConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
}

enum Ended {
    Stopped,
    Lost,
}

/// Opens the subscriber connection, subscribes every watched job and makes
/// the connection the current one.
pub(crate) async fn connect(shared: &Shared) -> Result<Connected> {
    let config = &shared.config;
    let info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| link::bad_url(config, &e))?;
    // RESP3 delivers messages as pushes on an ordinary connection, which also
    // keeps answering PING and CLIENT commands while subscribed.
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client =
        Client::open(info.set_redis_settings(settings)).map_err(|e| link::bad_url(config, &e))?;
    let (tx, pushes) = mpsc::unbounded_channel();
    let conn_config = AsyncConnectionConfig::new()
        .set_push_sender(tx)
        .set_connection_timeout(None)
        .set_response_timeout(Some(config.command_timeout));
    let name = config.connection_name("subscriber");
    let opened = tokio::time::timeout(config.connect_timeout, async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&conn_config)
            .await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&name)
            .exec_async(&mut conn)
            .await?;
        redis::RedisResult::Ok(conn)
    })
    .await;
    let conn = match opened {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(error::redis("connect the subscriber", &e)),
        Err(_) => {
            return Err(error::timed_out(
                "connect the subscriber",
                config.connect_timeout,
            ))
        }
    };
    let mut control = shared.control.lock().await;
    let channels: Vec<String> = shared.subs().keys().map(|j| shared.channel(*j)).collect();
    for chunk in channels.chunks(RESUBSCRIBE_CHUNK) {
        let mut c = conn.clone();
        with_timeout(config.command_timeout, "subscribe", c.subscribe(chunk)).await?;
    }
    control.conn = Some(conn.clone());
    Ok(Connected { conn, pushes })
}

/// Subscribes to a job: a receiver of its channel, once Redis confirmed the
/// subscription (or it already existed).
pub(crate) async fn subscribe(
    shared: &Shared,
    job_id: JobId,
) -> Result<broadcast::Receiver<Notification>> {
    let control = shared.control.lock().await;
    if let Some(tx) = shared.subs().get(&job_id) {
        return Ok(tx.subscribe());
    }
    let Some(mut conn) = control.conn.clone() else {
        return Err(Error::unavailable(
            "redis subscriber connection is down; reconnecting",
        ));
    };
    // Registered before SUBSCRIBE, so no message after the confirmation is missed.
    let (tx, rx) = broadcast::channel(shared.config.subscriber_buffer.max(1));
    shared.subs().insert(job_id, tx);
    let channel = shared.channel(job_id);
    let subscribed = with_timeout(
        shared.config.command_timeout,
        "subscribe",
        conn.subscribe(&channel),
    )
    .await;
    if subscribed.is_err() {
        shared.subs().remove(&job_id);
    }
    subscribed.map(|()| rx)
}

/// Runs until `stop` fires; then every stream ends.
pub(crate) async fn run(
    shared: Arc<Shared>,
    first: Connected,
    mut dropped: mpsc::UnboundedReceiver<JobId>,
    stop: CancellationToken,
) {
    let min_backoff = shared.config.min_backoff;
    let max_backoff = shared.config.max_backoff.max(min_backoff);
    let mut current = Some(first);
    let mut backoff = min_backoff;
    loop {
        let Connected { conn, mut pushes } = match current.take() {
            Some(c) => c,
            None => {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                match connect(&shared).await {
                    Ok(c) => {
                        tracing::info!(
                            watched = shared.subs().len(),
                            "redis subscriber reconnected"
                        );
                        // Whatever was published while we were away is missed:
                        // subscribers catch up from the store.
                        for tx in shared.subs().values() {
                            let _ = tx.send(Notification::Lagged);
                        }
                        backoff = min_backoff;
                        c
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, ?backoff, "redis subscriber reconnect failed");
                        backoff = (backoff * 2).min(max_backoff);
                        continue;
                    }
                }
            }
        };
        let ended = serve(&shared, conn, &mut pushes, &mut dropped, &stop).await;
        shared.control.lock().await.conn = None;
        match ended {
            Ended::Stopped => break,
            Ended::Lost => tracing::warn!("redis subscriber connection lost; reconnecting"),
        }
    }
    shared.subs().clear();
    tracing::debug!("redis subscriber stopped");
}

async fn serve(
    shared: &Shared,
    mut conn: MultiplexedConnection,
    pushes: &mut mpsc::UnboundedReceiver<PushInfo>,
    dropped: &mut mpsc::UnboundedReceiver<JobId>,
    stop: &CancellationToken,
) -> Ended {
    let every = shared.config.health_check.max(Duration::from_millis(10));
    let mut health = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ended::Stopped,
            push = pushes.recv() => match push {
                None => return Ended::Lost,
                Some(p) if p.kind == PushKind::Disconnection => return Ended::Lost,
                Some(p) if p.kind == PushKind::Message => dispatch(shared, p.data),
                Some(_) => {}
            },
            Some(job_id) = dropped.recv() => unsubscribe_if_unwatched(shared, job_id).await,
            _ = health.tick() => {
                let ping = redis::cmd("PING");
                let ping = ping.query_async::<Value>(&mut conn);
                if with_timeout(shared.config.command_timeout, "ping", ping).await.is_err() {
                    return Ended::Lost;
                }
            }
        }
    }
}

/// Hands a message's events to the subscribers of its job.
fn dispatch(shared: &Shared, data: Vec<Value>) {
    let [Value::BulkString(channel), Value::BulkString(payload)] = data.as_slice() else {
        return;
    };
    let Some(job_id) = shared.job_of(channel) else {
        return;
    };
    let events: Vec<JobEvent> = match serde_json::from_slice(payload) {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(%job_id, error = %e, "ignoring a malformed event message");
            return;
        }
    };
    if let Some(tx) = shared.subs().get(&job_id) {
        for ev in events.into_iter().filter(|ev| ev.job_id == job_id) {
            // No receiver left: the dropped stream's report unsubscribes.
            let _ = tx.send(Notification::Event(ev));
        }
    }
}

/// Unsubscribes a job once its last stream is gone.
async fn unsubscribe_if_unwatched(shared: &Shared, job_id: JobId) {
    let control = shared.control.lock().await;
    let unwatched = {
        let mut subs = shared.subs();
        let unwatched = subs.get(&job_id).is_some_and(|tx| tx.receiver_count() == 0);
        if unwatched {
            subs.remove(&job_id);
        }
        unwatched
    };
    if let (true, Some(mut conn)) = (unwatched, control.conn.clone()) {
        let channel = shared.channel(job_id);
        let done = with_timeout(
            shared.config.command_timeout,
            "unsubscribe",
            conn.unsubscribe(&channel),
        )
        .await;
        if let Err(e) = done {
            // Harmless: its messages are ignored, and a reconnect drops it.
            tracing::debug!(%job_id, error = %e, "unsubscribe failed");
        }
    }
}

async fn with_timeout<T>(
    after: Duration,
    what: &str,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    match tokio::time::timeout(after, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error::redis(what, &e)),
        Err(_) => Err(error::timed_out(what, after)),
    }
}
