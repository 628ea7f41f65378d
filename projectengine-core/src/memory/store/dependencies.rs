//! The memory store's dependencies: a new job's first status, and the
//! release or cancel of dependents when a job ends (see
//! [`crate::workflow`]). Everything runs under the store's one lock.

use chrono::{DateTime, Utc};

use super::Inner;
use crate::transition;
use crate::workflow::{self, CreatePlan, FoundDependency};
use crate::{Changed, Job, JobId, JobStatus, NewJob, Result};

impl Inner {
    /// Plans `new`'s first status from its dependencies: jobs of the store,
    /// or of `earlier` (jobs of the same batch, created before it).
    pub(super) fn plan_create(&self, new: &NewJob, earlier: &[&Job]) -> Result<CreatePlan> {
        let found: Vec<FoundDependency> = new
            .depends_on
            .iter()
            .filter_map(|id| {
                let job = self
                    .jobs
                    .get(id)
                    .map(|r| &r.job)
                    .or_else(|| earlier.iter().copied().find(|j| j.id == *id))?;
                Some(FoundDependency {
                    id: job.id,
                    owner: job.owner.clone(),
                    status: job.status,
                })
            })
            .collect();
        workflow::plan_create(new, &found)
    }

    /// Records that `job` waits for its dependencies.
    pub(super) fn index_dependencies(&mut self, job: &Job) {
        for dep in &job.depends_on {
            self.dependents.entry(*dep).or_default().push(job.id);
        }
    }

    /// What `job`, just moved to its status by a transition, does to its
    /// dependents: releases them ([`Inner::release_dependents`]) or cancels
    /// them ([`Inner::cancel_dependents`]). The jobs moved, each with its
    /// events.
    pub(super) fn settle_dependents(&mut self, job: &Job, now: DateTime<Utc>) -> Vec<Changed> {
        if transition::releases_dependents(job.status) {
            self.release_dependents(job.id, now)
        } else if transition::fails_dependents(job.status) {
            self.cancel_dependents(job.id, job.status, now)
        } else {
            Vec::new()
        }
    }

    /// Releases every `waiting` dependent of `id` (which has just
    /// succeeded) whose dependencies have all succeeded: `queued`, with its
    /// status event. The store's release function: a transition that makes a
    /// job `succeeded` calls it under the same lock.
    pub(super) fn release_dependents(&mut self, id: JobId, now: DateTime<Utc>) -> Vec<Changed> {
        let Some(dependents) = self.dependents.get(&id).cloned() else {
            return Vec::new();
        };
        let mut moved = Vec::new();
        for dep in dependents {
            let Some(rec) = self.jobs.get(&dep) else {
                continue;
            };
            let ready = rec.job.status == JobStatus::Waiting
                && rec.job.depends_on.iter().all(|d| {
                    self.jobs
                        .get(d)
                        .is_some_and(|r| r.job.status == JobStatus::Succeeded)
                });
            if !ready {
                continue;
            }
            let Ok(plan) = transition::plan_release(&rec.job, now) else {
                continue;
            };
            let rec = self.jobs.get_mut(&dep).expect("looked up above");
            let old = (rec.job.status, rec.job.run_at);
            plan.apply_to(&mut rec.job);
            let events = plan.events.into_iter().map(|d| rec.push(d, now)).collect();
            let job = rec.job.clone();
            self.reindex(dep, Some(old), (job.status, job.run_at));
            moved.push(Changed::of(job, events));
        }
        moved
    }

    /// Cancels every `waiting` dependent of `id` (which has just ended
    /// `status`) with `dependency_failed`, and theirs in turn, each with its
    /// status event and its webhook outbox rows.
    pub(super) fn cancel_dependents(
        &mut self,
        id: JobId,
        status: JobStatus,
        now: DateTime<Utc>,
    ) -> Vec<Changed> {
        let mut moved = Vec::new();
        let mut ended = vec![(id, status)];
        while let Some((failed, failed_status)) = ended.pop() {
            let Some(dependents) = self.dependents.get(&failed).cloned() else {
                continue;
            };
            for dep in dependents {
                let Some(rec) = self.jobs.get_mut(&dep) else {
                    continue;
                };
                let Ok(plan) = transition::plan_dependency_failed(&rec.job, failed, failed_status)
                else {
                    continue;
                };
                let old = (rec.job.status, rec.job.run_at);
                plan.apply_to(&mut rec.job, now);
                let events = plan.events.into_iter().map(|d| rec.push(d, now)).collect();
                let job = rec.job.clone();
                self.reindex(dep, Some(old), (job.status, job.run_at));
                self.write_outbox(&job, now);
                ended.push((dep, job.status));
                moved.push(Changed::of(job, events));
            }
        }
        moved
    }
}
