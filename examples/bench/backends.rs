//! The backends of a run, and the counters read around it.
//!
//! `memory`: the in-memory store, queue and notifier. `pg-redis`: a PgStore on a
//! database created for the run (`bench_<uuid>` on `DATABASE_URL`, dropped
//! afterwards) and a RedisQueue + RedisNotifier under a prefix of its own (its
//! keys deleted afterwards). `sqlite`: a SqliteStore on a file in a
//! directory created for the run (removed afterwards), with the in-memory
//! queue and notifier.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::{Notifier, Queue, Store};
use projectengine_queue_redis::{RedisConfig, RedisNotifier, RedisQueue};
use projectengine_store_postgres::{GroupCommit, PgStore};
use projectengine_store_sqlite::{SqliteStore, WriteStats};
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

pub struct Backends {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub notifier: Arc<dyn Notifier>,
    pub pg: Option<PgRun>,
    pub redis: Option<RedisRun>,
    pub sqlite: Option<SqliteRun>,
}

/// The file of a sqlite run.
pub struct SqliteRun {
    dir: std::path::PathBuf,
    pub store: SqliteStore,
}

impl SqliteRun {
    async fn open() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "projectengine-bench-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let url = format!("sqlite://{}", dir.join("jobs.db").display());
        let store = SqliteStore::open(&url)
            .await
            .map_err(|e| format!("SqliteStore::open: {e}"))?;
        Ok(Self { dir, store })
    }

    /// The transactions the store's writer committed so far.
    pub fn write_stats(&self) -> WriteStats {
        self.store.write_stats()
    }

    /// Removes the run's directory and its database file.
    pub fn remove(&self) -> Result<(), String> {
        std::fs::remove_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))
    }
}

/// The database of a pg-redis run.
pub struct PgRun {
    admin_url: String,
    pub db: String,
    pub store: PgStore,
}

/// The Redis side of a pg-redis run.
pub struct RedisRun {
    pub prefix: String,
    conn: redis::aio::MultiplexedConnection,
    notifier: RedisNotifier,
    monitor: Option<Monitor>,
}

pub async fn connect(
    name: &str,
    monitor: bool,
    group: GroupCommit,
    publish_interval: Option<Duration>,
) -> Result<Backends, String> {
    match name {
        "memory" => Ok(Backends {
            store: Arc::new(MemoryStore::new()),
            queue: Arc::new(MemoryQueue::default()),
            notifier: Arc::new(MemoryNotifier::default()),
            pg: None,
            redis: None,
            sqlite: None,
        }),
        "pg-redis" => pg_redis(monitor, group, publish_interval).await,
        "sqlite" => {
            let run = SqliteRun::open().await?;
            Ok(Backends {
                store: Arc::new(run.store.clone()),
                queue: Arc::new(MemoryQueue::default()),
                notifier: Arc::new(MemoryNotifier::default()),
                pg: None,
                redis: None,
                sqlite: Some(run),
            })
        }
        other => Err(format!(
            "unknown backend `{other}` (memory, pg-redis, sqlite)"
        )),
    }
}

async fn pg_redis(
    monitor: bool,
    group: GroupCommit,
    publish_interval: Option<Duration>,
) -> Result<Backends, String> {
    let admin_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
    let id = uuid::Uuid::now_v7().simple().to_string();
    let db = format!("bench_{id}");
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .map_err(|e| format!("PostgreSQL at {admin_url}: {e}"))?;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("CREATE DATABASE {db}: {e}"))?;
    let _ = admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let url = format!("{base}/{db}");
    // Migrate on a pool of its own, closed afterwards, so that the run's pool
    // starts with no pending statistics.
    let pg = PgStore::connect(&url)
        .await
        .map_err(|e| format!("PgStore::connect: {e}"))?;
    pg.migrate().await.map_err(|e| format!("migrate: {e}"))?;
    pg.pool().close().await;
    let store = PgStore::connect(&url)
        .await
        .map_err(|e| format!("PgStore::connect: {e}"))?;
    let store = PgStore::with_group_commit(store.pool().clone(), group);
    let pg = PgRun {
        admin_url,
        db,
        store,
    };

    let prefix = format!("bench-{id}");
    let mut rc = RedisConfig::new(redis_url.clone()).with_prefix(prefix.clone());
    if let Some(interval) = publish_interval {
        rc.publish_interval = interval;
    }
    let client = redis::Client::open(redis_url.as_str()).map_err(|e| format!("REDIS_URL: {e}"))?;
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("Redis at {redis_url}: {e}"))?;
    let monitor = if monitor {
        Some(Monitor::start(&redis_url, &prefix).await?)
    } else {
        None
    };
    let queue = RedisQueue::connect(&rc)
        .await
        .map_err(|e| format!("RedisQueue::connect: {e}"))?;
    let notifier = RedisNotifier::connect(&rc)
        .await
        .map_err(|e| format!("RedisNotifier::connect: {e}"))?;
    Ok(Backends {
        store: Arc::new(pg.store.clone()),
        queue: Arc::new(queue),
        notifier: Arc::new(notifier.clone()),
        pg: Some(pg),
        redis: Some(RedisRun {
            prefix,
            conn,
            notifier,
            monitor,
        }),
        sqlite: None,
    })
}

impl PgRun {
    /// `xact_commit` of the run's database, read from the admin database (so
    /// that this query is not counted in it), after waiting for the backends'
    /// pending statistics to be flushed (an idle backend flushes within ~1 s;
    /// a closed one at exit).
    pub async fn xact_commit(&self) -> Result<i64, String> {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        let _ = sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut admin)
            .await;
        let n: i64 =
            sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
                .bind(&self.db)
                .fetch_one(&mut admin)
                .await
                .map_err(|e| format!("pg_stat_database: {e}"))?;
        let _ = admin.close().await;
        Ok(n)
    }

    /// Row updates of the `jobs` table, and how many of them were HOT (no
    /// index touched), read on a connection to the run's database after its
    /// pool closed (so after `xact_commit`'s second reading).
    pub async fn jobs_updates(&self) -> Result<(i64, i64), String> {
        let mut conn = self.own_connection().await?;
        let row: (i64, i64) = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'jobs'",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(|e| format!("pg_stat_user_tables: {e}"))?;
        let _ = conn.close().await;
        Ok(row)
    }

    /// A connection to the run's database (not the store's pool).
    async fn own_connection(&self) -> Result<sqlx::PgConnection, String> {
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |(b, _)| b);
        sqlx::PgConnection::connect(&format!("{base}/{}", self.db))
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))
    }

    /// Every table's total size in bytes (heap, indexes, TOAST), largest
    /// first, and the number of jobs stored.
    pub async fn table_sizes(&self) -> Result<(Vec<(String, i64)>, i64), String> {
        let mut conn = self.own_connection().await?;
        let sizes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT relname::text, pg_total_relation_size(relid) AS bytes \
             FROM pg_stat_user_tables ORDER BY bytes DESC",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(|e| format!("table sizes: {e}"))?;
        let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| format!("jobs: {e}"))?;
        let _ = conn.close().await;
        Ok((sizes, jobs))
    }

    /// Rows deleted from `jobs` so far.
    pub async fn jobs_deleted(&self) -> Result<i64, String> {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut conn = self.own_connection().await?;
        let _ = sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut conn)
            .await;
        let n: i64 =
            sqlx::query_scalar("SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'jobs'")
                .fetch_one(&mut conn)
                .await
                .map_err(|e| format!("pg_stat_user_tables: {e}"))?;
        let _ = conn.close().await;
        Ok(n)
    }

    /// Closes the pool (its backends flush their statistics as they exit).
    pub async fn close(&self) {
        self.store.pool().close().await;
    }

    /// Drops the run's database.
    pub async fn drop_database(&self) -> Result<(), String> {
        self.close().await;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("DROP DATABASE {}: {e}", self.db))?;
        let _ = admin.close().await;
        Ok(())
    }
}

/// `INFO commandstats` of the whole server: calls per command (commands run
/// inside scripts included), and `total_commands_processed`.
#[derive(Debug, Clone, Default)]
pub struct CommandStats {
    pub calls: BTreeMap<String, u64>,
}

impl CommandStats {
    /// Calls per command from `before` to `self`, nonzero ones only.
    pub fn since(&self, before: &CommandStats) -> BTreeMap<String, u64> {
        self.calls
            .iter()
            .map(|(k, v)| (k.clone(), v - before.calls.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect()
    }
}

impl RedisRun {
    pub async fn command_stats(&mut self) -> Result<CommandStats, String> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| format!("INFO commandstats: {e}"))?;
        let mut calls = BTreeMap::new();
        for line in info.lines() {
            let Some(rest) = line.strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let n = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            calls.insert(name.to_owned(), n);
        }
        Ok(CommandStats { calls })
    }

    /// Other clients connected to the same Redis (they would count too).
    pub async fn other_clients(&mut self) -> Result<usize, String> {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| format!("CLIENT LIST: {e}"))?;
        Ok(list
            .lines()
            .filter(|l| !l.contains(&self.prefix) && !l.contains("cmd=client|list"))
            .count())
    }

    /// (top-level, inside scripts) commands naming the run's prefix seen by
    /// MONITOR, when it was started.
    pub fn monitor_counts(&self) -> Option<(u64, u64)> {
        self.monitor.as_ref().map(|m| {
            (
                m.top.load(Ordering::Relaxed),
                m.script.load(Ordering::Relaxed),
            )
        })
    }

    /// Stops the notifier and deletes the run's keys.
    pub async fn cleanup(&mut self) -> Result<(), String> {
        self.notifier.shutdown();
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn)
                .await
                .map_err(|e| format!("SCAN: {e}"))?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut self.conn)
                    .await
                    .map_err(|e| format!("DEL: {e}"))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// A MONITOR connection counting the commands that name the run's prefix,
/// split into top-level ones and ones run inside scripts (`[0 lua]`).
struct Monitor {
    top: Arc<AtomicU64>,
    script: Arc<AtomicU64>,
}

impl Monitor {
    async fn start(url: &str, prefix: &str) -> Result<Self, String> {
        let hostport = url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap_or("127.0.0.1:6379")
            .to_owned();
        let mut stream = tokio::net::TcpStream::connect(&hostport)
            .await
            .map_err(|e| format!("MONITOR: {e}"))?;
        stream
            .write_all(b"MONITOR\r\n")
            .await
            .map_err(|e| format!("MONITOR: {e}"))?;
        let mut lines = BufReader::new(stream).lines();
        match lines.next_line().await {
            Ok(Some(l)) if l.starts_with("+OK") => {}
            other => return Err(format!("MONITOR: unexpected answer {other:?}")),
        }
        let (top, script) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (t, s, prefix) = (top.clone(), script.clone(), prefix.to_owned());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if !line.contains(&prefix) {
                    continue;
                }
                if line.contains(" lua] ") {
                    s.fetch_add(1, Ordering::Relaxed);
                } else {
                    t.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Self { top, script })
    }
}
