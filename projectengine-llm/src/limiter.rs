//! A provider's limiter of requests and tokens per minute, shared by every
//! call (and every attempt of a worker) that uses the provider.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// A bucket refilled continuously at `capacity` a minute.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u32) -> Self {
        Self {
            capacity: f64::from(per_minute),
            level: f64::from(per_minute),
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let per_sec = self.capacity / 60.0;
        self.level =
            (self.level + now.duration_since(self.at).as_secs_f64() * per_sec).min(self.capacity);
        self.at = now;
    }

    /// How long until `amount` is there (a request above capacity waits for
    /// a full bucket, then goes through).
    fn wait_for(&self, amount: f64) -> Duration {
        let amount = amount.min(self.capacity);
        if self.level >= amount {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((amount - self.level) * 60.0 / self.capacity)
        }
    }
}

/// Requests and tokens per minute of one provider.
#[derive(Debug)]
pub struct Limiter {
    buckets: Mutex<(Option<Bucket>, Option<Bucket>)>,
}

impl Limiter {
    /// A limiter of at most `requests` and `tokens` a minute (none:
    /// unlimited).
    pub fn new(requests: Option<u32>, tokens: Option<u32>) -> Self {
        Self {
            buckets: Mutex::new((requests.map(Bucket::new), tokens.map(Bucket::new))),
        }
    }

    /// Waits until one request of about `tokens` tokens may go, and takes
    /// it; [`Error::Cancelled`] if `cancel` fires first.
    pub async fn acquire(&self, tokens: u64, cancel: &CancellationToken) -> Result<()> {
        loop {
            let wait = {
                let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let (requests, token_bucket) = &mut *b;
                let mut wait = Duration::ZERO;
                if let Some(r) = requests.as_mut() {
                    r.refill(now);
                    wait = wait.max(r.wait_for(1.0));
                }
                if let Some(t) = token_bucket.as_mut() {
                    t.refill(now);
                    wait = wait.max(t.wait_for(tokens as f64));
                }
                if wait.is_zero() {
                    if let Some(r) = requests.as_mut() {
                        r.level -= 1.0;
                    }
                    if let Some(t) = token_bucket.as_mut() {
                        t.level -= (tokens as f64).min(t.capacity);
                    }
                    return Ok(());
                }
                wait
            };
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "LLM rate limiter: waiting"
            );
            tokio::select! {
                () = cancel.cancelled() => return Err(Error::Cancelled),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Corrects the token count of a finished call: `estimated` was taken,
    /// `actual` were used (the bucket may go below zero, delaying the next
    /// calls).
    pub fn settle(&self, estimated: u64, actual: u64) {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = b.1.as_mut() {
            t.level -= actual as f64 - (estimated as f64).min(t.capacity);
            t.level = t.level.min(t.capacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_past_the_limit_wait_for_the_refill() {
        let limiter = Limiter::new(Some(60), None);
        let cancel = CancellationToken::new();
        let start = Instant::now();
        for _ in 0..60 {
            limiter.acquire(10, &cancel).await.unwrap();
        }
        assert!(start.elapsed() < Duration::from_millis(10));
        limiter.acquire(10, &cancel).await.unwrap();
        // One request a second refills.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(990), "{waited:?}");
        assert!(waited < Duration::from_millis(1100), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_limited_and_settled_with_the_actual_count() {
        let limiter = Limiter::new(None, Some(600));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        limiter.acquire(100, &cancel).await.unwrap();
        // The call used 600 tokens, not 100: the bucket is empty now.
        limiter.settle(100, 600);
        limiter.acquire(100, &cancel).await.unwrap();
        // 100 tokens at 10 a second.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(9_900), "{waited:?}");
        assert!(waited < Duration::from_millis(10_200), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_acquire_stops_on_cancel() {
        let limiter = Limiter::new(Some(1), None);
        let cancel = CancellationToken::new();
        limiter.acquire(1, &cancel).await.unwrap();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.cancel();
        });
        let err = limiter.acquire(1, &cancel).await.unwrap_err();
        assert!(matches!(err, Error::Cancelled));
    }
}
