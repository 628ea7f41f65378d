//! The review gate: a job submitted with [`Submit::review`](crate::Submit)
//! set whose attempt succeeds waits in `awaiting_review`, its App and
//! artifacts visible, until a person approves it (`succeeded`) or rejects it
//! with a comment (`queued` for a new attempt that sees the comment, or
//! `failed` with the code `rejected` when its attempts are spent).
//!
//! Every reviewed attempt counts against the job's `max_attempts`, as any
//! attempt does: a job its owner wants to be able to reject `n` times needs
//! `max_attempts` of at least `n + 1`. A rejection never grants attempts the
//! owner did not allow.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Engine, Error, Job, JobId, Owner, Result, Submit};

/// The longest reviewer's comment accepted, in bytes.
pub const MAX_REVIEW_COMMENT_BYTES: usize = 16 * 1024;

/// The code of the error a rejection records on the job.
pub const REJECTED: &str = "rejected";

/// A reviewer's decision on a job `awaiting_review`, executed by
/// [`Store::review`](crate::Store::review) as
/// [`transition::plan_review`](crate::transition::plan_review) plans it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReviewDecision {
    /// The result is accepted: the job `succeeded`.
    Approve,
    /// The result is refused: the job runs again, and its next attempt sees
    /// `comment`; or it fails when its attempts are spent.
    Reject {
        /// What the next attempt should change.
        comment: String,
    },
}

impl ReviewDecision {
    /// A rejection with `comment`, checked: not blank, at most
    /// [`MAX_REVIEW_COMMENT_BYTES`], no NUL character; otherwise
    /// [`Invalid`](Error::Invalid) naming the `comment` field.
    pub fn reject(comment: impl Into<String>) -> Result<Self> {
        let comment = comment.into();
        if comment.trim().is_empty() {
            return Err(Error::invalid("comment", "is required to reject a result"));
        }
        if comment.len() > MAX_REVIEW_COMMENT_BYTES {
            return Err(Error::invalid(
                "comment",
                format!("must be at most {MAX_REVIEW_COMMENT_BYTES} bytes"),
            ));
        }
        if comment.contains('\0') {
            return Err(Error::invalid("comment", "must not contain NUL characters"));
        }
        Ok(ReviewDecision::Reject { comment })
    }

    /// `approve` or `reject`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewDecision::Approve => "approve",
            ReviewDecision::Reject { .. } => "reject",
        }
    }
}

impl Engine {
    /// Approves the owner's job `awaiting_review`: it `succeeded`. Any other
    /// status is a [`Conflict`](Error::Conflict).
    pub async fn approve(&self, owner: &Owner, id: JobId) -> Result<Job> {
        self.review(owner, id, ReviewDecision::Approve).await
    }

    /// Rejects the owner's job `awaiting_review` with `comment` (checked by
    /// [`ReviewDecision::reject`]): it is queued for a new attempt whose
    /// orchestrator sees the comment, or `failed` (code `rejected`) when its
    /// attempts are spent. Any other status is a [`Conflict`](Error::Conflict).
    pub async fn reject(&self, owner: &Owner, id: JobId, comment: &str) -> Result<Job> {
        let decision = ReviewDecision::reject(comment)?;
        self.review(owner, id, decision).await
    }

    /// Executes a reviewer's decision, publishes its events and those of the
    /// dependents it released or cancelled, and wakes a worker for each job
    /// queued again.
    pub async fn review(&self, owner: &Owner, id: JobId, decision: ReviewDecision) -> Result<Job> {
        self.get(owner, id).await?;
        let changed = self.store().review(id, decision).await?;
        self.announce(&changed).await;
        Ok(changed.job)
    }

    /// Submits a new job (a new id, a fresh attempt budget) with the spec of
    /// the owner's finished job (`succeeded`, `failed` or `cancelled`): its
    /// kind, prompt, params, priority, max_attempts, timeout, webhook and
    /// review, validated like any submission. An unfinished job is a
    /// [`Conflict`](Error::Conflict).
    pub async fn rerun(&self, owner: &Owner, id: JobId) -> Result<Job> {
        let job = self.get(owner, id).await?;
        if !job.status.is_terminal() {
            return Err(Error::conflict(format!(
                "only a finished job can be run again; this one is {}",
                job.status
            )));
        }
        self.submit(owner, rerun_of(job)).await
    }
}

/// The submission that runs `job`'s spec again.
fn rerun_of(job: Job) -> Submit {
    let submit = Submit::new(job.prompt)
        .kind(job.kind)
        .params(job.params)
        .priority(job.priority)
        .max_attempts(job.max_attempts)
        .timeout(Duration::from_millis(job.timeout_ms))
        .review(job.review);
    // The rerun stays in its project and under its concurrency key; the
    // dependencies it waited for have ended, so it runs as soon as it can.
    let submit = match job.project {
        Some(project) => submit.project(project),
        None => submit,
    };
    let submit = match (job.concurrency_key, job.concurrency_limit) {
        (Some(key), Some(limit)) => submit.concurrency(key, limit),
        _ => submit,
    };
    match job.webhook {
        Some(url) => submit.webhook(url),
        None => submit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_needs_a_usable_comment() {
        for bad in ["", "  \n", "a\0b"] {
            assert!(matches!(
                ReviewDecision::reject(bad),
                Err(Error::Invalid { field, .. }) if field == "comment"
            ));
        }
        let long = "x".repeat(MAX_REVIEW_COMMENT_BYTES + 1);
        assert!(ReviewDecision::reject(long).is_err());
        assert_eq!(
            ReviewDecision::reject("use blue").expect("valid"),
            ReviewDecision::Reject {
                comment: "use blue".into()
            }
        );
    }
}
