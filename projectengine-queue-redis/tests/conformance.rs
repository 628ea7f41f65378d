//! The core conformance kit on Redis: the queue, notifier and engine suites
//! (the engine on the in-memory store with this crate's queue and notifier).
//! Every test gets its own key prefix.

mod common;

use std::sync::Arc;

use common::TestRedis;
use projectengine_core::memory::MemoryStore;
use projectengine_core::testkit::QUEUE_VISIBILITY_TIMEOUT;
use projectengine_core::{Notifier, Queue, Store};

async fn redis() -> Option<TestRedis> {
    let mut r = TestRedis::connect().await?;
    r.config.visibility_timeout = QUEUE_VISIBILITY_TIMEOUT;
    Some(r)
}

mod queue {
    use super::*;
    projectengine_core::queue_suite!(async {
        let r = redis().await?;
        Some(Arc::new(r.queue().await) as Arc<dyn Queue>)
    });
}

mod notifier {
    use super::*;
    projectengine_core::notifier_suite!(async {
        let r = redis().await?;
        Some(Arc::new(r.notifier().await) as Arc<dyn Notifier>)
    });
}

mod engine {
    use super::*;
    projectengine_core::engine_suite!(async {
        let r = redis().await?;
        Some((
            Arc::new(MemoryStore::new()) as Arc<dyn Store>,
            Arc::new(r.queue().await) as Arc<dyn Queue>,
            Arc::new(r.notifier().await) as Arc<dyn Notifier>,
        ))
    });
}
