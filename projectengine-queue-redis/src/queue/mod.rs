//! [`RedisQueue`]: the [`Queue`] on Redis.

mod blocking;
mod keys;
mod scripts;

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use projectengine_core::{Delivery, JobId, Queue, QueueDepth, QueueEntry, Result};
use tokio::time::Instant;

use crate::error;
use crate::link::Link;
use crate::RedisConfig;
use blocking::Blockers;
use keys::QueueKeys;

/// Most delayed or expired entries one pop moves to `ready` per queue; the
/// rest follow on the next pops.
const PROMOTE_LIMIT: u32 = 100;

/// A [`Queue`] on Redis, with the full contract of the in-memory queue:
/// priorities, FIFO within a priority, delays, de-duplication, and
/// at-least-once delivery with a visibility timeout.
///
/// Every operation is one Lua script, so it is atomic and costs one round
/// trip. Times (delays, visibility deadlines) are taken from the Redis
/// server's clock, so processes with skewed clocks agree. A pop that finds
/// nothing waits with `BLPOP` on the queues' signal lists — on a connection of
/// its own, since a blocked connection serves nobody else — and is woken by
/// the next push within a round trip.
pub struct RedisQueue {
    link: Link,
    blockers: Blockers,
    prefix: String,
    seq_key: String,
    visibility_ms: u64,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.prefix)
            .field("visibility_ms", &self.visibility_ms)
            .finish()
    }
}

/// What the pop script answers: `(hit, queue index or wait, job, priority, receipt)`.
type PopReply = (i64, i64, String, i64, i64);

impl RedisQueue {
    /// Connects to Redis and checks that it answers.
    ///
    /// Fails with [`Error::Invalid`](projectengine_core::Error::Invalid) for a
    /// bad configuration and with
    /// [`Error::Unavailable`](projectengine_core::Error::Unavailable) when Redis
    /// cannot be reached. Later outages are not fatal: each call reconnects as
    /// needed.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let queue = Self::new(config)?;
        queue.ping().await?;
        Ok(queue)
    }

    /// Like [`RedisQueue::connect`], without waiting for Redis: the first call
    /// connects.
    pub fn new(config: &RedisConfig) -> Result<Self> {
        config.validate()?;
        let link = Link::new(config, "queue")?;
        let blockers = Blockers::new(
            link.client().clone(),
            config.connection_name("queue-pop"),
            config.idle_blocking_connections,
        );
        Ok(Self {
            link,
            blockers,
            prefix: config.prefix.clone(),
            seq_key: keys::seq(&config.prefix),
            visibility_ms: millis_ceil(config.visibility_timeout),
        })
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<()> {
        self.link
            .run("ping", |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
            .await
            .map(|_| ())
    }

    fn keys(&self, queue: &str) -> QueueKeys {
        QueueKeys::new(&self.prefix, queue)
    }

    /// One atomic pop attempt; on a miss, how long until an entry falls due.
    async fn try_pop(&self, queues: &[String]) -> Result<Result<Delivery, Option<Duration>>> {
        let mut invocation = scripts::POP.key(&self.seq_key);
        for q in queues {
            let k = self.keys(q);
            invocation
                .key(k.ready)
                .key(k.delayed)
                .key(k.waiting)
                .key(k.inflight)
                .key(k.leases)
                .key(k.signal);
        }
        invocation.arg(self.visibility_ms).arg(PROMOTE_LIMIT);
        let invocation = &invocation;
        let (hit, n, job, priority, receipt): PopReply = self
            .link
            .run("pop", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        if hit == 0 {
            return Ok(Err(u64::try_from(n).ok().map(Duration::from_millis)));
        }
        let queue = usize::try_from(n)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| queues.get(i))
            .ok_or_else(|| error::unexpected("pop", format!("queue index {n}")))?;
        Ok(Ok(Delivery {
            job_id: job
                .parse::<JobId>()
                .map_err(|e| error::unexpected("pop", e))?,
            queue: queue.clone(),
            priority: i32::try_from(priority).map_err(|e| error::unexpected("pop", e))?,
            receipt: u64::try_from(receipt).map_err(|e| error::unexpected("pop", e))?,
        }))
    }
}

/// Whole milliseconds, rounded up (a delay is never shortened).
fn millis_ceil(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[async_trait]
impl Queue for RedisQueue {
    async fn push(&self, queue: &str, entry: QueueEntry) -> Result<bool> {
        let delay = entry
            .not_before
            .and_then(|t| (t - Utc::now()).to_std().ok())
            .map_or(0, millis_ceil);
        let k = self.keys(queue);
        let mut invocation = scripts::PUSH.prepare_invoke();
        invocation
            .key(k.ready)
            .key(k.delayed)
            .key(k.waiting)
            .key(k.signal)
            .key(&self.seq_key)
            .arg(entry.job_id.to_string())
            .arg(entry.priority)
            .arg(delay);
        let invocation = &invocation;
        let added: i64 = self
            .link
            .run("push", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        Ok(added == 1)
    }

    async fn pop(&self, queues: &[String], wait: Duration) -> Result<Option<Delivery>> {
        // A wait beyond any sensible bound (Duration::MAX) is a day.
        let give_up = Instant::now() + wait.min(Duration::from_secs(86_400));
        if queues.is_empty() {
            tokio::time::sleep_until(give_up).await;
            return Ok(None);
        }
        let signals: Vec<String> = queues.iter().map(|q| self.keys(q).signal).collect();
        // A blocking connection that broke (a restart, a killed client) is
        // replaced once per pop; the pop script tells whether Redis is back.
        let mut replaced = false;
        loop {
            let next_due = match self.try_pop(queues).await? {
                Ok(delivery) => return Ok(Some(delivery)),
                Err(next_due) => next_due,
            };
            let now = Instant::now();
            if now >= give_up {
                return Ok(None);
            }
            let left = give_up - now;
            let block = next_due.map_or(left, |d| d.min(left));
            match self.blockers.wait(&self.link, &signals, block).await {
                Ok(()) => {}
                Err(e) if !replaced => {
                    tracing::debug!(error = %e, "blocking wait failed; trying again");
                    replaced = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        let k = self.keys(&delivery.queue);
        let mut invocation = scripts::ACK.prepare_invoke();
        invocation
            .key(k.inflight)
            .key(k.leases)
            .arg(delivery.job_id.to_string())
            .arg(delivery.receipt);
        let invocation = &invocation;
        let _acked: i64 = self
            .link
            .run("ack", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    async fn nack(&self, delivery: &Delivery, delay: Option<Duration>) -> Result<()> {
        let k = self.keys(&delivery.queue);
        let mut invocation = scripts::NACK.prepare_invoke();
        invocation
            .key(k.ready)
            .key(k.delayed)
            .key(k.waiting)
            .key(k.inflight)
            .key(k.leases)
            .key(k.signal)
            .key(&self.seq_key)
            .arg(delivery.job_id.to_string())
            .arg(delivery.receipt)
            .arg(delay.map_or(0, millis_ceil));
        let invocation = &invocation;
        let _current: i64 = self
            .link
            .run("nack", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth> {
        let k = self.keys(queue);
        let mut invocation = scripts::DEPTH.prepare_invoke();
        invocation.key(k.ready).key(k.delayed).key(k.inflight);
        let invocation = &invocation;
        let (ready, delayed, in_flight): (u64, u64, u64) = self
            .link
            .run("depth", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        Ok(QueueDepth {
            ready,
            delayed,
            in_flight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_whole_milliseconds() {
        assert_eq!(millis_ceil(Duration::ZERO), 0);
        assert_eq!(millis_ceil(Duration::from_micros(1)), 1);
        assert_eq!(millis_ceil(Duration::from_millis(1500)), 1500);
        assert_eq!(millis_ceil(Duration::from_micros(1500)), 2);
        assert_eq!(millis_ceil(Duration::MAX), u64::MAX);
    }

    #[test]
    fn bad_configurations_are_refused() {
        let empty = RedisConfig::default().with_prefix("");
        assert_eq!(RedisQueue::new(&empty).unwrap_err().code(), "invalid");
        let zero = RedisConfig::default().with_visibility_timeout(Duration::ZERO);
        assert_eq!(RedisQueue::new(&zero).unwrap_err().code(), "invalid");
        let url = RedisConfig::new("not a url");
        assert_eq!(RedisQueue::new(&url).unwrap_err().code(), "invalid");
    }
}
