//! Remote agents against a deployment of several web processes whose users'
//! tokens come from an identity provider (a JWKS stand-in on 127.0.0.1): the
//! web processes share PROJECTENGINE_ATTEMPT_TOKEN_SECRET, so an attempt
//! claimed through one is carried on through any other.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::{deployment, http, migrate, server_bin, Server};

const RSA_PRIVATE: &[u8] = include_bytes!("../projectengine-http/tests/keys/rsa_private.pem");

/// Serves the key of [`RSA_PRIVATE`] as a JWKS; its URL.
async fn identity_provider() -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("key");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("jwk");
    jwk.common.key_id = Some("k1".into());
    let provider = Router::new().route(
        "/jwks.json",
        get(move || {
            let set = JwkSet {
                keys: vec![jwk.clone()],
            };
            async move { Json(set) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, provider).await });
    format!("http://{addr}/jwks.json")
}

/// A token the identity provider signed, with these claims.
fn signed(claims: Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("key");
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let mut claims = claims;
    claims["exp"] = exp.into();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_claimed_on_one_web_process_goes_on_through_another() {
    let Some(mut env) = deployment().await else {
        return;
    };
    migrate(&env);
    env.push(("PROJECTENGINE_JWT_SECRET", String::new()));
    env.push(("PROJECTENGINE_JWT_JWKS_URL", identity_provider().await));
    let mut shared = env.clone();
    shared.push((
        "PROJECTENGINE_ATTEMPT_TOKEN_SECRET",
        "the attempt secret every web process shares".into(),
    ));
    let one = Server::start("web", &shared);
    let two = Server::start("web", &shared);
    let user = signed(json!({"sub": "u-7"}));
    let agent = signed(json!({"sub": "desk", "role": "agent", "kinds": ["remote"]}));

    let (status, job) = http(
        one.addr(),
        "POST",
        "/api/jobs/",
        Some(&user),
        Some(&json!({"prompt": "x", "kind": "remote"})),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().expect("id").to_owned();
    let (status, context) = http(
        one.addr(),
        "POST",
        "/api/agent/v1/claim",
        Some(&agent),
        Some(&json!({"wait_s": 5})),
    )
    .await;
    assert_eq!(status, 200, "{context}");
    assert_eq!(context["job"]["id"], id.as_str());
    let attempt = context["attempt_token"].as_str().expect("attempt token");

    // Every later call of the attempt, through the other web process.
    let (status, body) = http(
        two.addr(),
        "POST",
        "/api/agent/v1/attempt/heartbeat",
        Some(attempt),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        two.addr(),
        "POST",
        "/api/agent/v1/attempt/events",
        Some(attempt),
        Some(&json!({"batch": 1, "events": [
            {"type": "stage", "data": {"stage": "WORKING"}},
            {"type": "log", "data": {"level": "info", "message": "hello from the agent"}}
        ]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        two.addr(),
        "POST",
        "/api/agent/v1/attempt/finish",
        Some(attempt),
        Some(&json!({"outcome": "succeeded"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, job) = http(
        one.addr(),
        "GET",
        &format!("/api/jobs/{id}/"),
        Some(&user),
        None,
    )
    .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["stage"], "WORKING", "{job}");

    // A web process signing with another secret cannot tell the attempts
    // of the others: why the secret must be shared.
    let mut other = env.clone();
    other.push((
        "PROJECTENGINE_ATTEMPT_TOKEN_SECRET",
        "another secret, of another deployment".into(),
    ));
    let three = Server::start("web", &other);
    let (status, job) = http(
        one.addr(),
        "POST",
        "/api/jobs/",
        Some(&user),
        Some(&json!({"prompt": "y", "kind": "remote"})),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let (status, context) = http(
        two.addr(),
        "POST",
        "/api/agent/v1/claim",
        Some(&agent),
        Some(&json!({"wait_s": 5})),
    )
    .await;
    assert_eq!(status, 200, "{context}");
    let attempt = context["attempt_token"].as_str().expect("attempt token");
    let (status, body) = http(
        three.addr(),
        "POST",
        "/api/agent/v1/attempt/heartbeat",
        Some(attempt),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = http(
        one.addr(),
        "POST",
        "/api/agent/v1/attempt/heartbeat",
        Some(attempt),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_web_process_with_no_secret_to_share_does_not_start() {
    let dir = std::env::temp_dir();
    let out = std::process::Command::new(server_bin())
        .arg("web")
        .env_clear()
        .current_dir(&dir)
        .env("PROJECTENGINE_BIND", "127.0.0.1:0")
        .env("PROJECTENGINE_JWT_JWKS_URL", "http://127.0.0.1:9/jwks.json")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:9/none")
        .env("REDIS_URL", "redis://127.0.0.1:9")
        .output()
        .expect("run the server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PROJECTENGINE_ATTEMPT_TOKEN_SECRET"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // A secret that is too short is named too.
    let out = std::process::Command::new(server_bin())
        .arg("web")
        .env_clear()
        .current_dir(&dir)
        .env("PROJECTENGINE_ATTEMPT_TOKEN_SECRET", "short")
        .output()
        .expect("run the server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PROJECTENGINE_ATTEMPT_TOKEN_SECRET"),
        "{stderr}"
    );
}
