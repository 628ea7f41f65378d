//! The core's conformance kit on SQLite: the whole Store suite (with the
//! differential check against the memory store), and the engine scenarios
//! with the in-memory queue and notifier.

mod support;

use std::sync::Arc;

use projectengine_core::memory::{MemoryNotifier, MemoryQueue};
use projectengine_core::testkit::QUEUE_VISIBILITY_TIMEOUT;
use projectengine_core::{Notifier, Queue};

mod store {
    projectengine_core::store_suite!(super::support::fresh_dyn());
}

mod engine {
    use super::*;
    projectengine_core::engine_suite!(async {
        Some((
            support::fresh_dyn().await?,
            Arc::new(MemoryQueue::new(QUEUE_VISIBILITY_TIMEOUT)) as Arc<dyn Queue>,
            Arc::new(MemoryNotifier::default()) as Arc<dyn Notifier>,
        ))
    });
}
