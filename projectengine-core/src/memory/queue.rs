use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::hash::{IdMap, IdSet};
use crate::{Delivery, JobId, Queue, QueueDepth, QueueEntry, Result};

/// A [`Queue`] in this process's memory, with the full contract: priorities,
/// fair turns between groups, delays, visibility timeout and de-duplication.
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

/// Priority (highest first), fairness tag, then push order.
type ReadyKey = (Reverse<i32>, u64, u64);

/// A waiting entry's job, priority and group.
#[derive(Debug, Clone)]
struct Entry {
    job_id: JobId,
    priority: i32,
    group: Option<String>,
}

#[derive(Debug, Default)]
struct Named {
    ready: BTreeMap<ReadyKey, (JobId, Option<String>)>,
    delayed: BTreeMap<(Instant, u64), Entry>,
    /// Every waiting job (ready or delayed), for de-duplication.
    waiting: IdSet<JobId>,
    in_flight: IdMap<JobId, InFlight>,
    /// The fair-queuing state of each priority (see [`Queue`]'s contract).
    fair: HashMap<i32, Fair>,
}

/// Start-time fair queuing for one priority of one queue.
#[derive(Debug, Default)]
struct Fair {
    /// The virtual time: the tag of the entry popped last.
    v: u64,
    /// Each group's last tag, while it is above `v`. Group names come from
    /// clients (owners), hence std's hasher here.
    last: HashMap<Option<String>, u64>,
}

impl Fair {
    /// The tag of a new ready entry of `group`.
    fn tag(&mut self, group: &Option<String>) -> u64 {
        let tag = self.last.get(group).copied().unwrap_or(0).max(self.v) + 1;
        match self.last.get_mut(group) {
            Some(t) => *t = tag,
            None => {
                self.last.insert(group.clone(), tag);
            }
        }
        tag
    }

    /// An entry of `group` with `tag` was popped; `true` when no group has a
    /// ready entry left (a group's entries have distinct tags, the last one
    /// its last tag), so this state may go.
    fn popped(&mut self, group: &Option<String>, tag: u64) -> bool {
        self.v = self.v.max(tag);
        if self.last.get(group).is_some_and(|&t| t <= self.v) {
            self.last.remove(group);
        }
        self.last.is_empty()
    }
}

#[derive(Debug, Clone)]
struct InFlight {
    receipt: u64,
    priority: i32,
    deadline: Instant,
    group: Option<String>,
}

impl Named {
    fn make_ready(&mut self, seq: u64, entry: Entry) {
        if self.waiting.contains(&entry.job_id) {
            return;
        }
        let tag = self
            .fair
            .entry(entry.priority)
            .or_default()
            .tag(&entry.group);
        let key = (Reverse(entry.priority), tag, seq);
        self.ready.insert(key, (entry.job_id, entry.group));
        self.waiting.insert(entry.job_id);
    }

    /// Removes the ready entry at `key`, advancing its priority's virtual time.
    fn take(&mut self, key: &ReadyKey) -> Option<(JobId, Option<String>)> {
        let (job_id, group) = self.ready.remove(key)?;
        self.waiting.remove(&job_id);
        let (Reverse(priority), tag, _) = *key;
        if self
            .fair
            .get_mut(&priority)
            .is_some_and(|f| f.popped(&group, tag))
        {
            self.fair.remove(&priority);
        }
        Some((job_id, group))
    }

    /// Moves due delayed entries and expired deliveries to `ready`; answers when
    /// the next one falls due.
    fn promote(&mut self, now: Instant, seq: &mut u64) -> Option<Instant> {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let entry = entry.remove();
            self.waiting.remove(&entry.job_id);
            *seq += 1;
            self.make_ready(*seq, entry);
        }
        let expired: Vec<JobId> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for job_id in expired {
            let Some(f) = self.in_flight.remove(&job_id) else {
                continue;
            };
            *seq += 1;
            self.make_ready(
                *seq,
                Entry {
                    job_id,
                    priority: f.priority,
                    group: f.group,
                },
            );
        }
        let next_delayed = self.delayed.first_key_value().map(|(k, _)| k.0);
        let next_expiry = self.in_flight.values().map(|f| f.deadline).min();
        match (next_delayed, next_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Adds a waiting entry, ready at once or after `delay`; `false` if the
    /// job is already waiting.
    fn add(&mut self, seq: u64, entry: Entry, delay: Option<Duration>) -> bool {
        if self.waiting.contains(&entry.job_id) {
            return false;
        }
        match delay {
            Some(d) => {
                self.waiting.insert(entry.job_id);
                self.delayed.insert((Instant::now() + d, seq), entry);
            }
            None => self.make_ready(seq, entry),
        }
        true
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
            let (job_id, group) = q.take(&key).expect("key seen above");
            *next_receipt += 1;
            let priority = key.0 .0;
            q.in_flight.insert(
                job_id,
                InFlight {
                    receipt: *next_receipt,
                    priority,
                    deadline: now + self.visibility,
                    group: group.clone(),
                },
            );
            taken.push(Delivery {
                job_id,
                queue: name.clone(),
                priority,
                receipt: *next_receipt,
                group,
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
            let entry = Entry {
                job_id: entry.job_id,
                priority: entry.priority,
                group: entry.group,
            };
            q.add(seq, entry, delay)
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
            let entry = Entry {
                job_id: delivery.job_id,
                priority: delivery.priority,
                group: delivery.group.clone(),
            };
            q.add(seq, entry, delay.filter(|d| !d.is_zero()))
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
