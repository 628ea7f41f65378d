//! `artifacts` and `download` against a real HTTP server on a real socket
//! that serves the artifact routes' contract (`GET /api/jobs/{id}/artifacts/`
//! lists `{"items": [{name, size, sha256, content_type, attempt,
//! created_at}]}`, `GET /api/jobs/{id}/artifacts/{name}` streams the file):
//! the file is streamed to disk, its sha256 and size checked, each segment of
//! the name percent-encoded, and a file that does not match is not kept.
//! The same commands against the bundled server are in the workspace root's
//! `tests/cli.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const JOB: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const TOKEN: &str = "contract-token";

/// One served artifact: its bytes, and what the listing claims.
struct Served {
    name: &'static str,
    bytes: Vec<u8>,
    listed_sha: String,
    listed_size: u64,
}

#[derive(Clone)]
struct Contract {
    files: Arc<Vec<Served>>,
    /// Raw paths of the file requests received.
    fetched: Arc<Mutex<Vec<String>>>,
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The refusal of a request without the token, if it is one.
fn refusal(headers: &HeaderMap) -> Option<Response> {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"))
    {
        return None;
    }
    let body = json!({"error": {"code": "unauthorized", "message": "missing or bad token"}});
    Some((StatusCode::UNAUTHORIZED, Json(body)).into_response())
}

async fn listing(State(c): State<Contract>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&headers) {
        return r;
    }
    let items: Vec<Value> = c
        .files
        .iter()
        .map(|f| {
            json!({"name": f.name, "size": f.listed_size, "sha256": f.listed_sha,
                   "content_type": "application/octet-stream", "attempt": 1,
                   "created_at": "2026-01-01T00:00:00Z"})
        })
        .collect();
    Json(json!({ "items": items })).into_response()
}

async fn file(
    State(c): State<Contract>,
    headers: HeaderMap,
    uri: Uri,
    UrlPath((_, name)): UrlPath<(String, String)>,
) -> Response {
    if let Some(r) = refusal(&headers) {
        return r;
    }
    c.fetched.lock().unwrap().push(uri.path().to_owned());
    let Some(f) = c.files.iter().find(|f| f.name == name) else {
        let body = json!({"error": {"code": "not_found", "message": "artifact not found"}});
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    // Sent in many chunks, as a large file would be.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        f.bytes.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    Response::new(Body::from_stream(futures::stream::iter(chunks)))
}

/// Serves the contract on a loopback port, on a runtime of its own.
fn serve(files: Vec<Served>) -> (SocketAddr, Contract) {
    let contract = Contract {
        files: Arc::new(files),
        fetched: Arc::default(),
    };
    let app = Router::new()
        .route("/api/jobs/{id}/artifacts/", get(listing))
        .route("/api/jobs/{id}/artifacts/{*name}", get(file))
        .with_state(contract.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    (rx.recv().expect("the address"), contract)
}

fn files() -> Vec<Served> {
    // 3 MiB that are not all alike.
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let report = b"all good\n".to_vec();
    let short = b"twelve bytes".to_vec();
    vec![
        Served {
            name: "dist/app bundle#1.tar",
            listed_sha: sha(&big),
            listed_size: big.len() as u64,
            bytes: big,
        },
        Served {
            name: "report.txt",
            listed_sha: sha(b"something else"),
            listed_size: report.len() as u64,
            bytes: report,
        },
        Served {
            name: "short.bin",
            listed_sha: sha(&short),
            listed_size: 100,
            bytes: short,
        },
    ]
}

fn cli(addr: SocketAddr, dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_projectengine"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PROJECTENGINE_URL", format!("http://{addr}"))
        .env("PROJECTENGINE_TOKEN", TOKEN)
        .current_dir(dir);
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run projectengine");
    (
        out.status.code().expect("an exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pe-cli-artifacts-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Names in `dir`, sorted.
fn listing_of(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn artifacts_prints_the_listing() {
    let (addr, _) = serve(files());
    let dir = scratch();
    let (code, out, err) = run(cli(addr, &dir).args(["artifacts", JOB, "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(3));
    let (code, out, _) = run(cli(addr, &dir).args(["artifacts", JOB]));
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines.len() == 4, "{out}");
    assert!(
        lines[1].starts_with("dist/app bundle#1.tar  3145728  "),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn download_streams_checks_and_keeps_a_matching_file() {
    let (addr, contract) = serve(files());
    let dir = scratch();
    let (code, out, err) = run(cli(addr, &dir).args([
        "download",
        JOB,
        "dist/app bundle#1.tar",
        "-o",
        "bundle.tar",
        "--json",
    ]));
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).expect("JSON");
    let expected = &contract.files[0];
    assert_eq!(got["sha256"], expected.listed_sha.as_str());
    assert_eq!(got["size"], expected.bytes.len());
    assert_eq!(
        std::fs::read(dir.join("bundle.tar")).unwrap(),
        expected.bytes
    );
    assert_eq!(
        contract.fetched.lock().unwrap().as_slice(),
        [format!(
            "/api/jobs/{JOB}/artifacts/dist/app%20bundle%231.tar"
        )],
        "each segment percent-encoded, the slash kept"
    );
    // Without -o: the name's last segment, in the current directory.
    let (code, out, err) = run(cli(addr, &dir).args(["download", JOB, "dist/app bundle#1.tar"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("wrote app bundle#1.tar (3145728 bytes, sha256 "),
        "{out}"
    );
    assert_eq!(
        listing_of(&dir),
        ["app bundle#1.tar", "bundle.tar"],
        "no temporary file left"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_download_that_does_not_match_is_not_kept() {
    let (addr, contract) = serve(files());
    let dir = scratch();
    std::fs::write(dir.join("report.txt"), "the old report").unwrap();
    let (code, out, err) = run(cli(addr, &dir).args(["download", JOB, "report.txt"]));
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("report.txt: downloaded 9 bytes, sha256 ") && err.contains("was not kept"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("report.txt")).unwrap(),
        "the old report"
    );

    let (code, _, err) = run(cli(addr, &dir).args(["download", JOB, "short.bin", "--json"]));
    assert_eq!(code, 1);
    let e: Value = serde_json::from_str(err.trim()).expect("a JSON error");
    assert_eq!(e["error"]["code"], "integrity");
    assert_eq!(listing_of(&dir), ["report.txt"], "nothing else written");

    // An unknown name is refused from the listing, before any file request.
    let before = contract.fetched.lock().unwrap().len();
    let (code, _, err) = run(cli(addr, &dir).args(["download", JOB, "nope.txt"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("has no artifact named `nope.txt`") && err.contains("not_found"),
        "{err}"
    );
    assert_eq!(contract.fetched.lock().unwrap().len(), before);

    // The server's refusal is shown as it sent it.
    let (code, _, err) = run(cli(addr, &dir).env("PROJECTENGINE_TOKEN", "wrong").args([
        "download",
        JOB,
        "report.txt",
    ]));
    assert_eq!(code, 1);
    assert!(
        err.contains("missing or bad token (unauthorized, HTTP 401)"),
        "{err}"
    );
    assert_eq!(listing_of(&dir), ["report.txt"]);
    let _ = std::fs::remove_dir_all(dir);
}
