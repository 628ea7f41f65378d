//! Agent tokens that name owners: such an agent claims only those owners'
//! jobs, over the agent protocol on a real socket.

mod support;

use std::time::Duration;

use projectengine_core::{JobStatus, Owner, Submit};
use serde_json::json;
use support::{Server, REMOTE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_limited_to_owners_claims_only_their_jobs() {
    let server = Server::start(Duration::from_secs(5), Duration::from_millis(200)).await;
    let bob = Owner::new("bob");
    let carol = Owner::new("carol");
    let submit = |owner: Owner, priority: i32| {
        let engine = server.engine.clone();
        async move {
            engine
                .submit(&owner, Submit::new("x").kind(REMOTE).priority(priority))
                .await
                .expect("submit")
        }
    };
    // Bob's job is the oldest and the most urgent: an unlimited agent would
    // take it first.
    let bobs = submit(bob.clone(), 9).await;
    let alices_low = submit(server.owner.clone(), 0).await;
    let alices_high = submit(server.owner.clone(), 5).await;
    let carols = submit(carol.clone(), 0).await;

    let limited = server
        .auth
        .mint_agent_for(
            "alice-desk",
            &[REMOTE.to_owned()],
            &["alice".to_owned(), "carol".to_owned()],
            Duration::from_secs(600),
        )
        .expect("mint");
    let client = server.client();
    let mut claimed = Vec::new();
    for _ in 0..3 {
        let ctx = client
            .claim(&limited, None, Duration::from_secs(2))
            .await
            .expect("claim")
            .expect("a job of alice or carol");
        claimed.push(ctx.job.id);
    }
    // Highest priority first, then the oldest; never Bob's.
    assert_eq!(claimed, [alices_high.id, alices_low.id, carols.id]);
    // Bob's job is still waiting: the limited agent gets nothing, over HTTP
    // a 204.
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/api/agent/v1/claim", server.url))
        .bearer_auth(&limited)
        .json(&json!({"wait_s": 1}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 204);
    let job = server.engine.get(&bob, bobs.id).await.expect("bob's job");
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempts_used, 0);

    // A job of an allowed owner submitted during the long poll is claimed.
    let waiting = {
        let client = client.clone();
        let limited = limited.clone();
        tokio::spawn(async move { client.claim(&limited, None, Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = submit(carol.clone(), 0).await;
    let ctx = waiting
        .await
        .expect("join")
        .expect("claim")
        .expect("carol's new job");
    assert_eq!(ctx.job.id, later.id);
    assert_eq!(ctx.job.owner, carol);

    // An agent without owners takes Bob's job from the queue.
    let ctx = client
        .claim(&server.agent_token, None, Duration::from_secs(2))
        .await
        .expect("claim")
        .expect("bob's job");
    assert_eq!(ctx.job.id, bobs.id);
    // The entries of the jobs the limited agent took are not claimable
    // twice: the queue has nothing more to give.
    let res = http
        .post(format!("{}/api/agent/v1/claim", server.url))
        .bearer_auth(&server.agent_token)
        .json(&json!({"wait_s": 1}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 204);
    for id in [alices_high.id, alices_low.id] {
        let attempts = server
            .engine
            .attempts(&server.owner, id)
            .await
            .expect("attempts");
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].worker_id, "alice-desk");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_claim_that_is_not_a_list_of_names_is_refused() {
    let server = Server::start(Duration::from_secs(5), Duration::from_millis(200)).await;
    let token = server
        .auth
        .mint_agent_for(
            "desk",
            &[REMOTE.to_owned()],
            &[" ".to_owned()],
            Duration::from_secs(600),
        )
        .expect("mint");
    let res = reqwest::Client::new()
        .post(format!("{}/api/agent/v1/claim", server.url))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("owners")),
        "{body}"
    );
    server.stop().await;
}
