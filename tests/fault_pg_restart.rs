//! PostgreSQL restarted while jobs run: every job still succeeds and every
//! watcher sees seq 1..n, each once. Alone in its binary, so no other test
//! runs while the database is down.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{
    assert_seqs, deployment, migrate, submit, token, wait_events, wait_status, watch_to_end, Server,
};

/// The local cluster's version, when `pg_ctlcluster` can manage it.
fn cluster() -> Option<String> {
    let ok = Command::new("pg_ctlcluster")
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty());
    if !ok {
        return None;
    }
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    versions.sort();
    versions.pop()
}

fn pg_ctl(version: &str, action: &str) -> bool {
    Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", action])
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure PostgreSQL is running again when the test ends, however it ends.
struct PgUp(String);

impl Drop for PgUp {
    fn drop(&mut self) {
        let _ = pg_ctl(&self.0, "start");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_postgresql_restart() {
    let Some(version) = cluster() else {
        projectengine_core::testkit::service_missing(
            "pg_ctlcluster",
            "/etc/postgresql",
            &"not installed, or no cluster",
        );
        return;
    };
    let Some(env) = deployment().await else {
        return;
    };
    migrate(&env);
    let web = Server::start("web", &env);
    let _worker = Server::start("worker", &env);
    let addr = web.addr();
    let t = token("alice");
    let mut ids = Vec::new();
    for i in 0..4 {
        let body = json!({"prompt": format!("pg {i}"), "params": {"steps": 60, "delay_ms": 50}});
        ids.push(submit(addr, &t, &body).await);
    }
    let watchers: Vec<_> = ids
        .iter()
        .map(|id| {
            let (id, t) = (id.clone(), t.clone());
            tokio::spawn(async move { watch_to_end(addr, &id, &t, Duration::from_secs(90)).await })
        })
        .collect();
    // Restart once every job has made some progress.
    for id in &ids {
        wait_events(addr, &t, id, "three steps", |evs| {
            evs.iter().filter(|e| e["type"] == "step").count() >= 3
        })
        .await;
    }
    {
        let _guard = PgUp(version.clone());
        assert!(pg_ctl(&version, "restart"), "pg_ctlcluster restart failed");
    }
    for (id, w) in ids.iter().zip(watchers) {
        let watched = w.await.expect("watcher");
        assert!(
            watched.done,
            "job {id} never finished: {:?}",
            watched.values()
        );
        assert_seqs(&watched.values(), 1);
        assert_eq!(watched.seq_faults(), (0, 0));
        assert_eq!(watched.final_status().as_deref(), Some("succeeded"), "{id}");
        wait_status(addr, &t, id, "succeeded", Duration::from_secs(10)).await;
        println!(
            "job {id}: {} events over {} connection(s)",
            watched.events.len(),
            watched.connections
        );
    }
}
