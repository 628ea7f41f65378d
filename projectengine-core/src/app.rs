//! Apps: the JSON artifact a job exists to produce.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AppId, JobId, Owner};

/// The structured result of a job. A job publishes at most one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// The job that produced it.
    pub job_id: JobId,
    /// The attempt that published it.
    pub attempt: u32,
    /// The job's owner.
    pub owner: Owner,
    /// A display name.
    pub name: String,
    /// The artifact itself.
    pub payload: Value,
    /// When it was published.
    pub created_at: DateTime<Utc>,
}

/// An App as an orchestrator hands it to [`JobCallbacks::publish_app`](crate::JobCallbacks::publish_app).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewApp {
    /// A display name.
    pub name: String,
    /// The artifact.
    pub payload: Value,
}
