//! What every handler shares: the engine, the authenticator, the settings and
//! the metrics.

use std::sync::Arc;
use std::time::Duration;

use projectengine_core::{CancellationToken, Engine};

use crate::auth::Authenticator;
use crate::cors::Cors;
use crate::limits::StreamSlots;
use crate::metrics::Metrics;

/// Settings of the HTTP layer. Start from [`HttpConfig::default`] and change
/// what you need.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Largest request body, in bytes (default 64 KiB); more is 413.
    pub body_limit: usize,
    /// A WebSocket client that has been sent nothing for this long gets a ping
    /// (default 20 s).
    pub ws_ping_interval: Duration,
    /// A WebSocket client from which nothing (not even a pong) has arrived for
    /// this long is disconnected (default 60 s).
    pub ws_idle_timeout: Duration,
    /// How long one frame may take to go out before the client is deemed too
    /// slow and disconnected with 1013 (default 10 s).
    pub ws_send_timeout: Duration,
    /// Largest message a WebSocket client may send, in bytes (default 4 KiB);
    /// more is closed with 1009.
    pub ws_max_message: usize,
    /// Keep-alive comment interval of SSE streams (default 15 s).
    pub sse_keep_alive: Duration,
    /// Streams (WebSocket and SSE together) one owner may have open on this
    /// process; more is 429 (default: unlimited).
    pub max_streams_per_owner: Option<usize>,
    /// Which browser origins may call the API, and how (default: none; no
    /// response carries a CORS header). Applied by [`router_with`](crate::router_with).
    pub cors: Option<Cors>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            ws_ping_interval: Duration::from_secs(20),
            ws_idle_timeout: Duration::from_secs(60),
            ws_send_timeout: Duration::from_secs(10),
            ws_max_message: 4 * 1024,
            sse_keep_alive: Duration::from_secs(15),
            max_streams_per_owner: None,
            cors: None,
        }
    }
}

/// The state behind every route: an [`Engine`], an [`Authenticator`], the
/// [`HttpConfig`] and the router's [`Metrics`]. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    auth: Arc<dyn Authenticator>,
    config: HttpConfig,
    metrics: Metrics,
    streams: StreamSlots,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("engine", &self.inner.engine)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State with the default [`HttpConfig`].
    pub fn new(engine: Engine, auth: impl Authenticator) -> Self {
        Self::with_config(engine, auth, HttpConfig::default())
    }

    /// State with explicit settings.
    pub fn with_config(engine: Engine, auth: impl Authenticator, config: HttpConfig) -> Self {
        let metrics = Metrics::new(&engine);
        Self {
            inner: Arc::new(Inner {
                engine,
                auth: Arc::new(auth),
                config,
                metrics,
                streams: StreamSlots::default(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &dyn Authenticator {
        &*self.inner.auth
    }

    /// The settings.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// The metrics this state's routes record and `/metrics` renders.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The open streams of each owner.
    pub(crate) fn streams(&self) -> &StreamSlots {
        &self.inner.streams
    }

    /// Fire it when the server shuts down: every open WebSocket is closed with
    /// 1001 "going away" and every SSE stream ends, so clients reconnect (with
    /// `after`) elsewhere. Also fire it before awaiting axum's graceful shutdown,
    /// which does not wait for upgraded connections.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }
}
