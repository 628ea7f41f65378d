//! The artifact routes over a real socket: list, streamed download with its
//! headers, ranges (206 / 416), conditional requests (304), owner isolation,
//! and bad names refused with nothing stored.

mod common;

use axum::http::StatusCode;
use common::TestApp;
use futures::StreamExt;
use projectengine_core::{JobStatus, StubOrchestrator};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const SIZE: u64 = 300_000;

fn expected(size: u64) -> Vec<u8> {
    (0..size).map(StubOrchestrator::artifact_byte).collect()
}

/// A job of alice's that left two artifacts; its id and the server's address.
async fn job_with_artifacts(app: &TestApp) -> (String, std::net::SocketAddr) {
    let t = app.token("alice");
    let id = app
        .submit(
            &t,
            json!({"prompt": "files", "params": {"steps": 1, "artifacts": {
                "dist/site.bin": SIZE,
                "notes/read me.txt": {"bytes": 10, "content_type": "text/plain; charset=utf-8"},
            }}}),
        )
        .await;
    app.wait_for("alice", id, JobStatus::Succeeded).await;
    (id.to_string(), app.serve().await)
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn artifacts_are_listed_and_downloaded_whole() {
    let app = TestApp::new();
    let (id, addr) = job_with_artifacts(&app).await;
    let t = app.token("alice");
    let list: Value = client()
        .get(format!("http://{addr}/api/jobs/{id}/artifacts/"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dist/site.bin", "notes/read me.txt"]);
    let sha = hex::encode(Sha256::digest(expected(SIZE)));
    assert_eq!(items[0]["size"], SIZE);
    assert_eq!(items[0]["sha256"], sha.as_str());
    assert_eq!(items[0]["content_type"], "application/octet-stream");
    assert_eq!(items[0]["attempt"], 1);

    let res = client()
        .get(format!(
            "http://{addr}/api/jobs/{id}/artifacts/dist/site.bin"
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["content-length"], SIZE.to_string().as_str());
    assert_eq!(h["etag"], format!("\"{sha}\"").as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"site.bin\"; filename*=UTF-8''site.bin"
    );
    assert_eq!(
        res.bytes().await.unwrap().as_ref(),
        expected(SIZE).as_slice()
    );

    let res = client()
        .get(format!(
            "http://{addr}/api/jobs/{id}/artifacts/notes/read%20me.txt"
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(res.bytes().await.unwrap().as_ref(), expected(10).as_slice());

    // The event log says what was stored.
    let events = app.get(&format!("/api/jobs/{id}/events/"), &t).await.json;
    let stored: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "artifact")
        .collect();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["data"]["name"], "dist/site.bin");
    assert_eq!(stored[0]["data"]["sha256"], sha.as_str());
}

#[tokio::test]
async fn ranges_and_conditional_requests() {
    let app = TestApp::new();
    let (id, addr) = job_with_artifacts(&app).await;
    let t = app.token("alice");
    let url = format!("http://{addr}/api/jobs/{id}/artifacts/dist/site.bin");
    let all = expected(SIZE);
    let get = |range: Option<&str>, extra: Option<(&str, &str)>| {
        let mut req = client().get(&url).bearer_auth(&t);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        req.send()
    };

    let res = get(Some("bytes=1000-1999"), None).await.unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 1000-1999/{SIZE}").as_str()
    );
    assert_eq!(res.headers()["content-length"], "1000");
    assert_eq!(res.bytes().await.unwrap().as_ref(), &all[1000..2000]);

    let res = get(Some("bytes=-7"), None).await.unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &all[all.len() - 7..]);

    let res = get(Some(&format!("bytes={SIZE}-")), None).await.unwrap();
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes */{SIZE}").as_str()
    );

    // A malformed Range is ignored: the whole artifact.
    let res = get(Some("bytes=banana"), None).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().len() as u64, SIZE);

    let etag = get(None, None).await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let res = get(None, Some(("if-none-match", &etag))).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(res.headers()["etag"], etag.as_str());
    assert!(res.bytes().await.unwrap().is_empty());
    let res = get(None, Some(("if-none-match", "\"other\"")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // If-Range: the range with the current ETag, the whole with another.
    let res = get(Some("bytes=0-9"), Some(("if-range", &etag)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    let res = get(Some("bytes=0-9"), Some(("if-range", "\"stale\"")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().len() as u64, SIZE);
}

#[tokio::test]
async fn another_owner_sees_no_artifact() {
    let app = TestApp::new();
    let (id, addr) = job_with_artifacts(&app).await;
    let bob = app.token("bob");
    for path in ["artifacts/", "artifacts/dist/site.bin"] {
        let res = client()
            .get(format!("http://{addr}/api/jobs/{id}/{path}"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
    let alice = app.token("alice");
    let res = client()
        .get(format!("http://{addr}/api/jobs/{id}/artifacts/dist/nope"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_names_are_refused_and_nothing_is_stored() {
    let app = TestApp::new();
    let addr = app.serve().await;
    let t = app.token("alice");
    // Downloads: a name that escapes, or is absolute, is a 400 naming `name`.
    let id = projectengine_core::JobId::new();
    for name in [
        "a/..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "a%2F%2Fb",
        "x%00y",
    ] {
        let res = client()
            .get(format!("http://{addr}/api/jobs/{id}/artifacts/{name}"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{name}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["field"], "name", "{name}");
    }
    // Uploads: an orchestrator's bad name fails its attempt, and neither
    // metadata nor bytes are kept.
    for bad in ["../evil", "/abs", "a//b", "a/./b"] {
        let id = app
            .submit(
                &t,
                json!({"prompt": "x", "max_attempts": 1,
                       "params": {"steps": 0, "artifacts": {bad: 10}}}),
            )
            .await;
        app.wait_for("alice", id, JobStatus::Failed).await;
        let job = app.get(&format!("/api/jobs/{id}/"), &t).await.json;
        assert!(
            job["error"]["message"].as_str().unwrap().contains("name"),
            "{job}"
        );
        let listed = app.get(&format!("/api/jobs/{id}/artifacts/"), &t).await;
        assert_eq!(listed.json["items"], json!([]));
    }
    let blobs: Vec<_> = app
        .engine
        .artifact_store()
        .objects()
        .list(None)
        .collect()
        .await;
    assert!(blobs.is_empty(), "bytes left behind: {blobs:?}");
}
