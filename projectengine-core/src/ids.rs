//! Identifiers: time-ordered UUID v7 newtypes, so an id is also a cursor.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered (UUID v7) id. Its random bits come from a
            /// fast thread-local generator (`uuid`'s `fast-rng`), not a system
            /// call per id: ids are names, not secrets (access is checked by
            /// owner).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
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
uuid_id!(
    /// The id of a [`WebhookDelivery`](crate::WebhookDelivery): the
    /// `webhook-id` its every try is sent with.
    DeliveryId
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
    use std::time::{SystemTime, UNIX_EPOCH};

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
