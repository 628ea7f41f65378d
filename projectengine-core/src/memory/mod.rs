//! In-memory adapters: the embedded default, and what unit tests use.
//!
//! Everything lives in this process and is gone when it exits.

mod hash;
mod notifier;
mod queue;
mod store;

pub use notifier::MemoryNotifier;
pub use queue::MemoryQueue;
pub use store::MemoryStore;
