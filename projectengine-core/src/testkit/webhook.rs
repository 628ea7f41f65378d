//! The webhook outbox checks of the [`Store`] suite: which transitions write
//! deliveries, how claims hide them, how tries are recorded.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::store::new_job;
use super::unique;
use crate::{
    DeliveryNext, DeliveryStatus, Destination, Error, JobError, JobId, JobStatus, NewJob, NewTry,
    Outcome, Owner, Store, WebhookDelivery,
};

const LEASE: Duration = Duration::from_secs(30);
const HOOK: &str = "https://hooks.example.com/done";

fn owner() -> Owner {
    Owner::new(unique("owner"))
}

fn with_hook(o: &Owner, webhook: bool, deployment: bool) -> NewJob {
    let mut job = new_job(o);
    job.webhook = webhook.then(|| HOOK.to_owned());
    job.notify_deployment = deployment;
    job
}

async fn running(store: &Arc<dyn Store>, new: NewJob, lease: Duration) -> crate::Fence {
    let id = store.create_job(new).await.expect("create").job.id;
    store
        .claim(id, "w1", lease)
        .await
        .expect("claim")
        .expect("claimable")
        .attempt
        .fence()
}

/// Claims every due delivery, keeping those of `jobs`: other checks may share
/// the store.
async fn claim_of(
    store: &Arc<dyn Store>,
    jobs: &[JobId],
    visibility: Duration,
) -> Vec<WebhookDelivery> {
    store
        .claim_deliveries(1000, visibility)
        .await
        .expect("claim deliveries")
        .into_iter()
        .filter(|d| jobs.contains(&d.job_id))
        .collect()
}

fn try_with(status_code: Option<u16>, error: Option<&str>) -> NewTry {
    NewTry {
        status_code,
        latency: Duration::from_millis(12),
        error: error.map(str::to_owned),
    }
}

/// Every transition that ends a job writes one pending delivery per
/// destination, with the state it reports: a success, a fatal failure, the
/// cancel of a queued job, recovery's `Lost` with the attempts spent. A
/// transition that does not end the job (a claim, a retry with attempts left)
/// writes none.
pub async fn check_terminal_transition_writes_one_delivery_per_destination(store: Arc<dyn Store>) {
    let o = owner();
    // Succeeded, own URL only.
    let f = running(&store, with_hook(&o, true, false), LEASE).await;
    assert!(store.deliveries(f.job_id).await.expect("list").is_empty());
    store.finish(f, Outcome::Succeeded).await.expect("finish");
    let logs = store.deliveries(f.job_id).await.expect("list");
    assert_eq!(logs.len(), 1, "{logs:?}");
    let d = &logs[0].delivery;
    assert_eq!(
        (
            d.destination,
            d.url.as_deref(),
            d.job_status,
            d.status,
            d.tries
        ),
        (
            Destination::Job,
            Some(HOOK),
            JobStatus::Succeeded,
            DeliveryStatus::Pending,
            0
        )
    );
    assert!(logs[0].tries.is_empty());
    let job = store.get_job(f.job_id).await.expect("get").expect("job");
    assert_eq!(Some(d.occurred_at), job.finished_at);

    // A retryable failure requeues (no delivery), then a fatal one fails
    // with both destinations.
    let f = running(&store, with_hook(&o, true, true), LEASE).await;
    let error = JobError::new("boom", "it broke");
    let retry = Outcome::Failed {
        error: error.clone(),
        retry_in: Some(Duration::ZERO),
    };
    let requeued = store.finish(f, retry).await.expect("retry");
    assert_eq!(requeued.job.status, JobStatus::Queued);
    assert!(store.deliveries(f.job_id).await.expect("list").is_empty());
    let f = store
        .claim(f.job_id, "w1", LEASE)
        .await
        .expect("claim")
        .expect("claimable")
        .attempt
        .fence();
    let fatal = Outcome::Failed {
        error: error.clone(),
        retry_in: None,
    };
    store.finish(f, fatal).await.expect("fail");
    let logs = store.deliveries(f.job_id).await.expect("list");
    let mut destinations: Vec<Destination> = logs.iter().map(|l| l.delivery.destination).collect();
    destinations.sort_by_key(|d| d.as_str());
    assert_eq!(destinations, [Destination::Deployment, Destination::Job]);
    for l in &logs {
        assert_eq!(l.delivery.job_status, JobStatus::Failed);
        assert_eq!(l.delivery.job_error.as_ref(), Some(&error));
        let url = (l.delivery.destination == Destination::Job).then_some(HOOK);
        assert_eq!(l.delivery.url.as_deref(), url);
    }
    assert_ne!(logs[0].delivery.id, logs[1].delivery.id);

    // The owner cancels a queued job that notifies the deployment only.
    let id = store
        .create_job(with_hook(&o, false, true))
        .await
        .expect("create")
        .job
        .id;
    store.request_cancel(id).await.expect("cancel");
    let logs = store.deliveries(id).await.expect("list");
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (
            logs[0].delivery.destination,
            logs[0].delivery.url.as_deref(),
            logs[0].delivery.job_status
        ),
        (Destination::Deployment, None, JobStatus::Cancelled)
    );

    // A cancel request of a running job does not end it: nothing yet; the
    // worker honouring it does.
    let f = running(&store, with_hook(&o, true, false), LEASE).await;
    store.request_cancel(f.job_id).await.expect("request");
    assert!(store.deliveries(f.job_id).await.expect("list").is_empty());
    store
        .finish(f, Outcome::Cancelled)
        .await
        .expect("cancelled");
    assert_eq!(store.deliveries(f.job_id).await.expect("list").len(), 1);

    // Recovery: a lost attempt with the attempts spent fails the job.
    let mut spent = with_hook(&o, true, false);
    spent.max_attempts = 1;
    let f = running(&store, spent, Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lost = store.finish(f, Outcome::Lost).await.expect("lost");
    assert_eq!(lost.job.status, JobStatus::Failed);
    let logs = store.deliveries(f.job_id).await.expect("list");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].delivery.job_status, JobStatus::Failed);
    assert_eq!(
        logs[0].delivery.job_error.as_ref().map(|e| e.code.as_str()),
        Some("lost")
    );
}

/// A job without destinations ends without writing anything to the outbox.
pub async fn check_job_without_destination_writes_none(store: Arc<dyn Store>) {
    let o = owner();
    let done = running(&store, with_hook(&o, false, false), LEASE).await;
    store
        .finish(done, Outcome::Succeeded)
        .await
        .expect("finish");
    let cancelled = store.create_job(new_job(&o)).await.expect("create").job.id;
    store.request_cancel(cancelled).await.expect("cancel");
    for id in [done.job_id, cancelled] {
        assert!(store.deliveries(id).await.expect("list").is_empty());
    }
    let claimed = claim_of(&store, &[done.job_id, cancelled], LEASE).await;
    assert!(claimed.is_empty(), "{claimed:?}");
    assert!(store
        .deliveries(JobId::new())
        .await
        .expect("unknown job")
        .is_empty());
}

/// Of concurrent claimers, one gets a due delivery; it is not handed out
/// again until its visibility lapses, then it is, unchanged.
pub async fn check_claimed_deliveries_are_not_handed_out_twice(store: Arc<dyn Store>) {
    let o = owner();
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let f = running(&store, with_hook(&o, true, false), LEASE).await;
        store.finish(f, Outcome::Succeeded).await.expect("finish");
        jobs.push(f.job_id);
    }
    let visibility = Duration::from_millis(800);
    let claims = futures::future::join_all((0..8).map(|_| {
        let store = store.clone();
        let jobs = jobs.clone();
        async move { claim_of(&store, &jobs, visibility).await }
    }))
    .await;
    let all: Vec<&WebhookDelivery> = claims.iter().flatten().collect();
    let ids: HashSet<_> = all.iter().map(|d| d.id).collect();
    assert_eq!(all.len(), 3, "each delivery claimed once: {all:?}");
    assert_eq!(ids.len(), 3);
    assert!(claim_of(&store, &jobs, visibility).await.is_empty());
    tokio::time::sleep(visibility + Duration::from_millis(300)).await;
    let again = claim_of(&store, &jobs, visibility).await;
    let again_ids: HashSet<_> = again.iter().map(|d| d.id).collect();
    assert_eq!(again_ids, ids, "due again once the visibility lapsed");
    assert!(again
        .iter()
        .all(|d| d.tries == 0 && d.status == DeliveryStatus::Pending && d.next_at > d.created_at));
}

/// Tries are recorded with their figures and numbered; the delivery moves
/// to its next state; a stale or late try is refused and changes nothing.
pub async fn check_delivery_tries_are_recorded(store: Arc<dyn Store>) {
    let o = owner();
    let f = running(&store, with_hook(&o, true, false), LEASE).await;
    store.finish(f, Outcome::Succeeded).await.expect("finish");
    let jobs = [f.job_id];
    let d = claim_of(&store, &jobs, LEASE).await.remove(0);
    let retry = DeliveryNext::Retry {
        after: Duration::ZERO,
    };
    let after = store
        .record_delivery_try(d.id, 0, try_with(Some(500), Some("status 500")), retry)
        .await
        .expect("record");
    assert_eq!((after.tries, after.status), (1, DeliveryStatus::Pending));
    // The same claim cannot record twice: its view of `tries` is stale.
    assert!(matches!(
        store
            .record_delivery_try(d.id, 0, try_with(Some(500), None), retry)
            .await,
        Err(Error::Conflict(_))
    ));
    let d = claim_of(&store, &jobs, LEASE).await.remove(0);
    assert_eq!(d.tries, 1);
    let delivered = store
        .record_delivery_try(d.id, 1, try_with(Some(200), None), DeliveryNext::Delivered)
        .await
        .expect("record");
    assert_eq!(
        (delivered.tries, delivered.status),
        (2, DeliveryStatus::Delivered)
    );
    assert!(claim_of(&store, &jobs, Duration::ZERO).await.is_empty());
    assert!(matches!(
        store
            .record_delivery_try(d.id, 2, try_with(Some(200), None), DeliveryNext::Delivered)
            .await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store
            .record_delivery_try(
                crate::DeliveryId::new(),
                0,
                try_with(None, None),
                DeliveryNext::Failed
            )
            .await,
        Err(Error::NotFound { .. })
    ));
    let logs = store.deliveries(f.job_id).await.expect("list");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].delivery.status, DeliveryStatus::Delivered);
    let tries: Vec<_> = logs[0]
        .tries
        .iter()
        .map(|t| (t.number, t.status_code, t.latency_ms, t.error.as_deref()))
        .collect();
    assert_eq!(
        tries,
        [
            (1, Some(500), 12, Some("status 500")),
            (2, Some(200), 12, None)
        ]
    );
    assert!(logs[0].tries[0].at <= logs[0].tries[1].at);

    // A delivery given up is failed for good; a retry with a delay is not
    // due before it.
    let f = running(&store, with_hook(&o, true, false), LEASE).await;
    store.finish(f, Outcome::Succeeded).await.expect("finish");
    let jobs = [f.job_id];
    let d = claim_of(&store, &jobs, LEASE).await.remove(0);
    let later = DeliveryNext::Retry {
        after: Duration::from_secs(3600),
    };
    let pending = store
        .record_delivery_try(d.id, 0, try_with(None, Some("timed out")), later)
        .await
        .expect("record");
    assert!(pending.next_at > pending.updated_at + chrono::Duration::seconds(3500));
    let d = store
        .deliveries(f.job_id)
        .await
        .expect("list")
        .remove(0)
        .delivery;
    assert_eq!(d.tries, 1);
    let failed = store
        .record_delivery_try(
            d.id,
            1,
            try_with(None, Some("refused")),
            DeliveryNext::Failed,
        )
        .await
        .expect("record");
    assert_eq!(failed.status, DeliveryStatus::Failed);
    assert!(claim_of(&store, &jobs, Duration::ZERO).await.is_empty());
}
