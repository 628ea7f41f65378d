//! Attempt tokens: what a claim hands an agent, naming the attempt (job id
//! and attempt number, the fence) that its later calls write for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use projectengine_core::remote::RemoteAttempt;
use projectengine_core::{Fence, JobId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{AuthError, JwtConfigError};

/// The `role` claim of an attempt token.
const ATTEMPT_ROLE: &str = "attempt";

/// The shortest secret accepted, in bytes.
const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The agent.
    sub: String,
    role: String,
    job: Uuid,
    attempt: u32,
    kind: String,
    exp: u64,
    iat: u64,
}

/// Signs and verifies attempt tokens (HS256). The token is not what fences
/// a write — the store checks the attempt at every call — it only names the
/// attempt, so the server keeps no table of them.
#[derive(Clone)]
pub struct AttemptTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for AttemptTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptTokens").finish_non_exhaustive()
    }
}

impl AttemptTokens {
    /// Tokens signed with `secret` (at least 32 bytes; every web process of
    /// a deployment must share it).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, JwtConfigError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(JwtConfigError::SecretTooShort);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_aud = false;
        validation.leeway = 30;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// A token for the attempt `at` of `agent`, valid for `ttl`.
    pub fn issue(
        &self,
        agent: &str,
        at: &RemoteAttempt,
        ttl: Duration,
    ) -> Result<String, JwtConfigError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: agent.to_owned(),
            role: ATTEMPT_ROLE.to_owned(),
            job: at.fence.job_id.0,
            attempt: at.fence.attempt,
            kind: at.kind.clone(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| JwtConfigError::Signing(e.to_string()))
    }

    /// The attempt a token names.
    pub fn verify(&self, token: &str) -> Result<RemoteAttempt, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::invalid("not an attempt token"),
            })?;
        if data.claims.role != ATTEMPT_ROLE {
            return Err(AuthError::invalid("not an attempt token"));
        }
        Ok(RemoteAttempt {
            fence: Fence {
                job_id: JobId(data.claims.job),
                attempt: data.claims.attempt,
            },
            kind: data.claims.kind,
        })
    }
}
