//! [`RedisQueue`]: the [`Queue`] on Redis.

mod blocking;
mod keys;
mod scripts;

use std::sync::{Mutex, MutexGuard};
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
/// priorities, fair turns between groups within a priority (FIFO without
/// groups), delays, de-duplication, and at-least-once delivery with a
/// visibility timeout.
///
/// Push, pop and nack are each one Lua script, so atomic and one round trip;
/// an ack is a single `ZREM` of the delivery's lease (receipt and priority are
/// part of it, so a stale receipt removes nothing). Times (delays, visibility
/// deadlines) are taken from the Redis server's clock, so processes with
/// skewed clocks agree.
///
/// Every entry made ready leaves a token in its queue's signal list. A pop
/// (with a wait) first takes a token with `BLPOP` — on a connection of its
/// own, since a blocked connection serves nobody else — then runs the pop
/// script; with no token it blocks, and the next push wakes it within a round
/// trip. Promoting delayed and expired entries is left out of the pop script
/// while nothing can be due: the queue remembers when the next entry falls due
/// (from its scripts' answers and its own deliveries), and looks again at least
/// every half visibility timeout (at most 5 s), for deliveries of other
/// processes that expired and for tokens lost with a cancelled pop. A pop that
/// answers `None` has looked at least once.
pub struct RedisQueue {
    link: Link,
    blockers: Blockers,
    prefix: String,
    seq_key: String,
    visibility: Duration,
    visibility_ms: u64,
    /// How often a pop looks for due entries even when none is known to be.
    rescan: Duration,
    timers: Mutex<Timers>,
}

/// What this process knows about entries falling due.
#[derive(Debug, Default)]
struct Timers {
    /// When the earliest known delayed or in-flight entry falls due.
    next_due: Option<Instant>,
    /// When a pop script last promoted due entries.
    last_scan: Option<Instant>,
    /// The server's clock (ms) as last read by a script, and when: what the
    /// visibility deadlines of later pops are reckoned from.
    clock: Option<(Instant, u64)>,
}

impl Timers {
    /// Whether a pop should promote due entries before taking one.
    fn scan_due(&self, now: Instant, rescan: Duration) -> bool {
        self.next_due.is_some_and(|t| t <= now) || self.last_scan.is_none_or(|t| now >= t + rescan)
    }

    /// The server's clock now, in ms, estimated from its last reading (0: none).
    fn estimate(&self, now: Instant) -> u64 {
        self.clock.map_or(0, |(at, ms)| {
            let since = u64::try_from(now.saturating_duration_since(at).as_millis());
            ms.saturating_add(since.unwrap_or(u64::MAX))
        })
    }

    /// Until when a pop may block before it must look again.
    fn look_again_at(&self, rescan: Duration) -> Option<Instant> {
        let rescan_at = self.last_scan.map(|t| t + rescan);
        match (self.next_due, rescan_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.prefix)
            .field("visibility_ms", &self.visibility_ms)
            .field("timers", &*self.timers())
            .finish()
    }
}

/// What the pop script answers: `count, ms until due (-1 none, -2 not
/// looked), server clock in ms (-1 not read)`, then `queue index, job,
/// priority, receipt, group` per entry taken.
type PopReply = Vec<redis::Value>;

/// The lease of a delivery, as the pop script wrote it in the in-flight set.
fn lease(d: &Delivery) -> String {
    match &d.group {
        Some(g) => format!("{:016x}{}:{}:{g}", d.receipt, d.job_id, d.priority),
        None => format!("{:016x}{}:{}", d.receipt, d.job_id, d.priority),
    }
}

/// A group as the scripts take it: the name (empty without one) and whether
/// there is one.
fn group_args(group: &Option<String>) -> (&str, u8) {
    group.as_deref().map_or(("", 0), |g| (g, 1))
}

/// A group as the pop script answers it: `"=<group>"`, or empty without one.
fn parse_group(field: &str) -> Result<Option<String>> {
    if field.is_empty() {
        return Ok(None);
    }
    field
        .strip_prefix('=')
        .map(|g| Some(g.to_owned()))
        .ok_or_else(|| error::unexpected("pop", format!("group field {field:?}")))
}

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
            visibility: config.visibility_timeout,
            visibility_ms: millis_ceil(config.visibility_timeout),
            rescan: (config.visibility_timeout / 2)
                .clamp(Duration::from_millis(1), Duration::from_secs(5)),
            timers: Mutex::new(Timers::default()),
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

    fn timers(&self) -> MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One atomic pop of up to `max` (≥ 1) entries; `scan` promotes due
    /// entries first.
    async fn try_pop(&self, queues: &[String], scan: bool, max: usize) -> Result<Vec<Delivery>> {
        let mut invocation = scripts::POP.key(&self.seq_key);
        for q in queues {
            let k = self.keys(q);
            invocation
                .key(k.ready)
                .key(k.delayed)
                .key(k.waiting)
                .key(k.inflight)
                .key(k.signal);
        }
        let sent = Instant::now();
        let estimate = self.timers().estimate(sent);
        invocation
            .arg(self.visibility_ms)
            .arg(PROMOTE_LIMIT)
            .arg(u8::from(scan))
            .arg(estimate)
            .arg(max.max(1));
        let invocation = &invocation;
        let reply: PopReply = self
            .link
            .run("pop", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        let mut fields = reply.into_iter();
        let mut int = |what: &str| next_field::<i64>(&mut fields, what);
        let (count, due, clock) = (int("count")?, int("due")?, int("clock")?);
        {
            let received = Instant::now();
            let mut t = self.timers();
            if let Ok(ms) = u64::try_from(clock) {
                // Read somewhere between sending and receiving: take the middle.
                t.clock = Some((sent + (received - sent) / 2, ms));
            }
            if due != -2 {
                // The script looked: it knows every due time there is.
                t.last_scan = Some(sent);
                t.next_due = u64::try_from(due)
                    .ok()
                    .map(|ms| sent + Duration::from_millis(ms));
            }
            if count > 0 {
                // Our own deliveries fall due if they are not acked in time.
                let ours = sent + self.visibility;
                t.next_due = Some(t.next_due.map_or(ours, |d| d.min(ours)));
            }
        }
        let count = usize::try_from(count).map_err(|e| error::unexpected("pop", e))?;
        let mut taken = Vec::with_capacity(count);
        for _ in 0..count {
            let n: i64 = next_field(&mut fields, "queue index")?;
            let queue = usize::try_from(n)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| queues.get(i))
                .ok_or_else(|| error::unexpected("pop", format!("queue index {n}")))?;
            let job: String = next_field(&mut fields, "job")?;
            let priority: i64 = next_field(&mut fields, "priority")?;
            let receipt: i64 = next_field(&mut fields, "receipt")?;
            let group: String = next_field(&mut fields, "group")?;
            taken.push(Delivery {
                job_id: job
                    .parse::<JobId>()
                    .map_err(|e| error::unexpected("pop", e))?,
                queue: queue.clone(),
                priority: i32::try_from(priority).map_err(|e| error::unexpected("pop", e))?,
                receipt: u64::try_from(receipt).map_err(|e| error::unexpected("pop", e))?,
                group: parse_group(&group)?,
            });
        }
        Ok(taken)
    }
}

/// The next field of the pop script's answer, as a `T`.
fn next_field<T: redis::FromRedisValue>(
    fields: &mut impl Iterator<Item = redis::Value>,
    what: &str,
) -> Result<T> {
    let v = fields
        .next()
        .ok_or_else(|| error::unexpected("pop", format!("no {what}")))?;
    redis::from_redis_value(v).map_err(|e| error::unexpected("pop", e))
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
        let (group, has_group) = group_args(&entry.group);
        let mut invocation = scripts::PUSH.prepare_invoke();
        invocation
            .key(k.ready)
            .key(k.delayed)
            .key(k.waiting)
            .key(k.signal)
            .key(&self.seq_key)
            .arg(entry.job_id.to_string())
            .arg(entry.priority)
            .arg(delay)
            .arg(group)
            .arg(has_group);
        let invocation = &invocation;
        let added: i64 = self
            .link
            .run("push", |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        Ok(added == 1)
    }

    async fn pop_many(
        &self,
        queues: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // A wait beyond any sensible bound (Duration::MAX) is a day.
        let give_up = Instant::now() + wait.min(Duration::from_secs(86_400));
        if queues.is_empty() {
            tokio::time::sleep_until(give_up).await;
            return Ok(Vec::new());
        }
        let signals: Vec<String> = queues.iter().map(|q| self.keys(q).signal).collect();
        // With time to wait, a token comes first (an entry made ready left
        // one); without, the script looks at once. Every pop that returns
        // nothing has looked at least once.
        let mut look = wait.is_zero() || self.timers().last_scan.is_none();
        // A blocking connection that broke (a restart, a killed client) is
        // replaced once per pop; the pop script tells whether Redis is back.
        let mut replaced = false;
        loop {
            if look {
                let scan = self.timers().scan_due(Instant::now(), self.rescan);
                let taken = self.try_pop(queues, scan, max).await?;
                if !taken.is_empty() {
                    return Ok(taken);
                }
            }
            let now = Instant::now();
            if now >= give_up {
                if look {
                    return Ok(Vec::new());
                }
                look = true;
                continue;
            }
            let until = self
                .timers()
                .look_again_at(self.rescan)
                .map_or(give_up, |t| t.min(give_up));
            // Something falls due already: look (and promote) before blocking.
            if until <= now {
                look = true;
                continue;
            }
            let block = until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            match self.blockers.wait(&self.link, &signals, block).await {
                Ok(()) => {}
                Err(e) if !replaced => {
                    tracing::debug!(error = %e, "blocking wait failed; trying again");
                    replaced = true;
                }
                Err(e) => return Err(e),
            }
            look = true;
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        let inflight = self.keys(&delivery.queue).inflight;
        let (inflight, lease) = (&inflight, &lease(delivery));
        // One ZREM: a stale receipt names no member and removes nothing.
        let _acked: i64 = self
            .link
            .run("ack", |mut c| async move {
                redis::cmd("ZREM")
                    .arg(inflight)
                    .arg(lease)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn nack(&self, delivery: &Delivery, delay: Option<Duration>) -> Result<()> {
        let k = self.keys(&delivery.queue);
        let (group, has_group) = group_args(&delivery.group);
        let mut invocation = scripts::NACK.prepare_invoke();
        invocation
            .key(k.ready)
            .key(k.delayed)
            .key(k.waiting)
            .key(k.inflight)
            .key(k.signal)
            .key(&self.seq_key)
            .arg(delivery.job_id.to_string())
            .arg(lease(delivery))
            .arg(delivery.priority)
            .arg(delay.map_or(0, millis_ceil))
            .arg(group)
            .arg(has_group);
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
    fn timers_say_when_to_look_again() {
        let rescan = Duration::from_secs(5);
        let t0 = Instant::now();
        let mut t = Timers::default();
        assert!(t.scan_due(t0, rescan), "never looked: look now");
        assert_eq!(t.look_again_at(rescan), None);
        assert_eq!(t.estimate(t0), 0, "no reading of the clock yet");
        t.last_scan = Some(t0);
        assert!(!t.scan_due(t0, rescan));
        assert!(
            t.scan_due(t0 + rescan, rescan),
            "looks again after `rescan`"
        );
        assert_eq!(t.look_again_at(rescan), Some(t0 + rescan));
        t.next_due = Some(t0 + Duration::from_secs(1));
        assert_eq!(t.look_again_at(rescan), Some(t0 + Duration::from_secs(1)));
        assert!(
            t.scan_due(t0 + Duration::from_secs(1), rescan),
            "something is due"
        );
        t.clock = Some((t0, 1_000_000));
        assert_eq!(t.estimate(t0 + Duration::from_millis(250)), 1_000_250);
    }

    #[test]
    fn groups_travel_in_leases_and_replies() {
        let job_id = JobId::new();
        let mut d = Delivery {
            job_id,
            queue: "q".into(),
            priority: -3,
            receipt: 0x2a,
            group: None,
        };
        assert_eq!(lease(&d), format!("000000000000002a{job_id}:-3"));
        d.group = Some("a:b".into());
        assert_eq!(lease(&d), format!("000000000000002a{job_id}:-3:a:b"));
        assert_eq!(group_args(&None), ("", 0));
        assert_eq!(group_args(&Some(String::new())), ("", 1));
        assert_eq!(parse_group("").unwrap(), None);
        assert_eq!(parse_group("=").unwrap(), Some(String::new()));
        assert_eq!(parse_group("=a:b").unwrap(), Some("a:b".into()));
        assert!(parse_group("a").is_err());
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
