//! [`JwtAuth`]: bearer JWTs signed with HS256, RS256 or ES256.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use projectengine_core::Owner;
use serde::{Deserialize, Serialize};

use super::{Agent, AgentAuthenticator, AuthError, Authenticator};

/// The shortest HS256 secret accepted, in bytes (the hash's output size).
const MIN_SECRET_BYTES: usize = 32;

/// Why a [`JwtAuth`] could not be built, or could not mint a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// The HS256 secret is shorter than 32 bytes.
    #[error("the HS256 secret must be at least {MIN_SECRET_BYTES} bytes")]
    SecretTooShort,
    /// The PEM does not hold a public key of the expected type.
    #[error("bad {expected} public key: {reason}")]
    BadKey {
        /// `RSA` or `EC P-256`.
        expected: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// [`JwtAuth::public_key_pem`] supports RS256 and ES256 only.
    #[error("{0:?} is not supported with a public key; use RS256 or ES256")]
    UnsupportedAlgorithm(Algorithm),
    /// Only an HS256 authenticator holds what it takes to sign.
    #[error("minting needs an HS256 secret; this authenticator only verifies")]
    CannotMint,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The claims read from a verified token (the library checks the others).
#[derive(Debug, Deserialize)]
struct Subject {
    sub: String,
    /// `agent` for an agent token; absent for a user's.
    #[serde(default)]
    role: Option<String>,
    /// The kinds an agent token may serve.
    #[serde(default)]
    kinds: Vec<String>,
}

/// The `role` claim of an agent token.
const AGENT_ROLE: &str = "agent";

/// The claims of a minted token.
#[derive(Debug, Serialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    kinds: Vec<String>,
}

/// Verifies bearer JWTs: `sub` is the [`Owner`]; `exp` is required and checked,
/// `nbf` is checked when present, `iss` and `aud` when configured.
///
/// The algorithm is pinned to the key: an HS256 secret accepts only HS256, an
/// RSA public key only RS256, an EC P-256 public key only ES256. So `alg: none`
/// and key confusion (an HS256 token "signed" with the RSA public key) are
/// refused.
///
/// ```
/// use std::time::Duration;
/// use projectengine_http::{Authenticator, JwtAuth};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let auth = JwtAuth::hs256("a development secret of 32 bytes or more").unwrap();
/// let token = auth.mint("alice", Duration::from_secs(3600)).unwrap();
/// let owner = auth.authenticate_token(&token).await.unwrap();
/// assert_eq!(owner.as_str(), "alice");
/// # }
/// ```
#[derive(Clone)]
pub struct JwtAuth {
    key: DecodingKey,
    validation: Validation,
    /// Present only for HS256: what [`JwtAuth::mint`] signs with.
    signer: Option<EncodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("algorithms", &self.validation.algorithms)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtAuth {
    /// Verifies (and can mint) HS256 tokens with a shared secret of at least 32 bytes.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, JwtConfigError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(JwtConfigError::SecretTooShort);
        }
        Ok(Self::with_key(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
            Some(EncodingKey::from_secret(secret)),
        ))
    }

    /// Verifies RS256 tokens with an RSA public key in PEM (`PUBLIC KEY` or
    /// `RSA PUBLIC KEY`).
    pub fn rs256_pem(public_key: &[u8]) -> Result<Self, JwtConfigError> {
        let key = DecodingKey::from_rsa_pem(public_key).map_err(|e| JwtConfigError::BadKey {
            expected: "RSA",
            reason: e.to_string(),
        })?;
        Ok(Self::with_key(key, Algorithm::RS256, None))
    }

    /// Verifies ES256 tokens with an EC P-256 public key in PEM (`PUBLIC KEY`).
    pub fn es256_pem(public_key: &[u8]) -> Result<Self, JwtConfigError> {
        let key = DecodingKey::from_ec_pem(public_key).map_err(|e| JwtConfigError::BadKey {
            expected: "EC P-256",
            reason: e.to_string(),
        })?;
        Ok(Self::with_key(key, Algorithm::ES256, None))
    }

    /// Verifies tokens of `algorithm` with a public key in PEM: RSA for
    /// [`Algorithm::RS256`], EC P-256 for [`Algorithm::ES256`]. The same as
    /// [`JwtAuth::rs256_pem`] or [`JwtAuth::es256_pem`], chosen by a value read
    /// from configuration.
    ///
    /// ```
    /// use projectengine_http::{JwtAuth, JwtConfigError};
    /// use jsonwebtoken::Algorithm;
    ///
    /// let err = JwtAuth::public_key_pem(Algorithm::HS256, b"").unwrap_err();
    /// assert!(matches!(err, JwtConfigError::UnsupportedAlgorithm(Algorithm::HS256)));
    /// ```
    pub fn public_key_pem(algorithm: Algorithm, public_key: &[u8]) -> Result<Self, JwtConfigError> {
        match algorithm {
            Algorithm::RS256 => Self::rs256_pem(public_key),
            Algorithm::ES256 => Self::es256_pem(public_key),
            other => Err(JwtConfigError::UnsupportedAlgorithm(other)),
        }
    }

    fn with_key(key: DecodingKey, alg: Algorithm, signer: Option<EncodingKey>) -> Self {
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Without a configured audience, a token's `aud` is not checked.
        validation.validate_aud = false;
        validation.leeway = 30;
        Self {
            key,
            validation,
            signer,
            issuer: None,
            audience: None,
        }
    }

    /// Requires `iss` to be `issuer` (and puts it in minted tokens).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        self.validation.set_issuer(&[&issuer]);
        self.validation
            .required_spec_claims
            .insert("iss".to_owned());
        self.issuer = Some(issuer);
        self
    }

    /// Requires `aud` to contain `audience` (and puts it in minted tokens).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        let audience = audience.into();
        self.validation.set_audience(&[&audience]);
        self.validation.validate_aud = true;
        self.validation
            .required_spec_claims
            .insert("aud".to_owned());
        self.audience = Some(audience);
        self
    }

    /// Tolerated clock skew for `exp` and `nbf` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// Mints an HS256 token for `sub`, valid for `ttl` from now, carrying the
    /// configured issuer and audience. For development and tests; only an
    /// authenticator built with [`JwtAuth::hs256`] can mint.
    pub fn mint(&self, sub: &str, ttl: Duration) -> Result<String, JwtConfigError> {
        let signer = self.signer.as_ref().ok_or(JwtConfigError::CannotMint)?;
        let now = unix_now();
        let claims = Claims {
            sub: sub.to_owned(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            role: None,
            kinds: Vec::new(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, signer)
            .map_err(|e| JwtConfigError::Signing(e.to_string()))
    }

    /// Mints an HS256 agent token for the agent `name`, serving `kinds`,
    /// valid for `ttl` from now: a token with the `agent` role, which the
    /// agent routes accept and every user route refuses.
    pub fn mint_agent(
        &self,
        name: &str,
        kinds: &[String],
        ttl: Duration,
    ) -> Result<String, JwtConfigError> {
        let signer = self.signer.as_ref().ok_or(JwtConfigError::CannotMint)?;
        let now = unix_now();
        let claims = Claims {
            sub: name.to_owned(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            role: Some(AGENT_ROLE),
            kinds: kinds.to_vec(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, signer)
            .map_err(|e| JwtConfigError::Signing(e.to_string()))
    }

    fn verify(&self, token: &str) -> Result<Subject, AuthError> {
        let data = jsonwebtoken::decode::<Subject>(token, &self.key, &self.validation)
            .map_err(|e| map_error(e.kind()))?;
        if data.claims.sub.trim().is_empty() {
            return Err(AuthError::invalid("empty subject"));
        }
        Ok(data.claims)
    }
}

#[async_trait]
impl AgentAuthenticator for JwtAuth {
    async fn authenticate_agent(&self, token: &str) -> Result<Agent, AuthError> {
        let claims = self.verify(token)?;
        if claims.role.as_deref() != Some(AGENT_ROLE) {
            return Err(AuthError::invalid("not an agent token"));
        }
        if claims.kinds.is_empty() {
            return Err(AuthError::invalid("an agent token must name its kinds"));
        }
        Ok(Agent {
            name: claims.sub,
            kinds: claims.kinds,
        })
    }
}

#[async_trait]
impl Authenticator for JwtAuth {
    async fn authenticate_token(&self, token: &str) -> Result<Owner, AuthError> {
        let claims = self.verify(token)?;
        // An agent's token, or an attempt's, speaks for no user. (Other
        // roles an identity provider may put in its tokens are not ours.)
        if matches!(claims.role.as_deref(), Some(AGENT_ROLE | "attempt")) {
            return Err(AuthError::invalid("not a user token"));
        }
        Ok(Owner::new(claims.sub))
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::invalid("not valid yet (nbf)"),
        ErrorKind::InvalidSignature => AuthError::invalid("bad signature"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::invalid("algorithm not accepted")
        }
        ErrorKind::InvalidIssuer => AuthError::invalid("wrong issuer"),
        ErrorKind::InvalidAudience => AuthError::invalid("wrong audience"),
        ErrorKind::MissingRequiredClaim(c) => AuthError::invalid(format!("missing claim `{c}`")),
        ErrorKind::InvalidClaimFormat(c) => AuthError::invalid(format!("malformed claim `{c}`")),
        _ => AuthError::invalid("malformed token"),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
