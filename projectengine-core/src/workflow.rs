//! Workflows of jobs: projects, dependencies and batches.
//!
//! - **Projects**: a job may name a project of its owner
//!   ([`Submit::project`](crate::Submit::project), checked by
//!   [`check_project`]); the owner's job list filters by it, and
//!   [`Store::projects`](crate::Store::projects) counts each project's jobs
//!   per status.
//! - **Dependencies**: a job may depend on other jobs of its owner
//!   ([`Submit::depends_on`](crate::Submit::depends_on)). The store decides
//!   its first status with [`plan_create`], atomically with the insert: all
//!   dependencies `succeeded` already → `queued`; one `failed` or `cancelled`
//!   → the submission is refused ([`Invalid`](Error::Invalid) `depends_on`:
//!   it could never run); otherwise `waiting`. A job that succeeds releases,
//!   in the same transaction, each `waiting` dependent whose dependencies
//!   have now all succeeded
//!   ([`transition::plan_release`](crate::transition::plan_release)); a job
//!   that fails or is cancelled cancels its `waiting` dependents with the
//!   error `dependency_failed`, transitively, in the same transaction
//!   ([`transition::plan_dependency_failed`](crate::transition::plan_dependency_failed)).
//!   The jobs moved come back in [`Changed::dependents`](crate::Changed::dependents),
//!   for the engine to publish their events and wake the released ones (a
//!   lost wake-up is made good by recovery, which pushes due queued jobs).
//!   An owner's retry of a failed dependency does not bring back the
//!   dependents it cancelled: they are finished; retry them too (they will
//!   wait again only if submitted again, since a retried job is `queued`).
//! - **Batches**: [`Engine::submit_batch`](crate::Engine::submit_batch)
//!   creates several jobs at once, all or none
//!   ([`Store::create_jobs`](crate::Store::create_jobs)); their dependencies
//!   may name each other by a local reference, ordered by [`order_batch`],
//!   which refuses cycles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Engine, Error, EventData, Job, JobId, JobStatus, NewJob, Owner, Result, Submit};

/// Longest project name, in bytes.
pub const MAX_PROJECT_BYTES: usize = 64;

/// Most dependencies one job may have.
pub const MAX_DEPENDENCIES: usize = 64;

/// Most jobs one batch may create.
pub const MAX_BATCH_JOBS: usize = 100;

/// Longest local reference of a batch item, in bytes.
pub const MAX_REFERENCE_BYTES: usize = 64;

/// Checks a project name: 1 to [`MAX_PROJECT_BYTES`] bytes of printable
/// characters, not starting or ending with a space.
pub fn check_project(project: &str) -> Result<()> {
    check_name("project", project, MAX_PROJECT_BYTES)
}

/// Checks a batch item's local reference, like a project name.
pub fn check_reference(reference: &str) -> Result<()> {
    check_name("ref", reference, MAX_REFERENCE_BYTES)
}

pub(crate) fn check_name(field: &'static str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if name.len() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must be printable"));
    }
    if name.trim() != name {
        return Err(Error::invalid(
            field,
            "must not start or end with white space",
        ));
    }
    Ok(())
}

/// Checks a job's dependency list: at most [`MAX_DEPENDENCIES`], each once,
/// not the job itself. Whose they are and where they stand is the store's
/// check ([`plan_create`]).
pub fn check_dependencies(id: JobId, depends_on: &[JobId]) -> Result<()> {
    if depends_on.len() > MAX_DEPENDENCIES {
        return Err(Error::invalid(
            "depends_on",
            format!("must name at most {MAX_DEPENDENCIES} jobs"),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(depends_on.len());
    for dep in depends_on {
        if *dep == id {
            return Err(Error::invalid(
                "depends_on",
                "a job cannot depend on itself",
            ));
        }
        if !seen.insert(*dep) {
            return Err(Error::invalid(
                "depends_on",
                format!("names job {dep} twice"),
            ));
        }
    }
    Ok(())
}

/// A dependency of a new job as the store found it, in the transaction
/// that inserts the job (locked against a concurrent change of status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundDependency {
    /// Its id.
    pub id: JobId,
    /// Its owner.
    pub owner: Owner,
    /// Its status.
    pub status: JobStatus,
}

/// How a new job starts, from [`plan_create`].
#[derive(Clone, Debug, PartialEq)]
pub struct CreatePlan {
    /// `queued`, or `waiting` while a dependency has not succeeded.
    pub status: JobStatus,
    /// Its first events (the status event, seq 1).
    pub events: Vec<EventData>,
}

/// Plans the creation of `new` given its dependencies as the store found
/// them (`found`, in any order; ids not found are absent). A dependency
/// unknown or of another owner is [`Invalid`](Error::Invalid) `depends_on`
/// (the same answer for both: another owner's job is invisible); one
/// `failed` or `cancelled` is refused too, since the job could never run.
pub fn plan_create(new: &NewJob, found: &[FoundDependency]) -> Result<CreatePlan> {
    let mut waiting = false;
    for id in &new.depends_on {
        let dep = found
            .iter()
            .find(|d| d.id == *id && d.owner == new.owner)
            .ok_or_else(|| Error::invalid("depends_on", format!("unknown job {id}")))?;
        match dep.status {
            JobStatus::Succeeded => {}
            JobStatus::Failed | JobStatus::Cancelled => {
                return Err(Error::invalid(
                    "depends_on",
                    format!(
                        "job {id} is {}, so this job could never run; retry it first",
                        dep.status
                    ),
                ))
            }
            _ => waiting = true,
        }
    }
    let status = if waiting {
        JobStatus::Waiting
    } else {
        JobStatus::Queued
    };
    Ok(CreatePlan {
        status,
        events: vec![EventData::Status {
            status,
            error: None,
            run_at: Some(new.run_at),
        }],
    })
}

/// An owner's project with its jobs counted per status, from
/// [`Store::projects`](crate::Store::projects).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Its name.
    pub name: String,
    /// How many of its jobs are in each status (statuses without jobs are
    /// absent), by the status's snake_case name.
    pub counts: BTreeMap<String, u64>,
    /// How many jobs it has.
    pub total: u64,
}

impl Project {
    /// Builds the projects from `(project, status, count)` rows, ordered by
    /// name.
    pub fn from_counts(rows: impl IntoIterator<Item = (String, JobStatus, u64)>) -> Vec<Project> {
        let mut by_name: BTreeMap<String, Project> = BTreeMap::new();
        for (name, status, n) in rows {
            if n == 0 {
                continue;
            }
            let p = by_name.entry(name.clone()).or_insert_with(|| Project {
                name,
                counts: BTreeMap::new(),
                total: 0,
            });
            *p.counts.entry(status.as_str().to_owned()).or_default() += n;
            p.total += n;
        }
        by_name.into_values().collect()
    }
}

/// Orders a batch so that every item comes after the items it depends on:
/// `needs[i]` lists the indexes of the items item `i` depends on. Items keep
/// their given order where the dependencies allow it. A cycle is
/// [`Invalid`](Error::Invalid) `jobs`, naming the items that form it (by
/// index, with `names[i]` when given).
pub fn order_batch(needs: &[Vec<usize>], names: &[Option<String>]) -> Result<Vec<usize>> {
    let n = needs.len();
    let mut pending: Vec<usize> = vec![0; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, deps) in needs.iter().enumerate() {
        for &d in deps {
            if d >= n {
                return Err(Error::invalid(
                    "jobs",
                    format!("item {i} depends on item {d}, which does not exist"),
                ));
            }
            pending[i] += 1;
            dependents[d].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &dependents[i] {
            pending[j] -= 1;
            if pending[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Every item left waits on another item left: walk back along the
    // dependencies until an item repeats.
    let start = (0..n).find(|&i| pending[i] > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut at = start;
    while let Some(&next) = needs[at].iter().find(|&&d| pending[d] > 0) {
        if let Some(pos) = path.iter().position(|&p| p == next) {
            path.drain(..pos);
            path.push(next);
            break;
        }
        path.push(next);
        at = next;
    }
    let label = |i: usize| match names.get(i).and_then(|n| n.as_deref()) {
        Some(name) => format!("{i} (`{name}`)"),
        None => i.to_string(),
    };
    let cycle: Vec<String> = path.into_iter().map(label).collect();
    Err(Error::invalid(
        "jobs",
        format!(
            "the dependencies form a cycle: item {}",
            cycle.join(" depends on item ")
        ),
    ))
}

/// One job of a batch ([`Engine::submit_batch`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchJob {
    /// Its local reference, by which other items of the batch name it in
    /// their `depends_on` (unique in the batch; see [`check_reference`]).
    pub reference: Option<String>,
    /// The submission; its own `depends_on` may list ids of existing jobs.
    pub submit: Submit,
    /// What it depends on: the reference of another item of the batch, or
    /// the id of an existing job of the owner.
    pub depends_on: Vec<String>,
}

impl BatchJob {
    /// A batch item with a reference.
    pub fn new(reference: impl Into<String>, submit: Submit) -> Self {
        Self {
            reference: Some(reference.into()),
            submit,
            depends_on: Vec::new(),
        }
    }

    /// Adds what it depends on: references or job ids.
    pub fn after<S: Into<String>>(mut self, refs: impl IntoIterator<Item = S>) -> Self {
        self.depends_on.extend(refs.into_iter().map(Into::into));
        self
    }
}

/// Names batch item `i` in an error.
fn item_label(i: usize, reference: Option<&str>) -> String {
    match reference {
        Some(r) => format!("item {i} (`{r}`)"),
        None => format!("item {i}"),
    }
}

/// An error about batch item `i`, as [`Invalid`](Error::Invalid) `jobs`.
fn item_error(i: usize, reference: Option<&str>, e: Error) -> Error {
    match e {
        Error::Invalid { field, reason } => Error::invalid(
            "jobs",
            format!("{}: invalid {field}: {reason}", item_label(i, reference)),
        ),
        other => other,
    }
}

impl Engine {
    /// Submits several jobs of `owner` at once, all or none: each item is
    /// validated like [`Engine::submit`]; an item's `depends_on` may name
    /// other items by reference (a cycle is refused, see [`order_batch`]) or
    /// existing jobs of the owner by id (an unknown or foreign id refuses
    /// the batch). Any refusal is [`Invalid`](Error::Invalid) `jobs` naming
    /// the item, and creates nothing. The jobs come back in the given order.
    pub async fn submit_batch(&self, owner: &Owner, items: Vec<BatchJob>) -> Result<Vec<Job>> {
        if items.is_empty() {
            return Err(Error::invalid("jobs", "must hold at least one job"));
        }
        if items.len() > MAX_BATCH_JOBS {
            return Err(Error::invalid(
                "jobs",
                format!("must hold at most {MAX_BATCH_JOBS} jobs"),
            ));
        }
        let names: Vec<Option<String>> = items.iter().map(|i| i.reference.clone()).collect();
        let mut by_reference = std::collections::HashMap::new();
        for (i, name) in names.iter().enumerate() {
            if let Some(name) = name {
                check_reference(name).map_err(|e| item_error(i, Some(name), e))?;
                if let Some(first) = by_reference.insert(name.clone(), i) {
                    return Err(Error::invalid(
                        "jobs",
                        format!("items {first} and {i} have the same reference `{name}`"),
                    ));
                }
            }
        }
        let mut news = Vec::with_capacity(items.len());
        let mut needs = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let label = names[i].as_deref();
            let mut local = Vec::new();
            let mut external = Vec::new();
            for target in &item.depends_on {
                if let Some(&j) = by_reference.get(target) {
                    local.push(j);
                } else if let Ok(id) = target.parse::<JobId>() {
                    external.push(id);
                } else {
                    return Err(Error::invalid(
                        "jobs",
                        format!(
                            "{}: depends_on names `{target}`, which is neither a reference of this batch nor a job id",
                            item_label(i, label)
                        ),
                    ));
                }
            }
            let mut submit = item.submit;
            submit.depends_on.extend(external);
            let new = self
                .validate(owner, submit)
                .map_err(|e| item_error(i, label, e))?;
            if let (Some(url), Some(check)) = (&new.webhook, &self.webhooks().check) {
                check
                    .check(url)
                    .await
                    .map_err(|reason| item_error(i, label, Error::invalid("webhook", reason)))?;
            }
            news.push(new);
            needs.push(local);
        }
        let order = order_batch(&needs, &names)?;
        // The local dependencies, by id now that every item has one.
        let ids: Vec<JobId> = news.iter().map(|n| n.id).collect();
        for (i, new) in news.iter_mut().enumerate() {
            new.depends_on.extend(needs[i].iter().map(|&j| ids[j]));
            check_dependencies(new.id, &new.depends_on)
                .map_err(|e| item_error(i, names[i].as_deref(), e))?;
        }
        // The store checks the existing jobs atomically; reading them here
        // first names the item at fault.
        for (i, new) in news.iter().enumerate() {
            for id in &new.depends_on {
                if ids.contains(id) {
                    continue;
                }
                let found = self.store().get_job(*id).await?;
                let found = found
                    .filter(|j| &j.owner == owner)
                    .map(|j| FoundDependency {
                        id: j.id,
                        owner: j.owner,
                        status: j.status,
                    });
                let only = NewJob {
                    depends_on: vec![*id],
                    ..new.clone()
                };
                plan_create(&only, found.as_slice())
                    .map_err(|e| item_error(i, names[i].as_deref(), e))?;
            }
        }
        let mut slots: Vec<Option<NewJob>> = news.into_iter().map(Some).collect();
        let ordered: Vec<NewJob> = order.iter().filter_map(|&i| slots[i].take()).collect();
        let created = self.store().create_jobs(ordered).await.map_err(|e| {
            // A refusal the store found (a dependency that ended meanwhile).
            match e {
                Error::Invalid { field, reason } => {
                    Error::invalid("jobs", format!("invalid {field}: {reason}"))
                }
                other => other,
            }
        })?;
        let mut jobs: Vec<Option<Job>> = vec![None; created.len()];
        for (changed, &i) in created.iter().zip(&order) {
            self.metrics().submitted(&changed.job.kind);
            self.publish(&changed.job.kind, &changed.events).await;
            self.wake_queued(&changed.job).await;
            jobs[i] = Some(changed.job.clone());
        }
        Ok(jobs.into_iter().flatten().collect())
    }

    /// The owner's projects, by name, with their jobs counted per status.
    pub async fn projects(&self, owner: &Owner) -> Result<Vec<Project>> {
        self.store().projects(owner).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn new_job(owner: &Owner, depends_on: Vec<JobId>) -> NewJob {
        NewJob {
            id: JobId::new(),
            owner: owner.clone(),
            kind: "k".into(),
            queue: "q".into(),
            prompt: "p".into(),
            params: serde_json::json!({}),
            priority: 0,
            max_attempts: 1,
            timeout_ms: 1000,
            run_at: Utc::now(),
            max_queued: None,
            webhook: None,
            notify_deployment: false,
            trace_parent: None,
            review: false,
            parent_id: None,
            child_key: None,
            project: None,
            depends_on,
            concurrency_key: None,
            concurrency_limit: None,
        }
    }

    #[test]
    fn a_diamond_is_ordered_and_keeps_the_given_order_otherwise() {
        // 0 ← 1, 0 ← 2, {1, 2} ← 3, given as 3, 2, 1, 0.
        let needs = vec![vec![1, 2], vec![3], vec![3], vec![]];
        let order = order_batch(&needs, &[]).expect("acyclic");
        assert_eq!(order, vec![3, 1, 2, 0]);
        assert_eq!(order_batch(&[vec![], vec![]], &[]).unwrap(), vec![0, 1]);
        assert_eq!(order_batch(&[], &[]).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn a_cycle_is_refused_naming_its_items() {
        let names = vec![Some("a".into()), Some("b".into()), Some("c".into()), None];
        // 3 → 0 → 1 → 2 → 0.
        let needs = vec![vec![1], vec![2], vec![0], vec![0]];
        let err = order_batch(&needs, &names).unwrap_err();
        let Error::Invalid { field, reason } = err else {
            panic!("not Invalid")
        };
        assert_eq!(field, "jobs");
        assert!(reason.contains("item 0 (`a`)"), "{reason}");
        assert!(reason.contains("item 1 (`b`)"), "{reason}");
        assert!(reason.contains("item 2 (`c`)"), "{reason}");
        assert!(!reason.contains("item 3"), "{reason}");
        // A self-loop is a cycle too.
        assert!(order_batch(&[vec![0]], &[]).is_err());
        assert!(order_batch(&[vec![5]], &[]).is_err());
    }

    #[test]
    fn projects_and_references_are_short_and_printable() {
        assert!(check_project("site-2024 v2").is_ok());
        assert!(check_project("").is_err());
        assert!(check_project(" lead").is_err());
        assert!(check_project("a\nb").is_err());
        assert!(check_project(&"x".repeat(MAX_PROJECT_BYTES + 1)).is_err());
        assert!(check_reference("build").is_ok());
        assert!(check_reference("").is_err());
    }

    #[test]
    fn dependencies_are_checked() {
        let id = JobId::new();
        let other = JobId::new();
        assert!(check_dependencies(id, &[other]).is_ok());
        assert!(check_dependencies(id, &[id]).is_err());
        assert!(check_dependencies(id, &[other, other]).is_err());
        let many: Vec<JobId> = (0..=MAX_DEPENDENCIES).map(|_| JobId::new()).collect();
        assert!(check_dependencies(id, &many).is_err());
    }

    #[test]
    fn the_first_status_follows_the_dependencies() {
        let owner = Owner::new("o");
        let dep = |status| FoundDependency {
            id: JobId::new(),
            owner: owner.clone(),
            status,
        };
        let none = new_job(&owner, vec![]);
        assert_eq!(plan_create(&none, &[]).unwrap().status, JobStatus::Queued);
        let done = dep(JobStatus::Succeeded);
        let running = dep(JobStatus::Running);
        let j = new_job(&owner, vec![done.id]);
        assert_eq!(
            plan_create(&j, std::slice::from_ref(&done)).unwrap().status,
            JobStatus::Queued
        );
        let j = new_job(&owner, vec![done.id, running.id]);
        let plan = plan_create(&j, &[done.clone(), running.clone()]).unwrap();
        assert_eq!(plan.status, JobStatus::Waiting);
        assert!(matches!(
            plan.events[..],
            [EventData::Status {
                status: JobStatus::Waiting,
                ..
            }]
        ));
        for status in [JobStatus::Failed, JobStatus::Cancelled] {
            let failed = dep(status);
            let j = new_job(&owner, vec![failed.id]);
            assert!(matches!(
                plan_create(&j, &[failed]),
                Err(Error::Invalid {
                    field: "depends_on",
                    ..
                })
            ));
        }
        // Unknown, and another owner's: the same answer.
        let j = new_job(&owner, vec![JobId::new()]);
        assert!(plan_create(&j, &[]).is_err());
        let mut foreign = dep(JobStatus::Succeeded);
        foreign.owner = Owner::new("someone else");
        let j = new_job(&owner, vec![foreign.id]);
        let err = plan_create(&j, &[foreign.clone()]).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("invalid depends_on: unknown job {}", foreign.id)
        );
    }

    #[test]
    fn projects_count_per_status() {
        let got = Project::from_counts([
            ("b".into(), JobStatus::Queued, 2),
            ("a".into(), JobStatus::Succeeded, 1),
            ("b".into(), JobStatus::Failed, 1),
            ("c".into(), JobStatus::Failed, 0),
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "a");
        assert_eq!(got[1].total, 3);
        assert_eq!(got[1].counts["queued"], 2);
        assert_eq!(got[1].counts["failed"], 1);
    }
}
