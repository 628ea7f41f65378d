//! The signing secret and Standard Webhooks signatures.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Error;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Shortest key accepted, in bytes (the specification asks for 24 to 64).
const MIN_KEY: usize = 24;
/// Longest key accepted, in bytes.
const MAX_KEY: usize = 64;

/// A signing secret: `whsec_` followed by the base64 of 24 to 64 random bytes.
///
/// Its `Debug` shows no key material.
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

impl Secret {
    /// Parses `whsec_<base64>`; anything else is [`Error::InvalidSecret`]
    /// saying what is wrong (never echoing the secret).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let encoded = s
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| Error::InvalidSecret(format!("must start with `{SECRET_PREFIX}`")))?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| Error::InvalidSecret(format!("must be `{SECRET_PREFIX}` then base64")))?;
        if !(MIN_KEY..=MAX_KEY).contains(&key.len()) {
            return Err(Error::InvalidSecret(format!(
                "its key must be {MIN_KEY} to {MAX_KEY} bytes, not {}",
                key.len()
            )));
        }
        Ok(Self { key })
    }

    /// A fresh random secret, in its `whsec_…` form: for a deployment to
    /// generate once and keep.
    pub fn generate() -> String {
        let key: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
            .take(32)
            .collect();
        format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
    }

    /// The `webhook-signature` header value for a message: `v1,` and the
    /// base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_secrets_are_refused() {
        for bad in [
            "",
            "secret",
            "whsec_",
            "whsec_not base64!",
            "whsec_c2hvcnQ=",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(
                matches!(Secret::parse(bad), Err(Error::InvalidSecret(_))),
                "{bad}"
            );
        }
        let generated = Secret::generate();
        assert!(Secret::parse(&generated).is_ok(), "{generated}");
        assert!(!format!("{:?}", Secret::parse(&generated).unwrap()).contains(&generated[6..]));
    }

    #[test]
    fn signs_like_the_specification_example() {
        // The example of the Standard Webhooks specification.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
