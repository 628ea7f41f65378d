//! The real server binary with tokens from an identity provider (a JWKS
//! stand-in on 127.0.0.1), the owner read from `user_id`, and CORS from the
//! environment.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::{client, http, Server};

const RSA_PRIVATE: &[u8] = include_bytes!("../projectengine-http/tests/keys/rsa_private.pem");
const ORIGIN: &str = "https://app.example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_tokens_with_user_id_and_cors_through_the_binary() {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("jwk");
    jwk.common.key_id = Some("k1".into());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let provider = Router::new().route(
        "/jwks.json",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let set = JwkSet {
                keys: vec![jwk.clone()],
            };
            async move { Json(set) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let jwks = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, provider).await });

    let server = Server::start(
        "all",
        &[
            ("PROJECTENGINE_JWT_SECRET", String::new()),
            (
                "PROJECTENGINE_JWT_JWKS_URL",
                format!("http://{jwks}/jwks.json"),
            ),
            ("PROJECTENGINE_JWT_SUBJECT_CLAIM", "user_id".into()),
            ("PROJECTENGINE_CORS_ORIGINS", ORIGIN.into()),
        ],
    );
    let addr = server.addr();

    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let token =
        jsonwebtoken::encode(&header, &json!({"user_id": "u-7", "exp": exp}), &key).expect("sign");
    let (status, job) = http(
        addr,
        "POST",
        "/api/jobs/",
        Some(&token),
        Some(&json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let path = format!("/api/jobs/{}/", job["id"].as_str().expect("id"));
    let (status, _) = http(addr, "GET", &path, Some(&token), None).await;
    assert_eq!(status, 200, "the owner is u-7");
    let other =
        jsonwebtoken::encode(&header, &json!({"user_id": "u-8", "exp": exp}), &key).expect("sign");
    let (status, _) = http(addr, "GET", &path, Some(&other), None).await;
    assert_eq!(status, 404, "another user_id is another owner");
    let no_user =
        jsonwebtoken::encode(&header, &json!({"sub": "u-7", "exp": exp}), &key).expect("sign");
    let (status, body) = http(addr, "GET", "/api/jobs/", Some(&no_user), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the key set is cached");

    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, format!("http://{addr}/api/jobs/"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .timeout(Duration::from_secs(10))
            .send()
    };
    let res = preflight(ORIGIN).await.expect("preflight");
    assert_eq!(
        res.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().expect("text")),
        Some(ORIGIN)
    );
    let res = preflight("https://other.example").await.expect("preflight");
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert!(res.headers().get("access-control-allow-methods").is_none());
}
