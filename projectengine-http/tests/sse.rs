//! The SSE route over a real socket, read with `reqwest`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::TestApp;
use projectengine_core::{JobId, JobStatus, Owner};
use projectengine_http::HttpConfig;
use serde_json::{json, Value};
use tokio::time::timeout;

/// One server-sent event, or a comment line.
#[derive(Debug, Default)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
    comment: bool,
}

/// A response being read: status, headers, then the body as SSE events.
struct SseResponse {
    status: u16,
    response: reqwest::Response,
    /// Body bytes received but not yet split into lines.
    buf: Vec<u8>,
    done: bool,
}

impl SseResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// The next body line, without its line end; `None` at the end.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let rest = self.buf.split_off(at + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Some(String::from_utf8(line).expect("UTF-8 lines"));
            }
            if self.done {
                return (!self.buf.is_empty())
                    .then(|| String::from_utf8(std::mem::take(&mut self.buf)).expect("UTF-8"));
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                Ok(None) | Err(_) => self.done = true,
            }
        }
    }

    /// The next event (or comment); `None` when the stream ended.
    async fn next(&mut self) -> Option<SseEvent> {
        let mut ev = SseEvent::default();
        let mut any = false;
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                if any {
                    return Some(ev);
                }
                continue;
            }
            any = true;
            if let Some(c) = line.strip_prefix(':') {
                let _ = c;
                ev.comment = true;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => ev.id = Some(value.to_owned()),
                "event" => ev.event = Some(value.to_owned()),
                "data" => ev.data.push_str(value),
                _ => {}
            }
        }
    }

    /// Reads data events until the end (or `max`), skipping comments; at most 15 s.
    async fn events(&mut self, max: usize) -> (Vec<SseEvent>, bool) {
        let mut out = Vec::new();
        let ended = timeout(Duration::from_secs(15), async {
            while let Some(ev) = self.next().await {
                if ev.comment && ev.data.is_empty() {
                    continue;
                }
                out.push(ev);
                if out.len() >= max {
                    return false;
                }
            }
            true
        })
        .await
        .expect("the stream did not end in time");
        (out, ended)
    }
}

async fn open(addr: SocketAddr, path: &str, headers: &[(&str, String)]) -> SseResponse {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let mut req = client
        .get(format!("http://{addr}{path}"))
        .header("Accept", "text/event-stream");
    for (n, v) in headers {
        req = req.header(*n, v);
    }
    let response = req.send().await.expect("an HTTP response");
    let status = response.status().as_u16();
    assert!(
        status != 200 || response.content_length().is_none(),
        "expected a streamed body: {:?}",
        response.headers()
    );
    SseResponse {
        status,
        response,
        buf: Vec::new(),
        done: false,
    }
}

/// The plain body of a non-streaming answer.
async fn body(res: SseResponse) -> Value {
    let bytes = res.response.bytes().await.expect("the body");
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn bearer(t: &str) -> Vec<(&'static str, String)> {
    vec![("Authorization", format!("Bearer {t}"))]
}

fn seqs(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(e.id.as_deref(), Some(data["seq"].to_string().as_str()));
            data["seq"].as_u64().unwrap()
        })
        .collect()
}

fn stream_path(id: JobId, query: &str) -> String {
    format!("/api/jobs/{id}/stream/{query}")
}

#[tokio::test]
async fn streams_every_event_in_order_and_ends_after_the_terminal_one() {
    let app = TestApp::new();
    let addr = app.serve().await;
    let t = app.token("alice");
    let id = app
        .submit(
            &t,
            json!({"prompt": "x", "params": {"steps": 4, "delay_ms": 20}}),
        )
        .await;
    let mut res = open(addr, &stream_path(id, ""), &bearer(&t)).await;
    assert_eq!(res.status, 200);
    assert!(res
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let (events, ended) = res.events(usize::MAX).await;
    assert!(ended);
    let job = app.engine.get(&Owner::new("alice"), id).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(seqs(&events), (1..=job.last_seq).collect::<Vec<_>>());
    let last: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(last["type"], "status");
    assert_eq!(last["data"]["status"], "succeeded");
    // The same objects as the REST event log.
    let r = app
        .get(&format!("/api/jobs/{id}/events/?limit=500"), &t)
        .await;
    let rest: Vec<Value> = r.json["items"].as_array().unwrap().clone();
    let streamed: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(rest, streamed);
    // Without the trailing slash too.
    let mut res = open(addr, &format!("/api/jobs/{id}/stream?after=2"), &bearer(&t)).await;
    let (events, _) = res.events(usize::MAX).await;
    assert_eq!(seqs(&events)[0], 3);
}

#[tokio::test]
async fn resuming_with_last_event_id_yields_each_seq_exactly_once() {
    let app = TestApp::new();
    let addr = app.serve().await;
    let t = app.token("alice");
    let id = app
        .submit(
            &t,
            json!({"prompt": "x", "params": {"steps": 20, "delay_ms": 10}}),
        )
        .await;
    let mut all = Vec::new();
    let mut last_id: Option<String> = None;
    let mut connections = 0;
    loop {
        connections += 1;
        let mut headers = bearer(&t);
        if let Some(l) = &last_id {
            headers.push(("Last-Event-ID", l.clone()));
        }
        // `after=1` is there to show that Last-Event-ID wins over it.
        let mut res = open(addr, &stream_path(id, "?after=1"), &headers).await;
        if res.status == 204 {
            break;
        }
        assert_eq!(res.status, 200);
        let (events, ended) = res.events(6).await;
        if last_id.is_none() {
            assert_eq!(seqs(&events)[0], 2, "the first connection honours after=1");
            all.push(1);
        }
        all.extend(seqs(&events));
        if let Some(e) = events.last() {
            last_id = e.id.clone();
        }
        if ended {
            break;
        }
        assert!(connections < 100);
    }
    assert!(connections > 3, "the test should resume several times");
    let job = app.engine.get(&Owner::new("alice"), id).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(all, (1..=job.last_seq).collect::<Vec<_>>());

    // A browser reconnecting after the end is told to stop: 204.
    let mut headers = bearer(&t);
    headers.push(("Last-Event-ID", job.last_seq.to_string()));
    let res = open(addr, &stream_path(id, ""), &headers).await;
    assert_eq!(res.status, 204);
}

#[tokio::test]
async fn auth_ownership_and_bad_parameters() {
    let app = TestApp::idle();
    let addr = app.serve().await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    let id = app.submit(&alice, json!({"prompt": "x"})).await;

    let res = open(addr, &stream_path(id, ""), &[]).await;
    assert_eq!(res.status, 401);
    assert_eq!(body(res).await["error"]["code"], "unauthorized");
    let res = open(addr, &stream_path(id, ""), &bearer(&bob)).await;
    assert_eq!(res.status, 404);
    assert_eq!(body(res).await["error"]["code"], "not_found");
    let res = open(addr, &stream_path(id, &format!("?token={bob}")), &[]).await;
    assert_eq!(res.status, 404);

    let mut headers = bearer(&alice);
    headers.push(("Last-Event-ID", "seven".to_owned()));
    let res = open(addr, &stream_path(id, ""), &headers).await;
    assert_eq!(res.status, 400);
    assert_eq!(body(res).await["error"]["field"], "Last-Event-ID");
    let res = open(addr, &stream_path(id, "?after=x"), &bearer(&alice)).await;
    assert_eq!(res.status, 400);
    assert_eq!(body(res).await["error"]["field"], "after");

    // `?token=` for clients that cannot set headers (EventSource).
    let mut res = open(addr, &stream_path(id, &format!("?token={alice}")), &[]).await;
    assert_eq!(res.status, 200);
    let (events, _) = res.events(1).await;
    assert_eq!(seqs(&events), [1]);
}

#[tokio::test]
async fn an_idle_stream_gets_keep_alive_comments() {
    let mut config = HttpConfig::default();
    config.sse_keep_alive = Duration::from_millis(100);
    let app = TestApp::build(false, config);
    let addr = app.serve().await;
    let t = app.token("alice");
    let id = app.submit(&t, json!({"prompt": "x"})).await;
    let mut res = open(addr, &stream_path(id, "?after=1"), &bearer(&t)).await;
    assert_eq!(res.status, 200);
    let ev = timeout(Duration::from_secs(2), res.next())
        .await
        .expect("a keep-alive within 2 s")
        .expect("open stream");
    assert!(
        ev.comment && ev.data.is_empty() && ev.id.is_none(),
        "{ev:?}"
    );
    // Then the next real event arrives on the same stream.
    let r = app
        .call(
            axum::http::Method::POST,
            &format!("/api/jobs/{id}/cancel/"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, axum::http::StatusCode::OK);
    let (events, ended) = res.events(usize::MAX).await;
    assert_eq!(seqs(&events), [2]);
    assert!(ended);
}
