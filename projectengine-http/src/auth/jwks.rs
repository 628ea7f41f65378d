//! Verification keys fetched from a JWKS URL (RFC 7517), as identity
//! providers publish them: cached, refreshed when a token names a key the
//! cache does not hold, never fetched more often than a set interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::jwt::JwtConfigError;
use super::AuthError;

/// Where a [`JwtAuth`](super::JwtAuth) gets its keys from: a JWKS URL, and how
/// often it may fetch it.
///
/// ```
/// use std::time::Duration;
/// use projectengine_http::{JwksConfig, JwtAuth};
///
/// let auth = JwtAuth::jwks(
///     JwksConfig::new("https://id.example.com/.well-known/jwks.json")
///         .min_refresh(Duration::from_secs(60)),
/// )
/// .unwrap()
/// .issuer("https://id.example.com/")
/// .subject_claim("user_id");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JwksConfig {
    /// The URL of the key set (`http` or `https`).
    pub url: String,
    /// The shortest time between two fetches (default 30 s). A token naming an
    /// unknown `kid` refreshes the set only when the last fetch is at least this
    /// old, so forged `kid`s cannot make the server hammer the provider.
    pub min_refresh: Duration,
    /// Keys older than this are fetched again on the next token (default 10
    /// min), so a key the provider withdrew stops being accepted. The old
    /// keys stay in use while the provider cannot be reached.
    pub max_age: Duration,
    /// How long one fetch may take (default 10 s).
    pub timeout: Duration,
}

impl JwksConfig {
    /// The key set at `url`, with the default intervals.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            min_refresh: Duration::from_secs(30),
            max_age: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
        }
    }

    /// Sets [`JwksConfig::min_refresh`].
    pub fn min_refresh(mut self, interval: Duration) -> Self {
        self.min_refresh = interval;
        self
    }

    /// Sets [`JwksConfig::max_age`].
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Sets [`JwksConfig::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A verification key and the one algorithm it accepts.
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) key: Arc<DecodingKey>,
    pub(super) alg: Algorithm,
}

#[derive(Default)]
struct Cache {
    by_kid: HashMap<String, Entry>,
    /// The key a token without `kid` is checked with: only when the set
    /// holds exactly one key.
    only: Option<Entry>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

/// The cached key set of one JWKS URL.
pub(super) struct JwksKeys {
    config: JwksConfig,
    client: reqwest::Client,
    cache: Mutex<Cache>,
    /// Held while fetching: concurrent requests wait for one fetch instead of
    /// starting their own.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwksKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKeys")
            .field("url", &self.config.url)
            .field("min_refresh", &self.config.min_refresh)
            .field("max_age", &self.config.max_age)
            .finish_non_exhaustive()
    }
}

impl JwksKeys {
    pub(super) fn new(config: JwksConfig) -> Result<Self, JwtConfigError> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| JwtConfigError::BadJwksUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(JwtConfigError::BadJwksUrl(
                "the scheme must be http or https".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| JwtConfigError::BadJwksUrl(e.to_string()))?;
        Ok(Self {
            config,
            client,
            cache: Mutex::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key named `kid` (or the only key, for a token without `kid`),
    /// fetching the set when it is unknown or the cache has aged out, and the
    /// last fetch is older than [`JwksConfig::min_refresh`].
    pub(super) async fn key(&self, kid: Option<&str>) -> Result<Entry, AuthError> {
        if let (Some(entry), false) = self.lookup(kid) {
            return Ok(entry);
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let (found, stale) = self.lookup(kid);
        if let (Some(entry), false) = (&found, stale) {
            return Ok(entry.clone());
        }
        if !self.may_fetch() {
            return found.ok_or_else(|| self.missing());
        }
        if let Err(reason) = self.fetch().await {
            tracing::warn!(url = %self.config.url, %reason, "cannot fetch the JWKS");
            return found.ok_or_else(|| self.missing());
        }
        self.lookup(kid).0.ok_or_else(|| self.missing())
    }

    /// Why a key is not there: unknown, or no key set could be fetched yet.
    fn missing(&self) -> AuthError {
        let cache = self.cache.lock().expect("jwks cache");
        if cache.fetched_at.is_none() {
            AuthError::Unavailable("the signing keys cannot be fetched".into())
        } else {
            AuthError::invalid("unknown signing key (kid)")
        }
    }

    /// The cached key, and whether the cache is older than `max_age`.
    fn lookup(&self, kid: Option<&str>) -> (Option<Entry>, bool) {
        let cache = self.cache.lock().expect("jwks cache");
        let entry = match kid {
            Some(kid) => cache.by_kid.get(kid).cloned(),
            None => cache.only.clone(),
        };
        let stale = cache
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.config.max_age);
        (entry, stale)
    }

    /// Claims the right to fetch now: `false` when the last attempt (failed
    /// or not) is more recent than `min_refresh`.
    fn may_fetch(&self) -> bool {
        let mut cache = self.cache.lock().expect("jwks cache");
        if cache
            .attempted_at
            .is_some_and(|at| at.elapsed() < self.config.min_refresh)
        {
            return false;
        }
        cache.attempted_at = Some(Instant::now());
        true
    }

    async fn fetch(&self) -> Result<(), String> {
        let set: JwkSet = self
            .client
            .get(&self.config.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.without_url().to_string())?
            .json()
            .await
            .map_err(|e| format!("not a JWK set: {}", e.without_url()))?;
        let mut by_kid = HashMap::new();
        let mut usable = Vec::new();
        for jwk in &set.keys {
            match entry(jwk) {
                Ok(entry) => {
                    if let Some(kid) = &jwk.common.key_id {
                        by_kid.insert(kid.clone(), entry.clone());
                    }
                    usable.push(entry);
                }
                Err(reason) => tracing::debug!(
                    kid = jwk.common.key_id.as_deref().unwrap_or(""),
                    reason,
                    "JWKS key skipped"
                ),
            }
        }
        if usable.is_empty() {
            return Err("the set holds no usable signing key".into());
        }
        let only = (usable.len() == 1).then(|| usable.remove(0));
        let mut cache = self.cache.lock().expect("jwks cache");
        cache.by_kid = by_kid;
        cache.only = only;
        cache.fetched_at = Some(Instant::now());
        tracing::debug!(url = %self.config.url, keys = set.keys.len(), "JWKS fetched");
        Ok(())
    }
}

/// A JWK as a verification key with its algorithm: the `alg` it names, else
/// the usual one for its type (RS256 for RSA, ES256/ES384 for EC P-256/P-384,
/// EdDSA for Ed25519). Encryption keys and shared secrets are refused: a
/// published key set holds public signing keys only.
fn entry(jwk: &Jwk) -> Result<Entry, &'static str> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err("an encryption key");
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err("an unsupported curve"),
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => return Err("a shared secret"),
    };
    let alg = match jwk.common.key_algorithm {
        None => by_type,
        Some(named) => signing_algorithm(named).ok_or("an unsupported algorithm")?,
    };
    if alg.family() != by_type.family() {
        return Err("an algorithm of another key type");
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "malformed key parameters")?;
    Ok(Entry {
        key: Arc::new(key),
        alg,
    })
}

fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}
