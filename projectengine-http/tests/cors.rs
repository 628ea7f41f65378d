//! CORS over a real socket: a preflight from an allowed origin gets the
//! headers, from another origin none; without a policy, no CORS header at all.

mod common;

use std::net::SocketAddr;

use common::TestApp;
use projectengine_http::{Cors, HttpConfig};
use reqwest::{Method, Response};

const ALLOWED: &str = "https://app.example.com";

async fn preflight(addr: SocketAddr, origin: &str) -> Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("http://{addr}/api/jobs/"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight")
}

async fn get_from(addr: SocketAddr, origin: &str, token: &str) -> Response {
    reqwest::Client::new()
        .get(format!("http://{addr}/api/jobs/"))
        .header("origin", origin)
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
}

fn header<'a>(res: &'a Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().expect("text"))
}

fn cors_headers(res: &Response) -> Vec<String> {
    res.headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

#[tokio::test]
async fn an_allowed_origin_gets_the_headers_and_another_none() {
    let mut config = HttpConfig::default();
    config.cors = Some(Cors::parse(&[ALLOWED, "http://localhost:3000"], &[], &[]).expect("cors"));
    let app = TestApp::with_config(config);
    let addr = app.serve().await;

    let res = preflight(addr, ALLOWED).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin"), Some(ALLOWED));
    let methods = header(&res, "access-control-allow-methods").expect("methods");
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let headers = header(&res, "access-control-allow-headers").expect("headers");
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    assert_eq!(header(&res, "access-control-max-age"), Some("600"));
    assert_eq!(header(&res, "access-control-allow-credentials"), None);

    let res = preflight(addr, "https://evil.example").await;
    assert_eq!(cors_headers(&res), Vec::<String>::new(), "another origin");

    // The actual request: the origin echoed, the request id exposed.
    let token = app.token("alice");
    let res = get_from(addr, ALLOWED, &token).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "access-control-allow-origin"), Some(ALLOWED));
    let exposed = header(&res, "access-control-expose-headers").expect("expose");
    assert!(exposed.contains("x-request-id"), "{exposed}");
    let res = get_from(addr, "https://evil.example", &token).await;
    assert_eq!(res.status(), 200, "CORS is the browser's check, not auth");
    assert_eq!(header(&res, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn any_origin_with_a_wildcard() {
    let mut config = HttpConfig::default();
    config.cors = Some(Cors::parse(&["*"], &["GET"], &["*"]).expect("cors"));
    let app = TestApp::with_config(config);
    let addr = app.serve().await;
    let res = preflight(addr, "https://anywhere.example").await;
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&res, "access-control-allow-methods"), Some("GET"));
    assert_eq!(header(&res, "access-control-allow-headers"), Some("*"));
}

#[tokio::test]
async fn the_default_sends_no_cors_header() {
    let app = TestApp::new();
    let addr = app.serve().await;
    let res = preflight(addr, ALLOWED).await;
    assert_eq!(cors_headers(&res), Vec::<String>::new(), "preflight");
    let res = get_from(addr, ALLOWED, &app.token("alice")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(cors_headers(&res), Vec::<String>::new(), "request");
}
