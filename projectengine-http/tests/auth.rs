//! Authentication: missing, malformed, expired and forged tokens; algorithm
//! pinning; issuer and audience; a custom authenticator.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use common::{TestApp, SECRET};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use projectengine_core::{Engine, Owner, Registry, StubOrchestrator};
use projectengine_http::{router, AuthError, Authenticator, JwtAuth, JwtConfigError};
use serde_json::{json, Value};
use tower::ServiceExt;

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("keys/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("keys/ec_public.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600, "iat": now()})
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn rs(claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        claims,
    )
}

fn es(claims: &Value) -> String {
    sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        claims,
    )
}

fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn engine() -> Engine {
    Engine::in_memory(Registry::new().register("stub", StubOrchestrator::default()))
}

/// GET /api/jobs/ with `Authorization: Bearer <token>`; answers the status and body.
async fn list_with(app: &Router, token: Option<&str>) -> (StatusCode, Value, Option<String>) {
    let mut req = Request::builder().uri("/api/jobs/");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        challenge,
    )
}

async fn assert_refused(app: &Router, token: &str, why: &str) {
    let (status, body, challenge) = list_with(app, Some(token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{why}");
    assert_eq!(challenge.as_deref(), Some("Bearer"), "{why}");
}

async fn assert_accepted(app: &Router, token: &str, why: &str) {
    let (status, body, _) = list_with(app, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{why}: {body}");
}

#[tokio::test]
async fn every_protected_route_needs_a_token() {
    let app = TestApp::idle();
    let id = projectengine_core::JobId::new();
    let routes = [
        (Method::POST, "/api/jobs/".to_owned()),
        (Method::GET, "/api/jobs/".to_owned()),
        (Method::GET, format!("/api/jobs/{id}/")),
        (Method::POST, format!("/api/jobs/{id}/cancel/")),
        (Method::POST, format!("/api/jobs/{id}/retry/")),
        (Method::GET, format!("/api/jobs/{id}/events/")),
        (Method::GET, format!("/api/jobs/{id}/stream/")),
        (Method::GET, "/api/apps/".to_owned()),
        (Method::GET, format!("/api/apps/{id}/")),
        (Method::GET, format!("/api/apps/by-job/{id}/")),
        (Method::GET, format!("/ws/jobs/{id}/")),
    ];
    for (method, uri) in routes {
        let r = app.call(method.clone(), &uri, None, None).await;
        assert_eq!(
            r.error(StatusCode::UNAUTHORIZED),
            "unauthorized",
            "{method} {uri}"
        );
        assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
        let r = app.call(method.clone(), &uri, Some("garbage"), None).await;
        assert_eq!(
            r.error(StatusCode::UNAUTHORIZED),
            "unauthorized",
            "{method} {uri}"
        );
    }
    // The open routes stay open.
    for uri in ["/health", "/ready", "/metrics", "/openapi.json", "/docs"] {
        let r = app.call(Method::GET, uri, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn hs256_refuses_bad_expired_immature_and_forged_tokens() {
    let auth = JwtAuth::hs256(SECRET).unwrap().leeway(Duration::ZERO);
    let app = router(engine(), auth.clone());
    assert_accepted(&app, &hs(&claims("alice")), "valid").await;
    assert_accepted(
        &app,
        &auth.mint("alice", Duration::from_secs(60)).unwrap(),
        "minted",
    )
    .await;

    let (status, body, challenge) = list_with(&app, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["message"], "missing bearer token");
    assert_eq!(challenge.as_deref(), Some("Bearer"));

    let expired = hs(&json!({"sub": "alice", "exp": now() - 120}));
    let (status, body, _) = list_with(&app, Some(&expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["message"], "token expired");

    assert_refused(
        &app,
        &hs(&json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 300})),
        "nbf in the future",
    )
    .await;
    assert_refused(&app, &hs(&json!({"sub": "alice"})), "no exp").await;
    assert_refused(&app, &hs(&json!({"exp": now() + 600})), "no sub").await;
    assert_refused(
        &app,
        &hs(&json!({"sub": "", "exp": now() + 600})),
        "empty sub",
    )
    .await;
    assert_refused(&app, "not.a.token", "garbage").await;
    let other = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret, also thirty-two bytes long"),
        &claims("alice"),
    );
    assert_refused(&app, &other, "wrong secret").await;
    assert_refused(&app, &rs(&claims("alice")), "RS256 where HS256 is pinned").await;
    let hs512 = sign(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &claims("alice"),
    );
    assert_refused(&app, &hs512, "HS512 where HS256 is pinned").await;

    // alg: none, unsigned (the hand-rolled encoder is checked first).
    assert_eq!(b64url(b"hello"), "aGVsbG8");
    assert_eq!(b64url(b"\xfb\xff"), "-_8");
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64url(claims("alice").to_string().as_bytes());
    assert_refused(&app, &format!("{header}.{payload}."), "alg none").await;
    let tampered = {
        let good = hs(&claims("alice"));
        let sig = good.rsplit('.').next().unwrap().to_owned();
        let payload = b64url(claims("mallory").to_string().as_bytes());
        let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        format!("{header}.{payload}.{sig}")
    };
    assert_refused(&app, &tampered, "payload swapped under a valid signature").await;

    // Not the Bearer scheme.
    let req = Request::builder()
        .uri("/api/jobs/")
        .header(
            header::AUTHORIZATION,
            format!("Basic {}", hs(&claims("alice"))),
        )
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rs256_accepts_its_key_and_refuses_key_confusion() {
    let app = router(engine(), JwtAuth::rs256_pem(RSA_PUBLIC).unwrap());
    assert_accepted(&app, &rs(&claims("alice")), "RS256").await;
    // The classic confusion: HS256 "signed" with the RSA public key as the secret.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC),
        &claims("alice"),
    );
    assert_refused(&app, &confused, "HS256 with the public key as secret").await;
    assert_refused(&app, &es(&claims("alice")), "ES256 where RS256 is pinned").await;
    assert_refused(&app, &hs(&claims("alice")), "HS256 where RS256 is pinned").await;
    assert_refused(
        &app,
        &rs(&json!({"sub": "alice", "exp": now() - 3600})),
        "expired",
    )
    .await;
}

#[tokio::test]
async fn es256_accepts_its_key_only() {
    let app = router(engine(), JwtAuth::es256_pem(EC_PUBLIC).unwrap());
    assert_accepted(&app, &es(&claims("alice")), "ES256").await;
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(EC_PUBLIC),
        &claims("alice"),
    );
    assert_refused(&app, &confused, "HS256 with the public key as secret").await;
    assert_refused(&app, &rs(&claims("alice")), "RS256 where ES256 is pinned").await;
}

#[tokio::test]
async fn a_public_key_is_pinned_to_the_algorithm_it_is_given() {
    let rs_app = router(
        engine(),
        JwtAuth::public_key_pem(Algorithm::RS256, RSA_PUBLIC).unwrap(),
    );
    assert_accepted(&rs_app, &rs(&claims("alice")), "RS256").await;
    assert_refused(
        &rs_app,
        &es(&claims("alice")),
        "ES256 where RS256 is pinned",
    )
    .await;
    let es_app = router(
        engine(),
        JwtAuth::public_key_pem(Algorithm::ES256, EC_PUBLIC).unwrap(),
    );
    assert_accepted(&es_app, &es(&claims("alice")), "ES256").await;
    assert_refused(
        &es_app,
        &rs(&claims("alice")),
        "RS256 where ES256 is pinned",
    )
    .await;
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let auth = JwtAuth::hs256(SECRET)
        .unwrap()
        .issuer("https://issuer.example")
        .audience("projectengine");
    let app = router(engine(), auth.clone());
    let good = json!({"sub": "a", "exp": now() + 600, "iss": "https://issuer.example", "aud": "projectengine"});
    assert_accepted(&app, &hs(&good), "iss and aud match").await;
    let list_aud = json!({"sub": "a", "exp": now() + 600, "iss": "https://issuer.example", "aud": ["x", "projectengine"]});
    assert_accepted(&app, &hs(&list_aud), "aud list containing ours").await;
    assert_accepted(
        &app,
        &auth.mint("a", Duration::from_secs(60)).unwrap(),
        "minted carries iss and aud",
    )
    .await;
    for (claims, why) in [
        (
            json!({"sub": "a", "exp": now() + 600, "iss": "https://evil.example", "aud": "projectengine"}),
            "wrong iss",
        ),
        (
            json!({"sub": "a", "exp": now() + 600, "aud": "projectengine"}),
            "no iss",
        ),
        (
            json!({"sub": "a", "exp": now() + 600, "iss": "https://issuer.example", "aud": "other"}),
            "wrong aud",
        ),
        (
            json!({"sub": "a", "exp": now() + 600, "iss": "https://issuer.example"}),
            "no aud",
        ),
    ] {
        assert_refused(&app, &hs(&claims), why).await;
    }
}

#[test]
fn configuration_errors() {
    assert!(matches!(
        JwtAuth::hs256("short"),
        Err(JwtConfigError::SecretTooShort)
    ));
    assert!(matches!(
        JwtAuth::rs256_pem(b"not a pem"),
        Err(JwtConfigError::BadKey { .. })
    ));
    assert!(matches!(
        JwtAuth::es256_pem(RSA_PUBLIC),
        Err(JwtConfigError::BadKey { .. })
    ));
    assert!(matches!(
        JwtAuth::public_key_pem(Algorithm::ES256, RSA_PUBLIC),
        Err(JwtConfigError::BadKey { .. })
    ));
    for alg in [Algorithm::HS256, Algorithm::RS512, Algorithm::EdDSA] {
        assert!(matches!(
            JwtAuth::public_key_pem(alg, RSA_PUBLIC),
            Err(JwtConfigError::UnsupportedAlgorithm(a)) if a == alg
        ));
    }
    let rs = JwtAuth::rs256_pem(RSA_PUBLIC).unwrap();
    assert!(matches!(
        rs.mint("alice", Duration::from_secs(1)),
        Err(JwtConfigError::CannotMint)
    ));
}

/// An application's own scheme: an API key header, or the key as a bearer token.
struct ApiKeys;

#[async_trait]
impl Authenticator for ApiKeys {
    async fn authenticate_token(&self, token: &str) -> Result<Owner, AuthError> {
        match token {
            "key-alice" => Ok(Owner::new("alice")),
            "key-down" => Err(AuthError::Unavailable("directory down".into())),
            _ => Err(AuthError::invalid("unknown key")),
        }
    }

    async fn authenticate(&self, parts: &Parts) -> Result<Owner, AuthError> {
        let key = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Missing)?;
        self.authenticate_token(key).await
    }
}

#[tokio::test]
async fn an_application_can_bring_its_own_authenticator() {
    let app = router(engine(), ApiKeys);
    let call = |key: Option<&'static str>| {
        let app = app.clone();
        async move {
            let mut req = Request::builder()
                .method(Method::POST)
                .uri("/api/jobs/")
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(k) = key {
                req = req.header("x-api-key", k);
            }
            let res = app
                .oneshot(req.body(Body::from(r#"{"prompt":"x"}"#)).unwrap())
                .await
                .unwrap();
            res.status()
        }
    };
    assert_eq!(call(Some("key-alice")).await, StatusCode::CREATED);
    assert_eq!(call(Some("key-bob")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(call(None).await, StatusCode::UNAUTHORIZED);
    // The authenticator's own backend failing is 503, not 401.
    assert_eq!(
        call(Some("key-down")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
