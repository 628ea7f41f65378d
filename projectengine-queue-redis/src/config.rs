//! [`RedisConfig`]: where Redis is, and how the queue and notifier use it.

use std::time::Duration;

/// How to reach Redis and how the [`RedisQueue`](crate::RedisQueue) and
/// [`RedisNotifier`](crate::RedisNotifier) behave.
///
/// Start from [`RedisConfig::new`] and adjust fields or use the `with_*` setters.
/// `Debug` hides a password in the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The server, e.g. `redis://127.0.0.1:6379/0` (`rediss://` needs a TLS
    /// feature of the redis crate; `redis+unix:///path` for a socket).
    pub url: String,
    /// Prepended to every key, channel and connection name, so that several
    /// deployments can share one Redis (default `projectengine`).
    pub prefix: String,
    /// A popped entry that is neither acked nor nacked within this time is
    /// delivered again (default 30 s).
    pub visibility_timeout: Duration,
    /// The longest any one Redis call may take (default 2 s).
    pub command_timeout: Duration,
    /// The longest opening a connection may take (default 2 s).
    pub connect_timeout: Duration,
    /// First pause before reconnecting after a failure; it doubles on each
    /// failure up to [`RedisConfig::max_backoff`] (default 50 ms).
    pub min_backoff: Duration,
    /// Longest pause between reconnection attempts (default 2 s).
    pub max_backoff: Duration,
    /// Idle connections kept for blocking pops (default 4). A pop that blocks
    /// holds a connection of its own; more are opened on demand.
    pub idle_blocking_connections: usize,
    /// Events buffered per watched job in this process before a slow
    /// subscriber is told it lagged (default 1024).
    pub subscriber_buffer: usize,
    /// Events this process may have waiting to be published (default 16384).
    /// Beyond that, publishing drops events and subscribers are told they
    /// lagged, rather than making the publisher wait or memory grow.
    pub publish_buffer: usize,
    /// Least time between two `PUBLISH`es of this process (default 2 ms).
    /// Events published meanwhile go together in the next message: under
    /// load, fewer commands for at most this much more latency. An idle
    /// publisher sends at once. Zero sends whenever no `PUBLISH` is in flight.
    pub publish_interval: Duration,
    /// How often the subscriber connection is checked with a `PING`
    /// (default 15 s).
    pub health_check: Duration,
}

impl RedisConfig {
    /// The defaults, for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "projectengine".to_owned(),
            visibility_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            idle_blocking_connections: 4,
            subscriber_buffer: 1024,
            publish_buffer: 16_384,
            publish_interval: Duration::from_millis(2),
            health_check: Duration::from_secs(15),
        }
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the visibility timeout.
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// Sets the per-call timeout.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Refuses settings no adapter can work with.
    pub(crate) fn validate(&self) -> projectengine_core::Result<()> {
        use projectengine_core::Error;
        let ms = Duration::from_millis(1);
        if self.prefix.is_empty() {
            return Err(Error::invalid("prefix", "must not be empty"));
        }
        for (field, value) in [
            ("visibility_timeout", self.visibility_timeout),
            ("command_timeout", self.command_timeout),
            ("connect_timeout", self.connect_timeout),
            ("min_backoff", self.min_backoff),
        ] {
            if value < ms {
                return Err(Error::invalid(field, "must be at least 1 ms"));
            }
        }
        Ok(())
    }

    /// The name given to a connection of `role` (visible in `CLIENT LIST`).
    pub(crate) fn connection_name(&self, role: &str) -> String {
        // CLIENT SETNAME refuses spaces and newlines.
        let prefix: String = self
            .prefix
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect();
        format!("{prefix}:{role}")
    }
}

/// `url` with any credentials replaced by `***`.
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redacted(&self.url))
            .field("prefix", &self.prefix)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("idle_blocking_connections", &self.idle_blocking_connections)
            .field("subscriber_buffer", &self.subscriber_buffer)
            .field("publish_buffer", &self.publish_buffer)
            .field("publish_interval", &self.publish_interval)
            .field("health_check", &self.health_check)
            .finish()
    }
}

impl Default for RedisConfig {
    /// The defaults, for `redis://127.0.0.1:6379`.
    fn default() -> Self {
        Self::new("redis://127.0.0.1:6379")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials() {
        let c = RedisConfig::new("redis://user:secret@db:6379/2");
        let shown = format!("{c:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("redis://***@db:6379/2"), "{shown}");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn validation_names_the_field() {
        assert!(RedisConfig::default().validate().is_ok());
        let e = RedisConfig::default()
            .with_prefix("")
            .validate()
            .unwrap_err();
        assert!(matches!(
            e,
            projectengine_core::Error::Invalid {
                field: "prefix",
                ..
            }
        ));
        let e = RedisConfig::default()
            .with_command_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(matches!(
            e,
            projectengine_core::Error::Invalid {
                field: "command_timeout",
                ..
            }
        ));
    }

    #[test]
    fn connection_names_have_no_spaces() {
        let c = RedisConfig::default().with_prefix("my app");
        assert_eq!(c.connection_name("queue"), "my_app:queue");
    }
}
