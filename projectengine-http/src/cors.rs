//! Cross-origin requests from browsers: which origins may call the API, with
//! which methods and headers. Off unless configured: without [`Cors`] in the
//! [`HttpConfig`](crate::HttpConfig), no response carries a CORS header.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::response::Response;
use axum::Router;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

/// Why a CORS setting was refused: which list, and the entry at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{list}: `{entry}` is not {expected}")]
pub struct CorsError {
    /// `origins`, `methods` or `headers`.
    pub list: &'static str,
    /// The entry.
    pub entry: String,
    /// What it should be.
    pub expected: &'static str,
}

/// Some entries, or any (`*`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Allowed<T> {
    /// Anything (`*`).
    Any,
    /// Only these.
    List(Vec<T>),
}

/// The CORS policy: allowed origins, methods and request headers.
///
/// Credentials (cookies) are never allowed: the API takes bearer tokens,
/// which a browser only sends when the page's script sets them.
///
/// ```
/// use projectengine_http::{Cors, HttpConfig};
///
/// let mut config = HttpConfig::default();
/// config.cors = Some(Cors::parse(&["https://app.example.com"], &[], &[]).unwrap());
/// assert!(Cors::parse(&["not an origin"], &[], &[]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cors {
    /// Origins (`scheme://host[:port]`) whose pages may call the API.
    pub origins: Allowed<HeaderValue>,
    /// Methods they may use.
    pub methods: Allowed<Method>,
    /// Request headers they may send.
    pub headers: Allowed<HeaderName>,
    /// How long a browser may cache a preflight's answer (default 10 min).
    pub max_age: Duration,
}

impl Cors {
    /// The methods allowed when none are given: the API's.
    pub const DEFAULT_METHODS: [Method; 2] = [Method::GET, Method::POST];
    /// The headers allowed when none are given: what the API's requests carry.
    pub const DEFAULT_HEADERS: [&'static str; 3] =
        ["authorization", "content-type", "last-event-id"];

    /// A policy from lists as configuration gives them: each entry trimmed,
    /// blanks dropped, `*` alone meaning any. No origin at all is an error;
    /// no method means [`Cors::DEFAULT_METHODS`], no header
    /// [`Cors::DEFAULT_HEADERS`].
    pub fn parse<S: AsRef<str>>(
        origins: &[S],
        methods: &[S],
        headers: &[S],
    ) -> Result<Self, CorsError> {
        let origins = list(
            origins,
            "origins",
            "an origin such as https://app.example.com",
            origin,
        )?;
        let origins = match origins {
            Allowed::List(l) if l.is_empty() => {
                return Err(CorsError {
                    list: "origins",
                    entry: String::new(),
                    expected: "a non-empty list (or `*`)",
                })
            }
            o => o,
        };
        let methods = match list(methods, "methods", "an HTTP method", |m| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok()
        })? {
            Allowed::List(l) if l.is_empty() => Allowed::List(Self::DEFAULT_METHODS.to_vec()),
            m => m,
        };
        let headers = match list(headers, "headers", "a header name", |h| {
            HeaderName::from_bytes(h.as_bytes()).ok()
        })? {
            Allowed::List(l) if l.is_empty() => Allowed::List(
                Self::DEFAULT_HEADERS
                    .iter()
                    .map(|h| HeaderName::from_static(h))
                    .collect(),
            ),
            h => h,
        };
        Ok(Self {
            origins,
            methods,
            headers,
            max_age: Duration::from_secs(600),
        })
    }

    /// The layer answering preflights and adding the headers.
    pub fn layer(&self) -> CorsLayer {
        let origins = match &self.origins {
            Allowed::Any => AllowOrigin::any(),
            Allowed::List(l) => AllowOrigin::list(l.iter().cloned()),
        };
        let methods = match &self.methods {
            Allowed::Any => AllowMethods::any(),
            Allowed::List(l) => AllowMethods::list(l.iter().cloned()),
        };
        let headers = match &self.headers {
            Allowed::Any => AllowHeaders::any(),
            Allowed::List(l) => AllowHeaders::list(l.iter().cloned()),
        };
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers([
                HeaderName::from_static(crate::REQUEST_ID_HEADER),
                axum::http::header::LOCATION,
            ])
            .max_age(self.max_age)
    }
}

/// Wraps `router` in the policy's layer. A request from an origin the policy
/// does not allow gets no CORS header at all (the layer alone would still
/// send the allowed methods and headers, telling a stranger the policy).
pub(crate) fn apply(router: Router, cors: &Cors) -> Router {
    router
        .layer(cors.layer())
        .layer(axum::middleware::map_response(only_when_allowed))
}

async fn only_when_allowed(mut res: Response) -> Response {
    if !res
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        for name in [
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::ACCESS_CONTROL_MAX_AGE,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
        ] {
            res.headers_mut().remove(name);
        }
    }
    res
}

/// Parses a configured list: `*` alone is [`Allowed::Any`].
fn list<S: AsRef<str>, T>(
    entries: &[S],
    name: &'static str,
    expected: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Allowed<T>, CorsError> {
    let entries: Vec<&str> = entries
        .iter()
        .map(|e| e.as_ref().trim())
        .filter(|e| !e.is_empty())
        .collect();
    if entries == ["*"] {
        return Ok(Allowed::Any);
    }
    entries
        .into_iter()
        .map(|e| {
            parse(e).ok_or_else(|| CorsError {
                list: name,
                entry: e.to_owned(),
                expected: if e == "*" {
                    "allowed with other entries"
                } else {
                    expected
                },
            })
        })
        .collect::<Result<_, _>>()
        .map(Allowed::List)
}

/// An origin as browsers send it: `http` or `https`, a host, maybe a port,
/// no path.
fn origin(s: &str) -> Option<HeaderValue> {
    let s = s.trim_end_matches('/');
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))?;
    let valid = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    valid.then(|| HeaderValue::from_str(s).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_defaults() {
        let c = Cors::parse(&[" https://a.example ", "http://localhost:3000/"], &[], &[]).unwrap();
        assert_eq!(
            c.origins,
            Allowed::List(vec![
                HeaderValue::from_static("https://a.example"),
                HeaderValue::from_static("http://localhost:3000"),
            ])
        );
        assert_eq!(c.methods, Allowed::List(vec![Method::GET, Method::POST]));
        assert!(matches!(&c.headers, Allowed::List(h) if h.len() == 3));
        let any = Cors::parse(&["*"], &["*"], &["*"]).unwrap();
        assert_eq!(
            (any.origins, any.methods, any.headers),
            (Allowed::Any, Allowed::Any, Allowed::Any)
        );
        let m = Cors::parse(&["*"], &["get", "DELETE"], &["x-custom"]).unwrap();
        assert_eq!(m.methods, Allowed::List(vec![Method::GET, Method::DELETE]));
        assert_eq!(
            m.headers,
            Allowed::List(vec![HeaderName::from_static("x-custom")])
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let no: [&str; 0] = [];
        for (origins, methods, headers, list, entry) in [
            (
                &["example.com"][..],
                &no[..],
                &no[..],
                "origins",
                "example.com",
            ),
            (
                &["https://a.example/path"][..],
                &no[..],
                &no[..],
                "origins",
                "https://a.example/path",
            ),
            (
                &["*", "https://a.example"][..],
                &no[..],
                &no[..],
                "origins",
                "*",
            ),
            (&[" "][..], &no[..], &no[..], "origins", ""),
            (&["*"][..], &["GE T"][..], &no[..], "methods", "GE T"),
            (
                &["*"][..],
                &no[..],
                &["bad header"][..],
                "headers",
                "bad header",
            ),
        ] {
            let e = Cors::parse(origins, methods, headers).unwrap_err();
            assert_eq!((e.list, e.entry.as_str()), (list, entry), "{e}");
        }
    }
}
