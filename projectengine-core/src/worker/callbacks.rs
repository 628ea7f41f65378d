//! The [`JobCallbacks`] a worker hands to an orchestrator: persist, then publish.

use async_trait::async_trait;
use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

use crate::{
    App, Engine, Error, EventData, Fence, JobCallbacks, LogLevel, LogLine, NewApp, Result, Step,
};

/// Callbacks of one attempt. Log lines wait in `pending` and ride along with the
/// next write, so a step after some logs costs one store round trip.
pub(crate) struct AttemptCallbacks<'a> {
    engine: &'a Engine,
    kind: &'a str,
    fence: Fence,
    token: CancellationToken,
    pending: Mutex<Vec<EventData>>,
    max_pending: usize,
}

impl<'a> AttemptCallbacks<'a> {
    pub(crate) fn new(
        engine: &'a Engine,
        kind: &'a str,
        fence: Fence,
        token: CancellationToken,
        max_pending: usize,
    ) -> Self {
        Self {
            engine,
            kind,
            fence,
            token,
            pending: Mutex::new(Vec::new()),
            max_pending: max_pending.max(1),
        }
    }

    /// Persists the buffered lines and `extra` in one append, then publishes them.
    async fn write(&self, extra: Option<EventData>) -> Result<()> {
        let pending = self.pending.lock().await;
        self.write_locked(pending, extra).await
    }

    async fn write_locked(
        &self,
        mut pending: MutexGuard<'_, Vec<EventData>>,
        extra: Option<EventData>,
    ) -> Result<()> {
        let mut batch = std::mem::take(&mut *pending);
        batch.extend(extra);
        if batch.is_empty() {
            return Ok(());
        }
        let events = self.engine.store().append(self.fence, batch).await?;
        drop(pending);
        self.engine.publish(self.kind, &events).await;
        Ok(())
    }

    /// Flushes buffered log lines.
    pub(crate) async fn flush(&self) -> Result<()> {
        self.write(None).await
    }

    /// Flushes buffered log lines unless a write is in flight (which carries
    /// them anyway). Never waits for the orchestrator: the supervisor calls this
    /// while it is not polling the orchestrator's future, so waiting for a lock
    /// that future holds would never end.
    pub(crate) async fn flush_if_idle(&self) -> Result<()> {
        match self.pending.try_lock() {
            Ok(pending) => self.write_locked(pending, None).await,
            Err(_) => Ok(()),
        }
    }

    /// The attempt these callbacks write for.
    pub(crate) fn fence(&self) -> Fence {
        self.fence
    }
}

#[async_trait]
impl JobCallbacks for AttemptCallbacks<'_> {
    async fn stage(&self, stage: &str) -> Result<()> {
        self.write(Some(EventData::Stage {
            stage: stage.to_owned(),
        }))
        .await
    }

    async fn step(&self, step: Step) -> Result<()> {
        self.write(Some(EventData::Step(step))).await
    }

    async fn progress(&self, percent: u8) -> Result<()> {
        if percent > 100 {
            return Err(Error::invalid("progress", "must be between 0 and 100"));
        }
        self.write(Some(EventData::Progress { progress: percent }))
            .await
    }

    async fn log(&self, level: LogLevel, message: &str) -> Result<()> {
        let full = {
            let mut pending = self.pending.lock().await;
            pending.push(EventData::Log(LogLine {
                level,
                message: message.to_owned(),
            }));
            pending.len() >= self.max_pending
        };
        if full {
            self.flush().await?;
        }
        Ok(())
    }

    async fn publish_app(&self, app: NewApp) -> Result<App> {
        self.flush().await?;
        let (app, events) = self.engine.store().save_app(self.fence, app).await?;
        self.engine.publish(self.kind, &events).await;
        Ok(app)
    }

    fn cancellation(&self) -> &CancellationToken {
        &self.token
    }

    fn attempt(&self) -> u32 {
        self.fence.attempt
    }
}
