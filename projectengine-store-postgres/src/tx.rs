//! Ending a transaction the way its work went.

use projectengine_core::Result;
use sqlx::{Postgres, Transaction};

use crate::error::map;

/// Commits `tx` when `result` is `Ok`, else rolls it back before answering
/// the error. A transaction merely dropped is rolled back later, when its
/// connection is next used, and until then keeps its row locks: a claim
/// (`SKIP LOCKED`) would find the job "taken" by a write that already failed.
pub(crate) async fn settle<T>(tx: Transaction<'_, Postgres>, result: Result<T>) -> Result<T> {
    match result {
        Ok(value) => {
            tx.commit().await.map_err(map)?;
            Ok(value)
        }
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rolling back a failed write failed");
            }
            Err(e)
        }
    }
}
