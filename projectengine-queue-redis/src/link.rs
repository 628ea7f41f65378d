//! [`Link`]: one shared, multiplexed, named connection that reconnects on
//! demand with backoff, and puts a timeout on every call.

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use projectengine_core::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisResult};
use tokio::time::Instant;

use crate::error;
use crate::RedisConfig;

/// A multiplexed connection shared by every non-blocking call of one adapter.
///
/// A call that fails in a way that casts doubt on the connection drops it;
/// the next call opens a new one. While Redis cannot be reached, calls fail
/// fast until the backoff has passed, so a down Redis is not hammered.
pub(crate) struct Link {
    client: Client,
    name: String,
    command_timeout: Duration,
    connect_timeout: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    state: Mutex<State>,
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    current: Option<(u64, MultiplexedConnection)>,
    generation: u64,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("name", &self.name).finish()
    }
}

/// Opens the client for `config.url`.
pub(crate) fn client(config: &RedisConfig) -> Result<Client> {
    Client::open(config.url.as_str()).map_err(|e| bad_url(config, &e))
}

/// The URL of `config` cannot be used (its credentials are not repeated).
pub(crate) fn bad_url(config: &RedisConfig, e: &redis::RedisError) -> Error {
    let url = crate::config::redacted(&config.url);
    Error::invalid("redis url", format!("cannot use {url:?}: {e}"))
}

impl Link {
    /// A link for `role` (named `<prefix>:<role>` in `CLIENT LIST`); connects lazily.
    pub(crate) fn new(config: &RedisConfig, role: &str) -> Result<Self> {
        Ok(Self {
            client: client(config)?,
            name: config.connection_name(role),
            command_timeout: config.command_timeout,
            connect_timeout: config.connect_timeout,
            min_backoff: config.min_backoff,
            max_backoff: config.max_backoff.max(config.min_backoff),
            state: Mutex::new(State::default()),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// The client, to open dedicated connections with.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The per-call timeout.
    pub(crate) fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the shared connection with the call timeout; `what` names the
    /// call in errors.
    ///
    /// When a connection that was already open turns out to be dead (Redis
    /// restarted, or the client was killed), `f` runs once more on a new one.
    /// Every caller's `f` tolerates that: a write whose answer was lost is
    /// either absent or harmless to repeat.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, conn, fresh) = self.connection().await?;
        match self.attempt(what, generation, conn, &f).await {
            Err(Retry::Once(_)) if !fresh => {
                let (generation, conn, _) = self.connection().await?;
                self.attempt(what, generation, conn, &f)
                    .await
                    .map_err(Retry::into_error)
            }
            r => r.map_err(Retry::into_error),
        }
    }

    async fn attempt<T, F, Fut>(
        &self,
        what: &str,
        generation: u64,
        conn: MultiplexedConnection,
        f: &F,
    ) -> Result<T, Retry>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match tokio::time::timeout(self.command_timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if !error::connection_is_suspect(&e) {
                    return Err(Retry::No(error::redis(what, &e)));
                }
                self.drop_connection(generation);
                let err = error::redis(what, &e);
                if e.is_connection_dropped() || e.is_io_error() {
                    Err(Retry::Once(err))
                } else {
                    Err(Retry::No(err))
                }
            }
            Err(_) => {
                self.drop_connection(generation);
                Err(Retry::No(error::timed_out(what, self.command_timeout)))
            }
        }
    }

    /// The current connection, opening one if there is none; `true` if it
    /// was opened by this call.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection, bool)> {
        if let Some((g, c)) = self.lock().current.clone() {
            return Ok((g, c, false));
        }
        // One caller connects; the others wait for its result.
        let _connecting = self.connecting.lock().await;
        {
            let state = self.lock();
            if let Some((g, c)) = state.current.clone() {
                return Ok((g, c, false));
            }
            if let Some(at) = state.retry_at.filter(|at| *at > Instant::now()) {
                let left = at - Instant::now();
                return Err(Error::unavailable(format!(
                    "redis is unreachable; next attempt in {left:?}"
                )));
            }
        }
        let opened = tokio::time::timeout(
            self.connect_timeout,
            open(&self.client, &self.name, Some(self.command_timeout)),
        )
        .await;
        let mut state = self.lock();
        match opened {
            Ok(Ok(conn)) => {
                state.generation += 1;
                state.current = Some((state.generation, conn.clone()));
                state.retry_at = None;
                state.backoff = Duration::ZERO;
                tracing::debug!(name = %self.name, "redis connection opened");
                Ok((state.generation, conn, true))
            }
            failed => {
                state.backoff = (state.backoff * 2).clamp(self.min_backoff, self.max_backoff);
                state.retry_at = Some(Instant::now() + state.backoff);
                Err(match failed {
                    Ok(Err(e)) => error::redis("connect", &e),
                    _ => error::timed_out("connect", self.connect_timeout),
                })
            }
        }
    }

    /// Forgets the connection of `generation` (if still current): the next
    /// call opens a new one.
    fn drop_connection(&self, generation: u64) {
        let mut state = self.lock();
        if state
            .current
            .as_ref()
            .is_some_and(|(g, _)| *g == generation)
        {
            tracing::debug!(name = %self.name, "redis connection dropped");
            state.current = None;
        }
    }
}

/// A failed attempt: whether it may be tried again on a new connection.
enum Retry {
    Once(Error),
    No(Error),
}

impl Retry {
    fn into_error(self) -> Error {
        match self {
            Retry::Once(e) | Retry::No(e) => e,
        }
    }
}

/// Opens a multiplexed connection named `name`.
pub(crate) async fn open(
    client: &Client,
    name: &str,
    response_timeout: Option<Duration>,
) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(None)
        .set_response_timeout(response_timeout);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .exec_async(&mut conn)
        .await?;
    Ok(conn)
}
