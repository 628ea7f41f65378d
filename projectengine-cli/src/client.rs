//! [`Api`]: the server's REST API as plain JSON, and the URLs of its streams.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde_json::Value;

use crate::error::{CliError, Result};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a JSON request may take, all told.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a download may go without receiving anything.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes left as they are in a path segment: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A client of one server, with the caller's token.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    /// The base URL, ending with `/`, so relative paths join beneath it.
    base: Url,
    token: Option<String>,
}

impl Api {
    /// A client of the server at `server` (`http://host:port`, maybe with a
    /// path prefix), authenticating with `token` when given.
    pub fn new(server: &str, token: Option<String>) -> Result<Self> {
        let mut base = Url::parse(server.trim())
            .map_err(|e| CliError::invalid("--server", format!("`{server}` is not a URL: {e}")))?;
        match base.scheme() {
            "http" => {}
            "https" => return Err(CliError::invalid(
                "--server",
                "https is not supported by this build; use http (e.g. behind a local TLS proxy)",
            )),
            other => {
                return Err(CliError::invalid(
                    "--server",
                    format!("`{other}` is not supported; use an http:// URL"),
                ))
            }
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(CliError::invalid(
                "--server",
                "must not have a query or a fragment",
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let token = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("projectengine-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Protocol(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { http, base, token })
    }

    /// The token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The URL of `segments` under the base, each percent-encoded, with a
    /// trailing slash when `dir`.
    pub fn url(&self, segments: &[&str], dir: bool) -> Url {
        let mut path: String = segments
            .iter()
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect::<Vec<_>>()
            .join("/");
        if dir {
            path.push('/');
        }
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path()));
        url
    }

    /// The WebSocket URL of a job's events after `after`.
    pub fn ws_url(&self, job: &str, after: u64) -> Url {
        let mut url = self.url(&["ws", "jobs", job], true);
        // Only http is accepted in `new`, so ws is its counterpart.
        let _ = url.set_scheme("ws");
        url.query_pairs_mut()
            .append_pair("after", &after.to_string());
        url
    }

    /// A request with the bearer token.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends `req` and answers the response when it is a success, the
    /// server's error otherwise.
    pub async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let req = req
            .build()
            .map_err(|e| CliError::Protocol(format!("cannot build the request: {e}")))?;
        let url = req.url().to_string();
        let res = self
            .http
            .execute(req)
            .await
            .map_err(|e| unreachable(&url, &e))?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        let body = res.bytes().await.unwrap_or_default();
        Err(api_error(status.as_u16(), &body))
    }

    /// Sends a JSON request (with `body` when given) and answers the JSON reply.
    pub async fn json(&self, method: Method, url: Url, body: Option<&Value>) -> Result<Value> {
        let mut req = self.request(method, url.clone()).timeout(REQUEST_TIMEOUT);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = self.send(req).await?;
        let bytes = res
            .bytes()
            .await
            .map_err(|e| unreachable(url.as_str(), &e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| CliError::Protocol(format!("{url} answered a body that is not JSON: {e}")))
    }

    /// `GET` a JSON resource.
    pub async fn get(&self, url: Url) -> Result<Value> {
        self.json(Method::GET, url, None).await
    }

    /// `GET /api/jobs/{id}/`: the job with its steps and attempts.
    pub async fn job(&self, id: &str) -> Result<Value> {
        self.get(self.url(&["api", "jobs", id], true)).await
    }
}

/// The error of a request that got no answer.
pub(crate) fn unreachable(url: &str, e: &dyn std::error::Error) -> CliError {
    // The outer messages repeat the URL or say "error sending request"; the
    // innermost cause says what happened ("Connection refused").
    let mut cause = e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    CliError::Unreachable {
        url: url.to_owned(),
        reason: cause.to_string(),
    }
}

/// The server's `{"error": {"code", "message", "field"?}}`, or a stand-in
/// when the body is something else (a proxy's page, say).
pub fn api_error(status: u16, body: &[u8]) -> CliError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let text = |k: &str| {
        error
            .and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match (text("code"), text("message")) {
        (Some(code), Some(message)) => CliError::Api {
            status,
            code,
            message,
            field: text("field"),
        },
        _ => {
            let snippet: String = String::from_utf8_lossy(body).chars().take(200).collect();
            let message = if snippet.trim().is_empty() {
                "the server gave no details".to_owned()
            } else {
                snippet.trim().to_owned()
            };
            CliError::Api {
                status,
                code: format!("http_{status}"),
                message,
                field: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_under_the_base_and_encode_each_segment() {
        let api = Api::new("http://127.0.0.1:8080", None).unwrap();
        assert_eq!(
            api.url(&["api", "jobs"], true).as_str(),
            "http://127.0.0.1:8080/api/jobs/"
        );
        let api = Api::new("http://h:1/prefix", None).unwrap();
        assert_eq!(
            api.url(&["api", "jobs", "j", "artifacts", "a b?c#d%e"], false)
                .as_str(),
            "http://h:1/prefix/api/jobs/j/artifacts/a%20b%3Fc%23d%25e"
        );
        assert_eq!(
            api.ws_url("j", 7).as_str(),
            "ws://h:1/prefix/ws/jobs/j/?after=7"
        );
    }

    #[test]
    fn only_http_servers_are_accepted() {
        for bad in ["ftp://h", "https://h", "not a url", "http://h/?q=1"] {
            let e = Api::new(bad, None).unwrap_err();
            assert!(
                matches!(e, CliError::Invalid { ref field, .. } if field == "--server"),
                "{bad}: {e}"
            );
        }
        assert!(Api::new("http://h", Some("  ".into()))
            .unwrap()
            .token()
            .is_none());
    }

    #[test]
    fn server_errors_are_read_or_stood_in_for() {
        let e = api_error(
            404,
            br#"{"error": {"code": "not_found", "message": "job not found"}}"#,
        );
        assert_eq!(e.to_string(), "job not found (not_found, HTTP 404)");
        let e = api_error(502, b"<html>Bad Gateway</html>");
        assert_eq!(
            e.to_string(),
            "<html>Bad Gateway</html> (http_502, HTTP 502)"
        );
        let e = api_error(500, b"");
        assert_eq!(e.code(), "http_500");
    }
}
