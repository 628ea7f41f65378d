//! The `projectengine` command-line client against the real server binary:
//! submit and `--json`, watch's exit codes, resuming a watch across a restart
//! of the web process, the progress bar in a pseudo-terminal, and errors.
//!
//! The client is the `projectengine` binary of `projectengine-cli`, which
//! `cargo test --workspace` builds next to the example server
//! (`PROJECTENGINE_CLI_BIN` names another one).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{assert_seqs, deployment, events, http, migrate, submit, token, Server};

/// The client binary.
fn cli_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PROJECTENGINE_CLI_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let bin = dir.join("projectengine");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p projectengine-cli`; `cargo test --workspace` does)",
        bin.display()
    );
    bin
}

/// The client pointed at `addr` as `token`'s owner, with nothing else from
/// this environment.
fn cli(addr: SocketAddr, token: Option<&str>) -> Command {
    let mut cmd = Command::new(cli_bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PROJECTENGINE_URL", format!("http://{addr}"))
        .stdin(Stdio::null());
    if let Some(t) = token {
        cmd.env("PROJECTENGINE_TOKEN", t);
    }
    cmd
}

/// Runs the client to its end with a time limit: (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (i32, String, String) {
    run_with_input(cmd, None)
}

fn run_with_input(cmd: &mut Command, input: Option<&str>) -> (i32, String, String) {
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start projectengine");
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("projectengine finished in time")
        .expect("projectengine output");
    (
        out.status.code().expect("an exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The seqs of `#seq …` lines, in order.
fn line_seqs(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| {
            l.split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .expect("a seq")
        })
        .collect()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.lines().filter(|l| l.ends_with(needle)).count()
}

fn params_file(name: &str, params: &Value) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "pe-cli-{}-{}-{name}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::write(&p, params.to_string()).expect("write params");
    p
}

#[test]
fn submit_prints_the_job_as_json_and_watch_exits_0_when_it_succeeds() {
    let server = Server::start("all", &[]);
    let addr = server.addr();
    let t = token("alice");
    let params = json!({"steps": 3, "delay_ms": 30, "log_lines": 1});
    let file = params_file("params.json", &params);

    let (code, out, err) = run(cli(addr, Some(&t))
        .args([
            "submit",
            "three steps",
            "--kind",
            "stub",
            "--priority",
            "5",
            "--json",
            "--params",
        ])
        .arg(&file));
    assert_eq!(code, 0, "{err}");
    let job: Value = serde_json::from_str(&out).expect("submit --json prints the job");
    let id = job["id"].as_str().expect("an id").to_owned();
    assert_eq!(job["kind"], "stub");
    assert_eq!(job["prompt"], "three steps");
    assert_eq!(job["params"], params);
    assert_eq!(job["priority"], 5);
    assert!(
        matches!(job["status"].as_str(), Some("queued" | "running")),
        "{job}"
    );

    // Not a terminal: plain lines, one per event, then the verdict.
    let (code, out, err) = run(cli(addr, Some(&t)).args(["watch", &id]));
    assert_eq!(code, 0, "watch of a successful job: {err}\n{out}");
    let seqs = line_seqs(&out);
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{out}");
    let stored = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(events(addr, &t, &id));
    assert_eq!(seqs.len(), stored.len(), "every stored event once:\n{out}");
    for i in 1..=3 {
        assert_eq!(
            count(&out, &format!("step completed: step {i} of 3")),
            1,
            "{out}"
        );
        assert_eq!(
            count(&out, &format!("log debug: step {i}, line 0")),
            1,
            "{out}"
        );
    }
    assert!(
        out.lines().any(|l| l.ends_with("status succeeded")),
        "{out}"
    );
    assert_eq!(
        out.lines().last(),
        Some(format!("job {id} succeeded").as_str())
    );

    let (code, out, _) = run(cli(addr, Some(&t)).args(["show", &id, "--json"]));
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).expect("show --json");
    assert_eq!(shown["status"], "succeeded");
    assert_eq!(shown["steps"].as_array().map(Vec::len), Some(3));
    let (code, out, _) = run(cli(addr, Some(&t)).args(["show", &id]));
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l == "  status      succeeded"), "{out}");
    assert!(out.contains("completed  step 3 of 3"), "{out}");

    // Params from standard input.
    let (code, out, err) = run_with_input(
        cli(addr, Some(&t)).args(["submit", "from stdin", "--params", "-", "--json"]),
        Some(r#"{"steps": 1, "delay_ms": 0}"#),
    );
    assert_eq!(code, 0, "{err}");
    let second: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(second["params"], json!({"steps": 1, "delay_ms": 0}));

    let (code, out, _) = run(cli(addr, Some(&t)).args(["list", "--json"]));
    assert_eq!(code, 0);
    let page: Value = serde_json::from_str(&out).expect("list --json");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str(), second["id"].as_str().unwrap()]);
    let (code, out, _) = run(cli(addr, Some(&t)).args(["list", "--newest-first"]));
    assert_eq!(code, 0);
    let rows: Vec<&str> = out.lines().collect();
    assert!(rows[0].starts_with("ID") && rows.len() == 3, "{out}");
    assert!(
        rows[2].starts_with(&id) && rows[2].contains("succeeded"),
        "{out}"
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn watch_exit_codes_tell_failed_from_cancelled() {
    let server = Server::start("all", &[]);
    let addr = server.addr();
    let t = token("alice");

    let fail = params_file("fail.json", &json!({"fail": "fatal"}));
    let (code, out, err) = run(cli(addr, Some(&t))
        .args([
            "submit",
            "doomed",
            "--max-attempts",
            "1",
            "--watch",
            "--params",
        ])
        .arg(&fail));
    assert_eq!(code, 3, "a failed job exits 3: {err}\n{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("status failed — orchestrator_error")),
        "{out}"
    );
    let id = out
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("the submitted line names the job")
        .to_owned();
    assert_eq!(
        out.lines().last(),
        Some(format!("job {id} failed").as_str())
    );
    // Watched again as JSON: every event once, the same verdict.
    let (code, out, _) = run(cli(addr, Some(&t)).args(["watch", &id, "--json"]));
    assert_eq!(code, 3);
    let evs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert_seqs(&evs, 1);
    assert_eq!(
        evs.last().map(|e| e["data"]["status"].clone()),
        Some(json!("failed"))
    );

    let slow = params_file("slow.json", &json!({"steps": 200, "delay_ms": 100}));
    let (code, out, err) = run(cli(addr, Some(&t))
        .args(["submit", "slow", "--json", "--params"])
        .arg(&slow));
    assert_eq!(code, 0, "{err}");
    let id: String = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, out, err) = run(cli(addr, Some(&t)).args(["cancel", &id]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("cancel: job {id} (stub): ")),
        "{out}"
    );
    let (code, out, err) = run(cli(addr, Some(&t)).args(["watch", &id]));
    assert_eq!(code, 4, "a cancelled job exits 4: {err}\n{out}");
    assert_eq!(
        out.lines().last(),
        Some(format!("job {id} cancelled").as_str())
    );

    let (code, out, err) = run(cli(addr, Some(&t)).args(["retry", &id, "--json"]));
    assert_eq!(code, 0, "{err}");
    let retried: Value = serde_json::from_str(&out).expect("retry --json");
    assert_eq!(retried["id"], id.as_str());
    assert!(
        matches!(retried["status"].as_str(), Some("queued" | "running")),
        "{retried}"
    );
    let (code, _, _) = run(cli(addr, Some(&t)).args(["cancel", &id]));
    assert_eq!(code, 0);
    let _ = (std::fs::remove_file(fail), std::fs::remove_file(slow));
}

#[test]
fn server_errors_are_shown_plainly_and_exit_1() {
    let server = Server::start("all", &[]);
    let addr = server.addr();
    let alice = token("alice");
    let unknown = uuid::Uuid::now_v7().to_string();

    let (code, out, err) = run(cli(addr, Some(&alice)).args(["show", &unknown]));
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.starts_with("projectengine: error: ") && err.contains("(not_found, HTTP 404)"),
        "{err}"
    );

    let (code, _, err) = run(cli(addr, Some(&alice)).args(["cancel", &unknown, "--json"]));
    assert_eq!(code, 1);
    let e: Value = serde_json::from_str(err.trim()).expect("a JSON error on stderr");
    assert_eq!(e["error"]["code"], "not_found");
    assert_eq!(e["error"]["status"], 404);

    let (code, _, err) = run(cli(addr, None).args(["list"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("HTTP 401") && err.contains("hint: pass --token"),
        "{err}"
    );

    let (code, _, err) = run(cli(addr, Some("not-a-jwt")).args(["watch", &unknown]));
    assert_eq!(code, 1, "a refused WebSocket is not retried: {err}");
    assert!(err.contains("HTTP 401"), "{err}");

    // The server's validation, shown as it said it; nothing was created.
    let (code, _, err) = run(cli(addr, Some(&alice)).args(["submit", " "]));
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 422") && err.contains("prompt"), "{err}");
    let (code, _, err) = run(cli(addr, Some(&alice)).args(["submit", "x", "--kind", "nope"]));
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 422") && err.contains("nope"), "{err}");
    let (_, out, _) = run(cli(addr, Some(&alice)).args(["list", "--json"]));
    let page: Value = serde_json::from_str(&out).expect("list --json");
    assert_eq!(
        page["items"],
        json!([]),
        "refused submissions created nothing"
    );

    // Another owner's job does not exist for you.
    let (_, out, _) = run(cli(addr, Some(&alice)).args(["submit", "mine", "--json"]));
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, _, err) = run(cli(addr, Some(&token("bob"))).args(["watch", &id]));
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 404"), "{err}");
}

/// A port free at the time of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_the_web_process_restarts_and_shows_every_step_once() {
    let Some(env) = deployment().await else {
        return;
    };
    migrate(&env);
    let _worker = Server::start("worker", &env);
    let mut web_env = env.clone();
    web_env.push(("PROJECTENGINE_BIND", format!("127.0.0.1:{}", free_port())));
    let mut web = Server::start("web", &web_env);
    let addr = web.addr();
    let t = token("alice");
    let id = submit(
        addr,
        &t,
        &json!({"prompt": "survive a restart", "params": {"steps": 8, "delay_ms": 400}}),
    )
    .await;

    let mut child = cli(addr, Some(&t))
        .args(["watch", &id, "--json", "--reconnect-for", "30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start projectengine watch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Kill the web process between two steps.
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the second step in time");
        let ev: Value = serde_json::from_str(&line).expect("a JSON event");
        lines.push(line);
        if ev["type"] == "step" && ev["data"]["name"] == "step 2 of 8" {
            break;
        }
    }
    web.kill();
    let seen_before_kill = lines.len();
    std::thread::sleep(Duration::from_millis(500));
    let web = Server::start("web", &web_env);
    assert_eq!(web.addr(), addr, "the web process came back on its address");
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => lines.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break child.wait().expect("wait"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    Instant::now() < deadline + Duration::from_secs(30),
                    "watch did not end"
                );
            }
        }
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("connection lost") && stderr.contains("reconnected; resuming after #"),
        "the watch did reconnect: {stderr}"
    );

    let evs: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert!(
        evs.len() > seen_before_kill,
        "events arrived after the restart"
    );
    assert_seqs(&evs, 1);
    for i in 1..=8 {
        let name = format!("step {i} of 8");
        let n = evs
            .iter()
            .filter(|e| e["type"] == "step" && e["data"]["name"] == name.as_str())
            .count();
        assert_eq!(n, 1, "{name} shown {n} times");
    }
    assert_eq!(
        evs.last().map(|e| e["data"]["status"].clone()),
        Some(json!("succeeded"))
    );
    let stored = events(addr, &t, &id).await;
    assert_eq!(evs, stored, "the watch showed exactly the stored log");
}

#[test]
fn the_progress_bar_draws_in_a_terminal() {
    use portable_pty::{native_pty_system, CommandBuilder, PtySize};

    let server = Server::start("all", &[]);
    let addr = server.addr();
    let t = token("alice");
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a pseudo-terminal");
    let mut cmd = CommandBuilder::new(cli_bin());
    cmd.args([
        "submit",
        "alpha beta gamma delta",
        "--kind",
        "demo-builder",
        "--watch",
    ]);
    cmd.env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("TERM", "xterm-256color");
    cmd.env("PROJECTENGINE_URL", format!("http://{addr}"));
    cmd.env("PROJECTENGINE_TOKEN", &t);
    let mut child = pair
        .slave
        .spawn_command(cmd)
        .expect("spawn in the terminal");
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().expect("a reader");
    let read = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Linux answers EIO once the terminal's last writer is gone.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the client did not finish in a terminal");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(pair.master);
    let screen = String::from_utf8_lossy(&read.join().expect("reader")).into_owned();
    assert!(status.success(), "exit {status:?}:\n{screen}");
    // The bar: redrawn in place with escape codes, a bar and a percentage.
    assert!(
        screen.contains("\u{1b}["),
        "no escape codes, so no bar:\n{screen:?}"
    );
    assert!(
        screen.contains("[=") && screen.contains("%"),
        "no bar drawn:\n{screen:?}"
    );
    assert!(
        !screen.contains("#1 status"),
        "plain lines instead of a bar:\n{screen:?}"
    );
    // The stages and the finished steps, printed above the bar.
    for stage in ["▸ PLANNING", "▸ GENERATING", "▸ PUBLISHING"] {
        assert!(screen.contains(stage), "no {stage}:\n{screen:?}");
    }
    for file in ["alpha", "beta", "gamma", "delta"] {
        let step = format!("✔ write src/{file}.rs");
        assert_eq!(screen.matches(&step).count(), 1, "{step} once:\n{screen:?}");
    }
    assert!(
        screen.contains("planned 4 files"),
        "the log line:\n{screen:?}"
    );
    // The final state.
    assert!(
        screen.contains("succeeded, stage PUBLISHING"),
        "the final line:\n{screen:?}"
    );
}

#[test]
fn artifacts_list_and_download_with_a_checked_sha256() {
    use sha2::{Digest, Sha256};

    let server = Server::start("all", &[]);
    let addr = server.addr();
    let t = token("alice");
    // A job that stores artifacts (the stub's `artifacts` param).
    let params = params_file(
        "artifacts.json",
        &json!({"steps": 1, "delay_ms": 0,
                "artifacts": {"notes.txt": 10, "dist/site.bin": 300_000}}),
    );
    let (code, out, err) = run(cli(addr, Some(&t))
        .args(["submit", "with files", "--json", "--watch", "--params"])
        .arg(&params));
    assert_eq!(code, 0, "{err}");
    let id = serde_json::from_str::<Value>(out.lines().next().expect("the job")).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (code, out, err) = run(cli(addr, Some(&t)).args(["artifacts", &id, "--json"]));
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).expect("artifacts --json");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (status, rest) = rt.block_on(http(
        addr,
        "GET",
        &format!("/api/jobs/{id}/artifacts/"),
        Some(&t),
        None,
    ));
    assert_eq!(status, 200, "{rest}");
    assert_eq!(listed, rest, "the CLI prints the server's listing");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "the job's two artifacts: {listed}");

    let dir = std::env::temp_dir().join(format!("pe-cli-dl-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("a directory");
    for item in items {
        let name = item["name"].as_str().expect("a name");
        let target = dir.join(name.replace('/', "_"));
        let (code, out, err) = run(cli(addr, Some(&t))
            .args(["download", &id, name, "--json", "-o"])
            .arg(&target));
        assert_eq!(code, 0, "{err}");
        let got: Value = serde_json::from_str(&out).expect("download --json");
        let bytes = std::fs::read(&target).expect("the downloaded file");
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, item["sha256"].as_str().unwrap().to_ascii_lowercase());
        assert_eq!(got["sha256"], sha.as_str());
        assert_eq!(Some(bytes.len() as u64), item["size"].as_u64());
    }
    let missing = dir.join("missing");
    let (code, _, err) = run(cli(addr, Some(&t))
        .args(["download", &id, "no/such/file", "-o"])
        .arg(&missing));
    assert_eq!(code, 1);
    assert!(err.contains("not_found"), "{err}");
    assert!(!missing.exists(), "nothing written for a missing artifact");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(params);
}
