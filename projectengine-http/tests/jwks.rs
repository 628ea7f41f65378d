//! Tokens issued elsewhere: keys from a JWKS served by a local identity
//! provider stand-in (axum on 127.0.0.1) that rotates its key mid-test and
//! counts its fetches; the subject read from another claim than `sub`.
#![cfg(feature = "jwks")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use projectengine_core::{Engine, Registry, StubOrchestrator};
use projectengine_http::{router, Authenticator, JwksConfig, JwtAuth};
use serde_json::{json, Value};
use tower::ServiceExt;

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const EC_PRIVATE: &[u8] = include_bytes!("keys/ec_private.pem");

/// The identity provider stand-in: serves `keys` at `/jwks.json` and counts
/// the requests.
#[derive(Clone, Default)]
struct Provider {
    keys: Arc<Mutex<Vec<Jwk>>>,
    hits: Arc<AtomicUsize>,
}

impl Provider {
    async fn serve(&self) -> SocketAddr {
        async fn jwks(State(p): State<Provider>) -> Json<JwkSet> {
            p.hits.fetch_add(1, Ordering::SeqCst);
            let keys = p.keys.lock().unwrap().clone();
            Json(JwkSet { keys })
        }
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn publish(&self, keys: Vec<Jwk>) {
        *self.keys.lock().unwrap() = keys;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A signing key and its public JWK named `kid`.
struct Key {
    kid: &'static str,
    alg: Algorithm,
    private: EncodingKey,
}

impl Key {
    fn rsa(kid: &'static str) -> Self {
        let private = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        Self {
            kid,
            alg: Algorithm::RS256,
            private,
        }
    }

    fn ec(kid: &'static str) -> Self {
        let private = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        Self {
            kid,
            alg: Algorithm::ES256,
            private,
        }
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.private, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.to_owned());
        jwk
    }

    /// A token signed with this key, its header naming `kid`.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.private).unwrap()
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.kid, claims)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600, "iss": "https://id.test/"})
}

fn app(auth: JwtAuth) -> Router {
    let engine = Engine::in_memory(Registry::new().register("stub", StubOrchestrator::default()));
    router(engine, auth)
}

/// GET /api/jobs/ with the token: the status and the error body.
async fn status(app: &Router, token: &str) -> (StatusCode, Value) {
    let req = Request::get("/api/jobs/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const MIN_REFRESH: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_rotated_key_is_fetched_and_forged_kids_fetch_at_most_once_per_interval() {
    let provider = Provider::default();
    let (old, new) = (Key::rsa("2024-rsa"), Key::ec("2025-ec"));
    provider.publish(vec![old.jwk()]);
    let addr = provider.serve().await;
    let auth =
        JwtAuth::jwks(JwksConfig::new(format!("http://{addr}/jwks.json")).min_refresh(MIN_REFRESH))
            .unwrap()
            .issuer("https://id.test/");
    let app = app(auth);
    // Signed beforehand: signing is slow in debug builds, and the checks
    // below must run within the refresh interval.
    let old_token = old.sign(&claims("alice"));
    let new_token = new.sign(&claims("bob"));
    let forged: Vec<String> = (0..20)
        .map(|i| new.sign_as(&format!("forged-{i}"), &claims("x")))
        .collect();
    let old_alg_new_kid = old.sign_as(new.kid, &claims("mallory"));

    // The first token fetches the set; the next ones use the cache.
    for _ in 0..3 {
        let (s, body) = status(&app, &old_token).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    assert_eq!(provider.hits(), 1, "one fetch for the first token");

    // Forged kids within the interval: refused, no fetch.
    for token in &forged {
        let (s, body) = status(&app, token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown signing key"));
    }
    assert_eq!(
        provider.hits(),
        1,
        "forged kids must not fetch within the interval"
    );

    // The provider rotates: the new key alone is published.
    provider.publish(vec![new.jwk()]);
    tokio::time::sleep(MIN_REFRESH + Duration::from_millis(100)).await;
    let (s, body) = status(&app, &new_token).await;
    assert_eq!(s, StatusCode::OK, "the new key after a refresh: {body}");
    assert_eq!(provider.hits(), 2, "the unknown kid refreshed the set once");

    // The withdrawn key is gone from the cache.
    let (s, _) = status(&app, &old_token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the rotated-out key");
    // A token naming the new kid but with the old algorithm (RS256 over the
    // EC key) is refused: the algorithm comes from the JWK.
    let (s, _) = status(&app, &old_alg_new_kid).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the JWK pins the algorithm");
    assert_eq!(provider.hits(), 2);

    // After the interval, a burst of concurrent forged kids fetches once.
    tokio::time::sleep(MIN_REFRESH + Duration::from_millis(100)).await;
    let burst = forged.iter().map(|token| {
        let (app, token) = (app.clone(), token.clone());
        tokio::spawn(async move { status(&app, &token).await.0 })
    });
    for s in futures::future::join_all(burst).await {
        assert_eq!(s.unwrap(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        provider.hits(),
        3,
        "one fetch per interval, whatever the burst"
    );
    let (s, _) = status(&app, &new_token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(provider.hits(), 3);
}

#[tokio::test]
async fn the_subject_comes_from_the_configured_claim() {
    let provider = Provider::default();
    let key = Key::rsa("k1");
    provider.publish(vec![key.jwk()]);
    let addr = provider.serve().await;
    let auth = JwtAuth::jwks(JwksConfig::new(format!("http://{addr}/jwks.json")))
        .unwrap()
        .subject_claim("user_id");

    let exp = now() + 600;
    let token = key.sign(&json!({"user_id": "u-42", "sub": "ignored", "exp": exp}));
    let owner = auth.authenticate_token(&token).await.unwrap();
    assert_eq!(owner.as_str(), "u-42");
    let numeric = key.sign(&json!({"user_id": 7, "exp": exp}));
    assert_eq!(
        auth.authenticate_token(&numeric).await.unwrap().as_str(),
        "7"
    );

    let app = app(auth);
    let (s, body) = status(&app, &token).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let without = key.sign(&json!({"sub": "alice", "exp": exp}));
    let (s, body) = status(&app, &without).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing claim `user_id`"),
        "{body}"
    );
    let (s, _) = status(&app, &key.sign(&json!({"user_id": ["a"], "exp": exp}))).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a subject that is not a string"
    );
    assert_eq!(provider.hits(), 1);
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable_not_unauthorized() {
    // A port nothing listens on.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let auth = JwtAuth::jwks(
        JwksConfig::new(format!("http://{addr}/jwks.json")).timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let key = Key::rsa("k1");
    let (s, body) = status(&app(auth), &key.sign(&claims("alice"))).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
}

#[test]
fn bad_urls_and_claims_are_configuration_errors() {
    assert!(JwtAuth::jwks(JwksConfig::new("not a url")).is_err());
    assert!(JwtAuth::jwks(JwksConfig::new("ftp://id.test/jwks.json")).is_err());
    let auth = JwtAuth::hs256("a development secret of 32 bytes or more").unwrap();
    assert!(auth.try_subject_claim(" ").is_err());
}
