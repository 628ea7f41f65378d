//! Bad input, generated: bodies, raw bytes, query strings and path ids that
//! clients might send. The API must answer each with a 4xx in our error shape
//! (or accept it), never a 5xx, and a refused request must store nothing.
//! Also: 10 000 jobs listed page by page, nothing skipped or repeated.

mod common;

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::TestApp;
use projectengine_core::{JobQuery, Owner, Submit};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const FIELDS: &[&str] = &[
    "prompt",
    "kind",
    "params",
    "priority",
    "max_attempts",
    "timeout_s",
    "run_at",
    "extra",
];

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("stub")),
        Just(json!("2030-01-01T00:00:00Z")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects built from the real field names (and one unknown), with any values.
fn job_bodies() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(FIELDS), any_json()), 0..6).prop_map(|pairs| {
        let mut m = Map::new();
        for (k, v) in pairs {
            m.insert(k.to_owned(), v);
        }
        Value::Object(m)
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn assert_client_error_shape(status: StatusCode, body: &Value, text: &str) {
    assert!(status.is_client_error(), "{status}: {text}");
    assert!(body["error"]["code"].is_string(), "{status}: {text}");
    assert!(body["error"]["message"].is_string(), "{status}: {text}");
}

async fn stored(app: &TestApp) -> usize {
    let q = JobQuery {
        limit: 500,
        ..JobQuery::default()
    };
    app.engine
        .list(&Owner::new("alice"), q)
        .await
        .expect("list")
        .items
        .len()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn job_bodies_are_accepted_or_refused_with_a_4xx_and_nothing_stored(body in job_bodies()) {
        let rt = runtime();
        rt.block_on(async {
            let app = TestApp::idle();
            let t = app.token("alice");
            let r = app.post("/api/jobs/", &t, body.clone()).await;
            if r.status == StatusCode::CREATED {
                assert_eq!(stored(&app).await, 1);
                assert!(r.headers.contains_key(header::LOCATION));
            } else {
                assert_client_error_shape(r.status, &r.json, &r.text);
                assert_eq!(stored(&app).await, 0, "a refused body stored nothing: {body}");
            }
        });
    }

    #[test]
    fn raw_bytes_never_cause_a_5xx(bytes in prop::collection::vec(any::<u8>(), 0..200), json_type in any::<bool>()) {
        let rt = runtime();
        rt.block_on(async {
            let app = TestApp::idle();
            let t = app.token("alice");
            let mut req = Request::builder()
                .method(Method::POST)
                .uri("/api/jobs/")
                .header(header::AUTHORIZATION, format!("Bearer {t}"));
            if json_type {
                req = req.header(header::CONTENT_TYPE, "application/json");
            }
            let r = app.send(req.body(Body::from(bytes)).expect("request")).await;
            if r.status != StatusCode::CREATED {
                assert_client_error_shape(r.status, &r.json, &r.text);
                assert_eq!(stored(&app).await, 0);
            }
        });
    }

    #[test]
    fn query_strings_never_cause_a_5xx(
        key in prop::sample::select(&["limit", "cursor", "status", "order", "after", "x"][..]),
        value in "[ -~]{0,30}",
        route in prop::sample::select(&["/api/jobs/", "/api/apps/"][..]),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let app = TestApp::idle();
            let t = app.token("alice");
            let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
            let r = app.get(&format!("{route}?{key}={encoded}"), &t).await;
            if r.status != StatusCode::OK {
                assert_client_error_shape(r.status, &r.json, &r.text);
            }
        });
    }

    #[test]
    fn path_ids_are_400_or_404(id in "[ -~]{1,40}") {
        let rt = runtime();
        rt.block_on(async {
            let app = TestApp::idle();
            let t = app.token("alice");
            let encoded: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
            for path in [format!("/api/jobs/{encoded}/"), format!("/api/apps/{encoded}/"), format!("/api/jobs/{encoded}/events/")] {
                let r = app.get(&path, &t).await;
                assert!(
                    matches!(r.status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND),
                    "{path}: {} {}", r.status, r.text
                );
                assert_client_error_shape(r.status, &r.json, &r.text);
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_page_by_page_nothing_skipped_or_repeated() {
    let app = TestApp::idle();
    let alice = Owner::new("alice");
    let mut ids = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        let job = app
            .engine
            .submit(&alice, Submit::new(format!("job {i}")))
            .await
            .expect("submit");
        ids.push(job.id.to_string());
        if i % 3 == 0 {
            // Another owner's jobs interleave and must never show up.
            app.engine
                .submit(&Owner::new("bob"), Submit::new("b"))
                .await
                .expect("submit");
        }
    }
    let t = app.token("alice");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/api/jobs/?limit=500&cursor={c}"),
            None => "/api/jobs/?limit=500".to_owned(),
        };
        let r = app.get(&uri, &t).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        pages += 1;
        let items = r.json["items"].as_array().expect("items");
        seen.extend(
            items
                .iter()
                .map(|j| j["id"].as_str().expect("id").to_owned()),
        );
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages <= 21, "too many pages");
    }
    assert_eq!(pages, 20);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no job repeated");
    assert_eq!(seen, ids, "every job once, in order");
}
