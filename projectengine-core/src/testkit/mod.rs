//! Conformance suites: every [`Store`](crate::Store), [`Queue`](crate::Queue)
//! and [`Notifier`](crate::Notifier) adapter runs the same checks.
