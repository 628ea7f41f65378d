//! The whole conformance kit on the in-memory adapters.

use std::sync::Arc;

use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::testkit::QUEUE_VISIBILITY_TIMEOUT;
use projectengine_core::{Notifier, Queue, Store};

mod store {
    use super::*;
    projectengine_core::store_suite!(async {
        Some(Arc::new(MemoryStore::new()) as Arc<dyn Store>)
    });
}

mod queue {
    use super::*;
    projectengine_core::queue_suite!(async {
        Some(Arc::new(MemoryQueue::new(QUEUE_VISIBILITY_TIMEOUT)) as Arc<dyn Queue>)
    });
}

mod notifier {
    use super::*;
    projectengine_core::notifier_suite!(async {
        Some(Arc::new(MemoryNotifier::default()) as Arc<dyn Notifier>)
    });
}

mod engine {
    use super::*;
    projectengine_core::engine_suite!(async {
        Some((
            Arc::new(MemoryStore::new()) as Arc<dyn Store>,
            Arc::new(MemoryQueue::new(QUEUE_VISIBILITY_TIMEOUT)) as Arc<dyn Queue>,
            Arc::new(MemoryNotifier::default()) as Arc<dyn Notifier>,
        ))
    });
}
