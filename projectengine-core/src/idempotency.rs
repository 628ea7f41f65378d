//! Idempotent submissions: a client-chosen key makes a retried request
//! answer the job its first try created instead of creating another.
//!
//! A key is scoped to its [`Owner`]: two owners may use the same key. The
//! store keeps it with a hash of the request it came with, for
//! [`Limits::idempotency_ttl`](crate::Limits::idempotency_ttl); while it is
//! kept, the same key with the same request answers the existing job, and
//! with another request [`Error::IdempotencyKeyReused`]. The key and the job
//! are written in one transaction, so of any number of concurrent requests
//! with one key exactly one creates a job. An expired key may be used again
//! (for a new job); the stores drop expired keys as they go.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Engine, Error, Job, Owner, Result, Submit};

/// A key's longest length, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// A validated idempotency key, the hash of the request it came with, and
/// how long the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The client's key: 1 to [`MAX_IDEMPOTENCY_KEY_BYTES`] bytes of printable
    /// ASCII.
    pub key: String,
    /// The SHA-256 (hex) of the request's canonical JSON, see [`request_hash`].
    pub request_hash: String,
    /// How long the store keeps the key from its first use.
    pub ttl: Duration,
}

impl IdempotencyKey {
    /// Checks `key` and hashes `request`; a key that is empty, longer than
    /// [`MAX_IDEMPOTENCY_KEY_BYTES`] or not printable ASCII is
    /// [`Error::Invalid`] naming `idempotency_key`.
    pub fn new(key: impl Into<String>, request: &Value, ttl: Duration) -> Result<Self> {
        let key = key.into();
        check_key(&key)?;
        Ok(Self {
            key,
            request_hash: request_hash(request),
            ttl,
        })
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("idempotency_key", "must not be empty"));
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(Error::invalid(
            "idempotency_key",
            format!("must be at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
        ));
    }
    if !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(Error::invalid(
            "idempotency_key",
            "must be printable ASCII characters",
        ));
    }
    Ok(())
}

/// The SHA-256, in lowercase hex, of the canonical JSON of `request`: object
/// members sorted by key at every level, no insignificant whitespace. Two
/// requests that differ only in the order of their members or in spacing have
/// the same hash.
pub fn request_hash(request: &Value) -> String {
    let mut text = String::new();
    canonical_json(request, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Writes `value` as canonical JSON into `out`.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// What an idempotent submission answered: the job it created, or the job an
/// earlier use of its key created.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Submitted {
    /// The submission created this job.
    Created(Job),
    /// The key (or, for a child, the child key) had created this job already.
    Existing(Job),
}

impl Submitted {
    /// The job, new or existing.
    pub fn job(&self) -> &Job {
        match self {
            Submitted::Created(job) | Submitted::Existing(job) => job,
        }
    }

    /// The job, new or existing.
    pub fn into_job(self) -> Job {
        match self {
            Submitted::Created(job) | Submitted::Existing(job) => job,
        }
    }

    /// Whether this call created the job.
    pub fn created(&self) -> bool {
        matches!(self, Submitted::Created(_))
    }
}

impl Engine {
    /// Like [`Engine::submit`], keyed: the first submission with `key` creates
    /// the job; while the key is kept (for
    /// [`Limits::idempotency_ttl`](crate::Limits::idempotency_ttl)), the same
    /// key with the same `request` answers that job
    /// ([`Submitted::Existing`]), and with a different one
    /// [`Error::IdempotencyKeyReused`]. `request` is what the client sent
    /// (its JSON body), compared by [`request_hash`]; `req` is the
    /// submission it decodes to. A bad key is [`Error::Invalid`] naming
    /// `idempotency_key`; a submission refused by validation stores nothing,
    /// so the key stays free.
    pub async fn submit_idempotent(
        &self,
        owner: &Owner,
        req: Submit,
        key: &str,
        request: &Value,
    ) -> Result<Submitted> {
        let key = IdempotencyKey::new(key, request, self.limits().idempotency_ttl)?;
        let new = self.validate(owner, req)?;
        self.check_webhook(&new).await?;
        match self.store().create_job_idempotent(new, &key).await? {
            crate::Created::New(changed) => {
                self.submitted(&changed).await;
                Ok(Submitted::Created(changed.job))
            }
            crate::Created::Existing(job) => Ok(Submitted::Existing(job)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_ignores_member_order_and_spacing() {
        let a: Value = serde_json::from_str(
            r#"{"prompt": "x", "params": {"b": 1, "a": [1, {"z": null, "y": "é"}]}}"#,
        )
        .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"params":{"a":[1,{"y":"é","z":null}],"b":1},"prompt":"x"}"#)
                .unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        let c = json!({"prompt": "x", "params": {"b": 2, "a": [1, {"z": null, "y": "é"}]}});
        assert_ne!(request_hash(&a), request_hash(&c));
        // Array order matters.
        assert_ne!(request_hash(&json!([1, 2])), request_hash(&json!([2, 1])));
        assert_eq!(request_hash(&json!({})).len(), 64);
    }

    #[test]
    fn keys_are_checked() {
        let ttl = Duration::from_secs(1);
        let body = json!({});
        assert!(IdempotencyKey::new("a", &body, ttl).is_ok());
        assert!(IdempotencyKey::new("k".repeat(255), &body, ttl).is_ok());
        for bad in [String::new(), "k".repeat(256), "a\tb".into(), "é".into()] {
            match IdempotencyKey::new(bad.clone(), &body, ttl) {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "idempotency_key"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
