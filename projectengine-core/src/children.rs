//! Child jobs: a running orchestrator submits jobs linked to its own.
//!
//! A child is an ordinary job of its parent's owner, queued and run like any
//! other, that records its parent ([`Job::parent_id`]) and a key the
//! orchestrator chose ([`Job::child_key`], e.g. `frontend`). The key is what
//! makes a child *once per parent*: the store keeps (parent, key) unique,
//! and a submission of a key the parent has a child for already answers that
//! child ([`Submitted::Existing`]) and creates nothing.
//!
//! That is what "keyed per attempt" means here: the key, not the attempt, is
//! the child's identity, so attempt 2 of a parent that re-submits
//! `frontend` gets the child attempt 1 created — which may be running or
//! finished already — instead of a duplicate. A retried attempt replays its
//! orchestrator's code from the start; keying children by attempt number
//! would create every child again on each retry, which is exactly what a
//! retry must not do. An orchestrator that wants a fresh child per attempt
//! can put [`JobCallbacks::attempt`](crate::JobCallbacks::attempt) in its key.
//!
//! Only the parent's running attempt may submit (the store checks the fence
//! in the same transaction as the insert): a stale attempt gets
//! [`Error::StaleAttempt`] and creates nothing.

use crate::{Engine, Error, Fence, Job, JobId, NewJob, Owner, Result, Submit, Submitted};

/// A child key's longest length, in bytes.
pub const MAX_CHILD_KEY_BYTES: usize = 255;

/// Checks a child key: 1 to [`MAX_CHILD_KEY_BYTES`] bytes, no control
/// characters; otherwise [`Error::Invalid`] naming `key`.
pub fn validate_child_key(key: &str) -> Result<()> {
    if key.trim().is_empty() {
        return Err(Error::invalid("key", "must not be empty"));
    }
    if key.len() > MAX_CHILD_KEY_BYTES {
        return Err(Error::invalid(
            "key",
            format!("must be at most {MAX_CHILD_KEY_BYTES} bytes"),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid("key", "must not contain control characters"));
    }
    Ok(())
}

/// What a store checks of a child before anything else: it names the
/// fence's job as its parent and has a key; answers the key.
pub fn check_child(fence: Fence, job: &NewJob) -> Result<&str> {
    if job.parent_id != Some(fence.job_id) {
        return Err(Error::invalid(
            "parent_id",
            "must be the job of the submitting attempt",
        ));
    }
    match job.child_key.as_deref() {
        Some(key) => Ok(key),
        None => Err(Error::invalid("key", "a child needs a key")),
    }
}

impl Engine {
    /// Submits a child of the job whose running attempt is `fence`, under
    /// `key`: validated like [`Engine::submit`] (kind registered, params an
    /// object, limits), owned by the parent's owner. The first submission of
    /// a key creates the child, publishes its first event and wakes a
    /// worker; a later one, by this attempt or a later one, answers the
    /// existing child ([`Submitted::Existing`]) and changes nothing. What
    /// [`JobCallbacks::submit_child`](crate::JobCallbacks::submit_child) does
    /// in process, and the agent protocol's children route for a remote
    /// agent.
    ///
    /// [`Error::StaleAttempt`] unless `fence` is the parent's running attempt;
    /// a bad key is [`Error::Invalid`] naming `key`.
    pub async fn submit_child(&self, fence: Fence, key: &str, req: Submit) -> Result<Submitted> {
        validate_child_key(key)?;
        let parent = self
            .store()
            .get_job(fence.job_id)
            .await?
            .ok_or(Error::StaleAttempt)?;
        let mut new = self.validate(&parent.owner, req)?;
        self.check_webhook(&new).await?;
        new.parent_id = Some(parent.id);
        new.child_key = Some(key.to_owned());
        match self.store().create_child(fence, new).await? {
            crate::Created::New(changed) => {
                self.submitted(&changed).await;
                Ok(Submitted::Created(changed.job))
            }
            crate::Created::Existing(job) => Ok(Submitted::Existing(job)),
        }
    }

    /// The children of the owner's job, oldest first.
    pub async fn children(&self, owner: &Owner, id: JobId) -> Result<Vec<Job>> {
        self.get(owner, id).await?;
        self.store().children(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::{Registry, StubOrchestrator};

    #[tokio::test]
    async fn the_engine_validates_fences_and_scopes_children() {
        let engine = Engine::in_memory(
            Registry::new().register("stub", StubOrchestrator::new(1, Duration::ZERO)),
        );
        let alice = Owner::new("alice");
        let parent = engine.submit(&alice, Submit::new("parent")).await.unwrap();
        let fence = engine
            .store()
            .claim(parent.id, "w", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap()
            .attempt
            .fence();

        let child = engine
            .submit_child(
                fence,
                "a",
                Submit::new("child").params(serde_json::json!({"n": 1})),
            )
            .await
            .unwrap();
        assert!(child.created());
        let child = child.into_job();
        assert_eq!(child.owner, alice);
        assert_eq!(child.parent_id, Some(parent.id));
        assert_eq!(child.kind, "stub");
        let again = engine
            .submit_child(fence, "a", Submit::new("child"))
            .await
            .unwrap();
        assert_eq!(again, Submitted::Existing(child.clone()));

        // Validation as for any submission, before anything is stored.
        for (spec, field) in [
            (Submit::new("x").kind("nope"), "kind"),
            (Submit::new("x").params(serde_json::json!([1])), "params"),
            (Submit::new(" "), "prompt"),
            (Submit::new("x").max_attempts(0), "max_attempts"),
        ] {
            match engine.submit_child(fence, "b", spec).await {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert!(matches!(
            engine.submit_child(fence, "", Submit::new("x")).await,
            Err(Error::Invalid { field: "key", .. })
        ));
        let stale = Fence {
            job_id: parent.id,
            attempt: 2,
        };
        assert!(matches!(
            engine.submit_child(stale, "b", Submit::new("x")).await,
            Err(Error::StaleAttempt)
        ));
        let unknown = Fence {
            job_id: JobId::new(),
            attempt: 1,
        };
        assert!(matches!(
            engine.submit_child(unknown, "b", Submit::new("x")).await,
            Err(Error::StaleAttempt)
        ));

        assert_eq!(
            engine.children(&alice, parent.id).await.unwrap(),
            vec![child]
        );
        assert!(matches!(
            engine.children(&Owner::new("bob"), parent.id).await,
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn child_keys_are_checked() {
        assert!(validate_child_key("frontend").is_ok());
        assert!(validate_child_key(&"k".repeat(255)).is_ok());
        for bad in ["", "  ", "a\nb", &"k".repeat(256)] {
            match validate_child_key(bad) {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "key"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
