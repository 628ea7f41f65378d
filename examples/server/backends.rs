//! Choosing the backends from the configuration: PostgreSQL, a SQLite file or
//! memory for the store, Redis or memory for the queue and the notifier.

use std::sync::Arc;

use anyhow::Context;
use projectengine_core::memory::{MemoryNotifier, MemoryQueue, MemoryStore};
use projectengine_core::{Notifier, Queue, Store};
use projectengine_queue_redis::{RedisConfig, RedisNotifier, RedisQueue};
use projectengine_store_postgres::PgStore;
use projectengine_store_sqlite::SqliteStore;

use crate::config::{sqlite_file, Config};

/// The three backends, and whether they survive a restart.
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub notifier: Arc<dyn Notifier>,
    pub pg: Option<PgStore>,
    /// The SQLite file of the store, when it is one.
    pub sqlite: Option<String>,
    pub redis_notifier: Option<RedisNotifier>,
}

impl Backends {
    /// Connects to what the configuration names. With `migrate`, applies the
    /// store's migrations first (every role but `web` does; a SQLite file is
    /// migrated whenever it is opened).
    pub async fn connect(config: &Config, migrate: bool) -> anyhow::Result<Self> {
        let mut sqlite = None;
        let (store, pg): (Arc<dyn Store>, _) = match &config.database_url {
            Some(url) if sqlite_file(url).is_some() => {
                let store = SqliteStore::open(url)
                    .await
                    .context("DATABASE_URL: cannot open the SQLite file")?;
                sqlite = sqlite_file(url).map(str::to_owned);
                (Arc::new(store), None)
            }
            Some(url) => {
                let pg = PgStore::connect(url)
                    .await
                    .context("DATABASE_URL: cannot connect to PostgreSQL")?;
                if migrate {
                    pg.migrate()
                        .await
                        .context("DATABASE_URL: migrations failed")?;
                }
                (Arc::new(pg.clone()), Some(pg))
            }
            None => (Arc::new(MemoryStore::new()), None),
        };
        let (queue, notifier, redis_notifier): (Arc<dyn Queue>, Arc<dyn Notifier>, _) =
            match &config.redis_url {
                Some(url) => {
                    let rc = RedisConfig::new(url.clone()).with_prefix(config.redis_prefix.clone());
                    let queue = RedisQueue::connect(&rc)
                        .await
                        .context("REDIS_URL: cannot connect to Redis")?;
                    let notifier = RedisNotifier::connect(&rc)
                        .await
                        .context("REDIS_URL: cannot connect to Redis")?;
                    (Arc::new(queue), Arc::new(notifier.clone()), Some(notifier))
                }
                None => (
                    Arc::new(MemoryQueue::default()),
                    Arc::new(MemoryNotifier::default()),
                    None,
                ),
            };
        Ok(Self {
            store,
            queue,
            notifier,
            pg,
            sqlite,
            redis_notifier,
        })
    }

    /// A line saying what is durable and what is not.
    pub fn describe(&self) -> String {
        let store = match (&self.pg, &self.sqlite) {
            (Some(_), _) => "PostgreSQL".to_owned(),
            (None, Some(file)) => {
                format!("SQLite file {file} (durable: jobs and their events survive a restart)")
            }
            (None, None) => "memory (NOT durable: jobs vanish on exit)".to_owned(),
        };
        let queue = if self.redis_notifier.is_some() {
            "Redis"
        } else {
            "memory (single process: web and worker must share this process)"
        };
        format!("store: {store}; queue and notifier: {queue}")
    }
}
