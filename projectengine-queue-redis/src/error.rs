//! Maps the redis crate's errors onto [`projectengine_core::Error`]; the
//! driver's types never leave this crate.

use std::time::Duration;

use projectengine_core::Error;
use redis::RedisError;

/// Redis failed or refused `what`: the backend is unavailable to us.
pub(crate) fn redis(what: &str, e: &RedisError) -> Error {
    Error::unavailable(format!("redis {what}: {e}")).with_source(e.clone())
}

/// `what` got no answer within `after`.
pub(crate) fn timed_out(what: &str, after: Duration) -> Error {
    Error::unavailable(format!("redis {what}: no answer within {after:?}"))
}

/// Redis answered `what` with something this crate did not write.
pub(crate) fn unexpected(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::internal(format!("redis {what}: unexpected answer: {detail}"))
}

/// Whether the connection that produced `e` should be given up: anything but
/// an error reply from a healthy server.
pub(crate) fn connection_is_suspect(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.is_connection_refusal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_ours_and_name_the_call() {
        let e = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(connection_is_suspect(&e));
        let mapped = redis("pop", &e);
        assert_eq!(mapped.code(), "unavailable");
        assert!(mapped.to_string().contains("redis pop"), "{mapped}");
        let source = std::error::Error::source(&mapped).expect("the driver's error is kept");
        assert!(source.downcast_ref::<RedisError>().is_some());
        assert_eq!(
            timed_out("ack", Duration::from_secs(1)).code(),
            "unavailable"
        );
        assert_eq!(unexpected("pop", "nil").code(), "internal");
    }
}
