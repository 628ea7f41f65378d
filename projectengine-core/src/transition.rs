//! What a finished attempt does to its job: computed once here, applied by every
//! store inside its own atomic write.

use chrono::{DateTime, Utc};

use crate::{AttemptStatus, EventData, Job, JobError, JobStatus, Outcome};

/// The writes an [`Outcome`] implies for a job whose running attempt ends.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishPlan {
    /// The attempt's final status.
    pub attempt_status: AttemptStatus,
    /// The error recorded on the attempt.
    pub attempt_error: Option<JobError>,
    /// The job's new status.
    pub job_status: JobStatus,
    /// The job's error afterwards.
    pub job_error: Option<JobError>,
    /// The job's `run_at` afterwards (changed when it is queued again).
    pub run_at: DateTime<Utc>,
    /// The job's `attempts_used` afterwards.
    pub attempts_used: u32,
    /// The job's `finished_at` afterwards.
    pub finished_at: Option<DateTime<Utc>>,
    /// The events to append, in order.
    pub events: Vec<EventData>,
}

/// Plans the end of `job`'s running attempt with `outcome`, at time `now`.
///
/// `job` must be `running`; the caller holds it locked (or compares-and-sets on
/// its `attempt`) while applying the plan.
pub fn plan_finish(job: &Job, outcome: &Outcome, now: DateTime<Utc>) -> FinishPlan {
    let attempts_left = job.attempts_used < job.max_attempts;
    let requeue = |attempt_status, error: JobError, delay: Option<std::time::Duration>| {
        let mut events = vec![EventData::Error(error.clone())];
        match delay {
            Some(d) if attempts_left => {
                let run_at =
                    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
                events.push(EventData::Status {
                    status: JobStatus::Queued,
                    error: Some(error.clone()),
                    run_at: Some(run_at),
                });
                FinishPlan {
                    attempt_status,
                    attempt_error: Some(error.clone()),
                    job_status: JobStatus::Queued,
                    job_error: Some(error),
                    run_at,
                    attempts_used: job.attempts_used,
                    finished_at: None,
                    events,
                }
            }
            _ => {
                events.push(EventData::Status {
                    status: JobStatus::Failed,
                    error: Some(error.clone()),
                    run_at: None,
                });
                FinishPlan {
                    attempt_status,
                    attempt_error: Some(error.clone()),
                    job_status: JobStatus::Failed,
                    job_error: Some(error),
                    run_at: job.run_at,
                    attempts_used: job.attempts_used,
                    finished_at: Some(now),
                    events,
                }
            }
        }
    };
    let terminal = |attempt_status, job_status| FinishPlan {
        attempt_status,
        attempt_error: None,
        job_status,
        job_error: None,
        run_at: job.run_at,
        attempts_used: job.attempts_used,
        finished_at: Some(now),
        events: vec![EventData::Status {
            status: job_status,
            error: None,
            run_at: None,
        }],
    };
    match outcome {
        Outcome::Succeeded => terminal(AttemptStatus::Succeeded, JobStatus::Succeeded),
        Outcome::Cancelled => terminal(AttemptStatus::Cancelled, JobStatus::Cancelled),
        Outcome::Failed { error, retry_in } => {
            requeue(AttemptStatus::Failed, error.clone(), *retry_in)
        }
        Outcome::TimedOut { retry_in } => requeue(
            AttemptStatus::TimedOut,
            JobError::new(
                "timeout",
                format!("the attempt ran longer than {} ms", job.timeout_ms),
            ),
            *retry_in,
        ),
        Outcome::Released => {
            let error = JobError::new("released", "the worker shut down; queued again");
            FinishPlan {
                attempt_status: AttemptStatus::Cancelled,
                attempt_error: Some(error.clone()),
                job_status: JobStatus::Queued,
                job_error: job.error.clone(),
                run_at: now,
                attempts_used: job.attempts_used.saturating_sub(1),
                finished_at: None,
                events: vec![EventData::Status {
                    status: JobStatus::Queued,
                    error: Some(error),
                    run_at: Some(now),
                }],
            }
        }
        Outcome::Lost => {
            let error = JobError::new("lost", "the worker stopped renewing its lease");
            if job.cancel_requested {
                let mut plan = terminal(AttemptStatus::Lost, JobStatus::Cancelled);
                plan.attempt_error = Some(error);
                plan
            } else {
                requeue(AttemptStatus::Lost, error, Some(std::time::Duration::ZERO))
            }
        }
    }
}
