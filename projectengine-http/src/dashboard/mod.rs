//! The dashboard: a web page at `/ui/` to sign in, submit, watch, cancel and
//! retry jobs, and read their steps, log, App, artifacts and webhook
//! deliveries. Plain HTML, CSS and JavaScript modules embedded in the binary
//! (nothing from elsewhere, no build step); the page talks to the public API
//! only, with the bearer token the user signs in with.
//!
//! Every asset is served with a strict Content-Security-Policy (scripts from
//! this origin only, no inline script or style, no framing) and `nosniff`.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;

/// The policy of every dashboard response: nothing but this origin's scripts,
/// styles and API (its WebSocket included), no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// An embedded file: its name under `/ui/`, media type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("signin.js", JS),
    asset!("jobs.js", JS),
    asset!("new.js", JS),
    asset!("job.js", JS),
    asset!("overview.js", JS),
];

/// The dashboard's routes: `/ui` (redirected to `/ui/`), `/ui/` (the page)
/// and `/ui/{file}` (its scripts and style). Unauthenticated, like any static
/// file: the page asks for a token and sends it to the API.
pub fn dashboard_routes() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { serve("index.html") }))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>| async move { serve(&file) }),
        )
}

fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return ApiError::not_found("file").into_response();
    };
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // The assets change with the binary: revalidate rather than cache.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (StatusCode::OK, headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(path: &str) -> Response {
        dashboard_routes()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_and_its_assets_carry_the_policy() {
        for (path, kind) in [
            ("/ui/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
        ] {
            let res = get(path).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let h = res.headers();
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind));
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
    }

    #[tokio::test]
    async fn every_script_the_page_imports_is_served() {
        let body = get("/ui/").await.into_body().collect().await.unwrap();
        let page = String::from_utf8(body.to_bytes().to_vec()).unwrap();
        assert!(!page.contains("<script>"), "no inline script");
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for import in text.lines().filter_map(|l| l.split("from './").nth(1)) {
                let file = import.split('\'').next().unwrap();
                assert_eq!(get(&format!("/ui/{file}")).await.status(), 200, "{file}");
            }
        }
    }

    #[tokio::test]
    async fn an_unknown_file_is_a_json_404_and_ui_redirects() {
        let res = get("/ui/secret.txt").await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let res = get("/ui/../Cargo.toml").await;
        assert_ne!(res.status(), StatusCode::OK);
        let res = get("/ui").await;
        assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(res.headers()[header::LOCATION], "/ui/");
    }
}
