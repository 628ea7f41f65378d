//! The WebSocket route over a real socket, with a real client.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::TestApp;
use futures::{SinkExt, StreamExt};
use projectengine_core::testkit::assert::assert_gap_free_seqs;
use projectengine_core::{JobId, JobStatus, Owner};
use projectengine_http::HttpConfig;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `/ws/jobs/{id}/` with the given query and extra headers.
async fn connect(
    addr: SocketAddr,
    id: JobId,
    query: &str,
    headers: &[(&str, String)],
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut req = format!("ws://{addr}/ws/jobs/{id}/{query}")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        req.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    tokio_tungstenite::connect_async(req).await
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {token}"))]
}

/// Reads event frames until the server closes (or `max` events); at most 15 s.
async fn read_events(ws: &mut Ws, max: usize) -> (Vec<Value>, Option<CloseFrame>) {
    let mut events = Vec::new();
    let res = timeout(Duration::from_secs(15), async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Text(t)) => {
                    events.push(serde_json::from_str::<Value>(t.as_str()).expect("JSON frame"));
                    if events.len() >= max {
                        return None;
                    }
                }
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await;
    (events, res.expect("the stream did not end in time"))
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

async fn open_websockets(app: &TestApp) -> String {
    let r = app.call(Method::GET, "/metrics", None, None).await;
    r.text
        .lines()
        .find(|l| l.starts_with("projectengine_open_websockets "))
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn streams_every_event_in_order_then_closes_normally() {
    let app = TestApp::new();
    let addr = app.serve().await;
    let t = app.token("alice");
    let id = app
        .submit(
            &t,
            json!({"prompt": "x", "params": {"steps": 5, "delay_ms": 20}}),
        )
        .await;
    let (mut ws, _) = connect(addr, id, "", &bearer(&t)).await.expect("connect");
    assert_eq!(
        open_websockets(&app).await,
        "projectengine_open_websockets 1"
    );
    let (events, close) = read_events(&mut ws, usize::MAX).await;
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1000);
    let job = app.engine.get(&Owner::new("alice"), id).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(seqs(&events), (1..=job.last_seq).collect::<Vec<_>>());
    let last = events.last().unwrap();
    assert_eq!(last["type"], "status");
    assert_eq!(last["data"]["status"], "succeeded");
    for e in &events {
        assert_eq!(e["job_id"], id.to_string());
        assert!(e["at"].is_string() && e["type"].is_string());
    }
    let steps = events.iter().filter(|e| e["type"] == "step").count();
    assert_eq!(steps, 5);
    // The frames are the REST event log, byte for byte in content.
    let r = app
        .get(&format!("/api/jobs/{id}/events/?limit=500"), &t)
        .await;
    assert_eq!(r.json["items"], Value::Array(events));
    drop(ws);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while open_websockets(&app).await != "projectengine_open_websockets 0" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauge not back to 0"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_token_may_come_as_a_subprotocol_or_a_query_parameter() {
    let app = TestApp::new();
    let addr = app.serve().await;
    let t = app.token("alice");
    let id = app
        .submit(&t, json!({"prompt": "x", "params": {"steps": 1}}))
        .await;

    let proto = vec![("sec-websocket-protocol", format!("bearer, {t}"))];
    let (mut ws, res) = connect(addr, id, "", &proto).await.expect("subprotocol");
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(res.headers()["sec-websocket-protocol"], "bearer");
    let (events, close) = read_events(&mut ws, usize::MAX).await;
    assert_eq!(u16::from(close.unwrap().code), 1000);
    assert_eq!(events[0]["seq"], 1);

    let (mut ws, res) = connect(addr, id, &format!("?token={t}&after=2"), &[])
        .await
        .expect("query token");
    assert!(res.headers().get("sec-websocket-protocol").is_none());
    let (events, _) = read_events(&mut ws, usize::MAX).await;
    assert_eq!(events[0]["seq"], 3);
}

#[tokio::test]
async fn refusals_happen_before_the_upgrade() {
    let app = TestApp::idle();
    let addr = app.serve().await;
    let alice = app.token("alice");
    let bob = app.token("bob");
    let id = app.submit(&alice, json!({"prompt": "x"})).await;

    let status_of = |r: Result<_, tungstenite::Error>| match r {
        Err(tungstenite::Error::Http(res)) => {
            let body: Value =
                serde_json::from_slice(res.body().as_deref().unwrap_or_default()).unwrap();
            (
                res.status(),
                body["error"]["code"].as_str().unwrap().to_owned(),
            )
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgraded"),
    };
    assert_eq!(
        status_of(connect(addr, id, "", &[]).await),
        (StatusCode::UNAUTHORIZED, "unauthorized".to_owned())
    );
    assert_eq!(
        status_of(connect(addr, id, "?token=nope", &[]).await).0,
        StatusCode::UNAUTHORIZED
    );
    let bad_proto = vec![("sec-websocket-protocol", "bearer, nope".to_owned())];
    assert_eq!(
        status_of(connect(addr, id, "", &bad_proto).await).0,
        StatusCode::UNAUTHORIZED
    );
    // Expired long ago (beyond any leeway).
    let old = {
        use jsonwebtoken::{encode, EncodingKey, Header};
        encode(
            &Header::default(),
            &json!({"sub": "alice", "exp": 1_000_000_000u64}),
            &EncodingKey::from_secret(common::SECRET.as_bytes()),
        )
        .unwrap()
    };
    assert_eq!(
        status_of(connect(addr, id, "", &bearer(&old)).await).0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_of(connect(addr, id, "", &bearer(&bob)).await),
        (StatusCode::NOT_FOUND, "not_found".to_owned())
    );
    let bob_proto = vec![("sec-websocket-protocol", format!("bearer, {bob}"))];
    assert_eq!(
        status_of(connect(addr, id, "", &bob_proto).await).0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(connect(addr, JobId::new(), "", &bearer(&alice)).await).0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(connect(addr, id, "?after=-3", &bearer(&alice)).await).0,
        StatusCode::BAD_REQUEST
    );
    // The owner gets through.
    assert!(connect(addr, id, "", &bearer(&alice)).await.is_ok());
}

#[tokio::test]
async fn a_reconnect_with_after_yields_each_seq_exactly_once() {
    let app = TestApp::new();
    let addr = app.serve().await;
    let t = app.token("alice");
    let id = app
        .submit(
            &t,
            json!({"prompt": "x", "params": {"steps": 30, "delay_ms": 10}}),
        )
        .await;
    let mut all = Vec::new();
    let mut after = 0;
    let mut connections = 0;
    loop {
        connections += 1;
        let (mut ws, _) = connect(addr, id, &format!("?after={after}"), &bearer(&t))
            .await
            .expect("connect");
        // Take a few events, then drop the connection mid-stream.
        let (events, close) = read_events(&mut ws, 7).await;
        all.extend(seqs(&events));
        if let Some(last) = events.last() {
            after = last["seq"].as_u64().unwrap();
        }
        if let Some(close) = close {
            assert_eq!(u16::from(close.code), 1000);
            break;
        }
        drop(ws);
        assert!(connections < 100, "never finished");
    }
    assert!(connections > 3, "the test should reconnect several times");
    let job = app.engine.get(&Owner::new("alice"), id).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(all, (1..=job.last_seq).collect::<Vec<_>>());

    // After the end, a reconnect gets nothing and a normal close at once.
    let (mut ws, _) = connect(addr, id, &format!("?after={}", job.last_seq), &bearer(&t))
        .await
        .unwrap();
    let (events, close) = read_events(&mut ws, usize::MAX).await;
    assert!(events.is_empty());
    assert_eq!(u16::from(close.unwrap().code), 1000);
}

fn fast_config() -> HttpConfig {
    let mut c = HttpConfig::default();
    c.ws_ping_interval = Duration::from_millis(100);
    c.ws_idle_timeout = Duration::from_millis(600);
    c.ws_send_timeout = Duration::from_millis(300);
    c
}

#[tokio::test]
async fn an_idle_client_is_pinged_and_one_that_never_answers_is_closed() {
    let app = TestApp::build(false, fast_config());
    let addr = app.serve().await;
    let t = app.token("alice");
    let id = app.submit(&t, json!({"prompt": "x"})).await;
    let (mut ws, _) = connect(addr, id, "?after=1", &bearer(&t)).await.unwrap();
    // A reading client answers pings (tungstenite queues the pong) and stays.
    let mut pings = 0;
    let stayed = timeout(Duration::from_secs(1), async {
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Ping(_) => pings += 1,
                Message::Close(_) => return false,
                _ => {}
            }
        }
        false
    })
    .await;
    assert!(stayed.is_err(), "closed while answering pings");
    assert!(pings >= 3, "{pings} pings in 1 s");

    // A client that stops reading never answers: closed with 1008 after the idle timeout.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, close) = read_events(&mut ws, usize::MAX).await;
    assert_eq!(u16::from(close.expect("close frame").code), 1008);
}

#[tokio::test]
async fn malformed_binary_and_oversized_client_messages_close_the_socket() {
    let app = TestApp::idle();
    let addr = app.serve().await;
    let t = app.token("alice");
    let id = app.submit(&t, json!({"prompt": "x"})).await;

    let cases: Vec<(Message, u16)> = vec![
        (Message::Text("not json".into()), 1003),
        (Message::Text("[1,2]".into()), 1003),
        (Message::Binary(vec![1, 2, 3].into()), 1003),
        (
            Message::Text(format!("\"{}\"", "x".repeat(10 * 1024)).into()),
            1009,
        ),
    ];
    for (msg, code) in cases {
        let (mut ws, _) = connect(addr, id, "", &bearer(&t)).await.unwrap();
        let (events, _) = read_events(&mut ws, 1).await;
        assert_eq!(events[0]["seq"], 1);
        ws.send(msg).await.unwrap();
        let (_, close) = read_events(&mut ws, usize::MAX).await;
        assert_eq!(u16::from(close.expect("close frame").code), code);
    }

    // A JSON object, a ping and a pong are fine: the stream goes on.
    let (mut ws, _) = connect(addr, id, "", &bearer(&t)).await.unwrap();
    ws.send(Message::Text(r#"{"hello": "server"}"#.into()))
        .await
        .unwrap();
    ws.send(Message::Ping(vec![1].into())).await.unwrap();
    ws.send(Message::Pong(vec![2].into())).await.unwrap();
    let r = app
        .call(
            Method::POST,
            &format!("/api/jobs/{id}/cancel/"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let (events, close) = read_events(&mut ws, usize::MAX).await;
    assert_eq!(seqs(&events), [1, 2]);
    assert_eq!(events[1]["data"]["status"], "cancelled");
    assert_eq!(u16::from(close.unwrap().code), 1000);
}

#[tokio::test]
async fn a_client_too_slow_to_keep_up_is_disconnected_not_buffered() {
    let app = TestApp::with_config(fast_config());
    let addr = app.serve_with_small_buffers().await;
    let t = app.token("alice");
    // Plenty of events, produced as fast as the store takes them.
    let id = app
        .submit(
            &t,
            json!({"prompt": "x", "params": {"steps": 5000, "delay_ms": 0}}),
        )
        .await;
    app.wait_for("alice", id, JobStatus::Succeeded).await;
    let job = app.engine.get(&Owner::new("alice"), id).await.unwrap();

    // A client with a tiny receive window that does not read for a while.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut req = format!("ws://{addr}/ws/jobs/{id}/")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {t}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut got = Vec::new();
    let mut close_code = None;
    let ended = timeout(Duration::from_secs(10), async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Text(t)) => got.push(
                    serde_json::from_str::<Value>(t.as_str()).unwrap()["seq"]
                        .as_u64()
                        .unwrap(),
                ),
                Ok(Message::Close(f)) => {
                    close_code = f.map(|f| u16::from(f.code));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server kept the slow client");
    assert!(
        (got.len() as u64) < job.last_seq,
        "a slow client got all {} events: it was buffered, not disconnected",
        got.len()
    );
    assert!(
        close_code.is_none() || close_code == Some(1013),
        "close code {close_code:?}"
    );
    // What it did get is a gap-free prefix, so it can resume with `after`.
    assert_gap_free_seqs(&got, 1);
    let after = got.last().copied().unwrap_or(0);
    let (mut ws, _) = connect(addr, id, &format!("?after={after}"), &bearer(&t))
        .await
        .unwrap();
    let (rest, close) = read_events(&mut ws, usize::MAX).await;
    assert_eq!(u16::from(close.unwrap().code), 1000);
    assert_eq!(seqs(&rest), (after + 1..=job.last_seq).collect::<Vec<_>>());
}

#[tokio::test]
async fn shutdown_closes_open_websockets_with_going_away() {
    let app = TestApp::new();
    let addr = app.serve().await;
    let t = app.token("alice");
    let id = app
        .submit(
            &t,
            json!({"prompt": "x", "params": {"steps": 500, "delay_ms": 20}}),
        )
        .await;
    let (mut ws, _) = connect(addr, id, "", &bearer(&t)).await.expect("connect");
    let (first, _) = read_events(&mut ws, 2).await;
    assert_eq!(seqs(&first), [1, 2]);
    app.state.shutdown_token().cancel();
    let (_, close) = read_events(&mut ws, usize::MAX).await;
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001, "going away");
    assert!(close.reason.contains("after="), "{}", close.reason);
}
