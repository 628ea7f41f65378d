//! Waiting for a push without polling: `BLPOP` on the queues' signal lists,
//! each waiter on a dedicated connection (a blocked connection serves nobody
//! else), with a client-side deadline that is exact to the millisecond.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use projectengine_core::Result;
use redis::aio::MultiplexedConnection;
use redis::{Client, RedisResult, Value};

use crate::error;
use crate::link::{self, Link};

/// How much longer than our own deadline the server-side wait may run. The
/// server's timeout is only a safety net: its resolution is its `hz` tick
/// (100 ms by default), so we end the wait ourselves with `CLIENT UNBLOCK`.
const SERVER_SLACK: Duration = Duration::from_secs(1);

/// A pool of dedicated connections for blocking waits.
pub(crate) struct Blockers {
    client: Client,
    name: String,
    max_idle: usize,
    idle: Mutex<Vec<Blocker>>,
}

/// A dedicated connection and its server-side client id (for `CLIENT UNBLOCK`).
struct Blocker {
    conn: MultiplexedConnection,
    id: i64,
}

/// How a wait ended.
enum End {
    /// The connection is idle again and may be reused.
    Reusable,
    /// The connection may still be blocked or is broken: it is dropped, which
    /// closes it, and the server frees a client blocked on a closed socket.
    Discard,
}

impl Blockers {
    pub(crate) fn new(client: Client, name: String, max_idle: usize) -> Self {
        Self {
            client,
            name,
            max_idle,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Blocker>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection from the pool, or a new one.
    async fn take(&self, link: &Link) -> Result<Blocker> {
        if let Some(b) = self.idle().pop() {
            return Ok(b);
        }
        let timeout = link.command_timeout();
        let opened = tokio::time::timeout(timeout, async {
            let mut conn = link::open(&self.client, &self.name, None).await?;
            let id: i64 = redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut conn)
                .await?;
            RedisResult::Ok(Blocker { conn, id })
        })
        .await;
        match opened {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(error::redis("connect for a blocking pop", &e)),
            Err(_) => Err(error::timed_out("connect for a blocking pop", timeout)),
        }
    }

    fn put(&self, b: Blocker) {
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.push(b);
        }
    }

    /// Waits until a token arrives on one of `signals` or `block` has passed.
    /// Either way the caller looks at the queues again: a token is a hint, not
    /// an entry.
    pub(crate) async fn wait(
        &self,
        link: &Link,
        signals: &[String],
        block: Duration,
    ) -> Result<()> {
        let blocker = self.take(link).await?;
        // Dropping `blocker` (also when this future is cancelled) closes it.
        match wait_on(&blocker, link, signals, block).await? {
            End::Reusable => self.put(blocker),
            End::Discard => {}
        }
        Ok(())
    }
}

async fn wait_on(b: &Blocker, link: &Link, signals: &[String], block: Duration) -> Result<End> {
    let server_timeout = (block + SERVER_SLACK).as_secs_f64();
    let mut blpop = redis::cmd("BLPOP");
    blpop.arg(signals).arg(format!("{server_timeout:.3}"));
    let mut conn = b.conn.clone();
    let reply = blpop.query_async::<Value>(&mut conn);
    tokio::pin!(reply);
    tokio::select! {
        biased;
        r = &mut reply => {
            return r.map(|_| End::Reusable).map_err(|e| error::redis("wait for a push", &e));
        }
        _ = tokio::time::sleep(block) => {}
    }
    // Our deadline came first: end the server-side wait (as if it timed out;
    // a token it already took is not lost, its answer is still coming), then
    // collect that answer so the connection is idle again.
    let id = b.id;
    let unblocked = link
        .run("unblock a waiting pop", |mut c| async move {
            redis::cmd("CLIENT")
                .arg("UNBLOCK")
                .arg(id)
                .arg("TIMEOUT")
                .query_async::<i64>(&mut c)
                .await
        })
        .await;
    if unblocked.is_err() {
        return Ok(End::Discard);
    }
    match tokio::time::timeout(link.command_timeout(), reply).await {
        Ok(Ok(_)) => Ok(End::Reusable),
        _ => Ok(End::Discard),
    }
}
