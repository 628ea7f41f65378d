//! The single writer, with group commit.
//!
//! SQLite lets one connection write at a time, so one task owns the store's
//! only write connection, and every write goes to it through a channel. The
//! task takes everything that is waiting — up to [`SqliteConfig::max_batch`]
//! writes — runs it in one `BEGIN IMMEDIATE` transaction and commits once:
//! one WAL sync makes the whole batch durable. Only then is each caller
//! answered, so a caller never publishes an event that is not on disk.
//!
//! - Each write runs under a `SAVEPOINT` of its own: a write that fails (a
//!   stale fence, a conflict, a value the database refuses) is rolled back to
//!   its savepoint and is its caller's answer alone; the rest of the batch
//!   commits.
//! - The writes of a batch share one `now` (the transaction's time), as the
//!   statements of one PostgreSQL transaction share `now()`.
//! - When the transaction cannot start or commit (the disk is full, another
//!   process held the lock past the busy timeout), nothing of the batch is
//!   committed, and every caller of the batch gets
//!   [`Unavailable`](projectengine_core::Error::Unavailable).
//!
//! [`SqliteConfig::max_batch`]: crate::SqliteConfig::max_batch

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use projectengine_core::schedule::{
    Fired, NewSchedule, Schedule, ScheduleFire, ScheduleId, ScheduleSettings,
};
use projectengine_core::{
    App, Changed, Claim, Created, DeliveryId, DeliveryNext, Error, EventData, Fence, Heartbeat,
    IdempotencyKey, JobEvent, JobId, NewApp, NewArtifact, NewJob, NewTry, Outcome, Result,
    ReviewDecision, SavedArtifact, WebhookDelivery,
};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::error::map;
use crate::rows::truncate;
use crate::schedules;
use crate::writes;

/// A write.
pub(crate) enum Op {
    Create(NewJob),
    /// Jobs created together, all or none (under the write's one savepoint).
    CreateAll(Vec<NewJob>),
    Claim {
        id: JobId,
        worker_id: String,
        lease: Duration,
    },
    Append {
        fence: Fence,
        events: Vec<EventData>,
    },
    AppendBatch {
        fence: Fence,
        batch: u64,
        events: Vec<EventData>,
    },
    Heartbeat {
        fence: Fence,
        lease: Duration,
    },
    SaveApp {
        fence: Fence,
        app: NewApp,
    },
    Finish {
        fence: Fence,
        outcome: Outcome,
    },
    Cancel(JobId),
    Retry(JobId),
    Review {
        id: JobId,
        decision: ReviewDecision,
    },
    PutArtifact {
        fence: Fence,
        artifact: NewArtifact,
    },
    ClaimDeliveries {
        limit: usize,
        visibility: Duration,
    },
    RecordTry {
        id: DeliveryId,
        claimed_tries: u32,
        attempt: NewTry,
        next: DeliveryNext,
    },
    CreateChild {
        fence: Fence,
        job: NewJob,
    },
    CreateIdempotent {
        job: NewJob,
        key: IdempotencyKey,
    },
    Schedule(ScheduleOp),
    Purge {
        before: DateTime<Utc>,
        limit: usize,
    },
}

/// A write of a schedule.
pub(crate) enum ScheduleOp {
    Create(NewSchedule),
    Update {
        id: ScheduleId,
        revision: u64,
        settings: ScheduleSettings,
    },
    Delete(ScheduleId),
    Fire(ScheduleFire),
}

/// What a write answers.
pub(crate) enum Done {
    Changed(Changed),
    ChangedAll(Vec<Changed>),
    Claim(Option<Claim>),
    Events(Vec<JobEvent>),
    Batch(Option<Vec<JobEvent>>),
    Heartbeat(Heartbeat),
    App(App, Vec<JobEvent>),
    Artifact(SavedArtifact),
    Deliveries(Vec<WebhookDelivery>),
    Delivery(WebhookDelivery),
    Created(Created),
    Schedule(Schedule),
    Deleted,
    Fired(Fired),
    Purged(Vec<projectengine_core::retention::Purged>),
}

impl Op {
    async fn run(&self, conn: &mut SqliteConnection, now: DateTime<Utc>) -> Result<Done> {
        Ok(match self {
            Op::Create(job) => Done::Changed(writes::create(conn, job, now).await?),
            Op::CreateAll(jobs) => {
                let mut all = Vec::with_capacity(jobs.len());
                for job in jobs {
                    all.push(writes::create(conn, job, now).await?);
                }
                Done::ChangedAll(all)
            }
            Op::Claim {
                id,
                worker_id,
                lease,
            } => Done::Claim(writes::claim(conn, *id, worker_id, *lease, now).await?),
            Op::Append { fence, events } => {
                Done::Events(writes::append(conn, *fence, events, now).await?)
            }
            Op::AppendBatch {
                fence,
                batch,
                events,
            } => Done::Batch(writes::append_batch(conn, *fence, *batch, events, now).await?),
            Op::Heartbeat { fence, lease } => {
                Done::Heartbeat(writes::heartbeat(conn, *fence, *lease, now).await?)
            }
            Op::SaveApp { fence, app } => {
                let (app, events) = writes::save_app(conn, *fence, app, now).await?;
                Done::App(app, events)
            }
            Op::Finish { fence, outcome } => {
                Done::Changed(writes::finish(conn, *fence, outcome, now).await?)
            }
            Op::Cancel(id) => Done::Changed(writes::request_cancel(conn, *id, now).await?),
            Op::Retry(id) => Done::Changed(writes::retry(conn, *id, now).await?),
            Op::Review { id, decision } => {
                Done::Changed(crate::review::review(conn, *id, decision, now).await?)
            }
            Op::PutArtifact { fence, artifact } => {
                Done::Artifact(writes::put_artifact(conn, *fence, artifact, now).await?)
            }
            Op::ClaimDeliveries { limit, visibility } => {
                Done::Deliveries(writes::claim_deliveries(conn, *limit, *visibility, now).await?)
            }
            Op::RecordTry {
                id,
                claimed_tries,
                attempt,
                next,
            } => Done::Delivery(
                writes::record_delivery_try(conn, *id, *claimed_tries, attempt, *next, now).await?,
            ),
            Op::CreateChild { fence, job } => {
                Done::Created(writes::create_child(conn, *fence, job, now).await?)
            }
            Op::CreateIdempotent { job, key } => {
                Done::Created(writes::create_job_idempotent(conn, job, key, now).await?)
            }
            Op::Purge { before, limit } => {
                Done::Purged(crate::retention::purge_finished(conn, *before, *limit).await?)
            }
            Op::Schedule(op) => match op {
                ScheduleOp::Create(new) => Done::Schedule(schedules::create(conn, new, now).await?),
                ScheduleOp::Update {
                    id,
                    revision,
                    settings,
                } => Done::Schedule(schedules::update(conn, *id, *revision, settings, now).await?),
                ScheduleOp::Delete(id) => {
                    schedules::delete(conn, *id).await?;
                    Done::Deleted
                }
                ScheduleOp::Fire(fire) => Done::Fired(schedules::fire(conn, fire, now).await?),
            },
        })
    }
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
}

/// What the writer has done so far.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Transactions committed.
    pub(crate) commits: AtomicU64,
    /// Writes answered from committed transactions (refusals included).
    pub(crate) writes: AtomicU64,
}

/// The handle to the writer task: dropping every handle ends it.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    sender: mpsc::Sender<Request>,
    counters: Arc<Counters>,
}

impl Writer {
    /// Starts the writer task on `conn`.
    pub(crate) fn spawn(conn: SqliteConnection, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (sender, receiver) = mpsc::channel(max_batch * 4);
        let counters = Arc::new(Counters::default());
        tokio::spawn(run(conn, receiver, max_batch, counters.clone()));
        Self { sender, counters }
    }

    /// Runs `op` in the writer's next batch, and answers once it is committed.
    pub(crate) async fn run(&self, op: Op) -> Result<Done> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Request { op, reply })
            .await
            .map_err(|_| Error::unavailable("the SQLite writer stopped"))?;
        answer
            .await
            .unwrap_or_else(|_| Err(Error::unavailable("the SQLite writer stopped")))
    }

    /// Whether the writer task still takes writes.
    pub(crate) fn alive(&self) -> bool {
        !self.sender.is_closed()
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// Takes what is waiting and commits it as one batch, until every handle is gone.
async fn run(
    mut conn: SqliteConnection,
    mut receiver: mpsc::Receiver<Request>,
    max_batch: usize,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while receiver.recv_many(&mut batch, max_batch).await > 0 {
        // A caller that went away before its write started gets nothing done.
        batch.retain(|r| !r.reply.is_closed());
        if !batch.is_empty() {
            commit(&mut conn, &mut batch, &counters).await;
        }
        batch.clear();
    }
    let _ = conn.close().await;
}

async fn commit(conn: &mut SqliteConnection, batch: &mut Vec<Request>, counters: &Counters) {
    let now = truncate(Utc::now());
    match together(conn, batch, now).await {
        Ok(answers) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters
                .writes
                .fetch_add(answers.len() as u64, Ordering::Relaxed);
            for (request, done) in batch.drain(..).zip(answers) {
                let _ = request.reply.send(done);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, writes = batch.len(), "a SQLite batch did not commit");
            let message = format!("the write was not committed: {e}");
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(Error::unavailable(message.clone())));
            }
        }
    }
}

/// Runs the batch in one transaction, each write under a savepoint; every
/// write's own answer, once committed. An error means nothing was committed.
async fn together(
    conn: &mut SqliteConnection,
    batch: &[Request],
    now: DateTime<Utc>,
) -> Result<Vec<Result<Done>>> {
    // IMMEDIATE takes the write lock now, waiting up to the busy timeout for
    // another process that holds it; a deferred transaction would fail at its
    // first write instead, without waiting.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(map)?;
    let mut answers = Vec::with_capacity(batch.len());
    for request in batch {
        let mut savepoint = tx.begin().await.map_err(map)?;
        let done = request.op.run(&mut savepoint, now).await;
        if done.is_ok() {
            savepoint.commit().await.map_err(map)?;
        } else {
            savepoint.rollback().await.map_err(map)?;
        }
        answers.push(done);
    }
    tx.commit().await.map_err(map)?;
    Ok(answers)
}
