//! Faults against the real server processes on PostgreSQL and Redis: a worker
//! frozen past its lease and then resumed cannot write over its successor.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{
    assert_seqs, deployment, events, http, migrate, submit, token, wait_events, wait_status,
    watch_to_end, Server,
};

fn running_attempts(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["type"] == "status" && e["data"]["status"] == "running")
        .filter_map(|e| e["attempt"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_past_its_lease_and_resumed_cannot_write() {
    let Some(env) = deployment().await else {
        return;
    };
    migrate(&env);
    let web = Server::start("web", &env);
    let mut first = Server::start("worker", &env);
    let addr = web.addr();
    let t = token("alice");
    let body = json!({"prompt": "frozen", "params": {"steps": 40, "delay_ms": 50}});
    let id = submit(addr, &t, &body).await;
    let watcher = {
        let (id, t) = (id.clone(), t.clone());
        tokio::spawn(async move { watch_to_end(addr, &id, &t, Duration::from_secs(60)).await })
    };
    wait_events(addr, &t, &id, "four steps of attempt 1", |ev| {
        ev.iter().filter(|e| e["type"] == "step").count() >= 4
    })
    .await;
    // Freeze the first worker mid-step: no heartbeat, so its lease (1s) runs out.
    first.signal("STOP");
    let second = Server::start("worker", &env);
    wait_events(addr, &t, &id, "attempt 2 running", |ev| {
        running_attempts(ev).contains(&2)
    })
    .await;
    let steps_before = events(addr, &t, &id)
        .await
        .iter()
        .filter(|e| e["type"] == "step" && e["attempt"] == 1)
        .count();
    // Resume the first worker while the second still runs the job.
    first.signal("CONT");
    let watched = tokio::time::timeout(Duration::from_secs(70), watcher)
        .await
        .expect("watch ended")
        .expect("watcher");
    assert!(watched.done, "no terminal event: {:?}", watched.values());
    let seen = watched.values();
    assert_seqs(&seen, 1);
    assert_eq!(watched.seq_faults(), (0, 0));
    let terminal: Vec<_> = seen.iter().filter(|e| support::is_terminal(e)).collect();
    assert_eq!(terminal.len(), 1, "{terminal:?}");
    assert_eq!(
        terminal[0]["data"]["status"], "succeeded",
        "{:?}",
        terminal[0]
    );
    assert_eq!(terminal[0]["attempt"], 2, "{:?}", terminal[0]);
    // Nothing of attempt 1 was accepted after attempt 2 started.
    let first_running_2 = seen
        .iter()
        .position(|e| {
            e["type"] == "status" && e["data"]["status"] == "running" && e["attempt"] == 2
        })
        .expect("attempt 2 ran");
    let late: Vec<_> = seen[first_running_2..]
        .iter()
        .filter(|e| e["attempt"] == 1)
        .collect();
    assert!(
        late.is_empty(),
        "late writes of attempt 1 accepted: {late:?}"
    );
    let steps_after = seen
        .iter()
        .filter(|e| e["type"] == "step" && e["attempt"] == 1)
        .count();
    assert_eq!(steps_before, steps_after, "attempt 1 wrote after its lease");
    assert_eq!(running_attempts(&seen), vec![1, 2]);
    // The stored log agrees with what the watcher saw.
    let stored = events(addr, &t, &id).await;
    assert_eq!(stored, seen);
    // The App is the second attempt's.
    let (status, app) = http(
        addr,
        "GET",
        &format!("/api/apps/by-job/{id}/"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "{app}");
    // The REST view of an App does not show its attempt; the store does.
    let db = &env
        .iter()
        .find(|(k, _)| *k == "DATABASE_URL")
        .expect("url")
        .1;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db)
        .await
        .expect("connect");
    let (app_id, attempt): (uuid::Uuid, i64) =
        sqlx::query_as("SELECT id, attempt FROM apps WHERE job_id = $1::uuid")
            .bind(&id)
            .fetch_one(&mut conn)
            .await
            .expect("the app row");
    assert_eq!(app_id.to_string(), app["id"].as_str().expect("app id"));
    assert_eq!(attempt, 2, "the App is the second attempt's");
    let job = wait_status(addr, &t, &id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(job["attempt"], 2, "{job}");
    // The resumed worker is refused, not broken: it is still serving.
    assert!(first.alive(), "the resumed worker exited");
    let (status, _) = http(first.addr(), "GET", "/health", None, None).await;
    assert_eq!(status, 200);
    drop(second);
}
