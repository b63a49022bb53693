//! End to end over HTTP: the API and the session host in one process (as `ryze serve`), a real
//! whatsapp-rust client per instance, and the fake WhatsApp server playing WhatsApp and the phone.

use std::time::Duration;

use axum::http::StatusCode;
use ryze_core::domain::AccountLimits;
use ryze_session_host::HostConfig;
use ryze_tests::fake_whatsapp::{Chat, FakeWhatsApp};
use ryze_tests::proxies::{Kind, TestCertificate, TestProxy};
use ryze_tests::system::TestSystem;
use ryze_tests::{TestAccount, TestApp};

use crate::BACKEND;
use serde_json::{Value, json};

pub(crate) const PHONE: &str = "5511999999999";
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

pub(crate) fn defaults(_: &mut HostConfig) {}

pub(crate) async fn account(app: &TestApp) -> TestAccount {
    app.account_with(AccountLimits {
        instance_quota: 100,
        requests_per_minute: 100_000,
        creates_per_minute: 1000,
    })
    .await
}

/// Polls `list` until the instance's state is `state`, as the contract tells clients to watch an
/// instance; returns the item.
pub(crate) async fn wait_for_state(app: &TestApp, token: &str, name: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let list = app.get(&format!("/api/instance/list?instanceName={name}"), token).await;
        let item = list.json["instances"][0].clone();
        if item["connection"]["state"] == state {
            return item;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {state}: {}",
            item["connection"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `instance.state` events from the next one up to the first `last`, as their `data.state`,
/// without repeated QR rotations. A state is recorded before its event is published, so a test
/// that saw a state through `list` awaits its event here.
pub(crate) async fn states_until(app: &TestApp, last: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut states: Vec<String> = Vec::new();
    while states.last().map(String::as_str) != Some(last) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "no {last} event: {states:?}");
        let events = app.ports.events.receive(1, left).await.expect("events");
        for event in &events {
            // Taken as the dispatcher takes them: the durable queues would hand them out again.
            app.ports.events.ack(&event.receipt).await.expect("ack");
        }
        states.extend(events.iter().map(|d| d.message.data["state"].as_str().unwrap_or_default().to_owned()));
    }
    states.dedup_by(|a, b| a == "qr_ready" && b == "qr_ready");
    states
}

/// Waits until WhatsApp's last presence from `PHONE` and the instance's `presenceStatus` are both
/// `presence`.
async fn wait_for_presence(fake: &FakeWhatsApp, app: &TestApp, token: &str, name: &str, presence: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let sent = fake.presences(PHONE);
        let list = app.get(&format!("/api/instance/list?instanceName={name}"), token).await;
        let shown = list.json["instances"][0]["connection"]["presenceStatus"].clone();
        if sent.last().map(String::as_str) == Some(presence) && shown == presence {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "presence {presence}: sent {sent:?}, shown {shown}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates `name`, connects it by QR, and plays the phone scanning it; returns the QR string.
pub(crate) async fn link_by_qr(
    system: &TestSystem,
    fake: &FakeWhatsApp,
    token: &str,
    name: &str,
    phone: &str,
) -> String {
    let app = &system.app;
    let connect = app.get(&format!("/api/instance/connect/{name}"), token).await;
    assert_eq!(connect.status, StatusCode::OK, "{}", connect.text);
    let qr = connect.json["qrCode"].as_str().expect("qrCode").to_owned();
    fake.scan_qr(&qr, phone).await.expect("the phone scans");
    wait_for_state(app, token, name, "connected").await;
    qr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qr_login_end_to_end() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    app.create(&account.token, json!({"name": "sales"})).await;

    let connect = app.get("/api/instance/connect/sales", &account.token).await;
    assert_eq!(connect.status, StatusCode::OK, "{}", connect.text);
    assert_eq!(connect.json["status"], "qr");
    let qr = connect.json["qrCode"].as_str().expect("qrCode").to_owned();
    assert!(qr.starts_with("2@"), "a WhatsApp QR string: {qr}");
    assert_eq!(
        ryze_tests::decode_qr_data_url(connect.json["qrCodeBase64"].as_str().unwrap()),
        qr,
        "the PNG is the QR string"
    );
    assert_eq!(
        wait_for_state(app, &account.token, "sales", "connecting").await["connection"]["numberJid"],
        Value::Null
    );

    fake.scan_qr(&qr, PHONE).await.expect("the phone scans");
    let item = wait_for_state(app, &account.token, "sales", "connected").await;
    assert_eq!(item["connection"]["numberJid"], format!("{PHONE}@s.whatsapp.net"));
    assert_eq!(states_until(app, "connected").await, ["connecting", "qr_ready", "connected"]);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_code_login_end_to_end() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    app.create(&account.token, json!({"name": "code"})).await;
    let connect = app.get(&format!("/api/instance/connect/code?number={PHONE}"), &account.token).await;
    assert_eq!(connect.status, StatusCode::OK, "{}", connect.text);
    assert_eq!(connect.json["status"], "pairing_code");
    let code = connect.json["pairingCode"].as_str().expect("pairingCode").to_owned();
    assert_eq!(code.len(), 8, "{code}");
    fake.enter_pairing_code(PHONE, &code).await.expect("the phone accepts the code");
    let item = wait_for_state(app, &account.token, "code", "connected").await;
    assert_eq!(item["connection"]["numberJid"], format!("{PHONE}@s.whatsapp.net"));
    assert_eq!(states_until(app, "connected").await, ["connecting", "pairing_code_ready", "connected"]);
    system.stop().await;
}

/// What a customer sees of a QR login: its webhook and one WebSocket per token kind get `qr_ready`
/// (with the QR the connect call answered) and then `connected`, signed and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qr_login_streams_to_websockets_and_the_webhook() {
    use ryze_tests::receiver::Receiver;
    use ryze_tests::sockets::{connect, next_frame};
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    let receiver = Receiver::start().await;
    let created = app
        .post(
            "/api/instance/new",
            &account.token,
            json!({"name": "live", "websocketEnabled": true,
            "webhookEnabled": true, "webhookURL": receiver.url(), "webhookEvents": ["instance.state"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let token = created.json["instance"]["token"].as_str().expect("token").to_owned();
    let secret =
        created.json["integrations"]["webhook"]["signingSecret"].as_str().expect("secret").to_owned();
    let address = app.listen().await;
    let _dispatching = app.dispatch("0,1,1");
    let mut by_instance_token = connect(address, &format!("/ws/live?token={token}")).await.expect("upgrade");
    let mut by_account_token =
        connect(address, &format!("/ws?instance=live&token={}", account.token)).await.expect("upgrade");
    let list = app.get("/api/instance/list?instanceName=live", &token).await;
    let id =
        ryze_core::domain::InstanceId::from_stored(list.json["instances"][0]["id"].as_str().expect("id"));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while app.live.open_sockets(&id) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the sockets never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let qr = link_by_qr(&system, &fake, &account.token, "live", PHONE).await;
    for socket in [&mut by_instance_token, &mut by_account_token] {
        let mut states = Vec::new();
        while states.last().map(String::as_str) != Some("connected") {
            let frame = next_frame(socket).await;
            assert_eq!(frame["instanceData"]["instance"], "live");
            let state = frame["data"]["state"].as_str().expect("state").to_owned();
            if state == "qr_ready" && !states.contains(&state) {
                assert_eq!(frame["data"]["qrCode"], qr.as_str(), "the QR the connect call answered");
            }
            if state == "connected" {
                assert_eq!(frame["data"]["numberJid"], format!("{PHONE}@s.whatsapp.net"));
            }
            states.push(state);
        }
        states.dedup();
        assert_eq!(states, ["connecting", "qr_ready", "connected"]);
    }
    let got =
        receiver.wait_until(DEADLINE, |r| r.iter().any(|d| d.json()["data"]["state"] == "connected")).await;
    let verifier = standardwebhooks::Webhook::new(&secret).expect("secret");
    for delivery in &got {
        verifier.verify(&delivery.body, &delivery.headers).expect("signed");
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_the_session_by_itself_with_no_qr() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let account = account(&system.app).await;
    system.app.create(&account.token, json!({"name": "durable"})).await;
    link_by_qr(&system, &fake, &account.token, "durable", PHONE).await;
    assert_eq!(fake.logins(PHONE), 1);
    states_until(&system.app, "connected").await;

    // No reconnect call: the restarted host resumes what was running (embedded: the leases kept
    // under the host's name; AWS: the reconnect the stop queued for the fleet).
    let system = system.restart(&fake, defaults).await;
    let app = &system.app;
    let item = wait_for_state(app, &account.token, "durable", "connected").await;
    assert_eq!(item["connection"]["numberJid"], format!("{PHONE}@s.whatsapp.net"));
    assert_eq!(fake.logins(PHONE), 2, "logged in again with the saved credentials");
    let states = states_until(app, "connected").await;
    assert_eq!(states, ["connecting", "connected"], "the stop said connecting; no QR on the way back");
    // A reconnect call now finds the session live and starts no second client.
    let reconnect = app.post("/api/instance/reconnect/durable", &account.token, json!({})).await;
    assert_eq!(reconnect.status, StatusCode::CONFLICT, "{}", reconnect.text);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.logins(PHONE), 2);
    assert_eq!(fake.overlapping_logins(PHONE), 0, "never two clients for one device");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_unlinks_and_the_next_connect_shows_a_fresh_qr() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    app.create(&account.token, json!({"name": "out"})).await;
    let first_qr = link_by_qr(&system, &fake, &account.token, "out", PHONE).await;

    let logout = app.delete("/api/instance/logout/out", &account.token).await;
    assert_eq!(logout.status, StatusCode::OK, "{}", logout.text);
    wait_for_state(app, &account.token, "out", "loggedout").await;
    let unlinked = || fake.unlinked(PHONE);
    fake.wait_for("the device's unlink", DEADLINE, unlinked).await.expect("unlinked on WhatsApp");
    let reconnect = app.post("/api/instance/reconnect/out", &account.token, json!({})).await;
    assert_eq!(reconnect.status, StatusCode::BAD_REQUEST, "the credentials are gone");
    let id = app.get("/api/instance/list?instanceName=out", &account.token).await.json["instances"][0]["id"]
        .as_str()
        .map(ryze_core::domain::InstanceId::from_stored)
        .expect("id");
    // The session wipes the store before it unlinks the device: none outlives the logout.
    let store = ryze_core::ports::BlobKey::session_store(&id);
    assert!(
        !app.ports.blobs.exists(&store).await.expect("blob store"),
        "a credential store outlived the logout"
    );

    let again = app.get("/api/instance/connect/out", &account.token).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_ne!(again.json["qrCode"].as_str().unwrap(), first_qr, "a fresh QR");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_stanza_gives_its_state() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    let cases = [
        ("removed", "loggedout", "logged_out"),
        ("locked", "banned", "banned"),
        ("tempban", "banned", "temp_banned"),
        ("replaced", "disconnected", "disconnected"),
    ];
    for (n, (name, state, event)) in cases.into_iter().enumerate() {
        let phone = format!("55119000000{n:02}");
        app.create(&account.token, json!({"name": name})).await;
        link_by_qr(&system, &fake, &account.token, name, &phone).await;
        states_until(app, "connected").await;
        match name {
            "removed" => fake.logout(&phone).await,
            "locked" => fake.ban(&phone).await,
            "tempban" => fake.temp_ban(&phone, 101, 3600).await,
            _ => fake.replace(&phone).await,
        }
        .expect("the stanza is sent");
        assert_eq!(states_until(app, event).await, [event], "{name}");
        wait_for_state(app, &account.token, name, state).await;
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_connects_make_one_session() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    app.create(&account.token, json!({"name": "twice"})).await;
    let (first, second) = tokio::join!(
        app.get("/api/instance/connect/twice", &account.token),
        app.get("/api/instance/connect/twice", &account.token),
    );
    assert_eq!(
        (first.status, second.status),
        (StatusCode::OK, StatusCode::OK),
        "{} {}",
        first.text,
        second.text
    );
    assert_eq!(first.json["qrCode"], second.json["qrCode"], "the same session's code");
    assert_eq!(fake.handshakes().len(), 1, "one socket to WhatsApp");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_unreachable_is_500_and_disconnected() {
    let fake = FakeWhatsApp::start().await;
    fake.refuse_connections(true);
    let system = TestSystem::start(BACKEND, &fake, |config| config.qr_budget = Duration::from_secs(2)).await;
    let app = &system.app;
    let account = account(app).await;
    app.create(&account.token, json!({"name": "silent"})).await;
    let connect = app.get("/api/instance/connect/silent", &account.token).await;
    assert_eq!(connect.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", connect.text);
    assert_eq!(connect.error_message(), "Failed to generate QR code");
    wait_for_state(app, &account.token, "silent", "disconnected").await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_set_on_a_live_session_reconnects_it_through_the_proxy_at_once() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    app.create(&account.token, json!({"name": "moving"})).await;
    link_by_qr(&system, &fake, &account.token, "moving", PHONE).await;
    let proxy = TestProxy::start(Kind::Socks5, None, None).await;
    let body = json!({"enabled": true, "host": "127.0.0.1", "port": proxy.addr.port(), "protocol": "socks5"});
    let set = app.post("/api/instance/proxy/moving", &account.token, body).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    fake.wait_for("a login through the proxy", DEADLINE, || fake.logins(PHONE) == 2 && proxy.tunnels() >= 1)
        .await
        .expect("the live session dialled again through the new proxy");
    wait_for_state(app, &account.token, "moving", "connected").await;
    assert_eq!(fake.overlapping_logins(PHONE), 0, "the old socket closed first");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_goes_through_the_instances_proxy() {
    let fake = FakeWhatsApp::start().await;
    let certificate = TestCertificate::generate();
    let system =
        TestSystem::start(BACKEND, &fake, |config| config.proxy_roots = vec![certificate.der.clone()]).await;
    let app = &system.app;
    let account = account(app).await;
    let proxies = [
        (Kind::Http, "http", "5511977700001"),
        (Kind::Https, "https", "5511977700002"),
        (Kind::Socks5, "socks5", "5511977700003"),
    ];
    for (kind, protocol, phone) in proxies {
        let proxy = TestProxy::start(kind, Some(("user", "secret")), Some(&certificate)).await;
        let name = format!("via-{protocol}");
        app.create(
            &account.token,
            json!({"name": name, "proxyEnabled": true, "proxyHost": "127.0.0.1",
            "proxyPort": proxy.addr.port().to_string(), "proxyProtocol": protocol, "proxyUsername": "user",
            "proxyPassword": "secret"}),
        )
        .await;
        let connect = app.get(&format!("/api/instance/connect/{name}"), &account.token).await;
        assert_eq!(connect.status, StatusCode::OK, "{protocol}: {}", connect.text);
        assert!(proxy.tunnels() >= 1, "{protocol}: the socket bypassed the proxy");
        let qr = connect.json["qrCode"].as_str().expect("qrCode").to_owned();
        fake.scan_qr(&qr, phone).await.expect("the phone scans");
        wait_for_state(app, &account.token, &name, "connected").await;

        let wrong = format!("wrong-{protocol}");
        app.create(
            &account.token,
            json!({"name": wrong, "proxyEnabled": true, "proxyHost": "127.0.0.1",
            "proxyPort": proxy.addr.port().to_string(), "proxyProtocol": protocol, "proxyUsername": "user",
            "proxyPassword": "not-it"}),
        )
        .await;
        let started = tokio::time::Instant::now();
        let refused = app.get(&format!("/api/instance/connect/{wrong}"), &account.token).await;
        assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR, "{protocol}: {}", refused.text);
        assert_eq!(refused.error_message(), "Failed to generate QR code");
        assert!(started.elapsed() < Duration::from_secs(10), "a refused proxy fails fast");
        wait_for_state(app, &account.token, &wrong, "disconnected").await;
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_settings_reach_the_session() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    app.create(&account.token, json!({"name": "hist"})).await;
    let connect = app.get("/api/instance/connect/hist?history=7", &account.token).await;
    assert_eq!(connect.status, StatusCode::OK, "{}", connect.text);
    let qr = connect.json["qrCode"].as_str().expect("qrCode").to_owned();
    fake.set_push_name(PHONE, "Ana");
    fake.scan_qr(&qr, PHONE).await.expect("the phone scans");
    wait_for_state(app, &account.token, "hist", "connected").await;
    let registration = fake.registration(PHONE).expect("the device registered");
    assert_eq!(registration.full_sync_days, Some(7), "{registration:?}");

    // keepOnlineStatus is off: whatever the client announces by itself, the session settles on
    // `unavailable`; switching it on sends `available` live, and off again `unavailable`.
    wait_for_presence(&fake, app, &account.token, "hist", "unavailable").await;
    for (keep_online, presence) in [(true, "available"), (false, "unavailable")] {
        let body = json!({"keepOnlineStatus": keep_online});
        let update = app.post("/api/instance/settings/hist", &account.token, body).await;
        assert_eq!(update.status, StatusCode::OK);
        wait_for_presence(&fake, app, &account.token, "hist", presence).await;
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unscanned_qr_ends_disconnected_and_a_new_connect_starts_over() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, |config| config.qr_budget = Duration::from_secs(1)).await;
    let app = &system.app;
    let account = account(app).await;
    app.create(&account.token, json!({"name": "ignored"})).await;
    let first = app.get("/api/instance/connect/ignored", &account.token).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    wait_for_state(app, &account.token, "ignored", "disconnected").await;
    // The state is recorded before its event is published: the event may come a moment later.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut events = Vec::new();
    while !events.last().is_some_and(|last: &Value| last["state"] == "disconnected") {
        assert!(tokio::time::Instant::now() < deadline, "no disconnected event last: {events:?}");
        let batch = app.ports.events.receive(1000, Duration::from_millis(200)).await.expect("events");
        events.extend(batch.into_iter().map(|delivery| delivery.message.data));
    }
    let last = events.last().expect("events");
    assert_eq!(
        (&last["state"], &last["reason"]),
        (&json!("disconnected"), &json!("QR code not scanned in time"))
    );

    let second = app.get("/api/instance/connect/ignored", &account.token).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_ne!(second.json["qrCode"], first.json["qrCode"], "a new session, a new QR");
    assert_eq!(fake.handshakes().len(), 2);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_is_connecting_until_the_client_is_back() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    app.create(&account.token, json!({"name": "flaky"})).await;
    link_by_qr(&system, &fake, &account.token, "flaky", PHONE).await;
    states_until(app, "connected").await;

    fake.drop_socket(PHONE).await.expect("the socket is dropped");
    assert_eq!(states_until(app, "connected").await, ["connecting", "connected"]);
    assert_eq!(fake.logins(PHONE), 2, "the client logged in again by itself, with no QR");
    wait_for_state(app, &account.token, "flaky", "connected").await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_unlinks_a_live_device_and_removes_everything() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    let token = app.create(&account.token, json!({"name": "doomed"})).await;
    link_by_qr(&system, &fake, &account.token, "doomed", PHONE).await;

    let deleted = app.delete("/api/instance/delete/doomed", &account.token).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    let unlinked = || fake.unlinked(PHONE);
    fake.wait_for("the device's unlink", DEADLINE, unlinked).await.expect("unlinked on WhatsApp");
    let list = app.get("/api/instance/list?instanceName=doomed", &account.token).await;
    assert_eq!(list.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/instance/getSettings/doomed", &token).await.status, StatusCode::UNAUTHORIZED);
    // Nothing of the session is left on disk either, once the host has stopped its sessions.
    let storage = app.storage.clone();
    system.stop().await;
    assert_eq!(storage.session_store_leftovers().await, Vec::<String>::new(), "left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_reject_calls_turned_on_live_rejects_the_next_call() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    app.create(&account.token, json!({"name": "calls"})).await;
    link_by_qr(&system, &fake, &account.token, "calls", PHONE).await;

    let update =
        app.post("/api/instance/settings/calls", &account.token, json!({"autoRejectCalls": true})).await;
    assert_eq!(update.status, StatusCode::OK);
    // The setting travels the command queue to the live session: ring until a call is rejected.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut offered = 0;
    while fake.call_rejections(PHONE).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no call rejected after {offered} calls");
        offered += 1;
        let call_id = format!("CALL-{offered}");
        fake.offer_call(PHONE, "5511888888888", &call_id).await.expect("the call rings");
        let rejected = || fake.call_rejections(PHONE).contains(&call_id);
        let _ = fake.wait_for("the call's rejection", Duration::from_millis(500), rejected).await;
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_messages_are_read_or_ignored_as_the_settings_say() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let app = &system.app;
    let account = account(app).await;
    let settings = json!({"name": "reader", "autoReadMessages": true, "ignoreGroupMessages": true, "ignoreStatus": true});
    app.create(&account.token, settings).await;
    link_by_qr(&system, &fake, &account.token, "reader", PHONE).await;

    // The client reports messages in order: once the direct one is read, the group message and
    // the status before it were seen and ignored.
    let contact = "5511888888888";
    fake.deliver_text(PHONE, contact, Chat::Group("120363000000000001".into()), "GROUP1", "hi all")
        .await
        .expect("group");
    fake.deliver_text(PHONE, contact, Chat::Status, "STATUS1", "my day").await.expect("status");
    fake.deliver_text(PHONE, contact, Chat::Direct, "DIRECT1", "hello").await.expect("direct");
    let read = || fake.read_receipts(PHONE).contains(&"DIRECT1".to_owned());
    fake.wait_for("the direct message read", DEADLINE, read).await.expect("autoReadMessages reads it");
    let receipts = fake.read_receipts(PHONE);
    assert!(!receipts.contains(&"GROUP1".to_owned()), "ignoreGroupMessages: {receipts:?}");
    assert!(!receipts.contains(&"STATUS1".to_owned()), "ignoreStatus: {receipts:?}");

    // With the group filter off (live), group messages are read too.
    let update = app
        .post("/api/instance/settings/reader", &account.token, json!({"ignoreGroupMessages": false}))
        .await;
    assert_eq!(update.status, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for n in 2.. {
        let id = format!("GROUP{n}");
        fake.deliver_text(PHONE, contact, Chat::Group("120363000000000001".into()), &id, "again")
            .await
            .expect("group");
        let read = || fake.read_receipts(PHONE).contains(&id);
        if fake.wait_for("the group message read", Duration::from_millis(500), read).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "group messages never read");
    }
    system.stop().await;
}
