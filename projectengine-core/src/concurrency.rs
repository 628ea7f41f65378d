//! Concurrency keys: at most `limit` of an owner's jobs that carry one key
//! run at a time, however many workers claim.
//!
//! A job submitted with a key and a limit (`Submit::concurrency`) is claimed
//! only while fewer than its limit of the owner's jobs with the same key are
//! `running`; otherwise the claim answers "not claimable" and the worker puts
//! the queue entry back for [`RETRY_WHEN_FULL`]. Keys belong to their owner:
//! two owners using the same key never share a count. Each store makes the
//! count and the claim one step — the in-memory store under its lock, SQLite
//! in its single writer, PostgreSQL under a transaction-scoped advisory lock
//! per owner and key — so the limit holds exactly under any number of
//! claimers.
//!
//! A job counts against its key from its claim until its attempt ends
//! (succeeds, fails, is cancelled, retried or found lost); a job waiting for
//! review does not count.

use std::time::Duration;

use crate::{Error, Result};

/// Longest concurrency key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// Largest concurrency limit.
pub const MAX_LIMIT: u32 = 10_000;

/// How long a worker waits before it tries again a job whose key was full.
pub const RETRY_WHEN_FULL: Duration = Duration::from_millis(250);

/// Checks a submission's key and limit: both or neither; the key 1 to
/// [`MAX_KEY_BYTES`] bytes of printable characters, not starting or ending
/// with a space; the limit 1 to [`MAX_LIMIT`].
pub fn check(key: Option<&str>, limit: Option<u32>) -> Result<()> {
    match (key, limit) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(Error::invalid(
            "concurrency_limit",
            "is required with a concurrency_key",
        )),
        (None, Some(_)) => Err(Error::invalid(
            "concurrency_key",
            "is required with a concurrency_limit",
        )),
        (Some(key), Some(limit)) => {
            crate::workflow::check_name("concurrency_key", key, MAX_KEY_BYTES)?;
            if !(1..=MAX_LIMIT).contains(&limit) {
                return Err(Error::invalid(
                    "concurrency_limit",
                    format!("must be between 1 and {MAX_LIMIT}"),
                ));
            }
            Ok(())
        }
    }
}

/// Whether a job with `limit` may start while `running` jobs of its owner
/// and key run.
pub fn admits(running: u64, limit: u32) -> bool {
    running < u64::from(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_limit_go_together() {
        assert!(check(None, None).is_ok());
        assert!(check(Some("site"), Some(2)).is_ok());
        assert!(check(Some("site"), None).is_err());
        assert!(check(None, Some(2)).is_err());
    }

    #[test]
    fn bad_keys_and_limits_are_refused() {
        assert!(check(Some(""), Some(1)).is_err());
        assert!(check(Some(" site"), Some(1)).is_err());
        assert!(check(Some("a\u{0}b"), Some(1)).is_err());
        assert!(check(Some(&"k".repeat(MAX_KEY_BYTES + 1)), Some(1)).is_err());
        assert!(check(Some("site"), Some(0)).is_err());
        assert!(check(Some("site"), Some(MAX_LIMIT + 1)).is_err());
        assert!(check(Some(&"k".repeat(MAX_KEY_BYTES)), Some(MAX_LIMIT)).is_ok());
    }

    #[test]
    fn the_limit_admits_fewer_running() {
        assert!(admits(0, 1));
        assert!(!admits(1, 1));
        assert!(admits(1, 2));
        assert!(!admits(2, 2));
    }
}
