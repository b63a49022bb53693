//! The events API (webhooks, WebSocket configuration, deliveries) and webhook delivery itself, with
//! a dispatcher running beside the app and a local receiver that checks our signatures with the
//! `standardwebhooks` crate (an implementation that is not ours).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::http::StatusCode;
use ryze_core::domain::{DeliveryFilter, DeliveryKey, DeliveryRecord, Event, InstanceId, StateChange};
use ryze_core::outbound::TargetPolicy;
use ryze_core::ports::DeliveryLog;
use ryze_tests::receiver::{Received, Receiver};
use ryze_tests::{TestAccount, TestApp};
use serde_json::{Value, json};

/// A bound for what should take a second: moto, shared by every suite running at once, is slow.
const WAIT: Duration = Duration::from_secs(60);

async fn app_with_instance() -> (TestApp, TestAccount, String) {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "ev"})).await;
    (app, account, token)
}

async fn instance_id(app: &TestApp, account: &TestAccount) -> InstanceId {
    let list = app.get("/api/instance/list?instanceName=ev", &account.token).await;
    InstanceId::from_stored(list.json["instances"][0]["id"].as_str().unwrap())
}

/// Publishes a state event as a session host would.
async fn publish(app: &TestApp, instance: &InstanceId, change: StateChange) -> String {
    let event = Event::state(instance.clone(), &change, chrono::Utc::now());
    app.ports.events.send(&event).await.unwrap();
    event.id
}

/// The delivery log (`query` appended to its path) once `enough` holds for its entries.
async fn logged(app: &TestApp, token: &str, query: &str, enough: impl Fn(&[Value]) -> bool) -> Value {
    let path = format!("/api/events/deliveries/ev{query}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = app.get(&path, token).await;
        assert_eq!(log.status, StatusCode::OK, "{}", log.text);
        if enough(log.json["deliveries"].as_array().expect("deliveries")) {
            return log.json;
        }
        assert!(tokio::time::Instant::now() < deadline, "the delivery log never showed it: {}", log.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn verify(secret: &str, received: &Received) {
    let verifier = standardwebhooks::Webhook::new(secret).expect("a valid secret");
    verifier.verify(&received.body, &received.headers).expect("the signature verifies");
}

async fn configure(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post("/api/events/webhook/ev", token, body).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response.json
}

#[tokio::test]
async fn webhooks_are_configured_by_label_and_never_show_their_secrets_again() {
    let (app, account, token) = app_with_instance().await;
    let created = configure(
        &app,
        &token,
        json!({"enabled": true, "url": "https://user:pw@hooks.example/a",
        "authorization": "Bearer s3cr3t", "events": ["instance.state"], "byEvents": true}),
    )
    .await;
    assert_eq!(created["message"], "Webhook configured");
    let webhook = &created["webhook"];
    assert_eq!(webhook["label"], "default");
    assert_eq!(webhook["url"], "https://hooks.example/a", "credentials are taken out of the URL");
    assert_eq!(webhook["authorization"], Value::Null);
    assert!(webhook["signingSecret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(
        (webhook["byEvents"].clone(), webhook["events"].clone()),
        (json!(true), json!(["instance.state"]))
    );

    let again = configure(&app, &token, json!({"enabled": true, "url": "https://hooks.example/b"})).await;
    assert_eq!(again["webhook"]["signingSecret"], Value::Null, "an overwrite keeps the secret, unshown");
    assert_eq!(again["webhook"]["events"], json!([]), "same label: full overwrite");
    let rotated = configure(
        &app,
        &token,
        json!({"enabled": true, "url": "https://hooks.example/b", "rotateSecret": true}),
    )
    .await;
    assert!(rotated["webhook"]["signingSecret"].as_str().unwrap().starts_with("whsec_"));

    configure(&app, &token, json!({"label": "crm", "enabled": true, "url": "https://crm.example/h"})).await;
    let all = app.get("/api/events/getWebhook/ev", &account.token).await;
    assert_eq!(all.json["message"], "Webhooks retrieved");
    let labels: Vec<&str> =
        all.json["webhooks"].as_array().unwrap().iter().map(|w| w["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["crm", "default"]);
    assert!(
        all.json["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["signingSecret"].is_null() && w["authorization"].is_null())
    );
    let one = app.get("/api/events/getWebhook/ev?label=crm", &token).await;
    assert_eq!(
        (one.json["message"].clone(), one.json["webhook"]["url"].clone()),
        (json!("Webhook retrieved"), json!("https://crm.example/h"))
    );
    let missing = app.get("/api/events/getWebhook/ev?label=nope", &token).await;
    assert_eq!((missing.status, missing.error_message()), (StatusCode::NOT_FOUND, "Webhook not found"));

    let stored = app.storage.stored_bytes().await;
    let stored = String::from_utf8_lossy(&stored);
    for secret in ["s3cr3t", "user:pw", rotated["webhook"]["signingSecret"].as_str().unwrap()] {
        assert!(!stored.contains(secret), "{secret} stored in clear");
    }
}

#[tokio::test]
async fn webhook_writes_are_validated_and_at_most_three_are_enabled() {
    let (app, account, token) = app_with_instance().await;
    let bad_url =
        app.post("/api/events/webhook/ev", &token, json!({"enabled": true, "url": "ftp://x"})).await;
    assert_eq!((bad_url.status, bad_url.error_message()), (StatusCode::BAD_REQUEST, "Invalid field: url"));
    let no_host =
        app.post("/api/events/webhook/ev", &token, json!({"enabled": true, "url": "http://"})).await;
    assert_eq!(no_host.error_message(), "Invalid field: url");
    let bad_label =
        app.post("/api/events/webhook/ev", &token, json!({"label": "a b", "enabled": false})).await;
    assert_eq!(bad_label.status, StatusCode::BAD_REQUEST);
    assert!(bad_label.error_message().starts_with("Invalid field: label"));
    let unknown = app.post("/api/events/webhook/ev", &token, json!({"enabled": true, "nope": 1})).await;
    assert_eq!(unknown.error_message(), "Unknown field: nope");
    let bad_event = app
        .post(
            "/api/events/webhook/ev",
            &token,
            json!({"enabled": true, "url": "https://h.example", "events": ["x"]}),
        )
        .await;
    assert_eq!(bad_event.status, StatusCode::BAD_REQUEST);

    for label in ["a", "b", "c"] {
        configure(&app, &token, json!({"label": label, "enabled": true, "url": "https://h.example"})).await;
    }
    let fourth = app
        .post(
            "/api/events/webhook/ev",
            &token,
            json!({"label": "d", "enabled": true, "url": "https://h.example"}),
        )
        .await;
    assert_eq!(
        (fourth.status, fourth.error_message()),
        (StatusCode::CONFLICT, "Webhook limit reached: at most 3 enabled per instance")
    );
    // Overwriting one of the three, or adding a disabled row, is fine.
    configure(&app, &token, json!({"label": "a", "enabled": true, "url": "https://other.example"})).await;
    let disabled = configure(&app, &token, json!({"label": "b", "enabled": false})).await;
    assert_eq!(
        (disabled["webhook"]["url"].clone(), disabled["webhook"]["enabled"].clone()),
        (Value::Null, json!(false))
    );
    configure(&app, &token, json!({"label": "d", "enabled": true, "url": "https://h.example"})).await;
    assert_eq!(
        app.get("/api/events/getWebhook/ev", &account.token).await.json["webhooks"].as_array().unwrap().len(),
        4
    );

    let other = app.create(&account.token, json!({"name": "other"})).await;
    let foreign = app.post("/api/events/webhook/ev", &other, json!({"enabled": false})).await;
    assert_eq!(
        (foreign.status, foreign.error_message()),
        (StatusCode::FORBIDDEN, "Instance token does not match this instance")
    );
    let nameless = app.post("/api/events/webhook/", &token, json!({"enabled": false})).await;
    assert_eq!(nameless.error_message(), "Instance name is required");
}

#[tokio::test]
async fn websocket_configuration_is_written_and_read_back() {
    let (app, account, token) = app_with_instance().await;
    let never = app.get("/api/events/getWebsocket/ev", &token).await;
    assert_eq!(
        (never.status, never.error_message()),
        (StatusCode::NOT_FOUND, "WebSocket not configured for this instance")
    );
    let set = app
        .post("/api/events/websocket/ev", &token, json!({"enabled": true, "events": ["instance.state"]}))
        .await;
    assert_eq!(
        set.json,
        json!({"success": true, "message": "WebSocket configured",
        "websocket": {"enabled": true, "events": ["instance.state"], "mediaBase64": false}})
    );
    let off = app.post("/api/events/websocket/ev", &token, json!({"enabled": false})).await;
    assert_eq!(off.json["websocket"], json!({"enabled": false, "events": [], "mediaBase64": false}));
    let got = app.get("/api/events/getWebsocket/ev", &account.token).await;
    assert_eq!(got.json["message"], "WebSocket configuration retrieved");
    let missing = app.post("/api/events/websocket/ev", &token, json!({"events": []})).await;
    assert_eq!(missing.error_message(), "Missing field: enabled");

    app.create(
        &account.token,
        json!({"name": "inline", "websocketEnabled": true, "websocketEvents": ["call.update"]}),
    )
    .await;
    let inline = app.get("/api/events/getWebsocket/inline", &account.token).await;
    assert_eq!(inline.json["websocket"]["events"], json!(["call.update"]));
}

#[tokio::test]
async fn events_reach_the_webhook_signed_with_the_envelope_of_the_contract() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let receiver = Receiver::start().await;
    let created = app
        .post(
            "/api/instance/new",
            &account.token,
            json!({"name": "ev", "webhookEnabled": true,
            "webhookURL": receiver.url(), "webhookAuthorization": "Bearer to-the-receiver"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let secret = created.json["integrations"]["webhook"]["signingSecret"].as_str().unwrap().to_owned();
    let token = created.json["instance"]["token"].as_str().unwrap().to_owned();
    let hooks = app.get("/api/events/getWebhook/ev", &token).await;
    assert_eq!(hooks.json["webhooks"][0]["label"], "default");

    let _dispatching = app.dispatch("0,1,1");
    let id = instance_id(&app, &account).await;
    let event_id = publish(&app, &id, StateChange::QrReady { qr_code: "2@abc".into() }).await;
    let got = receiver.wait_until(WAIT, |r| !r.is_empty()).await;
    let delivery = &got[0];
    verify(&secret, delivery);
    assert_eq!(delivery.path, "/hooks");
    assert_eq!(delivery.header("authorization"), Some("Bearer to-the-receiver"));
    assert_eq!(delivery.header("content-type"), Some("application/json"));
    assert_eq!(delivery.header("webhook-id"), Some(event_id.as_str()));
    let envelope = delivery.json();
    assert_eq!(envelope["id"], event_id.as_str());
    assert_eq!(envelope["event"], "instance.state");
    assert_eq!(envelope["data"], json!({"state": "qr_ready", "qrCode": "2@abc"}));
    assert_eq!(
        envelope["instanceData"],
        json!({"baseUrl": "http://ryze.test", "instance": "ev", "token": token})
    );
    assert!(chrono::DateTime::parse_from_rfc3339(envelope["timestamp"].as_str().unwrap()).is_ok());

    // The log shows it delivered (the outcome is written just after the receiver answers).
    let log =
        logged(&app, &token, "", |entries| entries.first().is_some_and(|e| e["status"] == "delivered")).await;
    assert_eq!(log["message"], "Deliveries retrieved");
    let entry = &log["deliveries"][0];
    assert_eq!((entry["id"].clone(), entry["label"].clone()), (json!(event_id), json!("default")));
    assert_eq!(
        (entry["status"].clone(), entry["attempts"].clone(), entry["lastStatusCode"].clone()),
        (json!("delivered"), json!(1), json!(204))
    );
    let bad = app.get("/api/events/deliveries/ev?status=lost", &token).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn each_webhook_gets_its_events_in_order_and_a_failing_one_holds_nobody_back() {
    let (app, account, token) = app_with_instance().await;
    let (healthy, failing) = (Receiver::start().await, Receiver::start().await);
    failing.answer(StatusCode::INTERNAL_SERVER_ERROR);
    configure(&app, &token, json!({"label": "ok", "enabled": true, "url": healthy.url()})).await;
    configure(&app, &token, json!({"label": "bad", "enabled": true, "url": failing.url(), "byEvents": true}))
        .await;
    let id = instance_id(&app, &account).await;
    let _dispatching = app.dispatch("0,1,1,1");
    let mut sent = Vec::new();
    for n in 0..30 {
        sent.push(publish(&app, &id, StateChange::Disconnected { reason: format!("r{n}") }).await);
    }
    let got = healthy.wait_until(WAIT, |r| r.len() >= 30).await;
    let ids: Vec<String> = got.iter().map(|r| r.json()["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, sent, "one instance's events reach a webhook in the order they happened");
    // The failing one was tried on its own schedule (byEvents path), then gave up.
    let tried = failing.wait_until(WAIT, |r| r.len() >= 30 * 4).await;
    assert!(tried.iter().all(|r| r.path == "/hooks/instance.state"));
    assert_eq!(healthy.received().len(), 30, "the healthy receiver got each event once");
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_everything_once_it_is_up() {
    let (app, account, token) = app_with_instance().await;
    let mut receiver = Receiver::start().await;
    let configured = configure(&app, &token, json!({"enabled": true, "url": receiver.url()})).await;
    let secret = configured["webhook"]["signingSecret"].as_str().unwrap().to_owned();
    let id = instance_id(&app, &account).await;
    receiver.down().await;
    let _dispatching = app.dispatch("0,1,1,1,1,1,1,1,1,1");
    let mut sent = Vec::new();
    for n in 0..10 {
        sent.push(publish(&app, &id, StateChange::Disconnected { reason: format!("r{n}") }).await);
    }
    // Every first attempt fails while it is down.
    logged(&app, &token, "?status=failed", |entries| entries.len() >= 10).await;
    receiver.up().await;
    let got = receiver
        .wait_until(WAIT, |r| {
            let ids: std::collections::HashSet<_> =
                r.iter().map(|d| d.json()["id"].as_str().unwrap().to_owned()).collect();
            sent.iter().all(|id| ids.contains(id))
        })
        .await;
    for delivery in &got {
        verify(&secret, delivery);
    }
    // Once it is up, new events come in order again.
    let mut after = Vec::new();
    for n in 0..5 {
        after.push(publish(&app, &id, StateChange::Disconnected { reason: format!("after{n}") }).await);
    }
    let got = receiver.wait_until(WAIT, |r| r.len() >= got.len() + 5).await;
    let tail: Vec<String> =
        got.iter().rev().take(5).rev().map(|r| r.json()["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(tail, after);
}

#[tokio::test]
async fn a_410_disables_the_webhook_and_dead_deliveries_can_be_redelivered() {
    let (app, account, token) = app_with_instance().await;
    let (gone, flaky) = (Receiver::start().await, Receiver::start().await);
    gone.answer(StatusCode::GONE);
    flaky.answer(StatusCode::SERVICE_UNAVAILABLE);
    configure(&app, &token, json!({"label": "gone", "enabled": true, "url": gone.url()})).await;
    configure(&app, &token, json!({"label": "flaky", "enabled": true, "url": flaky.url()})).await;
    let id = instance_id(&app, &account).await;
    let dispatching = app.dispatch("0,1");
    let event_id = publish(&app, &id, StateChange::Connecting).await;
    gone.wait_until(WAIT, |r| !r.is_empty()).await;
    flaky.wait_until(WAIT, |r| r.len() >= 2).await;
    let dead = logged(&app, &token, "?status=dead", |entries| entries.len() == 2).await;
    let gone_entry =
        dead["deliveries"].as_array().unwrap().iter().find(|d| d["label"] == "gone").unwrap().clone();
    assert_eq!(
        (gone_entry["attempts"].clone(), gone_entry["lastStatusCode"].clone()),
        (json!(1), json!(410))
    );
    let row = app.get("/api/events/getWebhook/ev?label=gone", &token).await;
    assert_eq!(row.json["webhook"]["enabled"], false);
    assert!(row.json["webhook"]["disabledReason"].as_str().unwrap().contains("410"));
    // The dead-letter queue holds both.
    let letters = app.ports.dead_deliveries.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|l| l.message.key.event_id == event_id));

    flaky.answer(StatusCode::OK);
    let one = app.post("/api/events/redeliver/ev", &token, json!({"id": event_id, "label": "flaky"})).await;
    assert_eq!(
        (one.status, one.json["message"].clone(), one.json["count"].clone()),
        (StatusCode::ACCEPTED, json!("Redelivery scheduled"), json!(1))
    );
    flaky.wait_until(WAIT, |r| r.iter().any(|d| d.status == StatusCode::OK)).await;
    let unknown = app.post("/api/events/redeliver/ev", &token, json!({"id": "nope"})).await;
    assert_eq!((unknown.status, unknown.error_message()), (StatusCode::NOT_FOUND, "Delivery not found"));
    let neither = app.post("/api/events/redeliver/ev", &token, json!({})).await;
    assert_eq!(neither.error_message(), "Missing field: id");
    // The disabled webhook's dead delivery stays dead when started over.
    let all_dead = app.post("/api/events/redeliver/ev", &token, json!({"status": "dead"})).await;
    assert_eq!(all_dead.json["count"], 1);
    dispatching.stop().await;
}

#[tokio::test]
async fn loopback_receivers_are_refused_unless_the_deployment_allows_them() {
    let (app, account, token) = app_with_instance().await;
    let receiver = Receiver::start().await;
    configure(&app, &token, json!({"enabled": true, "url": receiver.url()})).await;
    let id = instance_id(&app, &account).await;
    let _dispatching = app.dispatch_with("0", TargetPolicy { allow_private: false });
    publish(&app, &id, StateChange::Connecting).await;
    let log = logged(&app, &token, "?status=dead", |entries| !entries.is_empty()).await;
    let entry = &log["deliveries"][0];
    let error = entry["lastError"].as_str().unwrap();
    assert!(error.contains("refused target 127.0.0.1") && error.contains("loopback"), "{error}");
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn the_operator_redrives_dead_deliveries_by_instance() {
    let (app, account, token) = app_with_instance().await;
    let receiver = Receiver::start().await;
    receiver.answer(StatusCode::INTERNAL_SERVER_ERROR);
    configure(&app, &token, json!({"enabled": true, "url": receiver.url()})).await;
    let id = instance_id(&app, &account).await;
    let _dispatching = app.dispatch("0");
    let event_id = publish(&app, &id, StateChange::Connecting).await;
    logged(&app, &token, "?status=dead", |entries| entries.len() == 1).await;

    let now = chrono::Utc::now();
    assert_eq!(ryze_core::service::redrive(&app.ports, Some("someone-else"), now).await.unwrap(), 0);
    receiver.answer(StatusCode::OK);
    // The letter another instance's redrive left behind is still there for this one.
    assert_eq!(ryze_core::service::redrive(&app.ports, Some("ev"), now).await.unwrap(), 1);
    let log =
        logged(&app, &token, "", |entries| entries.first().is_some_and(|e| e["status"] == "delivered")).await;
    assert_eq!(log["deliveries"][0]["id"], event_id.as_str());
    assert_eq!(log["deliveries"][0]["attempts"], 1, "the schedule started over");
    assert_eq!(ryze_core::service::redrive(&app.ports, None, now).await.unwrap(), 0, "nothing left");
}

#[tokio::test]
async fn create_and_configure_say_when_a_webhook_url_is_refused_but_store_it() {
    let app = TestApp::refusing_private_targets(crate::BACKEND).await;
    let account = app.account().await;
    let created = app
        .post(
            "/api/instance/new",
            &account.token,
            json!({"name": "ev", "webhookEnabled": true,
            "webhookURL": "http://127.0.0.1:9/hooks", "websocketEnabled": true}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let webhook = &created.json["integrations"]["webhook"];
    assert_eq!(webhook["status"], "error");
    assert!(webhook["error"].as_str().unwrap().contains("loopback"), "{webhook}");
    assert_eq!(created.json["integrations"]["websocket"]["status"], "ok");
    let token = created.json["instance"]["token"].as_str().unwrap().to_owned();
    let stored = app.get("/api/events/getWebhook/ev?label=default", &token).await;
    assert_eq!(stored.json["webhook"]["url"], "http://127.0.0.1:9/hooks", "stored all the same");

    let refused = configure(
        &app,
        &token,
        json!({"label": "meta", "enabled": true, "url": "http://169.254.169.254/latest"}),
    )
    .await;
    assert_eq!(refused["webhook"]["status"], "error");
    assert!(refused["webhook"]["error"].as_str().unwrap().contains("link-local"), "{refused}");
    let off = configure(&app, &token, json!({"label": "meta", "enabled": false})).await;
    assert_eq!(off["webhook"]["status"], "disabled");

    let allowed = TestApp::on(crate::BACKEND).await;
    let account = allowed.account().await;
    let token = allowed.create(&account.token, json!({"name": "ev"})).await;
    let ok = configure(&allowed, &token, json!({"enabled": true, "url": "http://127.0.0.1:9/hooks"})).await;
    assert_eq!((ok["webhook"]["status"].clone(), ok["webhook"].get("error")), (json!("ok"), None));
}

#[tokio::test]
async fn an_attempt_handed_out_again_queues_what_a_crash_kept_from_following_it() {
    let (app, account, token) = app_with_instance().await;
    let receiver = Receiver::start().await;
    receiver.answer(StatusCode::INTERNAL_SERVER_ERROR);
    configure(&app, &token, json!({"enabled": true, "url": receiver.url()})).await;
    let id = instance_id(&app, &account).await;
    // The dispatcher's own loops are stopped: this test plays the queue's part by hand.
    let dispatching = app.dispatch("0,1,1");
    let dispatcher = dispatching.dispatcher.clone();
    dispatching.stop().await;

    let event = Event::state(id.clone(), &StateChange::Connecting, chrono::Utc::now());
    dispatcher.on_event(&event).await.unwrap();
    let first = next_attempt(&app).await;
    assert_eq!((first.message.attempt, first.receives), (1, 1));
    dispatcher.on_attempt(&first.message, first.receives).await.unwrap();
    app.ports.deliveries.ack(&first.receipt).await.unwrap();
    // The outcome is recorded and the retry queued; the crash takes the retry away.
    let retry = next_attempt(&app).await;
    assert_eq!(retry.message.attempt, 2);
    app.ports.deliveries.ack(&retry.receipt).await.unwrap();

    // Received once, the old attempt is only a stale duplicate: nothing follows.
    dispatcher.on_attempt(&first.message, 1).await.unwrap();
    let quiet = app.ports.deliveries.receive(10, Duration::from_millis(1500)).await.unwrap();
    assert!(quiet.is_empty(), "a stale duplicate queues nothing: {quiet:?}");
    // Handed out again, as after the crash, it finds its outcome recorded and queues the retry.
    dispatcher.on_attempt(&first.message, 2).await.unwrap();
    let requeued = next_attempt(&app).await;
    assert_eq!(requeued.message.attempt, 2);
    dispatcher.on_attempt(&requeued.message, requeued.receives).await.unwrap();
    let entries = logged(&app, &token, "", |e| e.first().is_some_and(|d| d["attempts"] == 2)).await;
    assert_eq!(entries["deliveries"][0]["status"], "failed");
    assert_eq!(receiver.received().len(), 2, "one POST per attempt");
}

/// A delivery log whose first `update` fails, as a store that is briefly unreachable would.
struct LogFailingOnce {
    inner: std::sync::Arc<dyn DeliveryLog>,
    failed: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl DeliveryLog for LogFailingOnce {
    async fn insert(&self, record: &DeliveryRecord) -> ryze_core::Result<bool> {
        self.inner.insert(record).await
    }
    async fn get(&self, key: &DeliveryKey) -> ryze_core::Result<Option<DeliveryRecord>> {
        self.inner.get(key).await
    }
    async fn update(&self, record: &DeliveryRecord, expected: u64) -> ryze_core::Result<bool> {
        if !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(ryze_core::Error::storage("the store is briefly unreachable"));
        }
        self.inner.update(record, expected).await
    }
    async fn list(
        &self,
        instance: &InstanceId,
        filter: &DeliveryFilter,
        limit: usize,
    ) -> ryze_core::Result<Vec<DeliveryRecord>> {
        self.inner.list(instance, filter, limit).await
    }
    async fn of_event(
        &self,
        instance: &InstanceId,
        event_id: &str,
    ) -> ryze_core::Result<Vec<DeliveryRecord>> {
        self.inner.of_event(instance, event_id).await
    }
    async fn delete_instance(&self, instance: &InstanceId) -> ryze_core::Result<()> {
        self.inner.delete_instance(instance).await
    }
}

#[tokio::test]
async fn an_outcome_the_store_failed_to_record_holds_its_webhook_back_a_moment_not_a_minute() {
    let app = TestApp::with_ports(crate::BACKEND, |mut ports| {
        let inner = ports.delivery_log.clone();
        ports.delivery_log =
            std::sync::Arc::new(LogFailingOnce { inner, failed: std::sync::atomic::AtomicBool::new(false) });
        ports
    })
    .await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "ev"})).await;
    let receiver = Receiver::start().await;
    configure(&app, &token, json!({"enabled": true, "url": receiver.url()})).await;
    let id = instance_id(&app, &account).await;
    let _dispatching = app.dispatch("0,1");
    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(publish(&app, &id, StateChange::Disconnected { reason: format!("r{n}") }).await);
    }
    // The first POST went through but its outcome was not recorded: it is made again (same
    // `webhook-id`) once its message comes back, well before the queues' one-minute visibility
    // timeout, and the webhook's later events follow it in order.
    let got = receiver.wait_until(Duration::from_secs(20), |r| r.len() >= 4).await;
    let ids: Vec<String> = got.iter().map(|r| r.json()["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, [&*sent[0], &sent[0], &sent[1], &sent[2]]);
    let log =
        logged(&app, &token, "", |e| e.len() == 3 && e.iter().all(|d| d["status"] == "delivered")).await;
    assert!(log["deliveries"].as_array().unwrap().iter().all(|d| d["attempts"] == 1));
}

async fn next_attempt(app: &TestApp) -> ryze_core::ports::Delivery<ryze_core::domain::DeliveryAttempt> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut batch = app.ports.deliveries.receive(1, Duration::from_secs(1)).await.unwrap();
        if let Some(delivery) = batch.pop() {
            return delivery;
        }
        assert!(tokio::time::Instant::now() < deadline, "no attempt was queued");
    }
}

#[tokio::test]
async fn a_redrive_that_stopped_halfway_is_finished_by_the_next() {
    let (app, account, token) = app_with_instance().await;
    let receiver = Receiver::start().await;
    receiver.answer(StatusCode::INTERNAL_SERVER_ERROR);
    configure(&app, &token, json!({"enabled": true, "url": receiver.url()})).await;
    let id = instance_id(&app, &account).await;
    let dispatching = app.dispatch("0");
    publish(&app, &id, StateChange::Connecting).await;
    logged(&app, &token, "?status=dead", |entries| entries.len() == 1).await;
    dispatching.stop().await;

    // A redrive takes the letter and starts the delivery over, then stops before its first
    // attempt is queued (the attempt is taken away here) and before acknowledging the letter.
    let letter = app.ports.dead_deliveries.receive(1, Duration::from_secs(2)).await.unwrap().remove(0);
    let record = app.ports.delivery_log.get(&letter.message.key).await.unwrap().unwrap();
    let now = chrono::Utc::now();
    assert!(ryze_core::service::restart_delivery(&app.ports, record, now).await.unwrap());
    let lost = next_attempt(&app).await;
    app.ports.deliveries.ack(&lost.receipt).await.unwrap();
    app.ports.dead_deliveries.release(&letter.receipt).await.unwrap();

    receiver.answer(StatusCode::OK);
    assert_eq!(ryze_core::service::redrive(&app.ports, None, now).await.unwrap(), 1);
    let _dispatching = app.dispatch("0");
    let log =
        logged(&app, &token, "", |entries| entries.first().is_some_and(|e| e["status"] == "delivered")).await;
    assert_eq!(log["deliveries"][0]["attempts"], 1);
}
