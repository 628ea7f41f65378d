//! A private `redis-server` for tests that disturb the whole server (killing
//! every client, restarting it) or need it to themselves (counting commands).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use projectengine_core::testkit::service_missing;

use super::TestRedis;

/// A private `redis-server`, killed when dropped.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts one on a free port; `None` (after reporting it) without `redis-server`.
    pub fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self { port, child: None };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(e) => {
                service_missing("redis-server (on PATH)", "a private port", &e);
                None
            }
        }
    }

    pub fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until it answers.
    pub async fn ready(&self) -> TestRedis {
        for _ in 0..100 {
            if super::admin(&self.url()).await.is_ok() {
                return TestRedis::connect_to(&self.url())
                    .await
                    .expect("it answers");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} never answered", self.port);
    }

    /// Kills the server at once (no shutdown, no save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
