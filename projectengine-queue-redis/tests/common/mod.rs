//! Shared by the test binaries: a reachable Redis with a private key prefix.
#![allow(dead_code)]

pub mod server;

use std::time::Duration;

use chrono::Utc;
use projectengine_core::testkit::service_missing;
use projectengine_core::{EventData, JobEvent, JobId, LogLevel, LogLine};
use projectengine_queue_redis::{RedisConfig, RedisNotifier, RedisQueue};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// `REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test uses.
pub fn random_prefix() -> String {
    format!("pe-test-{:016x}", fastrand::u64(..))
}

/// A Redis for one test: its URL, a config with a private prefix and a 1 s
/// visibility timeout, and an admin connection.
pub struct TestRedis {
    pub url: String,
    pub config: RedisConfig,
    pub admin: MultiplexedConnection,
}

impl TestRedis {
    /// The Redis at `REDIS_URL`; `None` (after reporting it) when unreachable.
    pub async fn connect() -> Option<Self> {
        Self::connect_to(&redis_url()).await
    }

    /// The Redis at `url`; `None` (after reporting it) when unreachable.
    pub async fn connect_to(url: &str) -> Option<Self> {
        match admin(url).await {
            Ok(admin) => Some(Self {
                url: url.to_owned(),
                config: RedisConfig::new(url)
                    .with_prefix(random_prefix())
                    .with_visibility_timeout(Duration::from_secs(1)),
                admin,
            }),
            Err(e) => {
                service_missing("Redis", url, &e);
                None
            }
        }
    }

    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    pub async fn queue(&self) -> RedisQueue {
        RedisQueue::connect(&self.config)
            .await
            .expect("Redis answered the admin connection")
    }

    pub async fn notifier(&self) -> RedisNotifier {
        RedisNotifier::connect(&self.config)
            .await
            .expect("Redis answered the admin connection")
    }

    /// Kills this test's connections whose name is `<prefix>:<role>` (every
    /// role when `None`); answers how many.
    pub async fn kill(&self, role: Option<&str>) -> usize {
        let mut admin = self.admin.clone();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut admin)
            .await
            .expect("CLIENT LIST");
        let mut killed = 0;
        for line in list.lines() {
            let field = |k: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            };
            let (Some(id), Some(name)) = (field("id"), field("name")) else {
                continue;
            };
            let Some(r) = name
                .strip_prefix(self.prefix())
                .and_then(|n| n.strip_prefix(':'))
            else {
                continue;
            };
            if role.is_none_or(|want| want == r) {
                let n: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(id)
                    .query_async(&mut admin)
                    .await
                    .expect("CLIENT KILL");
                killed += n as usize;
            }
        }
        killed
    }

    /// Every key of this test's prefix.
    pub async fn keys(&self) -> Vec<String> {
        let mut admin = self.admin.clone();
        redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix()))
            .query_async(&mut admin)
            .await
            .expect("KEYS")
    }

    /// Deletes this test's keys.
    pub async fn cleanup(&self) {
        let keys = self.keys().await;
        if !keys.is_empty() {
            let mut admin = self.admin.clone();
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut admin)
                .await
                .expect("DEL");
        }
    }
}

/// An admin connection to `url`, or why not.
pub async fn admin(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(conn)
}

/// A log event of `job_id` with `seq`.
pub fn event(job_id: JobId, seq: u64) -> JobEvent {
    JobEvent {
        job_id,
        seq,
        attempt: 1,
        at: Utc::now(),
        data: EventData::Log(LogLine {
            level: LogLevel::Info,
            message: format!("line {seq}"),
        }),
    }
}
