//! Task scale-in protection against a fake ECS agent: an HTTP server on loopback that serves
//! `PUT /api/<id>/task-protection/v1/state` the way the agent does, records every body it gets,
//! and can be told to fail the next calls in either of the agent's two ways.

// Test harness: a failed step should panic right there.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::put;
use ryze_session_host::protection::{self, ProtectionConfig, ProtectionError, TaskProtection};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const TASK_ARN: &str = "arn:aws:ecs:eu-west-1:111122223333:task/ryze/0123456789abcdef";

/// How the fake agent answers the next calls.
#[derive(Debug, Clone, Copy)]
enum Fail {
    /// `{"error": ...}` with HTTP 500, as when the agent's call to ECS throws.
    Error,
    /// `{"failure": ...}` with HTTP 200, as when ECS refuses the task.
    Failure,
}

#[derive(Default)]
struct Agent {
    bodies: Mutex<Vec<Value>>,
    fail_next: Mutex<Vec<Fail>>,
}

impl Agent {
    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    fn fail_next(&self, failures: &[Fail]) {
        self.fail_next.lock().unwrap().extend_from_slice(failures);
    }
}

async fn put_state(State(agent): State<Arc<Agent>>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    agent.bodies.lock().unwrap().push(body.clone());
    let fail = {
        let mut next = agent.fail_next.lock().unwrap();
        if next.is_empty() { None } else { Some(next.remove(0)) }
    };
    match fail {
        Some(Fail::Error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(
                json!({"error": {"Arn": TASK_ARN, "Code": "ServerException", "Message": "Unexpected error occurred"}}),
            ),
        ),
        Some(Fail::Failure) => (
            StatusCode::OK,
            Json(
                json!({"failure": {"Arn": TASK_ARN, "Detail": null, "Reason": "TASK_NOT_VALID"}, "requestID": "r-2"}),
            ),
        ),
        None => {
            let enabled = body["ProtectionEnabled"].as_bool().unwrap_or(false);
            let expiration = if enabled { json!("2030-01-01T01:00:00Z") } else { Value::Null };
            (
                StatusCode::OK,
                Json(json!({
                    "protection": {"ExpirationDate": expiration, "ProtectionEnabled": enabled, "TaskArn": TASK_ARN},
                    "requestID": "r-1",
                })),
            )
        }
    }
}

/// Starts the fake agent; answers its `ECS_AGENT_URI`.
async fn fake_agent() -> (Arc<Agent>, String) {
    let agent = Arc::new(Agent::default());
    let app = axum::Router::new()
        .route("/api/test-task/task-protection/v1/state", put(put_state))
        .with_state(agent.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/api/test-task", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (agent, uri)
}

/// Fast pacing for real time: renewals every 300 ms, off after 200 ms at 0, retries from 50 ms.
fn fast() -> ProtectionConfig {
    ProtectionConfig {
        expires_in: Duration::from_secs(60),
        renew_every: Duration::from_millis(300),
        release_after: Duration::from_millis(200),
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        final_attempts: 3,
    }
}

fn on() -> Value {
    json!({"ProtectionEnabled": true, "ExpiresInMinutes": 1})
}

fn off() -> Value {
    json!({"ProtectionEnabled": false})
}

/// Waits until the agent's bodies satisfy `done`, for at most 5 s.
async fn until(agent: &Agent, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let bodies = agent.bodies();
        if done(&bodies) {
            return bodies;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; bodies: {bodies:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn calls_send_the_documented_bodies_and_read_the_answers() {
    let (agent, uri) = fake_agent().await;
    let protection = TaskProtection::new(Some(&uri)).unwrap();
    assert!(protection.has_agent());

    let state = protection.enable(60).await.unwrap().unwrap();
    assert!(state.enabled);
    assert_eq!(state.expiration_date.as_deref(), Some("2030-01-01T01:00:00Z"));
    assert_eq!(state.task_arn.as_deref(), Some(TASK_ARN));
    let state = protection.disable().await.unwrap().unwrap();
    assert!(!state.enabled);
    assert_eq!(state.expiration_date, None);
    assert_eq!(agent.bodies(), vec![json!({"ProtectionEnabled": true, "ExpiresInMinutes": 60}), off()]);

    agent.fail_next(&[Fail::Error, Fail::Failure]);
    assert_eq!(
        protection.enable(60).await,
        Err(ProtectionError::Agent {
            status: 500,
            code: "ServerException".into(),
            message: "Unexpected error occurred".into(),
        })
    );
    assert_eq!(
        protection.enable(60).await,
        Err(ProtectionError::Failure { reason: "TASK_NOT_VALID".into(), detail: None })
    );
}

#[tokio::test]
async fn an_unreachable_or_silent_agent_is_an_error_within_the_timeout() {
    // A listener that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/api/x", silent.local_addr().unwrap());
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let protection = TaskProtection::new(Some(&uri)).unwrap().with_timeout(Duration::from_millis(200));
    assert_eq!(protection.enable(1).await, Err(ProtectionError::Timeout(Duration::from_millis(200))));
    accept.abort();

    // A port nothing listens on any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/api/x", closed.local_addr().unwrap());
    drop(closed);
    let protection = TaskProtection::new(Some(&uri)).unwrap();
    assert!(matches!(protection.disable().await, Err(ProtectionError::Http(_))));
}

#[tokio::test]
async fn protection_follows_the_sessions_held() {
    let (agent, uri) = fake_agent().await;
    let (held, receiver) = watch::channel(0usize);
    let stop = CancellationToken::new();
    let driver = tokio::spawn(protection::keep(
        TaskProtection::new(Some(&uri)).unwrap(),
        fast(),
        receiver,
        stop.clone(),
    ));

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(agent.bodies().is_empty(), "no sessions: no call");

    // Sessions appear: on at once, then renewed before it lapses.
    held.send_replace(1);
    until(&agent, "protection on", |bodies| !bodies.is_empty()).await;
    held.send_replace(4);
    let bodies = until(&agent, "two renewals", |bodies| bodies.len() >= 3).await;
    assert!(bodies.iter().all(|body| *body == on()), "on, renewed: {bodies:?}");

    // Drained: off after release_after, then nothing more while idle.
    held.send_replace(0);
    let bodies = until(&agent, "protection off", |bodies| bodies.last() == Some(&off())).await;
    let count = bodies.len();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(agent.bodies().len(), count, "off stays off: no renewal, no repeat");

    // Back on for a new session; the stop waits for the drain, then turns it off and returns.
    held.send_replace(1);
    until(&agent, "protection on again", |bodies| bodies.len() > count).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!driver.is_finished(), "still holding a session");
    held.send_replace(0);
    tokio::time::timeout(Duration::from_secs(5), driver).await.unwrap().unwrap();
    let bodies = agent.bodies();
    assert_eq!(bodies.last(), Some(&off()));
    assert_eq!(bodies[count], on());
}

#[tokio::test]
async fn failed_calls_are_retried() {
    let (agent, uri) = fake_agent().await;
    agent.fail_next(&[Fail::Error, Fail::Failure]);
    let (held, receiver) = watch::channel(2usize);
    let stop = CancellationToken::new();
    let driver = tokio::spawn(protection::keep(
        TaskProtection::new(Some(&uri)).unwrap(),
        fast(),
        receiver,
        stop.clone(),
    ));

    // Two failures, then the third try turns protection on; renewals go on as usual after it.
    let bodies = until(&agent, "on after two failures and a renewal", |bodies| bodies.len() >= 4).await;
    assert!(bodies.iter().all(|body| *body == on()), "{bodies:?}");

    // Turning off fails once too, and is retried.
    agent.fail_next(&[Fail::Error]);
    held.send_replace(0);
    let bodies =
        until(&agent, "off retried", |bodies| bodies.iter().filter(|b| **b == off()).count() == 2).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), driver).await.unwrap().unwrap();
    assert_eq!(agent.bodies().len(), bodies.len(), "already off when stopping: no further call");
}

#[tokio::test]
async fn without_an_agent_uri_everything_is_a_no_op() {
    let protection = TaskProtection::new(None).unwrap();
    assert!(!protection.has_agent());
    assert_eq!(protection.enable(60).await, Ok(None));
    assert_eq!(protection.disable().await, Ok(None));

    let (held, receiver) = watch::channel(0usize);
    let stop = CancellationToken::new();
    let driver = tokio::spawn(protection::keep(protection, fast(), receiver, stop.clone()));
    held.send_replace(3);
    tokio::time::sleep(Duration::from_millis(400)).await;
    held.send_replace(0);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), driver).await.unwrap().unwrap();
}
