use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::hash::IdMap;
use crate::{JobEvent, JobId, Notification, NotificationStream, Notifier, Result};

/// A [`Notifier`] within this process: one broadcast channel per watched job.
/// A subscriber that falls more than `capacity` events behind is told
/// [`Notification::Lagged`].
#[derive(Debug)]
pub struct MemoryNotifier {
    channels: Mutex<IdMap<JobId, broadcast::Sender<JobEvent>>>,
    /// How many jobs have a channel (changed under the lock), so that a publish
    /// with nobody watching anything need not take the lock.
    watched: AtomicUsize,
    capacity: usize,
}

impl Default for MemoryNotifier {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl MemoryNotifier {
    /// A notifier whose per-job channels hold `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            channels: Mutex::new(IdMap::default()),
            watched: AtomicUsize::new(0),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, IdMap<JobId, broadcast::Sender<JobEvent>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn publish(&self, events: &[JobEvent]) -> Result<()> {
        // A subscription made before this call stored its count before it
        // returned; Acquire pairs with that store.
        if self.watched.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let mut channels = self.lock();
        for ev in events {
            if let Some(tx) = channels.get(&ev.job_id) {
                if tx.send(ev.clone()).is_err() {
                    // Nobody listens any more.
                    channels.remove(&ev.job_id);
                    self.watched.store(channels.len(), Ordering::Release);
                }
            }
        }
        Ok(())
    }

    async fn subscribe(&self, job_id: JobId) -> Result<NotificationStream> {
        let rx = {
            let mut channels = self.lock();
            let rx = channels
                .entry(job_id)
                .or_insert_with(|| broadcast::channel(self.capacity).0)
                .subscribe();
            self.watched.store(channels.len(), Ordering::Release);
            rx
        };
        Ok(BroadcastStream::new(rx)
            .map(|r| match r {
                Ok(ev) => Notification::Event(ev),
                Err(BroadcastStreamRecvError::Lagged(_)) => Notification::Lagged,
            })
            .boxed())
    }
}
