//! What several of the core's test files share.

use std::time::Duration;

use futures::StreamExt;
use projectengine_core::{Engine, JobEvent, JobId, Owner};

/// Every event of the job, from seq 1 to its end (within 30 s).
pub async fn watch_to_end(engine: &Engine, owner: &Owner, id: JobId) -> Vec<JobEvent> {
    let stream = engine.watch(owner, id, 0).await.expect("watch");
    tokio::time::timeout(
        Duration::from_secs(30),
        stream.map(|e| e.expect("event")).collect(),
    )
    .await
    .expect("finished in time")
}
