//! Exponential backoff with jitter between attempts.

use std::time::Duration;

/// Retry delays: `base · 2^(attempt−1)`, capped at `max`, of which a random part
/// (the upper half) is jitter so that retries of many jobs spread out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the second attempt (without jitter).
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Whether to randomize the upper half of each delay.
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            jitter: true,
        }
    }
}

impl Backoff {
    /// The delay after attempt number `attempt` (1, 2, …) failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let full = self
            .base
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        if !self.jitter || full.is_zero() {
            return full;
        }
        let half = full / 2;
        let extra = (half.as_nanos() as f64 * fastrand::f64()) as u64;
        half + Duration::from_nanos(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter: false,
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(200));
        assert_eq!(b.delay(4), Duration::from_millis(800));
        assert_eq!(b.delay(5), Duration::from_secs(1));
        assert_eq!(b.delay(1000), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_the_upper_half() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter: true,
        };
        for _ in 0..200 {
            let d = b.delay(3);
            assert!(
                d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
                "{d:?}"
            );
        }
    }
}
