use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::hash::{IdMap, IdSet};
use crate::{Delivery, JobId, Queue, QueueDepth, QueueEntry, Result};

/// A [`Queue`] in this process's memory, with the full contract: priorities,
/// delays, visibility timeout and de-duplication.
#[derive(Debug)]
pub struct MemoryQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    visibility: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    queues: IdMap<String, Named>,
    next_seq: u64,
    next_receipt: u64,
}

type ReadyKey = (Reverse<i32>, u64);

#[derive(Debug, Default)]
struct Named {
    ready: BTreeMap<ReadyKey, JobId>,
    delayed: BTreeMap<(Instant, u64), (JobId, i32)>,
    /// Every waiting job (ready or delayed), for de-duplication.
    waiting: IdSet<JobId>,
    in_flight: IdMap<JobId, InFlight>,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    receipt: u64,
    priority: i32,
    deadline: Instant,
}

impl Named {
    fn make_ready(&mut self, seq: u64, job_id: JobId, priority: i32) {
        if self.waiting.contains(&job_id) {
            return;
        }
        let key = (Reverse(priority), seq);
        self.ready.insert(key, job_id);
        self.waiting.insert(job_id);
    }

    /// Moves due delayed entries and expired deliveries to `ready`; answers when
    /// the next one falls due.
    fn promote(&mut self, now: Instant, seq: &mut u64) -> Option<Instant> {
        while let Some((&(at, s), &(job_id, priority))) = self.delayed.first_key_value() {
            if at > now {
                break;
            }
            self.delayed.remove(&(at, s));
            self.waiting.remove(&job_id);
            *seq += 1;
            self.make_ready(*seq, job_id, priority);
        }
        let expired: Vec<(JobId, InFlight)> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, f)| (*id, *f))
            .collect();
        for (job_id, f) in expired {
            self.in_flight.remove(&job_id);
            *seq += 1;
            self.make_ready(*seq, job_id, f.priority);
        }
        let next_delayed = self.delayed.first_key_value().map(|(k, _)| k.0);
        let next_expiry = self.in_flight.values().map(|f| f.deadline).min();
        match (next_delayed, next_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl MemoryQueue {
    /// A queue whose popped, un-acked entries reappear after `visibility_timeout`.
    pub fn new(visibility_timeout: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            visibility: visibility_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One non-blocking pop of up to `max` entries; on a miss, when to look
    /// again.
    fn try_pop(&self, queues: &[String], max: usize) -> Result<Vec<Delivery>, Option<Instant>> {
        let now = Instant::now();
        let mut inner = self.lock();
        let Inner {
            queues: all,
            next_seq,
            next_receipt,
        } = &mut *inner;
        let mut next_due: Option<Instant> = None;
        for name in queues {
            let Some(q) = all.get_mut(name) else { continue };
            if let Some(at) = q.promote(now, next_seq) {
                next_due = Some(next_due.map_or(at, |n| n.min(at)));
            }
        }
        let mut taken = Vec::new();
        while taken.len() < max {
            let mut best: Option<(ReadyKey, &String)> = None;
            for name in queues {
                let Some(q) = all.get(name) else { continue };
                if let Some((&key, _)) = q.ready.first_key_value() {
                    if best.is_none_or(|(b, _)| key < b) {
                        best = Some((key, name));
                    }
                }
            }
            let Some((key, name)) = best else { break };
            let q = all.get_mut(name).expect("queue seen above");
            let job_id = q.ready.remove(&key).expect("key seen above");
            q.waiting.remove(&job_id);
            *next_receipt += 1;
            let priority = key.0 .0;
            q.in_flight.insert(
                job_id,
                InFlight {
                    receipt: *next_receipt,
                    priority,
                    deadline: now + self.visibility,
                },
            );
            taken.push(Delivery {
                job_id,
                queue: name.clone(),
                priority,
                receipt: *next_receipt,
            });
        }
        if taken.is_empty() && max > 0 {
            Err(next_due)
        } else {
            Ok(taken)
        }
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn push(&self, queue: &str, entry: QueueEntry) -> Result<bool> {
        let delay = entry
            .not_before
            .and_then(|t| (t - Utc::now()).to_std().ok())
            .filter(|d| !d.is_zero());
        let pushed = {
            let mut inner = self.lock();
            inner.next_seq += 1;
            let seq = inner.next_seq;
            // Look up before inserting, so a push to an existing queue does not
            // allocate its name.
            if !inner.queues.contains_key(queue) {
                inner.queues.insert(queue.to_owned(), Named::default());
            }
            let q = inner.queues.get_mut(queue).expect("inserted above");
            if q.waiting.contains(&entry.job_id) {
                false
            } else {
                match delay {
                    Some(d) => {
                        let key = (Instant::now() + d, seq);
                        q.delayed.insert(key, (entry.job_id, entry.priority));
                        q.waiting.insert(entry.job_id);
                    }
                    None => q.make_ready(seq, entry.job_id, entry.priority),
                }
                true
            }
        };
        if pushed {
            self.notify.notify_waiters();
        }
        Ok(pushed)
    }

    async fn pop_many(
        &self,
        queues: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        let give_up = Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = match self.try_pop(queues, max) {
                Ok(taken) => return Ok(taken),
                Err(next_due) => next_due,
            };
            let now = Instant::now();
            if now >= give_up {
                return Ok(Vec::new());
            }
            let until = next_due.map_or(give_up, |d| d.min(give_up));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        let mut inner = self.lock();
        if let Some(q) = inner.queues.get_mut(&delivery.queue) {
            if q.in_flight
                .get(&delivery.job_id)
                .is_some_and(|f| f.receipt == delivery.receipt)
            {
                q.in_flight.remove(&delivery.job_id);
            }
        }
        Ok(())
    }

    async fn nack(&self, delivery: &Delivery, delay: Option<Duration>) -> Result<()> {
        let requeued = {
            let mut inner = self.lock();
            inner.next_seq += 1;
            let seq = inner.next_seq;
            let Some(q) = inner.queues.get_mut(&delivery.queue) else {
                return Ok(());
            };
            let ours = q
                .in_flight
                .get(&delivery.job_id)
                .is_some_and(|f| f.receipt == delivery.receipt);
            if !ours {
                return Ok(());
            }
            q.in_flight.remove(&delivery.job_id);
            if q.waiting.contains(&delivery.job_id) {
                false
            } else {
                match delay.filter(|d| !d.is_zero()) {
                    Some(d) => {
                        let key = (Instant::now() + d, seq);
                        q.delayed.insert(key, (delivery.job_id, delivery.priority));
                        q.waiting.insert(delivery.job_id);
                    }
                    None => q.make_ready(seq, delivery.job_id, delivery.priority),
                }
                true
            }
        };
        if requeued {
            self.notify.notify_waiters();
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth> {
        let inner = self.lock();
        Ok(inner
            .queues
            .get(queue)
            .map(|q| QueueDepth {
                ready: q.ready.len() as u64,
                delayed: q.delayed.len() as u64,
                in_flight: q.in_flight.len() as u64,
            })
            .unwrap_or_default())
    }
}
