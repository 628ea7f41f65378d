//! Conformance suites: every [`Store`](crate::Store), [`Queue`](crate::Queue)
//! and [`Notifier`](crate::Notifier) adapter runs the same checks, and the engine
//! scenarios run on any combination of them.
//!
//! Each suite is a set of `pub async fn check_*` functions, and a macro that
//! expands to one `#[tokio::test]` per check. The macro takes an expression
//! evaluated afresh in every test — typically an `async` block that builds a new
//! backend (a fresh schema, a new key prefix) — yielding `Option<_>`: `None`
//! skips the test, for a service that is absent (see [`service_missing`]).
//!
//! ```ignore
//! projectengine_core::store_suite!(async { Some(Arc::new(MemoryStore::new()) as Arc<dyn Store>) });
//! ```
//!
//! Queues under test must have a visibility timeout of [`QUEUE_VISIBILITY_TIMEOUT`].

pub mod artifacts;
pub mod assert;
pub mod children;
pub mod concurrency;
pub mod differential;
mod mock;
pub mod notifier;
pub mod queue;
pub mod retention;
pub mod review;
pub mod scenarios;
pub mod schedule;
mod slow;
pub mod store;
pub mod webhook;
pub mod workflow;

pub use mock::{MockNotifier, MockStore};
pub use slow::SlowStore;

use std::time::Duration;

/// The visibility timeout the queue suite expects of the queue under test.
pub const QUEUE_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether tests must fail, not skip, when a service is missing
/// (`PROJECTENGINE_REQUIRE_SERVICES=1`, as CI sets it).
pub fn services_required() -> bool {
    std::env::var("PROJECTENGINE_REQUIRE_SERVICES").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Reports a service a test needs but cannot reach: panics when services are
/// required, otherwise prints a clear skip line. Returns so the test can `return`.
pub fn service_missing(service: &str, url: &str, error: &dyn std::fmt::Display) {
    if services_required() {
        panic!("{service} at {url} is required (PROJECTENGINE_REQUIRE_SERVICES is set) but unreachable: {error}");
    }
    eprintln!("SKIPPED: {service} at {url} is unreachable ({error}); set PROJECTENGINE_REQUIRE_SERVICES=1 to fail instead");
}

/// A name unique to this call, for queues and owners that must not collide
/// between tests sharing a backend.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// Expands to one test per check of a suite. Internal: use the `*_suite!` macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __testkit_suite {
    ($module:ident, $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some(backend) = $make.await else { return };
                $crate::testkit::$module::$check(backend).await;
            }
        )*
    };
}

/// One test per [`store`] check. `$make` yields `Option<Arc<dyn Store>>`.
#[macro_export]
macro_rules! store_suite {
    ($make:expr) => {
        $crate::__testkit_suite!(store, $make;
            check_create_and_get,
            check_claim_is_exclusive,
            check_claims_spread_over_many_jobs,
            check_claim_waits_for_run_at,
            check_seq_gap_free_under_concurrent_appends,
            check_append_batch_in_order,
            check_append_refuses_bad_events,
            check_numbered_batches_apply_once,
            check_stale_attempt_is_refused,
            check_lost_needs_an_expired_lease,
            check_terminal_states_are_final,
            check_cancel_queued_and_running,
            check_retry_with_attempts_then_failed,
            check_released_attempt_is_not_spent,
            check_lost_attempts_are_recovered,
            check_owner_retry,
            check_app_once_per_job,
            check_job_pages_complete_and_disjoint,
            check_app_pages_complete_and_disjoint,
            check_events_after,
            check_due_jobs,
            check_events_rebuild_the_job,
            check_job_detail_reads_job_log_and_attempts,
            check_queued_quota_is_exact,
        );
        $crate::__testkit_suite!(artifacts, $make;
            check_artifact_is_listed_with_its_event,
            check_artifact_is_fenced,
            check_artifact_replaces_by_name,
            check_artifact_job_bytes_are_exact,
        );
        $crate::__testkit_suite!(webhook, $make;
            check_terminal_transition_writes_one_delivery_per_destination,
            check_job_without_destination_writes_none,
            check_claimed_deliveries_are_not_handed_out_twice,
            check_delivery_tries_are_recorded,
        );
        $crate::__testkit_suite!(review, $make;
            check_reviewed_success_waits_for_approval,
            check_rejection_queues_with_the_comment_then_fails,
            check_review_writes_the_outbox,
            check_concurrent_decisions_apply_once,
        );
        $crate::__testkit_suite!(schedule, $make;
            check_schedule_settings,
            check_schedule_tick_fires_once,
            check_schedule_fire_is_all_or_nothing,
            check_schedule_overlap_and_skips,
        );
        $crate::__testkit_suite!(differential, $make;
            check_answers_like_the_memory_store,
        );
        $crate::__testkit_suite!(children, $make;
            check_child_once_per_key_across_attempts,
            check_concurrent_children_of_one_key_create_one,
            check_idempotency_key_answers_its_job,
            check_concurrent_idempotent_submits_create_one,
        );
        $crate::__testkit_suite!(workflow, $make;
            check_diamond_runs_in_order,
            check_failed_dependency_cancels_its_descendants,
            check_dependencies_are_checked_at_creation,
            check_concurrent_ends_release_once,
            check_create_jobs_is_all_or_none,
            check_projects_and_list_filters,
        );
        $crate::__testkit_suite!(concurrency, $make;
            check_concurrency_key_holds_back_the_next_job,
            check_concurrency_limit_is_exact,
        );
        $crate::__testkit_suite!(retention, $make;
            check_retention_deletes_only_old_finished_jobs,
        );
    };
}

/// One test per [`queue`] check. `$make` yields `Option<Arc<dyn Queue>>` with a
/// visibility timeout of [`QUEUE_VISIBILITY_TIMEOUT`].
#[macro_export]
macro_rules! queue_suite {
    ($make:expr) => {
        $crate::__testkit_suite!(queue, $make;
            check_priority_then_fifo,
            check_named_queues_kept_apart,
            check_pop_serves_several_queues,
            check_delayed_delivery,
            check_visibility_timeout_redelivers,
            check_ack_removes_for_good,
            check_stale_receipt_is_ignored,
            check_nack_with_delay,
            check_duplicate_push_is_noop,
            check_blocking_pop_wakes_on_push,
            check_pop_times_out_empty,
            check_depth,
            check_pop_many_takes_up_to_max_in_order,
            check_groups_take_turns_within_a_priority,
        );
    };
}

/// One test per [`notifier`] check. `$make` yields `Option<Arc<dyn Notifier>>`.
#[macro_export]
macro_rules! notifier_suite {
    ($make:expr) => {
        $crate::__testkit_suite!(notifier, $make;
            check_publish_reaches_subscriber,
            check_subscription_is_per_job,
            check_every_subscriber_receives,
            check_publish_without_subscribers,
            check_subscription_is_live_when_subscribe_returns,
            check_every_loss_is_reported,
        );
    };
}

/// One test per [`scenarios`] check. `$make` yields
/// `Option<(Arc<dyn Store>, Arc<dyn Queue>, Arc<dyn Notifier>)>`.
#[macro_export]
macro_rules! engine_suite {
    ($make:expr) => {
        $crate::__testkit_suite!(scenarios, $make;
            check_job_runs_to_its_app,
            check_watch_across_reconnects,
            check_watch_of_a_finished_job,
            check_submit_validation,
            check_owner_scoping,
            check_cancel_queued_job,
            check_cancel_running_job,
            check_retries_with_backoff_then_failed,
            check_fatal_error_fails_at_once,
            check_panic_fails_the_attempt_not_the_worker,
            check_timeout,
            check_owner_retry_runs_again,
            check_lost_worker_is_recovered,
            check_graceful_shutdown_releases,
            check_cursor_pages_through_engine,
            check_logs_and_steps_with_a_slow_store,
            check_concurrency_key_limits_running_jobs,
            check_retention_in_the_worker,
        );
        $crate::__testkit_suite!(review, $make;
            check_reject_then_approve_through_the_engine,
        );
        $crate::__testkit_suite!(workflow, $make;
            check_batch_diamond_runs_in_order,
            check_bad_batch_creates_nothing,
        );
    };
}
