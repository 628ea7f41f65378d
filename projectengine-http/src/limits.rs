//! Per-owner limits of this process: open streams (WebSocket and SSE).
//! Reaching one is 429 `limit_exceeded`. (The quota of queued jobs is the
//! engine's: [`Limits::max_queued_per_owner`](projectengine_core::Limits).)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::StatusCode;
use projectengine_core::Owner;

use crate::error::ApiError;

/// Counts each owner's open streams in this process.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamSlots {
    open: Arc<Mutex<HashMap<Owner, usize>>>,
}

/// One open stream of an owner; frees its slot when dropped.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    open: Arc<Mutex<HashMap<Owner, usize>>>,
    owner: Owner,
}

impl StreamSlots {
    /// Takes a slot for `owner`, or refuses when `max` are open already.
    pub(crate) fn acquire(
        &self,
        owner: &Owner,
        max: Option<usize>,
    ) -> Result<StreamSlot, ApiError> {
        let mut open = lock(&self.open);
        let n = open.entry(owner.clone()).or_insert(0);
        if max.is_some_and(|max| *n >= max) {
            return Err(limit("too many open streams; close one first"));
        }
        *n += 1;
        Ok(StreamSlot {
            open: self.open.clone(),
            owner: owner.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(n) = open.get_mut(&self.owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.owner);
            }
        }
    }
}

fn limit(message: &str) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "limit_exceeded", message)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_owner_and_freed_on_drop() {
        let slots = StreamSlots::default();
        let (a, b) = (Owner::new("a"), Owner::new("b"));
        let first = slots.acquire(&a, Some(2)).unwrap();
        let _second = slots.acquire(&a, Some(2)).unwrap();
        assert_eq!(
            slots.acquire(&a, Some(2)).unwrap_err().status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        let _other = slots.acquire(&b, Some(2)).unwrap();
        drop(first);
        let _third = slots.acquire(&a, Some(2)).unwrap();
        assert!(slots.acquire(&a, None).is_ok());
    }
}
