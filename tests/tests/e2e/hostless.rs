//! What only a fleet has: a time with no session host at all, the API still answering (on AWS the
//! API runs in Lambda; embedded, `ryze serve` is one process and its host is never away).

use std::time::Duration;

use axum::http::StatusCode;
use ryze_tests::fake_whatsapp::FakeWhatsApp;
use ryze_tests::system::TestSystem;
use serde_json::{Value, json};

use crate::BACKEND;
use crate::sessions::{DEADLINE, PHONE, account, defaults, link_by_qr, states_until, wait_for_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_while_no_host_runs_the_session_still_unlinks_the_device() {
    let fake = FakeWhatsApp::start().await;
    let system = TestSystem::start(BACKEND, &fake, defaults).await;
    let account = account(&system.app).await;
    system.app.create(&account.token, json!({"name": "orphan"})).await;
    link_by_qr(&system, &fake, &account.token, "orphan", PHONE).await;
    states_until(&system.app, "connected").await;

    // The host stops (its session saved, reading `connecting`); the logout comes while none runs.
    let hostless = system.without_host().await;
    let logout = hostless.app.delete("/api/instance/logout/orphan", &account.token).await;
    assert_eq!(logout.status, StatusCode::OK, "{}", logout.text);
    wait_for_state(&hostless.app, &account.token, "orphan", "loggedout").await;
    assert!(!fake.unlinked(PHONE), "nobody could have unlinked it yet");

    // The next host logs in with the credentials the logout kept, only to unlink the device, and
    // then nothing of them is left.
    let system = hostless.start_host(&fake, defaults);
    let app = &system.app;
    let unlinked = || fake.unlinked(PHONE);
    fake.wait_for("the device's unlink", DEADLINE, unlinked).await.expect("unlinked on WhatsApp");
    let storage = app.storage.clone();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !storage.session_store_leftovers().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "left: {:?}",
            storage.session_store_leftovers().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The unlink said nothing: the state stays `loggedout`, and its one event was the last.
    let item = wait_for_state(app, &account.token, "orphan", "loggedout").await;
    assert_eq!(item["connection"]["numberJid"], Value::Null);
    assert_eq!(states_until(app, "logged_out").await, ["connecting", "logged_out"]);
    assert!(app.ports.events.receive(10, Duration::from_millis(300)).await.expect("events").is_empty());
    assert_eq!(fake.overlapping_logins(PHONE), 0, "never two clients for one device");
    system.stop().await;
}
