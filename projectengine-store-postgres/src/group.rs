//! Group commit: the writes of concurrent callers share one transaction.
//!
//! Attempt writes (create, claim, append, save the app, finish) go to a
//! channel. A few writer tasks each take what is waiting — up to
//! [`GroupCommit::max_batch`] — run it in one transaction and commit once, so
//! one WAL flush makes a whole batch durable; only then is each caller
//! answered, and only then does it publish. While one writer waits for its
//! commit, the next collects the following batch.
//!
//! - A batch runs ordered by job id (stable, so one job's writes keep their
//!   order): every batch takes its row locks in the same order, and two
//!   writers never deadlock on each other.
//! - A write that fails inside a batch (a stale fence, a conflict) is that
//!   caller's answer, as long as the transaction is still usable. When it is
//!   not (a database error aborted it), nothing of the batch was committed,
//!   and each write of it is run again on its own, so one bad write fails
//!   alone.
//! - When the commit itself fails, its outcome is unknown; every caller of
//!   the batch gets the error, as a single statement's caller would.
//! - A lone write runs as before: one statement (one transaction for `finish`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use projectengine_core::{
    App, Changed, Claim, Error, EventData, Fence, JobEvent, JobId, NewApp, NewJob, Outcome, Result,
};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::error::map;
use crate::{apps, attempts, events, jobs};

/// How a [`PgStore`](crate::PgStore) groups concurrent writes into shared
/// transactions.
///
/// The default runs 2 writers, each committing up to 64 writes at a time.
/// [`GroupCommit::off`] gives every write a transaction of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    /// Writer tasks, each with a pooled connection while it commits a batch
    /// (0: no grouping).
    pub writers: usize,
    /// The most writes one transaction takes.
    pub max_batch: usize,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            writers: 2,
            max_batch: 64,
        }
    }
}

impl GroupCommit {
    /// No grouping: each write is its own transaction.
    pub fn off() -> Self {
        Self {
            writers: 0,
            max_batch: 1,
        }
    }
}

/// A write that may share a transaction.
// Each op is moved once into its batch: boxing the submission would add an
// allocation per job for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Op {
    Create(NewJob),
    Claim {
        id: JobId,
        worker_id: String,
        lease: Duration,
    },
    Append {
        fence: Fence,
        events: Vec<EventData>,
    },
    SaveApp {
        fence: Fence,
        app: NewApp,
    },
    Finish {
        fence: Fence,
        outcome: Outcome,
    },
}

/// What a write answers.
pub(crate) enum Done {
    Changed(Changed),
    Claim(Option<Claim>),
    Events(Vec<JobEvent>),
    App(App, Vec<JobEvent>),
}

impl Op {
    fn job_id(&self) -> JobId {
        match self {
            Op::Create(job) => job.id,
            Op::Claim { id, .. } => *id,
            Op::Append { fence, .. } | Op::SaveApp { fence, .. } | Op::Finish { fence, .. } => {
                fence.job_id
            }
        }
    }

    /// Runs on `conn`, inside the caller's transaction if it has one.
    async fn run(&self, conn: &mut PgConnection) -> Result<Done> {
        Ok(match self {
            Op::Create(job) => Done::Changed(jobs::create(conn, job).await?),
            Op::Claim {
                id,
                worker_id,
                lease,
            } => Done::Claim(jobs::claim(conn, *id, worker_id, *lease).await?),
            Op::Append { fence, events } => {
                Done::Events(events::append(conn, *fence, events).await?)
            }
            Op::SaveApp { fence, app } => {
                let (app, events) = apps::save(conn, *fence, app).await?;
                Done::App(app, events)
            }
            Op::Finish { fence, outcome } => {
                Done::Changed(attempts::finish(conn, *fence, outcome).await?)
            }
        })
    }

    /// Runs in a transaction of its own.
    async fn alone(&self, pool: &PgPool) -> Result<Done> {
        let several = match self {
            // A finish settles the job's dependents in its transaction.
            Op::Finish { .. } => true,
            Op::Create(job) => job.max_queued.is_some() || !job.depends_on.is_empty(),
            _ => false,
        };
        if several {
            // Several statements (lock, then write): they need a transaction.
            let mut tx = pool.begin().await.map_err(map)?;
            let done = self.run(&mut tx).await;
            return crate::tx::settle(tx, done).await;
        }
        let mut conn = pool.acquire().await.map_err(map)?;
        self.run(&mut conn).await
    }
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
}

/// The writers of one store, started at its first write.
pub(crate) struct Writes {
    pool: PgPool,
    config: GroupCommit,
    sender: Mutex<Option<mpsc::Sender<Request>>>,
}

impl std::fmt::Debug for Writes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writes")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Writes {
    pub(crate) fn new(pool: PgPool, config: GroupCommit) -> Self {
        Self {
            pool,
            config,
            sender: Mutex::new(None),
        }
    }

    pub(crate) fn config(&self) -> GroupCommit {
        self.config
    }

    /// Runs `op`, grouped with concurrent writes when grouping is on.
    pub(crate) async fn run(&self, op: Op) -> Result<Done> {
        if self.config.writers == 0 {
            return op.alone(&self.pool).await;
        }
        let sender = self.sender();
        let (reply, answer) = oneshot::channel();
        match sender.send(Request { op, reply }).await {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err(Error::unavailable("the PostgreSQL writer stopped"))),
            // The writers are gone (the runtime that ran them ended).
            Err(mpsc::error::SendError(request)) => request.op.alone(&self.pool).await,
        }
    }

    /// The writers' channel, starting them on first use, or again when the
    /// runtime that ran them has ended.
    fn sender(&self) -> mpsc::Sender<Request> {
        let mut slot = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let max_batch = self.config.max_batch.max(1);
        let (sender, receiver) = mpsc::channel(max_batch * self.config.writers.max(1) * 4);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..self.config.writers {
            tokio::spawn(writer(self.pool.clone(), receiver.clone(), max_batch));
        }
        *slot = Some(sender.clone());
        sender
    }
}

/// Takes what is waiting and commits it as one batch, until every sender is gone.
async fn writer(
    pool: PgPool,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        {
            let mut receiver = receiver.lock().await;
            if receiver.recv_many(&mut batch, max_batch).await == 0 {
                return;
            }
        }
        // A caller that went away before its write started gets nothing done.
        batch.retain(|r| !r.reply.is_closed());
        commit(&pool, &mut batch).await;
        batch.clear();
    }
}

async fn commit(pool: &PgPool, batch: &mut Vec<Request>) {
    if batch.len() <= 1 {
        for request in batch.drain(..) {
            let done = request.op.alone(pool).await;
            let _ = request.reply.send(done);
        }
        return;
    }
    batch.sort_by_key(|r| r.op.job_id());
    match together(pool, batch).await {
        Ok(answers) => {
            for (request, done) in batch.drain(..).zip(answers) {
                let _ = request.reply.send(done);
            }
        }
        Err(Failed::Aborted(e)) => {
            tracing::debug!(error = %e, writes = batch.len(), "a grouped write failed; running the batch's writes one by one");
            for request in batch.drain(..) {
                let done = request.op.alone(pool).await;
                let _ = request.reply.send(done);
            }
        }
        Err(Failed::Unknown(e)) => {
            let message = format!("the commit's outcome is unknown: {e}");
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(Error::unavailable(message.clone())));
            }
        }
    }
}

/// Why a batch did not commit.
enum Failed {
    /// Nothing was committed: the writes may run again.
    Aborted(Error),
    /// The commit's outcome is unknown: the writes must not run again.
    Unknown(Error),
}

fn probe_failed(write: &Error, probe: sqlx::Error) -> Error {
    Error::unavailable(format!("{write} (then: {probe})"))
}

/// Runs the batch in one transaction; every write's own answer, once committed.
async fn together(
    pool: &PgPool,
    batch: &[Request],
) -> std::result::Result<Vec<Result<Done>>, Failed> {
    let mut tx = pool.begin().await.map_err(|e| Failed::Aborted(map(e)))?;
    let mut answers = Vec::with_capacity(batch.len());
    for request in batch {
        let done = request.op.run(&mut tx).await;
        if let Err(e) = &done {
            // A refusal leaves the transaction usable; a database error
            // aborts it, and then this probe fails too.
            if let Err(probe) = sqlx::query("SELECT 1").execute(&mut *tx).await {
                return Err(Failed::Aborted(probe_failed(e, probe)));
            }
        }
        answers.push(done);
    }
    tx.commit().await.map_err(|e| Failed::Unknown(map(e)))?;
    Ok(answers)
}
