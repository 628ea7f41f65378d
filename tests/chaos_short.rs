//! A short W5 (recovery) on every CI run: 40 jobs, two worker processes and a
//! web process on PostgreSQL + Redis, one worker SIGKILLed and restarted four
//! times at random (seeded) moments.

mod support;

use std::time::Duration;

use support::chaos::{run, Chaos};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w5_short_kills_lose_nothing() {
    let chaos = Chaos {
        jobs: 40,
        steps: 20,
        delay_ms: 50,
        kills: 4,
        kill_gap_ms: (400, 900),
        concurrency: 4,
        seed: 0x5eed_0005,
        limit: Duration::from_secs(90),
    };
    let Some(r) = run(&chaos).await else {
        return;
    };
    println!(
        "W5 short: jobs {} succeeded {} lost {} kills {} orphaned {} duplicate seqs {} missing seqs {} max kill->running {} ms ({} ms)",
        r.jobs,
        r.succeeded,
        r.lost,
        r.kills,
        r.orphaned,
        r.duplicate_seqs,
        r.missing_seqs,
        r.max_recovery.as_millis(),
        r.elapsed.as_millis()
    );
    assert_eq!(r.lost, 0, "{r:?}");
    assert_eq!(r.succeeded, r.jobs, "{r:?}");
    assert_eq!((r.duplicate_seqs, r.missing_seqs), (0, 0), "{r:?}");
    assert_eq!(r.kills, 4, "{r:?}");
    // The kills hit running jobs, and each came back.
    assert!(r.orphaned > 0, "no kill hit a running job: {r:?}");
    assert!(r.max_recovery < Duration::from_secs(30), "{r:?}");
}
