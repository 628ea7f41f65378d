//! W3 (live fan-out over WebSockets) and W4 (HTTP reads), through the real
//! router served in this process on 127.0.0.1:0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use projectengine_core::{JobId, JobStatus, Owner, Submit};
use projectengine_http::{ApiState, HttpConfig, JwtAuth};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::report::{peak_rss_mb, percentile, Report};
use crate::workloads::{report, round, wait_all, Setup};
use crate::Args;

const SECRET: &str = "bench-secret-0123456789-0123456789";
const OWNER: &str = "bench";

struct Served {
    addr: SocketAddr,
    token: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

async fn serve(s: &Setup) -> Result<Served, String> {
    let auth = JwtAuth::hs256(SECRET).map_err(|e| format!("JWT: {e}"))?;
    let token = auth
        .mint(OWNER, Duration::from_secs(3600))
        .map_err(|e| format!("JWT: {e}"))?;
    let state = ApiState::with_config(s.engine.clone(), auth, HttpConfig::default());
    let shutdown = state.shutdown_token();
    let app = projectengine_http::router_with(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("bind: {e}"))?;
    let stop = CancellationToken::new();
    let until = stop.clone();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                until.cancelled().await;
                shutdown.cancel();
            })
            .await;
    });
    Ok(Served {
        addr,
        token,
        stop,
        task,
    })
}

/// The soft limit on open files, from /proc.
fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// What one WebSocket client saw.
struct Seen {
    job: usize,
    messages: Vec<(String, Instant)>,
    close_code: Option<u16>,
    error: Option<String>,
}

async fn watch(
    addr: SocketAddr,
    token: String,
    job: usize,
    job_id: JobId,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
    connect: Arc<tokio::sync::Semaphore>,
) -> Seen {
    let mut seen = Seen {
        job,
        messages: Vec::with_capacity(32),
        close_code: None,
        error: None,
    };
    let url = format!("ws://{addr}/ws/jobs/{job_id}/?after=0");
    let mut req = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => {
            seen.error = Some(e.to_string());
            return seen;
        }
    };
    if let Ok(v) = format!("Bearer {token}").parse() {
        req.headers_mut().insert("authorization", v);
    }
    let permit = connect.acquire_owned().await;
    // Small reads: tungstenite zero-fills its read buffer's free part before
    // each read, and events are small (its 128 KiB default would cost a
    // 128 KiB memset per frame received).
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024);
    let mut ws = match tokio_tungstenite::connect_async_with_config(req, Some(config), false).await
    {
        Ok((ws, _)) => ws,
        Err(e) => {
            seen.error = Some(format!("connect: {e}"));
            let _ = ready.send(());
            return seen;
        }
    };
    drop(permit);
    let mut first = true;
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                seen.messages.push((t.as_str().to_owned(), Instant::now()));
                if first {
                    first = false;
                    let _ = ready.send(());
                }
            }
            Ok(Message::Ping(p)) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Ok(Message::Close(frame)) => {
                seen.close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                seen.error = Some(e.to_string());
                break;
            }
        }
    }
    if first {
        let _ = ready.send(());
    }
    seen
}

/// W3: N jobs (100) at once, each watched by W WebSocket clients (10)
/// connected before the worker starts; each job K steps (20), `--step-ms`
/// apart. Delivery latency = publish (after persist) → received by a client.
pub async fn w3(args: &Args, s: &mut Setup) -> Result<Report, String> {
    let n = args.n.unwrap_or(100);
    let watchers = args.watchers;
    let sockets = n * watchers;
    let need = (sockets as u64) * 2 + 256;
    if let Some(limit) = nofile_limit() {
        if limit < need {
            return Err(format!(
                "{sockets} sockets need about {need} open files, the limit is {limit}: run `ulimit -n {}` first",
                need.next_power_of_two()
            ));
        }
    }
    let served = serve(s).await?;
    let owner = Owner::new(OWNER);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let job = s
            .engine
            .submit(&owner, Submit::new(format!("job {i}")))
            .await
            .map_err(|e| format!("submit: {e}"))?;
        ids.push(job.id);
    }
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let connect = Arc::new(tokio::sync::Semaphore::new(64));
    let mut clients = Vec::with_capacity(sockets);
    for (j, id) in ids.iter().enumerate() {
        for _ in 0..watchers {
            clients.push(tokio::spawn(watch(
                served.addr,
                served.token.clone(),
                j,
                *id,
                ready_tx.clone(),
                connect.clone(),
            )));
        }
    }
    drop(ready_tx);
    let connected = tokio::time::timeout(Duration::from_secs(120), async {
        let mut k = 0;
        while k < sockets && ready_rx.recv().await.is_some() {
            k += 1;
        }
        k
    })
    .await
    .map_err(|_| "the WebSocket clients did not connect in 120 s".to_owned())?;
    let start = Instant::now();
    s.spawn_worker();
    wait_all(&s.observer, n, Duration::from_secs(600)).await?;
    let produced = start.elapsed();
    let mut seen = Vec::with_capacity(sockets);
    for c in clients {
        let got = tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .map_err(|_| "a client did not finish in 60 s after its job".to_owned())?
            .map_err(|e| format!("client task: {e}"))?;
        seen.push(got);
    }
    let wall = start.elapsed();
    let peak = peak_rss_mb();
    let mut last_seq = Vec::with_capacity(n);
    let mut succeeded = 0;
    for id in &ids {
        let job = s
            .engine
            .get(&owner, *id)
            .await
            .map_err(|e| format!("get: {e}"))?;
        if job.status == JobStatus::Succeeded {
            succeeded += 1;
        }
        last_seq.push(job.last_seq);
    }
    s.stop_worker().await;
    served.stop().await;

    let published = s.observer.published();
    let (mut expected, mut received, mut lost, mut dup, mut out_of_order) = (0u64, 0u64, 0, 0, 0);
    let (mut bad_sockets, mut errors, mut abnormal_closes) = (0, 0, 0);
    let mut latencies = Vec::new();
    for c in &seen {
        let want = last_seq[c.job];
        expected += want;
        received += c.messages.len() as u64;
        if c.error.is_some() {
            errors += 1;
        }
        if c.close_code != Some(1000) {
            abnormal_closes += 1;
        }
        let mut prev = 0u64;
        let mut got = std::collections::HashSet::new();
        let mut ok = true;
        for (text, at) in &c.messages {
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("event JSON: {e}"))?;
            let seq = v["seq"].as_u64().ok_or("an event without seq")?;
            if !got.insert(seq) {
                dup += 1;
                ok = false;
            } else if seq != prev + 1 {
                out_of_order += 1;
                ok = false;
            }
            prev = prev.max(seq);
            if let Some(p) = published.get(&(ids[c.job], seq)) {
                // Events published before the worker started (the `queued`
                // one) were replayed on connect: not a delivery latency.
                if *p >= start {
                    latencies.push(at.saturating_duration_since(*p).as_secs_f64() * 1000.0);
                }
            }
        }
        let missing = (1..=want).filter(|q| !got.contains(q)).count();
        lost += missing;
        if missing > 0 || !ok {
            bad_sockets += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    let mut r = report(args, s, n);
    r.set("watchers_per_job", watchers);
    r.set("sockets", sockets);
    r.set("sockets_connected", connected);
    r.set("step_ms", args.step_ms.unwrap_or(50));
    r.set("wall_s", round(wall.as_secs_f64(), 3));
    r.set("produce_s", round(produced.as_secs_f64(), 3));
    r.set("jobs_succeeded", succeeded);
    r.set("events", last_seq.iter().sum::<u64>());
    r.set("events_expected", expected);
    r.set("events_received", received);
    r.set("lost", lost);
    r.set("duplicates", dup);
    r.set("out_of_order", out_of_order);
    r.set("sockets_not_exact", bad_sockets);
    r.set("socket_errors", errors);
    r.set("closes_not_1000", abnormal_closes);
    r.set("latency_samples", latencies.len());
    r.set("p50_ms", percentile(&latencies, 50.0));
    r.set("p95_ms", percentile(&latencies, 95.0));
    r.set("p99_ms", percentile(&latencies, 99.0));
    r.set("max_ms", percentile(&latencies, 100.0));
    r.set("peak_rss_mb", peak);
    Ok(r)
}

/// W4: `GET /api/jobs/{id}/` with a valid JWT, 64 keep-alive connections for
/// `--duration` seconds, on N finished jobs (1 by default), by wrk when
/// installed, else by a load loop in this process.
pub async fn w4(args: &Args, s: &mut Setup) -> Result<Report, String> {
    let n = args.n.unwrap_or(1).max(1);
    let conns = 64;
    let served = serve(s).await?;
    let owner = Owner::new(OWNER);
    let mut ids = Vec::with_capacity(n);
    s.spawn_worker();
    for i in 0..n {
        let job = s
            .engine
            .submit(&owner, Submit::new(format!("job {i}")))
            .await
            .map_err(|e| format!("submit: {e}"))?;
        ids.push(job.id.to_string());
    }
    wait_all(&s.observer, n, Duration::from_secs(120)).await?;
    let wrk = match args.client.as_str() {
        "wrk" => true,
        "builtin" => false,
        "auto" => std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .is_ok(),
        other => return Err(format!("unknown client `{other}` (auto, wrk, builtin)")),
    };
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let load = if wrk {
        run_wrk(served.addr, &served.token, &ids, conns, duration).await
    } else {
        run_builtin(served.addr, &served.token, &ids, conns, duration).await
    };
    let peak = peak_rss_mb();
    s.stop_worker().await;
    served.stop().await;
    let load = load?;
    let mut r = report(args, s, n);
    r.set("client", if wrk { "wrk" } else { "builtin" });
    r.set("connections", conns);
    r.set("duration_s", round(duration.as_secs_f64(), 3));
    r.set("jobs_succeeded", s.observer.finished());
    r.set("events", s.observer.events());
    r.set("requests", load.requests);
    r.set("non_2xx", load.non_2xx);
    r.set("requests_per_s", round(load.rps, 1));
    r.set("p50_ms", round(load.p50_ms, 3));
    r.set("p99_ms", round(load.p99_ms, 3));
    r.set("peak_rss_mb", peak);
    Ok(r)
}

struct Load {
    requests: u64,
    non_2xx: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run_wrk(
    addr: SocketAddr,
    token: &str,
    ids: &[String],
    conns: usize,
    duration: Duration,
) -> Result<Load, String> {
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.arg("-t2")
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", duration.as_secs_f64().ceil() as u64))
        .arg("--latency")
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"));
    let script = std::env::temp_dir().join(format!("bench-w4-{}.lua", uuid::Uuid::now_v7()));
    if ids.len() > 1 {
        let list: Vec<String> = ids.iter().map(|i| format!("\"{i}\"")).collect();
        let lua = format!(
            "local ids = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", \"/api/jobs/\" .. ids[(i % #ids) + 1] .. \"/\")\nend\n",
            list.join(",")
        );
        std::fs::write(&script, lua).map_err(|e| format!("wrk script: {e}"))?;
        cmd.arg("-s").arg(&script);
    }
    cmd.arg(format!("http://{addr}/api/jobs/{}/", ids[0]));
    let out = cmd.output().await.map_err(|e| format!("wrk: {e}"));
    let _ = std::fs::remove_file(&script);
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("wrk failed: {text}"));
    }
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    };
    let ms = |s: &str| -> Option<f64> {
        let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
        let v: f64 = num.parse().ok()?;
        Some(match unit {
            "us" => v / 1000.0,
            "ms" => v,
            "s" => v * 1000.0,
            "m" => v * 60_000.0,
            _ => return None,
        })
    };
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("wrk output without Requests/sec: {text}"))?;
    let p50 = field("50%").and_then(|v| ms(&v)).unwrap_or(f64::NAN);
    let p99 = field("99%").and_then(|v| ms(&v)).unwrap_or(f64::NAN);
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Load {
        requests,
        non_2xx,
        rps,
        p50_ms: p50,
        p99_ms: p99,
    })
}

/// One keep-alive HTTP/1.1 connection sending requests back to back until
/// `deadline`: (latencies in ms, non-2xx count).
async fn load_loop(
    addr: SocketAddr,
    requests: Vec<Vec<u8>>,
    deadline: Instant,
) -> Result<(Vec<f64>, u64), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    let (mut lat, mut bad) = (Vec::with_capacity(1 << 16), 0u64);
    let mut line = String::new();
    let mut body = Vec::new();
    let mut i = 0;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        stream
            .get_mut()
            .write_all(&requests[i % requests.len()])
            .await
            .map_err(|e| format!("write: {e}"))?;
        i += 1;
        let (mut status, mut len) = (0u16, 0usize);
        let mut first = true;
        loop {
            line.clear();
            if stream
                .read_line(&mut line)
                .await
                .map_err(|e| format!("read: {e}"))?
                == 0
            {
                return Err("the server closed the connection".into());
            }
            let l = line.trim_end();
            if first {
                status = l
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                first = false;
            } else if l.is_empty() {
                break;
            } else if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        body.resize(len, 0);
        stream
            .read_exact(&mut body)
            .await
            .map_err(|e| format!("read body: {e}"))?;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        if !(200..300).contains(&status) {
            if bad == 0 {
                // Counted in `non_2xx`; the first one of a connection is shown.
                let body = String::from_utf8_lossy(&body);
                eprintln!("bench: a non-2xx answer: {status} {body}");
            }
            bad += 1;
        }
    }
    Ok((lat, bad))
}

async fn run_builtin(
    addr: SocketAddr,
    token: &str,
    ids: &[String],
    conns: usize,
    duration: Duration,
) -> Result<Load, String> {
    let requests: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| {
            format!(
                "GET /api/jobs/{id}/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .into_bytes()
        })
        .collect();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(conns);
    for c in 0..conns {
        let mut mine = requests.clone();
        mine.rotate_left(c % requests.len());
        tasks.push(tokio::spawn(load_loop(addr, mine, deadline)));
    }
    let mut all = Vec::new();
    let mut non_2xx = 0;
    for t in tasks {
        let (lat, bad) = t.await.map_err(|e| format!("load task: {e}"))??;
        all.extend(lat);
        non_2xx += bad;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok(Load {
        requests: all.len() as u64,
        non_2xx,
        rps: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
    })
}
