#![doc = include_str!("../README.md")]

mod attempt;
pub mod client;
mod error;
pub mod workspace;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use projectengine_core::{CancellationToken, JobId, Orchestrator};

pub use attempt::{run_attempt, AttemptEnd, RemoteCallbacks};
pub use client::{ChildReply, Client, Finish, Policy, Retry, RunContext};
pub use error::AgentError;
pub use workspace::{AuditSink, FsOp, Workspace, WorkspaceError};

/// A remote agent: claims jobs of its kinds from a server and runs them with
/// an [`Orchestrator`] — the same type an in-process worker runs.
#[derive(Clone)]
pub struct Agent {
    client: Client,
    token: String,
    kinds: Option<Vec<String>>,
    orchestrator: Arc<dyn Orchestrator>,
    wait: Duration,
    cancel_grace: Duration,
    allowed_roots: Option<Vec<PathBuf>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("client", &self.client)
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent of `client`'s server, authenticated by the agent token
    /// `token`, running `orchestrator`.
    pub fn new(client: Client, token: impl Into<String>, orchestrator: impl Orchestrator) -> Self {
        Self {
            client,
            token: token.into(),
            kinds: None,
            orchestrator: Arc::new(orchestrator),
            wait: Duration::from_secs(20),
            cancel_grace: Duration::from_secs(5),
            allowed_roots: None,
        }
    }

    /// The directories this agent lets jobs write in: each attempt's
    /// [`Workspace::current`] allows the job's `writable_roots` inside them,
    /// and reports every check as an `fs_audit` event.
    pub fn allow_roots(mut self, roots: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.allowed_roots = Some(roots.into_iter().map(Into::into).collect());
        self
    }

    /// Claims only jobs of these kinds (by default, all the token's).
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.kinds = Some(kinds.into_iter().map(Into::into).collect());
        self
    }

    /// How long one claim waits for a job (default 20 s).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// How long a stopped orchestrator gets to return (default 5 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Claims one job (waiting up to the claim wait) and runs it: `None` when
    /// no job came.
    pub async fn run_one(&self) -> Result<Option<(JobId, AttemptEnd)>, AgentError> {
        let Some(context) = self
            .client
            .claim(&self.token, self.kinds.as_deref(), self.wait)
            .await?
        else {
            return Ok(None);
        };
        let id = context.job.id;
        tracing::info!(job_id = %id, attempt = context.attempt, "claimed a job");
        let end = run_attempt(
            &self.client,
            context,
            &*self.orchestrator,
            self.cancel_grace,
            self.allowed_roots.as_deref(),
        )
        .await;
        Ok(Some((id, end)))
    }

    /// Runs jobs one after another until `shutdown` fires; a running
    /// attempt is finished first (its orchestrator sees no cancel from the
    /// shutdown). Transient errors are retried with a pause; a refusal (a
    /// bad token, a kind not allowed) ends the run.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let mut pause = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            let claimed = tokio::select! {
                r = self.client.claim(&self.token, self.kinds.as_deref(), self.wait) => r,
                _ = shutdown.cancelled() => break,
            };
            match claimed {
                Ok(Some(context)) => {
                    pause = Duration::from_millis(200);
                    let id = context.job.id;
                    tracing::info!(job_id = %id, attempt = context.attempt, "claimed a job");
                    let end = run_attempt(
                        &self.client,
                        context,
                        &*self.orchestrator,
                        self.cancel_grace,
                        self.allowed_roots.as_deref(),
                    )
                    .await;
                    tracing::info!(job_id = %id, ?end, "attempt ended");
                }
                Ok(None) => pause = Duration::from_millis(200),
                Err(e @ AgentError::Refused { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, ?pause, "claim failed; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        Ok(())
    }
}
