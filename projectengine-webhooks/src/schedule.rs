//! When a failed delivery is tried again.

use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// The delays between tries: after the `n`th failed try, the delivery is due
/// again after the `n`th delay (with jitter); once they are spent it is
/// `failed`. So a schedule of `k` delays allows `k + 1` tries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    /// `5s,5m,30m,2h,5h,10h`: seven tries over about 18 hours.
    fn default() -> Self {
        "5s,5m,30m,2h,5h,10h".parse().expect("a valid schedule")
    }
}

impl FromStr for RetrySchedule {
    type Err = Error;

    /// Comma-separated durations in `humantime`'s syntax (`500ms`, `5s`,
    /// `30m`, `2h`); an empty string means no retry.
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self { delays: Vec::new() });
        }
        let delays = s
            .split(',')
            .map(|part| {
                humantime::parse_duration(part.trim())
                    .map_err(|e| Error::InvalidSchedule(format!("`{}`: {e}", part.trim())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { delays })
    }
}

impl RetrySchedule {
    /// A schedule of these delays.
    pub fn new(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// The delays.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The most tries a delivery gets.
    pub fn max_tries(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The delay before the next try after `tries` failed tries, with up to
    /// ±10 % jitter (so deliveries that failed together do not all come back
    /// at once); `None` when the schedule is spent.
    pub fn next_delay(&self, tries: u32) -> Option<Duration> {
        let index = usize::try_from(tries).ok()?.checked_sub(1)?;
        let base = *self.delays.get(index)?;
        Some(base.mul_f64(0.9 + fastrand::f64() * 0.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_spends_the_schedule() {
        let s: RetrySchedule = "5s, 5m,30m".parse().expect("valid");
        assert_eq!(
            s.delays(),
            [
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(1800)
            ]
        );
        assert_eq!(s.max_tries(), 4);
        let first = s.next_delay(1).expect("a retry");
        assert!((4500..=5500).contains(&first.as_millis()), "{first:?}");
        assert!(s.next_delay(3).is_some());
        assert_eq!(s.next_delay(4), None);
        assert_eq!(s.next_delay(0), None);
        assert_eq!(RetrySchedule::default().max_tries(), 7);
        assert_eq!("".parse::<RetrySchedule>().expect("none").max_tries(), 1);
        for bad in ["5", "5s,,5m", "soon", "5s;5m"] {
            assert!(bad.parse::<RetrySchedule>().is_err(), "{bad}");
        }
    }
}
