//! The background task that owns the subscriber connection: it subscribes to
//! the events channel while some job is watched, fans messages out to the
//! per-job channels, registers new subscriptions in order with the messages,
//! checks the connection's health, and reconnects with backoff.

use std::sync::Arc;
use std::time::Duration;

use projectengine_core::{CancellationToken, Error, JobId, Notification, Result};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use super::{publisher, Shared};
use crate::{error, link};

/// A subscription wanted: the task answers with a receiver of the job's
/// channel once the barrier is passed.
pub(crate) struct Request {
    job_id: JobId,
    reply: oneshot::Sender<Result<broadcast::Receiver<Notification>>>,
}

/// A subscriber connection (subscribed to the events channel if `subscribed`),
/// and its pushes.
pub(crate) struct Connected {
    conn: MultiplexedConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    subscribed: bool,
}

enum Ended {
    Stopped,
    Lost,
}

/// Opens the subscriber connection, subscribed to the events channel if
/// `subscribe`.
pub(crate) async fn connect(shared: &Shared, subscribe: bool) -> Result<Connected> {
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
    if subscribe {
        let mut c = conn.clone();
        with_timeout(
            config.command_timeout,
            "subscribe",
            c.subscribe(shared.channel()),
        )
        .await?;
    }
    Ok(Connected {
        conn,
        pushes,
        subscribed: subscribe,
    })
}

/// Subscribes to a job: a receiver of its channel, once the subscriber task
/// has passed a barrier after which every message is one published later.
pub(crate) async fn subscribe(
    shared: &Shared,
    job_id: JobId,
) -> Result<broadcast::Receiver<Notification>> {
    let (reply, answer) = oneshot::channel();
    shared
        .requests
        .send(Request { job_id, reply })
        .map_err(|_| Error::unavailable("the notifier was shut down"))?;
    // The task may be busy reconnecting; it answers within a few calls.
    let within = shared.config.command_timeout * 3;
    match tokio::time::timeout(within, answer).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(Error::unavailable("the notifier was shut down")),
        Err(_) => Err(Error::unavailable(
            "redis subscriber connection is busy reconnecting",
        )),
    }
}

/// Runs until `stop` fires; then every stream ends.
pub(crate) async fn run(
    shared: Arc<Shared>,
    first: Connected,
    mut requests: mpsc::UnboundedReceiver<Request>,
    mut dropped: mpsc::UnboundedReceiver<JobId>,
    stop: CancellationToken,
) {
    let min_backoff = shared.config.min_backoff;
    let max_backoff = shared.config.max_backoff.max(min_backoff);
    let mut current = Some(first);
    let mut backoff = min_backoff;
    loop {
        let connected = match current.take() {
            Some(c) => c,
            None => {
                let pause = tokio::time::sleep(backoff);
                tokio::pin!(pause);
                // While away, subscriptions are refused, not kept waiting.
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = &mut pause => break,
                        Some(r) = requests.recv() => {
                            let _ = r.reply.send(Err(Error::unavailable(
                                "redis subscriber connection is down; reconnecting",
                            )));
                        }
                        Some(job_id) = dropped.recv() => forget_if_unwatched(&shared, job_id),
                    }
                }
                if stop.is_cancelled() {
                    break;
                }
                let watched = !shared.subs().is_empty();
                match connect(&shared, watched).await {
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
        let ended = serve(&shared, connected, &mut requests, &mut dropped, &stop).await;
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
    mut c: Connected,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    dropped: &mut mpsc::UnboundedReceiver<JobId>,
    stop: &CancellationToken,
) -> Ended {
    let every = shared.config.health_check.max(Duration::from_millis(10));
    let mut health = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        // Biased: messages already received are handed out before a new
        // subscription is registered.
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ended::Stopped,
            push = c.pushes.recv() => {
                if !handle_push(shared, push) {
                    return Ended::Lost;
                }
            }
            Some(r) = requests.recv() => {
                let answer = register(shared, &mut c, r.job_id).await;
                let lost = answer.is_err();
                if r.reply.send(answer).is_err() {
                    // The caller gave up waiting: its receiver is gone.
                    forget(shared, &mut c, r.job_id).await;
                }
                if lost {
                    return Ended::Lost;
                }
            }
            Some(job_id) = dropped.recv() => forget(shared, &mut c, job_id).await,
            _ = health.tick() => {
                let ping = redis::cmd("PING");
                let ping = ping.query_async::<Value>(&mut c.conn);
                if with_timeout(shared.config.command_timeout, "ping", ping).await.is_err() {
                    return Ended::Lost;
                }
            }
        }
    }
}

/// Forgets a job nobody watches any more, and unsubscribes from the channel
/// when no job is watched.
async fn forget(shared: &Shared, c: &mut Connected, job_id: JobId) {
    forget_if_unwatched(shared, job_id);
    if c.subscribed && shared.subs().is_empty() {
        let mut conn = c.conn.clone();
        let done = with_timeout(
            shared.config.command_timeout,
            "unsubscribe",
            conn.unsubscribe(shared.channel()),
        )
        .await;
        match done {
            Ok(()) => c.subscribed = false,
            Err(e) => {
                // Harmless: messages for nobody are ignored.
                tracing::debug!(error = %e, "unsubscribe failed");
            }
        }
    }
}

/// Handles one push; `false` when the connection is gone.
fn handle_push(shared: &Shared, push: Option<PushInfo>) -> bool {
    match push {
        None => false,
        Some(p) if p.kind == PushKind::Disconnection => false,
        Some(p) if p.kind == PushKind::Message => {
            dispatch(shared, p.data);
            true
        }
        Some(_) => true,
    }
}

/// Registers a subscription of `job_id` behind a barrier: the `SUBSCRIBE` if
/// the channel is not subscribed yet, else a `PING`. Every message that came
/// before the barrier's answer is handed out first, so the new receiver gets
/// only later ones. An error means the connection is suspect.
async fn register(
    shared: &Shared,
    c: &mut Connected,
    job_id: JobId,
) -> Result<broadcast::Receiver<Notification>> {
    let timeout = shared.config.command_timeout;
    let mut conn = c.conn.clone();
    if c.subscribed {
        let ping = redis::cmd("PING");
        with_timeout(timeout, "subscribe", ping.query_async::<Value>(&mut conn)).await?;
        // The answer came after every earlier message on this connection,
        // and the driver queued those before handing us the answer.
        while let Ok(push) = c.pushes.try_recv() {
            if !handle_push(shared, Some(push)) {
                return Err(Error::unavailable(
                    "redis subscriber connection lost; reconnecting",
                ));
            }
        }
    } else {
        with_timeout(timeout, "subscribe", conn.subscribe(shared.channel())).await?;
        c.subscribed = true;
    }
    let mut subs = shared.subs();
    let tx = subs
        .entry(job_id)
        .or_insert_with(|| broadcast::channel(shared.config.subscriber_buffer.max(1)).0);
    Ok(tx.subscribe())
}

/// Hands a message's events to the subscribers of their jobs.
fn dispatch(shared: &Shared, data: Vec<Value>) {
    let [Value::BulkString(_channel), Value::BulkString(payload)] = data.as_slice() else {
        return;
    };
    let (lagged, events) = match publisher::decode(payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed event message");
            return;
        }
    };
    let subs = shared.subs();
    if lagged {
        for tx in subs.values() {
            let _ = tx.send(Notification::Lagged);
        }
    }
    for ev in events {
        if let Some(tx) = subs.get(&ev.job_id) {
            // No receiver left: the dropped stream's report forgets it.
            let _ = tx.send(Notification::Event(ev));
        }
    }
}

/// Forgets a job once its last stream is gone.
fn forget_if_unwatched(shared: &Shared, job_id: JobId) {
    let mut subs = shared.subs();
    if subs.get(&job_id).is_some_and(|tx| tx.receiver_count() == 0) {
        subs.remove(&job_id);
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
