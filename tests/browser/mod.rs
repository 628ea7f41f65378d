//! A headless Chromium driven over WebDriver: Debian's `chromedriver` started
//! on a free loopback port, one browser session per [`Browser`].

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// The browser tests run one at a time: two cores do not carry several
/// browsers and servers at once.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A WebDriver server and a browser session on it; both end when dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    pub downloads: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium with a window of
    /// `width` × `height`; `None` (skipped) when they are not installed and
    /// services are not required.
    pub async fn start(width: u32, height: u32) -> Option<Browser> {
        let turn = ONE_AT_A_TIME.lock().await;
        let port = free_port();
        let driver = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group, so that the browser goes with it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(d) => d,
            Err(e) => {
                projectengine_core::testkit::service_missing(
                    "chromedriver (scripts/browser-deps.sh installs it)",
                    "PATH",
                    &e,
                );
                return None;
            }
        };
        let downloads = tempfile::tempdir().expect("a download directory");
        let mut options = json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                format!("--window-size={width},{height}"),
            ],
            "prefs": {
                "download.default_directory": downloads.path().to_string_lossy(),
                "download.prompt_for_download": false,
            },
        });
        if Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        // An alert stays open, so a test can see that one was raised.
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            match builder.connect(&url).await {
                Ok(c) => break c,
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    panic!("no browser session from chromedriver at {url}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Some(Browser {
            client,
            driver,
            downloads,
            _turn: turn,
        })
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it answers something other than `null`/`false`;
    /// answers that value. Fails after `limit`, showing the page's text.
    pub async fn until(&self, what: &str, limit: Duration, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.js(script, vec![]).await;
            if !(v.is_null() || v == Value::Bool(false)) {
                return v;
            }
            if started.elapsed() > limit {
                let text = self.js("return document.body.innerText", vec![]).await;
                panic!("timed out waiting for {what}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the element `css`, or `None` when there is none.
    pub async fn text(&self, css: &str) -> Option<String> {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(css)],
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Types `text` into the field `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self
            .client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .expect(css);
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    /// Clicks the element `css`. A live page may redraw the element between
    /// finding and clicking it (a stale reference): it is found again, a few
    /// times, before that counts as a failure.
    pub async fn click(&self, css: &str) {
        for tries_left in (0..5).rev() {
            let el = self
                .client
                .wait()
                .for_element(Locator::Css(css))
                .await
                .expect(css);
            match el.click().await {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(e))
                    if tries_left > 0
                        && e.error == fantoccini::error::ErrorStatus::StaleElementReference => {}
                Err(e) => panic!("click {css}: {e:?}"),
            }
        }
    }

    /// Opens the dashboard of the server at `addr` and signs in with `token`
    /// through the sign-in form.
    pub async fn sign_in(&self, addr: std::net::SocketAddr, token: &str) {
        self.client
            .goto(&format!("http://{addr}/ui/"))
            .await
            .expect("open the dashboard");
        self.until(
            "the sign-in form",
            Duration::from_secs(10),
            "return location.hash === '#/signin' && !!document.querySelector('#token')",
        )
        .await;
        self.fill("#token", token).await;
        self.click("form button[type=submit]").await;
        self.until(
            "the jobs page",
            Duration::from_secs(10),
            "return location.hash === '#/jobs' && !!document.querySelector('#jobs')",
        )
        .await;
    }

    /// Goes to `#hash` of the page that is open.
    pub async fn go(&self, hash: &str) {
        self.js("location.hash = arguments[0];", vec![json!(hash)])
            .await;
    }

    /// Waits until the download directory holds a finished file named `name`.
    pub async fn downloaded(&self, name: &str, limit: Duration) -> PathBuf {
        let path = self.downloads.path().join(name);
        let started = Instant::now();
        while !path.exists() {
            assert!(
                started.elapsed() < limit,
                "{name} was not downloaded into {}",
                self.downloads.path().display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        path
    }
}

impl Browser {
    /// Ends the browser session, then the driver.
    pub async fn quit(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver's whole group: a browser left by a failed test goes too.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
