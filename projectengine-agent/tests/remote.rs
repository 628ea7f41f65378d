//! The agent protocol and the SDK against a real server on a real socket.

mod support;

use std::time::Duration;

use futures::StreamExt;
use projectengine_agent::{Agent, AgentError, AttemptEnd, Finish};
use projectengine_core::{EventData, JobStatus, LogLevel, LogLine, StubOrchestrator, Submit};
use serde_json::json;
use support::{assert_gap_free, Server, LOCAL, REMOTE};

fn log(message: &str) -> EventData {
    EventData::Log(LogLine {
        level: LogLevel::Info,
        message: message.to_owned(),
    })
}

/// The stub orchestrator runs as a remote agent to its App and artifact, and
/// its event log reads like the same orchestrator's run in process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_orchestrator_runs_in_process_and_remotely() {
    let server = Server::start(Duration::from_secs(5), Duration::from_millis(200)).await;
    let params = json!({"steps": 3, "log_lines": 2, "artifacts": {"out/data.bin": 70000}});
    let remote = server
        .engine
        .submit(
            &server.owner,
            Submit::new("build it").kind(REMOTE).params(params.clone()),
        )
        .await
        .expect("submit remote");
    let local = server
        .engine
        .submit(
            &server.owner,
            Submit::new("build it").kind(LOCAL).params(params),
        )
        .await
        .expect("submit local");
    let watch = server
        .engine
        .watch(&server.owner, remote.id, 0)
        .await
        .expect("watch");

    let agent = Agent::new(
        server.client(),
        &server.agent_token,
        StubOrchestrator::new(3, Duration::ZERO),
    )
    .wait(Duration::from_secs(5));
    let (id, end) = agent.run_one().await.expect("claim").expect("a job");
    assert_eq!(id, remote.id);
    assert_eq!(end, AttemptEnd::Finished(Finish::Succeeded));
    server.wait_for(remote.id, JobStatus::Succeeded).await;
    server.wait_for(local.id, JobStatus::Succeeded).await;

    let watched: Vec<_> = tokio::time::timeout(Duration::from_secs(10), watch.collect::<Vec<_>>())
        .await
        .expect("the watch ends");
    let seqs: Vec<u64> = watched
        .iter()
        .map(|e| e.as_ref().expect("event").seq)
        .collect();
    let remote_events = server.events(remote.id).await;
    assert_eq!(seqs, (1..=remote_events.len() as u64).collect::<Vec<_>>());
    assert_gap_free(&remote_events);
    let kinds = |events: &[projectengine_core::JobEvent]| -> Vec<String> {
        events
            .iter()
            .map(|e| match &e.data {
                EventData::App { .. } => "app".to_owned(),
                EventData::Status { status, .. } => format!("status {status}"),
                EventData::Artifact(a) => format!("artifact {} {}", a.name, a.size),
                other => serde_json::to_string(other).expect("json"),
            })
            .collect()
    };
    let local_events = server.events(local.id).await;
    assert_eq!(kinds(&remote_events), kinds(&local_events));
    let app = server
        .engine
        .app_by_job(&server.owner, remote.id)
        .await
        .expect("the remote run's App");
    assert_eq!(app.attempt, 1);
    let artifact = server
        .engine
        .artifact(&server.owner, remote.id, "out/data.bin")
        .await
        .expect("the artifact");
    assert_eq!(artifact.size, 70000);
    server.stop().await;
}

/// An agent that stops mid-job loses it when its lease expires; another
/// agent finishes it; the first, resumed, gets 409 on every call and nothing
/// of it is stored; a watcher sees every seq once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_agent_is_recovered_and_its_late_calls_are_refused() {
    let server = Server::start(Duration::from_millis(800), Duration::from_millis(200)).await;
    let job = server
        .engine
        .submit(
            &server.owner,
            Submit::new("x")
                .kind(REMOTE)
                .params(json!({"steps": 2}))
                .max_attempts(3),
        )
        .await
        .expect("submit");
    let watch = server
        .engine
        .watch(&server.owner, job.id, 0)
        .await
        .expect("watch");
    let client = server.client();
    let frozen = client
        .claim(&server.agent_token, None, Duration::from_secs(5))
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(frozen.job.id, job.id);
    let token = frozen.attempt_token.clone();
    client
        .events(&token, 1, &[log("before the freeze")])
        .await
        .expect("batch 1");

    // The agent freezes: no heartbeat. Recovery (in the worker) requeues.
    let second = Agent::new(
        server.client(),
        &server.agent_token,
        StubOrchestrator::new(2, Duration::ZERO),
    )
    .wait(Duration::from_secs(10));
    let (id, end) = second
        .run_one()
        .await
        .expect("claim")
        .expect("the job again");
    assert_eq!(id, job.id);
    assert_eq!(end, AttemptEnd::Finished(Finish::Succeeded));
    server.wait_for(job.id, JobStatus::Succeeded).await;
    let before = server.events(job.id).await;

    // The frozen agent resumes: every call is refused, nothing is stored.
    assert!(matches!(
        client.heartbeat(&token).await,
        Err(AgentError::StaleAttempt)
    ));
    assert!(matches!(
        client.events(&token, 2, &[log("after the freeze")]).await,
        Err(AgentError::StaleAttempt)
    ));
    assert!(matches!(
        client.app(&token, "late", &json!({})).await,
        Err(AgentError::StaleAttempt)
    ));
    assert!(matches!(
        client
            .put_artifact(&token, "late.txt", "text/plain", "late".into())
            .await,
        Err(AgentError::StaleAttempt)
    ));
    assert!(matches!(
        client.finish(&token, &Finish::Succeeded).await,
        Err(AgentError::StaleAttempt)
    ));
    let after = server.events(job.id).await;
    assert_eq!(before, after, "nothing of the stale attempt is stored");
    assert!(server
        .engine
        .artifact(&server.owner, job.id, "late.txt")
        .await
        .is_err());
    let attempts = server
        .engine
        .attempts(&server.owner, job.id)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, projectengine_core::AttemptStatus::Lost);

    let watched: Vec<u64> =
        tokio::time::timeout(Duration::from_secs(10), watch.collect::<Vec<_>>())
            .await
            .expect("the watch ends")
            .into_iter()
            .map(|e| e.expect("event").seq)
            .collect();
    assert_eq!(watched, (1..=after.len() as u64).collect::<Vec<_>>());
    assert_gap_free(&after);
    server.stop().await;
}

/// The owner's cancel reaches a remote agent within a heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_remote_agent_within_a_heartbeat() {
    let heartbeat = Duration::from_millis(200);
    let server = Server::start(Duration::from_secs(5), heartbeat).await;
    let job = server
        .engine
        .submit(
            &server.owner,
            Submit::new("long")
                .kind(REMOTE)
                .params(json!({"steps": 1000, "delay_ms": 50})),
        )
        .await
        .expect("submit");
    let agent = Agent::new(
        server.client(),
        &server.agent_token,
        StubOrchestrator::default(),
    )
    .wait(Duration::from_secs(5));
    let run = tokio::spawn(async move { agent.run_one().await });
    server.wait_for(job.id, JobStatus::Running).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = tokio::time::Instant::now();
    server
        .engine
        .cancel(&server.owner, job.id)
        .await
        .expect("cancel");
    let (_, end) = run.await.expect("join").expect("claim").expect("a job");
    let took = asked.elapsed();
    assert_eq!(end, AttemptEnd::Finished(Finish::Cancelled));
    assert!(
        took < heartbeat * 2 + Duration::from_millis(300),
        "the cancel took {took:?}"
    );
    server.wait_for(job.id, JobStatus::Cancelled).await;
    server.stop().await;
}

/// A retried `events` batch is stored once; a skipped number is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_events_batch_is_stored_once() {
    let server = Server::start(Duration::from_secs(5), Duration::from_millis(200)).await;
    let job = server
        .engine
        .submit(&server.owner, Submit::new("x").kind(REMOTE))
        .await
        .expect("submit");
    let client = server.client();
    let ctx = client
        .claim(
            &server.agent_token,
            Some(&[REMOTE.to_owned()]),
            Duration::from_secs(5),
        )
        .await
        .expect("claim")
        .expect("a job");
    let batch = [log("one"), log("two")];
    let first = client
        .events(&ctx.attempt_token, 1, &batch)
        .await
        .expect("batch 1");
    assert!(first.applied);
    assert_eq!(first.seqs, vec![3, 4]);
    let again = client
        .events(&ctx.attempt_token, 1, &batch)
        .await
        .expect("batch 1 again");
    assert!(!again.applied);
    assert!(again.seqs.is_empty());
    assert!(matches!(
        client.events(&ctx.attempt_token, 3, &[log("gap")]).await,
        Err(AgentError::Refused { status: 422, .. })
    ));
    let lines = server
        .events(job.id)
        .await
        .into_iter()
        .filter(|e| matches!(e.data, EventData::Log(_)))
        .count();
    assert_eq!(lines, 2);
    client
        .finish(&ctx.attempt_token, &Finish::Succeeded)
        .await
        .expect("finish");
    server.wait_for(job.id, JobStatus::Succeeded).await;
    server.stop().await;
}

/// User, agent and attempt tokens are each refused where another belongs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_not_interchangeable() {
    let server = Server::start(Duration::from_secs(5), Duration::from_millis(200)).await;
    let http = reqwest::Client::new();
    let post = |path: &str, token: &str| {
        http.post(format!("{}{path}", server.url))
            .bearer_auth(token)
            .json(&json!({}))
    };
    // A user token cannot claim, nor heartbeat.
    let res = post("/api/agent/v1/claim", &server.user_token)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    let res = post("/api/agent/v1/attempt/heartbeat", &server.user_token)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    // An agent token cannot act as a user, nor as an attempt.
    let res = http
        .get(format!("{}/api/jobs/", server.url))
        .bearer_auth(&server.agent_token)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    let res = post("/api/agent/v1/attempt/heartbeat", &server.agent_token)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    // An attempt token cannot act as a user, nor claim.
    server
        .engine
        .submit(&server.owner, Submit::new("x").kind(REMOTE))
        .await
        .expect("submit");
    let ctx = server
        .client()
        .claim(&server.agent_token, None, Duration::from_secs(5))
        .await
        .expect("claim")
        .expect("a job");
    let res = http
        .get(format!("{}/api/jobs/", server.url))
        .bearer_auth(&ctx.attempt_token)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    let res = post("/api/agent/v1/claim", &ctx.attempt_token)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    // An agent may claim only its own kinds.
    let other = server
        .auth
        .mint_agent(
            "agent-2",
            &["elsewhere".to_owned()],
            Duration::from_secs(60),
        )
        .expect("mint");
    let res = http
        .post(format!("{}/api/agent/v1/claim", server.url))
        .bearer_auth(&other)
        .json(&json!({"kinds": [REMOTE]}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 403);
    // The user's own token still works.
    let res = http
        .get(format!("{}/api/jobs/", server.url))
        .bearer_auth(&server.user_token)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    server.stop().await;
}

/// Submits the child `frontend` (a `local` job) and fails its first attempt.
struct SplitsOnce;

#[async_trait::async_trait]
impl projectengine_core::Orchestrator for SplitsOnce {
    async fn run(
        &self,
        _job: &projectengine_core::Job,
        cb: &dyn projectengine_core::JobCallbacks,
    ) -> Result<(), projectengine_core::OrchestratorError> {
        let child = cb
            .submit_child("frontend", Submit::new("the frontend").kind(LOCAL))
            .await?;
        cb.log(LogLevel::Info, &format!("child {}", child.id))
            .await?;
        let bad = cb
            .submit_child("bad", Submit::new("x").kind("no-such-kind"))
            .await;
        if !matches!(bad, Err(projectengine_core::Error::Invalid { .. })) {
            return Err(projectengine_core::OrchestratorError::fatal(format!(
                "an unknown kind must be refused: {bad:?}"
            )));
        }
        if cb.attempt() == 1 {
            return Err(projectengine_core::OrchestratorError::retryable("again")
                .with_retry_after(Duration::ZERO));
        }
        Ok(())
    }
}

/// A remote attempt submits a child over the agent protocol, validated like
/// any submission; the retried attempt's submission of the same key answers
/// the same child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_attempt_submits_children_once_per_key() {
    let server = Server::start(Duration::from_secs(5), Duration::from_millis(200)).await;
    let parent = server
        .engine
        .submit(&server.owner, Submit::new("split").kind(REMOTE))
        .await
        .expect("submit");
    let agent =
        Agent::new(server.client(), &server.agent_token, SplitsOnce).wait(Duration::from_secs(5));
    let (_, first) = agent.run_one().await.expect("claim").expect("a job");
    assert!(
        matches!(first, AttemptEnd::Finished(Finish::Retryable { .. })),
        "{first:?}"
    );
    let (_, second) = agent.run_one().await.expect("claim").expect("a job");
    assert_eq!(second, AttemptEnd::Finished(Finish::Succeeded));
    server.wait_for(parent.id, JobStatus::Succeeded).await;

    let children = server
        .engine
        .children(&server.owner, parent.id)
        .await
        .expect("children");
    assert_eq!(children.len(), 1, "{children:?}");
    let child = &children[0];
    assert_eq!(child.parent_id, Some(parent.id));
    assert_eq!(child.child_key.as_deref(), Some("frontend"));
    assert_eq!(child.owner, server.owner);
    server.wait_for(child.id, JobStatus::Succeeded).await;
    let lines: Vec<String> = server
        .events(parent.id)
        .await
        .into_iter()
        .filter_map(|e| match e.data {
            EventData::Log(line) => Some(line.message),
            _ => None,
        })
        .collect();
    let expected = format!("child {}", child.id);
    assert_eq!(
        lines.iter().filter(|l| **l == expected).count(),
        2,
        "both attempts got the same child: {lines:?}"
    );
    server.stop().await;
}
