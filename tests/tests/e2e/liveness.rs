//! Dead sockets are noticed: a linked instance whose WhatsApp socket stays open but silent (the
//! fake server's freeze: no frames, no pongs) is `connecting` within a minute and then `connected`
//! again on a new socket, with its saved credentials and never two logins at once.
//!
//! The host's watchdog is set to 3 s here (30 s in production), so the deadlines below are
//! generous bounds rather than timings: a client left to whatsapp-rust's own keepalive would take
//! 35 to 65 s and never say `connecting`.

use std::time::Duration;

use axum::http::StatusCode;
use ryze_core::domain::AccountLimits;
use ryze_session_host::HostConfig;
use ryze_tests::TestApp;
use ryze_tests::fake_whatsapp::FakeWhatsApp;
use ryze_tests::system::TestSystem;
use serde_json::{Value, json};

use crate::BACKEND;

const PHONE: &str = "5511988887777";
/// What the issue allows from the freeze to `connected` again.
const DEADLINE: Duration = Duration::from_secs(60);

fn short_watchdog(config: &mut HostConfig) {
    config.dead_socket_after = Duration::from_secs(3);
}

/// The instance's `connection` as `list` shows it, once its state is `state`.
async fn wait_for_state(app: &TestApp, token: &str, name: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let list = app.get(&format!("/api/instance/list?instanceName={name}"), token).await;
        let connection = list.json["instances"][0]["connection"].clone();
        if connection["state"] == state {
            return connection;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} never reached {state}: {connection}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `instance.state` events from the next one up to the first `last`, as their `data.state`.
async fn states_until(app: &TestApp, last: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut states: Vec<String> = Vec::new();
    while states.last().map(String::as_str) != Some(last) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "no {last} event: {states:?}");
        let events = app.ports.events.receive(1, left).await.expect("events");
        for event in &events {
            app.ports.events.ack(&event.receipt).await.expect("ack");
        }
        states.extend(events.iter().map(|d| d.message.data["state"].as_str().unwrap_or_default().to_owned()));
    }
    states.dedup_by(|a, b| a == "qr_ready" && b == "qr_ready");
    states
}

/// A system with a 3 s watchdog and `name` linked by QR on `PHONE`, its events read up to
/// `connected`; returns the account token.
async fn linked(fake: &FakeWhatsApp, name: &str) -> (TestSystem, String) {
    let system = TestSystem::start(BACKEND, fake, short_watchdog).await;
    let app = &system.app;
    let account = app
        .account_with(AccountLimits {
            instance_quota: 10,
            requests_per_minute: 100_000,
            creates_per_minute: 100,
        })
        .await;
    app.create(&account.token, json!({"name": name})).await;
    let connect = app.get(&format!("/api/instance/connect/{name}"), &account.token).await;
    assert_eq!(connect.status, StatusCode::OK, "{}", connect.text);
    let qr = connect.json["qrCode"].as_str().expect("qrCode").to_owned();
    fake.scan_qr(&qr, PHONE).await.expect("the phone scans");
    wait_for_state(app, &account.token, name, "connected").await;
    assert_eq!(states_until(app, "connected").await.last().map(String::as_str), Some("connected"));
    assert_eq!(fake.logins(PHONE), 1);
    (system, account.token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_socket_is_connecting_then_connected_again_without_a_qr() {
    let fake = FakeWhatsApp::start().await;
    let (system, token) = linked(&fake, "silent").await;
    let app = &system.app;

    fake.freeze(PHONE).await.expect("freeze");
    assert_eq!(states_until(app, "connected").await, ["connecting", "connected"]);
    let connection = wait_for_state(app, &token, "silent", "connected").await;
    assert_eq!(connection["numberJid"], format!("{PHONE}@s.whatsapp.net"));
    assert_eq!(fake.logins(PHONE), 2, "logged in again with the saved credentials, no QR");
    assert_eq!(fake.overlapping_logins(PHONE), 0, "the frozen socket was let go before the new login");
    assert!(fake.unanswered_pings(PHONE) >= 1, "the frozen socket was pinged before it was given up");
    fake.wait_for("the frozen socket closed", DEADLINE, || !fake.frozen(PHONE)).await.expect("closed");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_socket_stays_connecting_while_whatsapp_is_unreachable() {
    let fake = FakeWhatsApp::start().await;
    let (system, token) = linked(&fake, "stuck").await;
    let app = &system.app;

    // With the redial refused, `connecting` lasts until WhatsApp takes connections again.
    fake.refuse_connections(true);
    fake.freeze(PHONE).await.expect("freeze");
    wait_for_state(app, &token, "stuck", "connecting").await;
    fake.wait_for("the frozen socket closed", DEADLINE, || !fake.frozen(PHONE)).await.expect("closed");
    fake.wait_for("a refused redial", DEADLINE, || fake.refused_connections() >= 1).await.expect("redialled");
    fake.refuse_connections(false);
    wait_for_state(app, &token, "stuck", "connected").await;
    assert_eq!(states_until(app, "connected").await, ["connecting", "connected"]);
    assert_eq!(fake.logins(PHONE), 2);
    assert_eq!(fake.overlapping_logins(PHONE), 0);
    system.stop().await;
}
