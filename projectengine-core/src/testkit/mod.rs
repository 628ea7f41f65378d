//! Conformance suites: every [`Store`](crate::Store), [`Queue`](crate::Queue)
//! and [`Notifier`](crate::Notifier) adapter runs the same checks.

/// Whether tests must fail, not skip, when a service is missing
/// (`PROJECTENGINE_REQUIRE_SERVICES=1`, as CI sets it).
pub fn services_required() -> bool {
    std::env::var("PROJECTENGINE_REQUIRE_SERVICES").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Reports a service a test needs but cannot reach: panics when services are
/// required, otherwise prints a clear skip line. Returns so the test can `return`.
pub fn service_missing(service: &str, url: &str, error: &dyn std::fmt::Display) {
    if services_required() {
        panic!("{service} at {url} is required (PROJECTENGINE_REQUIRE_SERVICES is set) but unreachable: {error}");
    }
    eprintln!("SKIPPED: {service} at {url} is unreachable ({error}); set PROJECTENGINE_REQUIRE_SERVICES=1 to fail instead");
}
