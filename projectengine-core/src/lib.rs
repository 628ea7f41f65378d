#![doc = include_str!("../README.md")]

mod app;
pub mod artifact;
mod attempt;
pub mod children;
pub mod concurrency;
mod engine;
mod error;
mod event;
pub mod idempotency;
mod ids;
mod job;
pub mod memory;
pub mod metrics;
mod notifier;
mod orchestrator;
mod queue;
pub mod remote;
pub mod retention;
pub mod review;
pub mod schedule;
mod store;
mod stub;
pub mod trace;
pub mod transition;
mod watch;
mod webhook;
pub mod worker;
pub mod workflow;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use app::{App, NewApp};
pub use artifact::{
    Artifact, ArtifactBody, ArtifactLimits, ArtifactReader, ArtifactStore, NewArtifact,
    SavedArtifact,
};
pub use attempt::{Attempt, AttemptStatus, Fence};
pub use engine::{Engine, EventObserver, Limits, Submit};
pub use error::{BoxError, Error, Result};
pub use event::{
    ArtifactStored, EventData, FsAudit, FsOp, JobEvent, LogLevel, LogLine, Step, StepStatus,
};
pub use idempotency::{IdempotencyKey, Submitted};
pub use ids::{AppId, AttemptId, DeliveryId, JobId, Owner};
pub use job::{Job, JobError, JobQuery, JobStatus, NewJob, Page};
pub use notifier::{Notification, NotificationStream, Notifier};
pub use orchestrator::{
    ErrorKind, JobCallbacks, Orchestrator, OrchestratorError, Registered, Registry,
};
pub use queue::{Delivery, Queue, QueueDepth, QueueEntry};
pub use review::ReviewDecision;
pub use schedule::{
    CreateSchedule, Fired, JobTemplate, MisfirePolicy, NewSchedule, OverlapPolicy, Schedule,
    ScheduleFire, ScheduleId, SchedulePatch, ScheduleRun, ScheduleSettings, SkipReason,
};
pub use store::{Changed, Claim, Created, DueJob, Heartbeat, JobDetail, Outcome, Store};
pub use stub::StubOrchestrator;
pub use trace::TracePropagator;
pub use watch::{EventStream, WatchConfig};
pub use webhook::{
    DeliveryLog, DeliveryNext, DeliveryStatus, DeliveryTry, Destination, NewTry, WebhookCheck,
    WebhookDelivery, Webhooks, MAX_WEBHOOK_URL_BYTES,
};
pub use worker::{Worker, WorkerConfig, WorkerHandle};
pub use workflow::{BatchJob, Project};

/// Re-exported so orchestrators need not depend on tokio-util themselves.
pub use tokio_util::sync::CancellationToken;
