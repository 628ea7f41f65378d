//! Observing jobs without disturbing them: a notifier wrapper that timestamps
//! the moment each job's `running` and terminal events are published (that is,
//! after they were persisted).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use projectengine_core::{JobEvent, JobId, JobStatus, NotificationStream, Notifier, Result};
use tokio::sync::Notify;

#[derive(Debug, Default, Clone, Copy)]
pub struct Times {
    pub started: Option<Instant>,
    pub finished: Option<(Instant, JobStatus)>,
}

#[derive(Debug)]
pub struct Observer {
    inner: Arc<dyn Notifier>,
    times: Mutex<HashMap<JobId, Times>>,
    finished: std::sync::atomic::AtomicUsize,
    events: std::sync::atomic::AtomicUsize,
    pub changed: Notify,
    /// `changed` fires once this many jobs finished (set by `wait_all`), so
    /// that a drain does not wake its waiter once per job.
    pub target: std::sync::atomic::AtomicUsize,
    /// When set, the publish time of every event, by (job, seq).
    published: Option<Mutex<HashMap<(JobId, u64), Instant>>>,
}

impl Observer {
    pub fn new(inner: Arc<dyn Notifier>, record_events: bool) -> Arc<Self> {
        Arc::new(Self {
            inner,
            times: Mutex::new(HashMap::new()),
            finished: Default::default(),
            events: Default::default(),
            changed: Notify::new(),
            target: Default::default(),
            published: record_events.then(|| Mutex::new(HashMap::new())),
        })
    }

    /// The publish times of every event (when recorded).
    pub fn published(&self) -> HashMap<(JobId, u64), Instant> {
        self.published
            .as_ref()
            .and_then(|m| m.lock().ok().map(|m| m.clone()))
            .unwrap_or_default()
    }

    pub fn finished(&self) -> usize {
        self.finished.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Events published so far.
    pub fn events(&self) -> usize {
        self.events.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn times(&self, id: JobId) -> Times {
        self.times
            .lock()
            .map(|t| t.get(&id).copied().unwrap_or_default())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Notifier for Observer {
    async fn publish(&self, events: &[JobEvent]) -> Result<()> {
        let now = Instant::now();
        self.events
            .fetch_add(events.len(), std::sync::atomic::Ordering::SeqCst);
        if let Some(Ok(mut p)) = self.published.as_ref().map(|m| m.lock()) {
            for e in events {
                p.entry((e.job_id, e.seq)).or_insert(now);
            }
        }
        let mut done = 0;
        if let Ok(mut times) = self.times.lock() {
            for e in events {
                match e.status() {
                    Some(JobStatus::Running) => {
                        times
                            .entry(e.job_id)
                            .or_default()
                            .started
                            .get_or_insert(now);
                    }
                    Some(s) if s.is_terminal() => {
                        let t = times.entry(e.job_id).or_default();
                        if t.finished.is_none() {
                            t.finished = Some((now, s));
                            done += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        if done > 0 {
            let finished = self
                .finished
                .fetch_add(done, std::sync::atomic::Ordering::SeqCst)
                + done;
            if finished >= self.target.load(std::sync::atomic::Ordering::SeqCst) {
                self.changed.notify_waiters();
            }
        }
        self.inner.publish(events).await
    }

    async fn subscribe(&self, job_id: JobId) -> Result<NotificationStream> {
        self.inner.subscribe(job_id).await
    }
}
