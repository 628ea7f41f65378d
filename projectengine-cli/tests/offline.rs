//! The `projectengine` binary without a projectEngine server: its command
//! line, its token, and that bad input sends nothing. The end-to-end tests
//! against the real server are in the workspace root's `tests/cli.rs`.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

const SECRET: &str = "offline-test-secret-0123456789abcdef";

/// The binary with a clean environment.
fn cli() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_projectengine"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run projectengine");
    (
        status.code().expect("an exit code"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A TCP listener that counts the connections made to it (and answers none).
fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut c) = conn {
                let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = c.read(&mut [0u8; 1024]);
            }
        }
    });
    (url, count)
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let (code, out, _) = run(cli().arg("--help"));
    assert_eq!(code, 0);
    for word in [
        "submit",
        "watch",
        "list",
        "show",
        "cancel",
        "retry",
        "approve",
        "reject",
        "rerun",
        "artifacts",
        "download",
        "token",
        "PROJECTENGINE_URL",
        "PROJECTENGINE_TOKEN",
        "--json",
        "3 the watched job failed",
    ] {
        assert!(out.contains(word), "--help lacks {word}:\n{out}");
    }
}

#[test]
fn token_mints_what_the_server_verifies() {
    let (code, out, err) = run(cli()
        .args(["token", "--sub", "alice", "--ttl", "1h"])
        .env("PROJECTENGINE_JWT_SECRET", SECRET));
    assert_eq!(code, 0, "{err}");
    let token = out.trim();
    let data = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .expect("a valid HS256 token");
    assert_eq!(data.claims["sub"], "alice");
    let ttl = data.claims["exp"].as_u64().unwrap() - data.claims["iat"].as_u64().unwrap();
    assert_eq!(ttl, 3600);

    let (code, out, _) = run(cli()
        .args(["token", "--sub", "bob", "--json"])
        .env("PROJECTENGINE_JWT_SECRET", SECRET));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["sub"], "bob");
    assert!(v["token"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));
}

#[test]
fn token_without_the_secret_says_which_variable() {
    let (code, out, err) = run(cli().args(["token", "--sub", "alice"]));
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("PROJECTENGINE_JWT_SECRET"), "{err}");
    let (code, _, err) = run(cli()
        .args(["token", "--sub", "alice"])
        .env("PROJECTENGINE_JWT_SECRET", "short"));
    assert_eq!(code, 2);
    assert!(err.contains("at least 32 bytes"), "{err}");
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let (url, connections) = counting_listener();
    let dir = std::env::temp_dir().join(format!("pe-cli-offline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let array = dir.join("array.json");
    std::fs::write(&array, "[1, 2]").unwrap();

    let (code, _, err) = run(cli()
        .args(["submit", "hello", "--params"])
        .arg(&array)
        .env("PROJECTENGINE_URL", &url));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--params") && err.contains("must hold a JSON object, not an array"),
        "{err}"
    );

    let (code, _, err) = run(cli()
        .args(["submit", "hello", "--params", "-", "--server", &url])
        .stdin(std::process::Stdio::null()));
    assert_eq!(code, 2, "empty stdin is no JSON: {err}");
    assert!(err.contains("standard input is not valid JSON"), "{err}");

    let (code, _, err) = run(cli().args(["show", "42", "--server", &url]));
    assert_eq!(code, 2);
    assert!(err.contains("not a job id"), "{err}");

    let (code, _, err) = run(cli().args([
        "download",
        "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "../../etc/passwd",
        "--server",
        &url,
    ]));
    assert_eq!(code, 2);
    assert!(err.contains("`..` segment"), "{err}");

    let (code, _, err) = run(cli().args([
        "reject",
        "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "--server",
        &url,
    ]));
    assert_eq!(code, 2);
    assert!(
        err.contains("--comment"),
        "a rejection needs its comment: {err}"
    );

    let (code, _, err) = run(cli().args(["approve", "42", "--server", &url]));
    assert_eq!(code, 2);
    assert!(err.contains("not a job id"), "{err}");

    let (code, _, err) = run(cli().args(["list", "--server", "https://example.invalid"]));
    assert_eq!(code, 2);
    assert!(err.contains("https is not supported"), "{err}");

    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "bad input reached the server"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unreachable_server_is_an_error_plain_or_json() {
    // A port nobody listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, out, err) = run(cli().args(["list", "--server", &url]));
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.starts_with("projectengine: error: cannot reach"),
        "{err}"
    );

    let (code, out, err) = run(cli().args([
        "watch",
        "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "--json",
        "--server",
        &url,
    ]));
    assert_eq!(code, 1);
    assert!(out.is_empty());
    let v: Value = serde_json::from_str(err.trim()).expect("a JSON error on stderr");
    assert_eq!(v["error"]["code"], "unreachable");
}
