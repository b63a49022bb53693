//! WebSocket delivery on AWS, against moto: the connection records on the table, and the
//! dispatcher's posts through the API Gateway Management API, to moto's (which keeps nothing that
//! is posted and never answers Gone) and to a recording receiver that answers what a test says;
//! and the websocket function's `$connect` and `$disconnect` on API Gateway's events.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use axum::http::StatusCode;
use ryze_core::adapters::aws::{ApiGatewayLiveEvents, DynamoLiveConnections, LiveOutcome};
use ryze_core::domain::{AccountLimits, InstanceId};
use ryze_core::ports::{ConnectionId, LiveConnection, LiveConnections};
use ryze_functions::live::aws::ConnectionGate;
use ryze_tests::receiver::Receiver;
use ryze_tests::{Backend, TestApp, aws};
use serde_json::{Value, json};

fn connection(instance: &InstanceId, id: &str, lasts: chrono::Duration) -> LiveConnection {
    // Whole seconds: the record keeps its expiry as a TTL, in seconds.
    let expires_at = chrono::DateTime::from_timestamp((chrono::Utc::now() + lasts).timestamp(), 0).unwrap();
    LiveConnection { instance: instance.clone(), id: ConnectionId(id.into()), expires_at }
}

async fn ids(store: &dyn LiveConnections, instance: &InstanceId) -> Vec<String> {
    let mut ids: Vec<String> =
        store.of_instance(instance).await.unwrap().into_iter().map(|c| c.id.0).collect();
    ids.sort();
    ids
}

async fn store() -> (aws_config::SdkConfig, Arc<DynamoLiveConnections>) {
    let (config, resources) = aws::provision().await;
    let store = DynamoLiveConnections::new(aws_sdk_dynamodb::Client::new(&config), &resources.table);
    (config, Arc::new(store))
}

#[tokio::test]
async fn connections_are_kept_by_instance_until_they_expire_or_are_forgotten() {
    let (_, store) = store().await;
    let (one, other) = (InstanceId::generate(), InstanceId::generate());
    let two_hours = chrono::Duration::hours(2);
    let first = connection(&one, "Ab1CdEfGhIjKlMn=", two_hours);
    store.put(&first).await.unwrap();
    store.put(&connection(&one, "Bc2DeFgHiJkLmNo=", two_hours)).await.unwrap();
    store.put(&connection(&one, "expired", -chrono::Duration::seconds(5))).await.unwrap();
    store.put(&connection(&other, "Cd3EfGhIjKlMnOp=", two_hours)).await.unwrap();

    assert_eq!(
        ids(&*store, &one).await,
        ["Ab1CdEfGhIjKlMn=", "Bc2DeFgHiJkLmNo="],
        "expired ones are skipped"
    );
    assert_eq!(store.of_instance(&one).await.unwrap().iter().find(|c| c.id == first.id), Some(&first));
    store.put(&first).await.unwrap();
    assert_eq!(ids(&*store, &one).await.len(), 2, "recording one again replaces it");

    store.delete(&first).await.unwrap();
    store.delete(&first).await.unwrap();
    assert_eq!(ids(&*store, &one).await, ["Bc2DeFgHiJkLmNo="]);
    store.delete_by_id(&ConnectionId("Bc2DeFgHiJkLmNo=".into())).await.unwrap();
    store.delete_by_id(&ConnectionId("never-there".into())).await.unwrap();
    assert!(ids(&*store, &one).await.is_empty(), "$disconnect finds a connection by its id alone");
    assert_eq!(ids(&*store, &other).await, ["Cd3EfGhIjKlMnOp="], "another instance's are untouched");
}

#[tokio::test]
async fn frames_posted_to_the_management_api_keep_the_connections() {
    let (config, store) = store().await;
    let instance = InstanceId::generate();
    store.put(&connection(&instance, "Ab1CdEfGhIjKlMn=", chrono::Duration::hours(2))).await.unwrap();
    store.put(&connection(&instance, "Bc2DeFgHiJkLmNo=", chrono::Duration::hours(2))).await.unwrap();
    // moto takes management calls only at its root: it routes `/@connections/...` by path, and
    // anything before it (a stage) sends the request elsewhere.
    let live = ApiGatewayLiveEvents::new(&config, &aws::endpoint(), store.clone());

    let outcome = live.deliver(&instance, r#"{"event":"instance.state"}"#.into()).await.unwrap();
    assert_eq!(outcome, LiveOutcome { sent: 2, gone: 0, failed: 0 });
    assert_eq!(ids(&*store, &instance).await.len(), 2);
    let nobody = live.deliver(&InstanceId::generate(), "{}".into()).await.unwrap();
    assert_eq!(nobody, LiveOutcome::default(), "an instance with nobody connected posts nothing");
}

#[tokio::test]
async fn a_connection_answered_gone_is_forgotten_and_other_failures_keep_it() {
    let (config, store) = store().await;
    let instance = InstanceId::generate();
    store.put(&connection(&instance, "Ab1CdEfGhIjKlMn=", chrono::Duration::hours(2))).await.unwrap();
    let receiver = Receiver::start().await;
    let endpoint = format!("http://{}/v1", receiver.address);
    let live = ApiGatewayLiveEvents::new(&config, &endpoint, store.clone());
    let frame = r#"{"id":"evt-1","event":"instance.state","data":{"state":"connecting"}}"#;

    let outcome = live.deliver(&instance, frame.into()).await.unwrap();
    assert_eq!(outcome, LiveOutcome { sent: 1, gone: 0, failed: 0 });
    let posted = receiver.received();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].path, "/v1/@connections/Ab1CdEfGhIjKlMn%3D", "on the stage, the id escaped");
    assert_eq!(&posted[0].body[..], frame.as_bytes(), "the frame as it is, nothing around it");
    assert!(posted[0].header("authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256")));

    receiver.answer(StatusCode::INTERNAL_SERVER_ERROR);
    let outcome = live.deliver(&instance, frame.into()).await.unwrap();
    assert_eq!(outcome, LiveOutcome { sent: 0, gone: 0, failed: 1 });
    assert_eq!(ids(&*store, &instance).await.len(), 1, "a failure that is not Gone keeps the connection");

    // A bare 410, without API Gateway's error-type header, counts as Gone too.
    receiver.answer(StatusCode::GONE);
    let outcome = live.deliver(&instance, frame.into()).await.unwrap();
    assert_eq!(outcome, LiveOutcome { sent: 0, gone: 1, failed: 0 });
    assert!(ids(&*store, &instance).await.is_empty());
    let after = live.deliver(&instance, frame.into()).await.unwrap();
    assert_eq!(after, LiveOutcome::default(), "nothing is posted to a forgotten connection");
}

/// An API Gateway WebSocket event from infra/events for `connection`, with `query` as its query.
fn websocket_event(
    fixture: &str,
    connection: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> ApiGatewayWebsocketProxyRequest {
    let mut event: Value = serde_json::from_str(fixture).unwrap();
    event["requestContext"]["connectionId"] = json!(connection);
    if event.get("queryStringParameters").is_some() {
        let single: serde_json::Map<_, _> = query.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        let multi: serde_json::Map<_, _> = query.iter().map(|(k, v)| ((*k).to_owned(), json!([v]))).collect();
        event["queryStringParameters"] = Value::Object(single);
        event["multiValueQueryStringParameters"] = Value::Object(multi);
    }
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    serde_json::from_value(event).unwrap()
}

const CONNECT: &str = include_str!("../../infra/events/apigw-websocket-connect.json");
const DISCONNECT: &str = include_str!("../../infra/events/apigw-websocket-disconnect.json");

fn body(answer: &ApiGatewayProxyResponse) -> Value {
    match &answer.body {
        Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
        other => panic!("not a text body: {other:?}"),
    }
}

#[tokio::test]
async fn the_websocket_function_admits_as_the_api_does_and_records_what_it_admits() {
    let app = TestApp::on(Backend::Aws).await;
    let limits = AccountLimits { requests_per_minute: 3, ..AccountLimits::default() };
    let account = app.account_with(limits).await;
    let token = app.create(&account.token, json!({"name": "ws", "websocketEnabled": true})).await;
    let (config, resources) = app.storage.aws.as_ref().unwrap();
    let store = Arc::new(DynamoLiveConnections::new(aws_sdk_dynamodb::Client::new(config), &resources.table));
    let gate = ConnectionGate::new(app.services.clone(), store.clone());
    let list = app.get("/api/instance/list", &account.token).await;
    let id = InstanceId::from_stored(list.json["instances"][0]["id"].as_str().unwrap());

    // The token in a header, as non-browser clients may send it.
    let by_header = websocket_event(CONNECT, "Ab1CdEfGhIjKlMn=", &[("instance", "ws")], &[("token", &token)]);
    let answer = gate.handle(by_header).await;
    assert_eq!(answer.status_code, 200);
    assert_eq!(answer.headers.get("x-ratelimit-limit").unwrap(), "3");
    assert_eq!(ids(&*store, &id).await, ["Ab1CdEfGhIjKlMn="]);
    let expires_at = store.of_instance(&id).await.unwrap()[0].expires_at;
    let lasts = expires_at - chrono::Utc::now();
    assert!(lasts > chrono::Duration::minutes(119) && lasts <= chrono::Duration::hours(2), "{lasts}");

    let answer = gate.handle(websocket_event(CONNECT, "x1", &[("instance", "ws")], &[])).await;
    assert_eq!(
        (answer.status_code, body(&answer)["error"]["message"].clone()),
        (401, json!("Missing token in header"))
    );

    // An upgrade counts against the token's budget: two more, then 429 with the headers.
    for n in 2..=4 {
        let connection = format!("Conn{n}=");
        let event = websocket_event(CONNECT, &connection, &[("instance", "ws"), ("token", &token)], &[]);
        let answer = gate.handle(event).await;
        if n < 4 {
            assert_eq!(answer.status_code, 200, "{n}");
        } else {
            assert_eq!(answer.status_code, 429);
            assert_eq!(body(&answer)["success"], false);
            assert_eq!(answer.headers.get("x-ratelimit-remaining").unwrap(), "0");
        }
    }
    assert_eq!(
        ids(&*store, &id).await,
        ["Ab1CdEfGhIjKlMn=", "Conn2=", "Conn3="],
        "the refused one is not kept"
    );

    let answer = gate.handle(websocket_event(DISCONNECT, "Conn2=", &[], &[])).await;
    assert_eq!(answer.status_code, 200);
    assert_eq!(ids(&*store, &id).await, ["Ab1CdEfGhIjKlMn=", "Conn3="]);
}
