//! [`JwtAuth`]: bearer JWTs signed with HS256, RS256 or ES256, or with the
//! keys of a JWKS URL.

#[cfg(feature = "jwks")]
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use projectengine_core::Owner;
use serde_json::{Map, Value};

#[cfg(feature = "jwks")]
use super::jwks::{JwksConfig, JwksKeys};
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
    /// The JWKS URL is not an `http` or `https` URL, or no client could be
    /// built for it.
    #[error("bad JWKS URL: {0}")]
    BadJwksUrl(String),
    /// The subject claim's name is empty.
    #[error("the subject claim must be named")]
    EmptySubjectClaim,
}

/// The `role` claim of an agent token (an attempt token's is `attempt`).
const AGENT_ROLE: &str = "agent";

/// Verifies bearer JWTs: the subject claim (`sub` unless
/// [`JwtAuth::subject_claim`] names another, such as `user_id`) is the
/// [`Owner`]; `exp` is required and checked, `nbf` is checked when present,
/// `iss` and `aud` when configured.
///
/// The algorithm is pinned to the key: an HS256 secret accepts only HS256, an
/// RSA public key only RS256, an EC P-256 public key only ES256, a key of a
/// JWKS ([`JwtAuth::jwks`]) only the algorithm its JWK names (or the usual one
/// for its type). So `alg: none` and key confusion (an HS256 token "signed"
/// with the RSA public key) are refused.
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
    keys: Keys,
    /// For a JWKS, a template whose algorithm is set per key.
    validation: Validation,
    /// Present only for HS256: what [`JwtAuth::mint`] signs with.
    signer: Option<EncodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    subject_claim: String,
}

/// Where the verification key comes from.
#[derive(Clone)]
enum Keys {
    /// One key, its algorithm in the validation.
    Static(DecodingKey),
    /// The keys of a JWKS URL, each with its own algorithm.
    #[cfg(feature = "jwks")]
    Jwks(Arc<JwksKeys>),
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("JwtAuth");
        match &self.keys {
            Keys::Static(_) => d.field("algorithms", &self.validation.algorithms),
            #[cfg(feature = "jwks")]
            Keys::Jwks(jwks) => d.field("jwks", jwks),
        };
        d.field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("subject_claim", &self.subject_claim)
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

    /// Verifies tokens with the keys published at a JWKS URL, as identity
    /// providers do. The set is fetched on the first token, cached, and
    /// fetched again when a token names a `kid` the cache does not hold or the
    /// cache is older than [`JwksConfig::max_age`], but never more often than
    /// [`JwksConfig::min_refresh`]. Each key accepts only the algorithm its JWK
    /// names (`alg`), else the usual one for its type: RS256 for RSA, ES256 for
    /// EC P-256, ES384 for P-384, EdDSA for Ed25519. A token without `kid` is
    /// checked with the set's only key, when it has just one. While no set could
    /// be fetched yet, tokens are answered with [`AuthError::Unavailable`].
    #[cfg(feature = "jwks")]
    pub fn jwks(config: JwksConfig) -> Result<Self, JwtConfigError> {
        let keys = JwksKeys::new(config)?;
        let mut auth = Self::with_key(DecodingKey::from_secret(&[]), Algorithm::RS256, None);
        auth.keys = Keys::Jwks(Arc::new(keys));
        Ok(auth)
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
            keys: Keys::Static(key),
            validation,
            signer,
            issuer: None,
            audience: None,
            subject_claim: "sub".to_owned(),
        }
    }

    /// Reads the owner from the claim `name` instead of `sub` (e.g. `user_id`);
    /// a token without it is refused. Minted tokens carry it under that name.
    ///
    /// ```
    /// use std::time::Duration;
    /// use projectengine_http::{Authenticator, JwtAuth};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let auth = JwtAuth::hs256("a development secret of 32 bytes or more")
    ///     .unwrap()
    ///     .subject_claim("user_id");
    /// let token = auth.mint("u-42", Duration::from_secs(60)).unwrap();
    /// assert_eq!(auth.authenticate_token(&token).await.unwrap().as_str(), "u-42");
    /// # }
    /// ```
    ///
    /// # Panics
    /// When `name` is empty; [`JwtAuth::try_subject_claim`] answers an error instead.
    pub fn subject_claim(self, name: impl Into<String>) -> Self {
        match self.try_subject_claim(name) {
            Ok(auth) => auth,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`JwtAuth::subject_claim`], with an error for an empty name.
    pub fn try_subject_claim(mut self, name: impl Into<String>) -> Result<Self, JwtConfigError> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(JwtConfigError::EmptySubjectClaim);
        }
        if name == "sub" {
            self.validation
                .required_spec_claims
                .insert("sub".to_owned());
        } else {
            // Checked below, by name: the library only knows the spec's claims.
            self.validation.required_spec_claims.remove("sub");
        }
        self.subject_claim = name;
        Ok(self)
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

    /// Mints an HS256 token for `sub` (under the subject claim), valid for
    /// `ttl` from now, carrying the configured issuer and audience. For
    /// development and tests; only an authenticator built with
    /// [`JwtAuth::hs256`] can mint.
    pub fn mint(&self, sub: &str, ttl: Duration) -> Result<String, JwtConfigError> {
        self.sign(sub, ttl, Map::new())
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
        self.mint_agent_for(name, kinds, &[], ttl)
    }

    /// Like [`JwtAuth::mint_agent`], for an agent that may claim only the
    /// jobs of `owners` (none: every owner's), named in its `owners` claim.
    ///
    /// ```
    /// use std::time::Duration;
    /// use projectengine_http::{AgentAuthenticator, JwtAuth};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let auth = JwtAuth::hs256("a development secret of 32 bytes or more").unwrap();
    /// let kinds = ["remote".to_owned()];
    /// let owners = ["alice".to_owned()];
    /// let token = auth
    ///     .mint_agent_for("desk", &kinds, &owners, Duration::from_secs(60))
    ///     .unwrap();
    /// let agent = auth.authenticate_agent(&token).await.unwrap();
    /// assert_eq!(agent.owners, ["alice"]);
    /// # }
    /// ```
    pub fn mint_agent_for(
        &self,
        name: &str,
        kinds: &[String],
        owners: &[String],
        ttl: Duration,
    ) -> Result<String, JwtConfigError> {
        let mut extra = Map::new();
        extra.insert("role".into(), AGENT_ROLE.into());
        extra.insert("kinds".into(), kinds.to_vec().into());
        if !owners.is_empty() {
            extra.insert("owners".into(), owners.to_vec().into());
        }
        self.sign(name, ttl, extra)
    }

    /// Signs `claims` with the subject, times, issuer and audience added.
    fn sign(
        &self,
        sub: &str,
        ttl: Duration,
        mut claims: Map<String, Value>,
    ) -> Result<String, JwtConfigError> {
        let signer = self.signer.as_ref().ok_or(JwtConfigError::CannotMint)?;
        let now = unix_now();
        claims.insert("exp".into(), now.saturating_add(ttl.as_secs()).into());
        claims.insert("iat".into(), now.into());
        if let Some(iss) = &self.issuer {
            claims.insert("iss".into(), iss.clone().into());
        }
        if let Some(aud) = &self.audience {
            claims.insert("aud".into(), aud.clone().into());
        }
        claims.insert(self.subject_claim.clone(), sub.into());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, signer)
            .map_err(|e| JwtConfigError::Signing(e.to_string()))
    }

    /// The claims of a token whose signature, times, issuer and audience
    /// hold (its key from the JWKS when there is one).
    async fn verify(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let claims = match &self.keys {
            Keys::Static(key) => {
                jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            }
            #[cfg(feature = "jwks")]
            Keys::Jwks(jwks) => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| map_error(e.kind()))?;
                let entry = jwks.key(header.kid.as_deref()).await?;
                let mut validation = self.validation.clone();
                validation.algorithms = vec![entry.alg];
                jsonwebtoken::decode::<Map<String, Value>>(token, &entry.key, &validation)
            }
        }
        .map_err(|e| map_error(e.kind()))?
        .claims;
        Ok(claims)
    }

    /// The subject claim of verified `claims`.
    fn subject(&self, claims: &Map<String, Value>) -> Result<String, AuthError> {
        let name = &self.subject_claim;
        let subject = match claims.get(name) {
            None | Some(Value::Null) => {
                return Err(AuthError::invalid(format!("missing claim `{name}`")))
            }
            Some(Value::String(s)) => s.clone(),
            // Some providers number their users.
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(AuthError::invalid(format!("malformed claim `{name}`"))),
        };
        if subject.trim().is_empty() {
            return Err(AuthError::invalid("empty subject"));
        }
        Ok(subject)
    }
}

#[async_trait]
impl AgentAuthenticator for JwtAuth {
    async fn authenticate_agent(&self, token: &str) -> Result<Agent, AuthError> {
        let claims = self.verify(token).await?;
        if claims.get("role").and_then(Value::as_str) != Some(AGENT_ROLE) {
            return Err(AuthError::invalid("not an agent token"));
        }
        let kinds = strings(&claims, "kinds")?;
        if kinds.is_empty() {
            return Err(AuthError::invalid("an agent token must name its kinds"));
        }
        let owners = strings(&claims, "owners")?;
        if owners.iter().any(|o| o.trim().is_empty()) {
            return Err(AuthError::invalid("malformed claim `owners`"));
        }
        Ok(Agent {
            name: self.subject(&claims)?,
            kinds,
            owners,
        })
    }
}

#[async_trait]
impl Authenticator for JwtAuth {
    async fn authenticate_token(&self, token: &str) -> Result<Owner, AuthError> {
        let claims = self.verify(token).await?;
        // An agent's token, or an attempt's, speaks for no user. (Other
        // roles an identity provider may put in its tokens are not ours.)
        if matches!(
            claims.get("role").and_then(Value::as_str),
            Some(AGENT_ROLE | "attempt")
        ) {
            return Err(AuthError::invalid("not a user token"));
        }
        Ok(Owner::new(self.subject(&claims)?))
    }
}

/// The claim `name` as a list of strings: empty when absent, an error when
/// it is something else.
fn strings(claims: &Map<String, Value>, name: &'static str) -> Result<Vec<String>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|k| k.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| AuthError::invalid(format!("malformed claim `{name}`"))),
        Some(_) => Err(AuthError::invalid(format!("malformed claim `{name}`"))),
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
