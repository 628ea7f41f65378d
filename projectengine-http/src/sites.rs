//! Static hosting of deployed sites: the files of a job's App, served from
//! its artifacts to anyone with the URL, on an origin of their own.
//!
//! A job deploys a site by publishing an App whose payload has
//! `deploy.prefix` (e.g. `"site/"`): its artifacts under that prefix are then
//! served at `/sites/{job_id}/{path}` (`{path}` ending in `/`, or empty,
//! means its `index.html`). Nothing else of the job is reachable, and a job
//! without such an App has no site (404).
//!
//! # Isolation
//! Generated pages are untrusted. Serve [`sites_routes`] on a listener of
//! its own (another port is another origin), never merged into the API's
//! router. Every response also carries `Content-Security-Policy: sandbox …`
//! without `allow-same-origin`, so a page runs in an opaque origin even if
//! it were served next to the API: it can read no cookies or storage of any
//! origin, and the browser sends it no credentials. No response sets a
//! cookie or a CORS header.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use futures::TryStreamExt;
use projectengine_core::{artifact::validate_name, Engine, JobId};

/// The `Content-Security-Policy` of every site response: a sandbox that
/// allows scripts, forms, popups and dialogs, but not the page's own origin.
pub const SITE_CSP: &str = "sandbox allow-scripts allow-forms allow-popups allow-modals";

/// The site routes (`/sites/{job_id}/…`) for `engine`'s deployed Apps. Serve
/// them on their own listener (see the module docs).
pub fn sites_routes(engine: Engine) -> Router {
    Router::new()
        .route("/sites/{job_id}", get(redirect))
        .route("/sites/{job_id}/", get(index))
        .route("/sites/{job_id}/{*path}", get(file))
        .fallback(not_found)
        .with_state(engine)
}

async fn redirect(Path(job_id): Path<String>) -> Response {
    match job_id.parse::<JobId>() {
        Ok(id) => Redirect::permanent(&format!("/sites/{id}/")).into_response(),
        Err(_) => not_found().await,
    }
}

async fn index(State(engine): State<Engine>, Path(job_id): Path<String>) -> Response {
    serve(&engine, &job_id, "").await
}

async fn file(
    State(engine): State<Engine>,
    Path((job_id, path)): Path<(String, String)>,
) -> Response {
    serve(&engine, &job_id, &path).await
}

async fn not_found() -> Response {
    with_headers(
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "not found\n",
        )
            .into_response(),
    )
}

fn with_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SITE_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn serve(engine: &Engine, job_id: &str, path: &str) -> Response {
    let Ok(job_id) = job_id.parse::<JobId>() else {
        return not_found().await;
    };
    let app = match engine.store().app_by_job(job_id).await {
        Ok(Some(app)) => app,
        Ok(None) => return not_found().await,
        Err(e) => {
            tracing::warn!(error = %e, %job_id, "site: cannot read the app");
            return with_headers(StatusCode::SERVICE_UNAVAILABLE.into_response());
        }
    };
    let Some(prefix) = app.payload["deploy"]["prefix"].as_str() else {
        return not_found().await;
    };
    let mut name = format!("{prefix}{path}");
    if path.is_empty() || path.ends_with('/') {
        name.push_str("index.html");
    }
    if validate_name(&name).is_err() || !name.starts_with(prefix) {
        return not_found().await;
    }
    let reader = match engine.open_artifact(&app.owner, job_id, &name, None).await {
        Ok(reader) => reader,
        Err(projectengine_core::Error::NotFound { .. }) => return not_found().await,
        Err(e) => {
            tracing::warn!(error = %e, %job_id, %name, "site: cannot read the file");
            return with_headers(StatusCode::SERVICE_UNAVAILABLE.into_response());
        }
    };
    let content_type = HeaderValue::from_str(&reader.artifact.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let body = Body::from_stream(reader.body.map_err(std::io::Error::other));
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    if let Ok(len) = HeaderValue::from_str(&reader.artifact.size.to_string()) {
        response.headers_mut().insert(header::CONTENT_LENGTH, len);
    }
    with_headers(response)
}
