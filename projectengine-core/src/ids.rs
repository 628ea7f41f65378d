//! Identifiers: time-ordered UUID v7 newtypes, so an id is also a cursor.

use std::fmt;
use std::str::FromStr;

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Bits of the per-millisecond counter: as in `uuid`'s own v7 context, 12 in
/// `rand_a` and the top 30 of `rand_b`; the other 32 bits of `rand_b` are random.
const COUNTER_BITS: u32 = 42;

/// The last millisecond an id was made in, and the counter within it.
static CLOCK: Mutex<(u64, u64)> = Mutex::new((0, 0));

/// A UUID v7, strictly increasing within this process (like
/// [`Uuid::now_v7`]): a 48-bit Unix time in ms, then a 42-bit counter seeded at
/// random each millisecond, then 32 random bits.
///
/// Unlike `Uuid::now_v7` (whose random bits come from a `getrandom` system
/// call per id, three per job: ~3 % of a W1 profile), the random bits come from
/// `fastrand`'s thread-local generator, seeded from the OS. Ids are names, not
/// secrets: access is checked by owner.
fn now_v7() -> Uuid {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (millis, counter) = {
        let mut clock = CLOCK.lock().unwrap_or_else(|p| p.into_inner());
        let (last, counter) = *clock;
        // Seeded below the top bit, so a millisecond has room for 2^41 ids.
        let seed = || fastrand::u64(..) >> (64 - COUNTER_BITS + 1);
        let next = if now > last {
            (now, seed())
        } else if counter + 1 < 1 << COUNTER_BITS {
            // The same millisecond, or the clock went back: keep counting.
            (last, counter + 1)
        } else {
            // The counter is spent: borrow the next millisecond.
            (last + 1, seed())
        };
        *clock = next;
        next
    };
    let rand_a = (counter >> 30) as u128;
    let rand_b = (((counter & ((1 << 30) - 1)) as u128) << 32) | u128::from(fastrand::u32(..));
    let bits = (u128::from(millis & ((1 << 48) - 1)) << 80)
        | (0x7 << 76)
        | (rand_a << 64)
        | (0b10 << 62)
        | rand_b;
    Uuid::from_u128(bits)
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered (UUID v7) id.
            pub fn new() -> Self {
                Self(now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

uuid_id!(
    /// The id of a [`Job`](crate::Job).
    JobId
);
uuid_id!(
    /// The id of an [`Attempt`](crate::Attempt).
    AttemptId
);
uuid_id!(
    /// The id of an [`App`](crate::App).
    AppId
);

/// The authenticated subject that owns jobs and apps.
///
/// Every read and write through the [`Engine`](crate::Engine) is scoped to one
/// owner: another owner's job is reported as not found.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Owner(pub String);

impl Owner {
    /// An owner from a subject string.
    pub fn new(subject: impl Into<String>) -> Self {
        Self(subject.into())
    }

    /// The subject as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Owner {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_and_strictly_increasing() {
        let mut last = JobId::new();
        for _ in 0..10_000 {
            let id = JobId::new();
            assert_eq!(id.0.get_version(), Some(uuid::Version::SortRand));
            assert_eq!(id.0.get_variant(), uuid::Variant::RFC4122);
            assert!(id > last, "{id} after {last}");
            last = id;
        }
    }

    #[test]
    fn ids_carry_the_current_time() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let id = AppId::new();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let (secs, nanos) = id.0.get_timestamp().unwrap().to_unix();
        let ms = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!(ms >= before.as_millis() as u64 && ms <= after.as_millis() as u64 + 1);
    }
}
