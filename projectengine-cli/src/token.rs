//! Development tokens, minted locally as the bundled server's `token` role
//! does: an HS256 JWT `{sub, iat, exp, iss?, aud?}` signed with the secret the
//! server verifies with (`PROJECTENGINE_JWT_SECRET`). The server has no route
//! that mints tokens, and a server configured with a public key accepts no
//! token signed this way.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::error::{CliError, Result};

/// The shortest secret the server accepts, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// What to put in a token.
#[derive(Clone, Debug)]
pub struct TokenRequest<'a> {
    /// The owner.
    pub sub: &'a str,
    /// How long it is valid.
    pub ttl: Duration,
    /// The HS256 secret.
    pub secret: Option<&'a str>,
    /// `iss`, when the server requires one.
    pub issuer: Option<&'a str>,
    /// `aud`, when the server requires one.
    pub audience: Option<&'a str>,
}

/// A minted token and when it expires (seconds since the Unix epoch).
#[derive(Clone, Debug)]
pub struct Minted {
    /// The JWT.
    pub token: String,
    /// Its `exp`.
    pub expires_at: u64,
}

/// Mints a token; refuses a missing or short secret, as the server would.
pub fn mint(req: &TokenRequest<'_>) -> Result<Minted> {
    let secret = req.secret.filter(|s| !s.is_empty()).ok_or_else(|| {
        CliError::invalid(
            "PROJECTENGINE_JWT_SECRET",
            "must be set (or --secret given) to the secret the server verifies tokens with",
        )
    })?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(CliError::invalid(
            "PROJECTENGINE_JWT_SECRET",
            format!("must be at least {MIN_SECRET_BYTES} bytes, as the server requires"),
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let exp = now.saturating_add(req.ttl.as_secs().max(1));
    let claims = Claims {
        sub: req.sub,
        exp,
        iat: now,
        iss: req.issuer.filter(|s| !s.is_empty()),
        aud: req.audience.filter(|s| !s.is_empty()),
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| CliError::Protocol(format!("signing failed: {e}")))?;
    Ok(Minted {
        token,
        expires_at: exp,
    })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    const SECRET: &str = "a development secret of 32 bytes or more";

    fn req(secret: Option<&str>) -> TokenRequest<'_> {
        TokenRequest {
            sub: "alice",
            ttl: Duration::from_secs(3600),
            secret,
            issuer: Some("pe"),
            audience: None,
        }
    }

    #[test]
    fn a_minted_token_verifies_with_the_secret() {
        let minted = mint(&req(Some(SECRET))).unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&["pe"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &minted.token,
            &DecodingKey::from_secret(SECRET.as_bytes()),
            &v,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "alice");
        assert_eq!(data.claims["exp"], minted.expires_at);
        assert!(data.claims.get("aud").is_none());
        let wrong = jsonwebtoken::decode::<serde_json::Value>(
            &minted.token,
            &DecodingKey::from_secret(b"another secret of thirty-two bytes!!"),
            &v,
        );
        assert!(wrong.is_err());
    }

    #[test]
    fn a_missing_or_short_secret_is_refused() {
        assert!(matches!(mint(&req(None)), Err(CliError::Invalid { .. })));
        assert!(matches!(
            mint(&req(Some(""))),
            Err(CliError::Invalid { .. })
        ));
        assert!(matches!(
            mint(&req(Some("short"))),
            Err(CliError::Invalid { .. })
        ));
    }
}
