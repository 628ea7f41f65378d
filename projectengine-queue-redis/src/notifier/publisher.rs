//! The background publisher: [`RedisNotifier::publish`](crate::RedisNotifier)
//! hands events to an outbox and returns at once; one task sends them, in the
//! order they were handed over, as few `PUBLISH`es as it can.
//!
//! When idle the task sends at once; while a `PUBLISH` is in flight, and
//! until [`RedisConfig::publish_interval`](crate::RedisConfig) has passed
//! since the last one started, new events accumulate, and the next `PUBLISH`
//! carries all of them (up to [`MAX_MESSAGE_EVENTS`]). Under load a message
//! carries the events of many calls and jobs, at the price of at most one
//! interval of latency; when idle, the latency is one round trip, as before.
//!
//! The outbox is bounded ([`RedisConfig::publish_buffer`](crate::RedisConfig)
//! events): what does not fit is dropped, never waited for, and the next
//! message says `lagged`, so every subscriber (in every process) is told
//! [`Notification::Lagged`](projectengine_core::Notification::Lagged) and its
//! watch reads the store. A `PUBLISH` that fails is handled the same way.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use projectengine_core::{CancellationToken, JobEvent};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::Shared;

/// Most events one message carries; a bigger backlog goes in several.
pub(crate) const MAX_MESSAGE_EVENTS: usize = 1000;

/// Events waiting to be published, and how far publishing has got.
pub(crate) struct Outbox {
    state: Mutex<State>,
    wake: Notify,
    /// The `accepted` mark up to which everything was sent (or given up).
    flushed: watch::Sender<u64>,
    capacity: usize,
}

#[derive(Default)]
struct State {
    events: Vec<JobEvent>,
    /// Events were dropped since the last message.
    lagged: bool,
    /// Events handed over so far (dropped ones included).
    accepted: u64,
}

/// One message's worth: its events, whether it says `lagged`, and the
/// `accepted` mark it completes.
pub(crate) struct Batch {
    pub events: Vec<JobEvent>,
    pub lagged: bool,
    pub mark: u64,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            flushed: watch::Sender::new(0),
            capacity: capacity.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands events over; never waits. Answers the `accepted` mark after them.
    pub(crate) fn offer(&self, events: &[JobEvent]) -> u64 {
        let mut s = self.state();
        if s.events.len() + events.len() > self.capacity {
            // Logged once per message that will say `lagged`, not per call.
            if !s.lagged {
                tracing::warn!(
                    buffered = s.events.len(),
                    "redis publisher is behind; events dropped, subscribers will lag"
                );
            }
            s.lagged = true;
        } else {
            s.events.extend_from_slice(events);
        }
        s.accepted += events.len() as u64;
        let mark = s.accepted;
        drop(s);
        self.wake.notify_one();
        mark
    }

    /// Marks that events were lost on the way, so the next message says so.
    fn lost(&self) {
        self.state().lagged = true;
        self.wake.notify_one();
    }

    /// The `accepted` mark now: what a barrier waits for.
    pub(crate) fn mark(&self) -> u64 {
        self.state().accepted
    }

    /// Waits until everything up to `mark` was sent or given up, for at most
    /// `within`.
    pub(crate) async fn flushed(&self, mark: u64, within: Duration) {
        let mut rx = self.flushed.subscribe();
        let _ = tokio::time::timeout(within, rx.wait_for(|f| *f >= mark)).await;
    }

    /// Whether there is anything to send.
    fn pending(&self) -> bool {
        let s = self.state();
        !s.events.is_empty() || s.lagged
    }

    /// The next message's worth, if there is anything to send.
    fn take(&self) -> Option<Batch> {
        let mut s = self.state();
        if s.events.is_empty() && !s.lagged {
            return None;
        }
        let events = if s.events.len() > MAX_MESSAGE_EVENTS {
            let rest = s.events.split_off(MAX_MESSAGE_EVENTS);
            std::mem::replace(&mut s.events, rest)
        } else {
            std::mem::take(&mut s.events)
        };
        let lagged = std::mem::take(&mut s.lagged);
        // Everything accepted is either in this batch, still buffered behind
        // it (sent next, before anything newer), or dropped.
        let mark = s.accepted - s.events.len() as u64;
        Some(Batch {
            events,
            lagged,
            mark,
        })
    }

    fn done(&self, mark: u64) {
        self.flushed.send_if_modified(|f| {
            let advanced = mark > *f;
            if advanced {
                *f = mark;
            }
            advanced
        });
    }
}

/// The wire form of a message: `{"lagged":bool,"events":[...]}`.
pub(crate) fn encode(batch: &Batch) -> serde_json::Result<String> {
    let events = serde_json::to_string(&batch.events)?;
    Ok(format!(
        "{{\"lagged\":{},\"events\":{events}}}",
        batch.lagged
    ))
}

/// Reads a message: whether it says `lagged`, and its events.
pub(crate) fn decode(payload: &[u8]) -> serde_json::Result<(bool, Vec<JobEvent>)> {
    let mut v: serde_json::Value = serde_json::from_slice(payload)?;
    let lagged = v.get("lagged").and_then(|l| l.as_bool()).unwrap_or(false);
    let events = match v.get_mut("events") {
        Some(e) => serde_json::from_value(e.take())?,
        None => Vec::new(),
    };
    Ok((lagged, events))
}

/// Sends the outbox's content until `stop` fires (then what is left, once).
///
/// A message goes at once if the last one started at least `interval` ago;
/// else the task waits out the rest of it, gathering what comes meanwhile.
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let outbox = &shared.outbox;
    let interval = shared.config.publish_interval;
    let mut next_at = Instant::now();
    loop {
        if Instant::now() < next_at && outbox.pending() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(next_at) => {}
            }
        }
        if let Some(batch) = outbox.take() {
            next_at = Instant::now() + interval;
            send(&shared, &batch).await;
            outbox.done(batch.mark);
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = outbox.wake.notified() => {}
        }
    }
    while let Some(batch) = outbox.take() {
        send(&shared, &batch).await;
        outbox.done(batch.mark);
    }
}

async fn send(shared: &Shared, batch: &Batch) {
    let payload = match encode(batch) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "encoding events failed; subscribers will lag");
            shared.outbox.lost();
            return;
        }
    };
    let channel = shared.channel();
    let (channel, payload) = (&channel, &payload);
    let sent = shared
        .publisher
        .run("publish", |mut c| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<i64>(&mut c)
                .await
        })
        .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, events = batch.events.len(), "publish failed; subscribers will lag");
        shared.outbox.lost();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use projectengine_core::{EventData, JobId, LogLevel, LogLine};

    fn event(job_id: JobId, seq: u64) -> JobEvent {
        JobEvent {
            job_id,
            seq,
            attempt: 1,
            at: Utc::now(),
            data: EventData::Log(LogLine {
                level: LogLevel::Info,
                message: format!("line {seq}"),
            }),
        }
    }

    #[test]
    fn messages_round_trip() {
        let job = JobId::new();
        let batch = Batch {
            events: vec![event(job, 1), event(job, 2)],
            lagged: true,
            mark: 2,
        };
        let (lagged, events) = decode(encode(&batch).expect("encode").as_bytes()).expect("decode");
        assert!(lagged);
        assert_eq!(events, batch.events);
    }

    #[test]
    fn a_full_outbox_drops_and_flags_lagged() {
        let outbox = Outbox::new(3);
        let job = JobId::new();
        assert_eq!(outbox.offer(&[event(job, 1), event(job, 2)]), 2);
        assert_eq!(outbox.offer(&[event(job, 3), event(job, 4)]), 4, "dropped");
        let b = outbox.take().expect("a batch");
        assert_eq!(b.events.len(), 2);
        assert!(b.lagged);
        assert_eq!(b.mark, 4);
        assert!(outbox.take().is_none());
    }

    #[test]
    fn big_backlogs_go_in_several_messages_in_order() {
        let outbox = Outbox::new(10 * MAX_MESSAGE_EVENTS);
        let job = JobId::new();
        let events: Vec<JobEvent> = (1..=(MAX_MESSAGE_EVENTS as u64 + 5))
            .map(|s| event(job, s))
            .collect();
        outbox.offer(&events);
        let first = outbox.take().expect("first");
        assert_eq!(first.events.len(), MAX_MESSAGE_EVENTS);
        assert_eq!(first.mark, MAX_MESSAGE_EVENTS as u64);
        let second = outbox.take().expect("second");
        assert_eq!(second.events.len(), 5);
        assert_eq!(second.events[0].seq, MAX_MESSAGE_EVENTS as u64 + 1);
        assert_eq!(second.mark, events.len() as u64);
    }
}
