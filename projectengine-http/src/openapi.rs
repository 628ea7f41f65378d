//! The OpenAPI 3.1 document, generated from the handlers and DTOs, served at
//! `/openapi.json`, and a self-contained docs page at `/docs`.

use axum::extract::State;
use axum::response::{Html, IntoResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use projectengine_core::Limits;

use crate::agent;
use crate::routes::{
    apps, artifacts, audit, children, health, jobs, kinds, queues, review, schedules, sse,
    webhooks, workflow, ws,
};
use crate::state::ApiState;

/// The API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "projectEngine API",
        description = "Long-running, observable jobs: submit, watch live, resume, read the result."
    ),
    paths(
        jobs::create, jobs::list, jobs::detail, jobs::cancel, jobs::retry, jobs::events,
        review::approve, review::reject, review::rerun,
        children::list,
        workflow::batch, workflow::projects,
        kinds::list, queues::list, webhooks::list, audit::list,
        sse::stream, ws::watch,
        artifacts::list, artifacts::download,
        apps::list, apps::detail, apps::by_job,
        health::health, health::ready, health::metrics, openapi_json, docs,
        agent::claim, agent::heartbeat, agent::events, agent::artifact, agent::app, agent::children, agent::finish,
        schedules::create, schedules::list, schedules::detail, schedules::update,
        schedules::delete, schedules::runs,
    ),
    components(schemas(crate::dto::EventDto, crate::dto::Order, crate::dto::SseMessage, crate::error::ErrorBody)),
    modifiers(&BearerScheme),
    tags(
        (name = "jobs", description = "Submit, read, cancel, retry, review and rerun jobs; read their event log"),
        (name = "streams", description = "A job's events live, over WebSocket or Server-Sent Events"),
        (name = "artifacts", description = "The files jobs left behind"),
        (name = "apps", description = "The Apps jobs published"),
        (name = "agents", description = "The agent protocol: remote agents claim jobs and run their attempts (agent and attempt tokens)"),
        (name = "health", description = "Liveness, readiness and metrics (no auth)"),
        (name = "schedules", description = "Cron schedules that create jobs from a template; their next fire times and runs"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` (JWT) security scheme the operations refer to.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The generated document. `/openapi.json` serves it with the deployment's
/// kinds and the engine's configured [`Limits`] written in.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json(State(state): State<ApiState>) -> impl IntoResponse {
    let mut doc = match serde_json::to_value(openapi()) {
        Ok(doc) => doc,
        Err(e) => return crate::error::ApiError::internal(e.to_string()).into_response(),
    };
    // The kinds this deployment runs: the only values `kind` accepts.
    if let Some(kind) = doc.pointer_mut("/components/schemas/CreateJob/properties/kind") {
        let mut kinds: Vec<serde_json::Value> = state
            .engine()
            .registry()
            .kinds()
            .map(|k| serde_json::Value::String(k.to_owned()))
            .collect();
        kinds.push(serde_json::Value::Null);
        kind["enum"] = serde_json::Value::Array(kinds);
    }
    apply_limits(&mut doc, state.engine().limits());
    axum::Json(doc).into_response()
}

/// Writes the configured limits into the document: the bounds and defaults
/// of a submission, and the largest page.
fn apply_limits(doc: &mut serde_json::Value, limits: &Limits) {
    use serde_json::json;
    let create = "/components/schemas/CreateJob/properties";
    let mut set = |field: &str, values: serde_json::Value| {
        if let (Some(schema), serde_json::Value::Object(values)) =
            (doc.pointer_mut(&format!("{create}/{field}")), values)
        {
            for (k, v) in values {
                schema[k] = v;
            }
        }
    };
    set(
        "prompt",
        json!({
            "maxLength": limits.max_prompt_bytes,
            "description": format!(
                "What to do (1 to {} bytes of UTF-8, not only whitespace).",
                limits.max_prompt_bytes
            ),
        }),
    );
    set(
        "params",
        json!({
            "description": format!(
                "Parameters for the orchestrator: a JSON object of at most {} bytes serialized.",
                limits.max_params_bytes
            ),
        }),
    );
    let (lo, hi) = (*limits.priority.start(), *limits.priority.end());
    set(
        "priority",
        json!({
            "minimum": lo,
            "maximum": hi,
            "default": 0.clamp(lo, hi),
            "description": format!("Higher runs first, {lo} to {hi} (default 0)."),
        }),
    );
    let (lo, hi) = (*limits.max_attempts.start(), *limits.max_attempts.end());
    set(
        "max_attempts",
        json!({
            "minimum": lo,
            "maximum": hi,
            "default": limits.default_max_attempts,
            "description": format!(
                "Attempts allowed, {lo} to {hi} (default {}).",
                limits.default_max_attempts
            ),
        }),
    );
    let (lo, hi) = (
        limits.timeout.start().as_secs(),
        limits.timeout.end().as_secs(),
    );
    let default = limits.default_timeout.as_secs();
    set(
        "timeout_s",
        json!({
            "minimum": lo,
            "maximum": hi,
            "default": default,
            "description": format!(
                "Per-attempt timeout in seconds, {lo} to {hi} (default {default})."
            ),
        }),
    );
    // Page sizes: any number is accepted (more is clamped), so only the text
    // names the largest page.
    let page = format!(
        "Page size, 1–{max} (default 50; 0 means the default; more is taken as {max}).",
        max = limits.max_page
    );
    if let Some(serde_json::Value::Object(paths)) = doc.get_mut("paths") {
        for item in paths.values_mut() {
            let serde_json::Value::Object(ops) = item else {
                continue;
            };
            for op in ops.values_mut() {
                let Some(serde_json::Value::Array(params)) = op.get_mut("parameters") else {
                    continue;
                };
                for p in params {
                    if p["name"] == "limit" && p["in"] == "query" {
                        p["description"] = json!(page);
                    }
                }
            }
        }
    }
}

/// A page that fetches `/openapi.json` and lists the operations.
#[utoipa::path(
    get, path = "/docs", tag = "health",
    responses((status = 200, description = "An HTML page", content_type = "text/html", body = String))
)]
pub(crate) async fn docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>projectEngine API</title>
<style>
 body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #222; }
 h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
 .op { margin: .6rem 0; padding: .5rem .8rem; border-left: 4px solid #888; background: #f7f7f7; }
 .m { display: inline-block; min-width: 4.5rem; font-weight: bold; font-family: monospace; }
 .get { border-color: #2a7ae2; } .post { border-color: #2e9e44; } .delete { border-color: #c33; }
 code { font-family: monospace; }
 .lock { color: #a60; font-size: .85em; margin-left: .5rem; }
 .muted { color: #666; font-size: .9em; }
</style>
</head>
<body>
<h1 id="title">projectEngine API</h1>
<p id="desc" class="muted">Loading <code>openapi.json</code>…</p>
<div id="ops"></div>
<script>
(async () => {
  const url = location.pathname.replace(/\/docs\/?$/, "/openapi.json");
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text) e.textContent = text; return e; };
  try {
    const spec = await (await fetch(url)).json();
    document.getElementById("title").textContent = spec.info.title + " " + spec.info.version;
    document.getElementById("desc").textContent = (spec.info.description || "") + " OpenAPI " + spec.openapi + ": " + url;
    const byTag = {};
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const tag = (op.tags && op.tags[0]) || "other";
        (byTag[tag] = byTag[tag] || []).push({ path, method, op });
      }
    }
    const ops = document.getElementById("ops");
    for (const [tag, list] of Object.entries(byTag)) {
      ops.appendChild(el("h2", null, tag));
      for (const { path, method, op } of list) {
        const d = el("div", "op " + method);
        d.appendChild(el("span", "m", method.toUpperCase()));
        d.appendChild(el("code", null, path));
        if (op.security && op.security.length) d.appendChild(el("span", "lock", "bearer"));
        d.appendChild(el("div", null, op.summary || op.description || ""));
        const codes = Object.keys(op.responses || {}).join(", ");
        d.appendChild(el("div", "muted", "responses: " + codes));
        ops.appendChild(d);
      }
    }
  } catch (e) {
    document.getElementById("desc").textContent = "Could not load " + url + ": " + e;
  }
})();
</script>
</body>
</html>
"#;
