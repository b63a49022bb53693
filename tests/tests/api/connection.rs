//! Connect, reconnect and logout, with the test playing the session host through the command queue.

use std::time::Duration;

use axum::http::StatusCode;
use ryze_core::domain::{ConnectOutcome, InstanceId, LoginMethod, SessionCommand};
use ryze_core::ports::BlobKey;
use ryze_tests::TestApp;
use serde_json::json;

async fn instance_id(app: &TestApp, token: &str, name: &str) -> InstanceId {
    let list = app.get(&format!("/api/instance/list?instanceName={name}"), token).await;
    InstanceId::from_stored(list.json["instances"][0]["id"].as_str().expect("id"))
}

#[tokio::test]
async fn connect_with_no_session_host_ends_in_500_after_the_wait_budget() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "lonely"})).await;
    let response = app.get("/api/instance/connect/lonely", &account.token).await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.error_message(), "Failed to generate QR code");
    // The command was sent all the same, for a host that was not there.
    assert!(matches!(app.queued_commands().await.as_slice(), [SessionCommand::Connect { .. }]));
}

#[tokio::test]
async fn connect_returns_the_hosts_qr_code_and_its_png() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "qr"})).await;
    let id = instance_id(&app, &account.token, "qr").await;
    let code = "2@AbCdEfGh1234,NoiseKeyBase64=,IdentityKeyBase64=,AdvSecretBase64=";
    let (response, command) = tokio::join!(
        app.get("/api/instance/connect/qr", &account.token),
        app.answer_next_command(Some(ConnectOutcome::QrCode { code: code.into() })),
    );
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.json["success"], true);
    assert_eq!(response.json["message"], "QR code generated");
    assert_eq!(response.json["status"], "qr");
    assert_eq!(response.json["qrCode"], code);
    assert_eq!(ryze_tests::decode_qr_data_url(response.json["qrCodeBase64"].as_str().unwrap()), code);
    let SessionCommand::Connect { instance, login, history_days, .. } = command else {
        panic!("{command:?}")
    };
    assert_eq!((instance, login, history_days), (id, LoginMethod::QrCode, None));
}

#[tokio::test]
async fn connect_with_a_number_returns_the_pairing_code() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "pair"})).await;
    let (response, command) = tokio::join!(
        app.get("/api/instance/connect/pair?number=5511999999999&history=7", &token),
        app.answer_next_command(Some(ConnectOutcome::PairingCode { code: "ABCD1234".into() })),
    );
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(
        response.json,
        json!({"success": true, "message": "Pairing code generated",
        "pairingCode": "ABCD1234", "status": "pairing_code"})
    );
    let SessionCommand::Connect { login: LoginMethod::PairingCode { phone }, history_days, .. } = command
    else {
        panic!("{command:?}")
    };
    assert_eq!((phone.as_str(), history_days), ("5511999999999", Some(7)));
}

#[tokio::test]
async fn connect_validates_its_query() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "q"})).await;
    for number in ["123", "+5511999999999", "55119999999999999", "abcdefghij", ""] {
        let response = app.get(&format!("/api/instance/connect/q?number={number}"), &account.token).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{number}");
        assert_eq!(response.error_message(), "Invalid phone number", "{number}");
    }
    for history in ["0", "366", "-1", "week"] {
        let response = app.get(&format!("/api/instance/connect/q?history={history}"), &account.token).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{history}");
        assert!(response.error_message().starts_with("Invalid field: history"), "{history}");
    }
    assert!(app.queued_commands().await.is_empty(), "an invalid connect sent a command");
}

#[tokio::test]
async fn a_host_failure_is_500() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "f"})).await;
    let (response, _) = tokio::join!(
        app.get("/api/instance/connect/f", &account.token),
        app.answer_next_command(Some(ConnectOutcome::Failed { reason: "proxy refused".into() })),
    );
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.error_message(), "Failed to generate QR code");
    assert!(!response.text.contains("proxy refused"), "the reason is for the log only");
}

#[tokio::test]
async fn a_connected_instance_cannot_connect_again() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "on"})).await;
    let id = instance_id(&app, &account.token, "on").await;
    let connection = ryze_core::domain::Connection {
        state: ryze_core::domain::InstanceState::Connected,
        number_jid: Some("5511999999999@s.whatsapp.net".into()),
        ..Default::default()
    };
    let change = ryze_core::domain::InstanceChange::Session { connection, profile: Default::default() };
    app.ports.registry.update_instance(&id, change, chrono::Utc::now()).await.unwrap();
    let response = app.get("/api/instance/connect/on", &account.token).await;
    assert_eq!(response.status, StatusCode::CONFLICT);
    assert_eq!(response.error_message(), "Instance already connected");
    let list = app.get("/api/instance/list?instanceName=on", &account.token).await;
    assert_eq!(list.json["instances"][0]["connection"]["numberJid"], "5511999999999@s.whatsapp.net");
    assert_eq!(list.json["instances"][0]["connection"]["state"], "connected");
}

#[tokio::test]
async fn pending_connect_requests_are_cleaned_up() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "c"})).await;
    let (_, command) = tokio::join!(
        app.get("/api/instance/connect/c", &account.token),
        app.answer_next_command(Some(ConnectOutcome::QrCode { code: "2@x".into() })),
    );
    let SessionCommand::Connect { request, .. } = command else { panic!("{command:?}") };
    assert_eq!(app.ports.registry.connect_request(&request).await.unwrap(), None);
}

#[tokio::test]
async fn reconnect_needs_a_saved_session() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "r"})).await;
    let response = app.post("/api/instance/reconnect/r", &account.token, json!({})).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.error_message(), "Instance has no saved session — call /connect first");

    let id = instance_id(&app, &account.token, "r").await;
    app.ports.blobs.put(&BlobKey::session_store(&id), b"store".to_vec()).await.unwrap();
    let response = app.post("/api/instance/reconnect/r", &account.token, json!({})).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(
        response.json,
        json!({"success": true, "message": "Reconnect initiated", "status": "connecting"})
    );
    let command = app.answer_next_command(None).await;
    assert_eq!(command, SessionCommand::Reconnect { instance: id });
}

#[tokio::test]
async fn logout_wipes_the_credentials_keeps_the_instance_and_is_idempotent() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "out"})).await;
    let id = instance_id(&app, &account.token, "out").await;
    app.ports.blobs.put(&BlobKey::session_store(&id), b"store".to_vec()).await.unwrap();

    for _ in 0..2 {
        let response = app.delete("/api/instance/logout/out", &token).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        assert_eq!(
            response.json,
            json!({"success": true, "message": "Instance logged out",
            "instance": {"status": "loggedout"}})
        );
    }
    assert!(!app.ports.blobs.exists(&BlobKey::session_store(&id)).await.unwrap());
    // A host running the session is told, once per call.
    let logout = SessionCommand::Logout { instance: id.clone() };
    assert_eq!(app.queued_commands().await, [logout.clone(), logout]);
    let list = app.get("/api/instance/list?instanceName=out", &token).await;
    assert_eq!(list.json["instances"][0]["connection"]["state"], "loggedout");
    assert_eq!(list.json["instances"][0]["token"], token, "the token stays");

    // One state change, one event.
    let events = app.ports.events.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0].message;
    assert_eq!(serde_json::to_value(event.event).unwrap(), "instance.state");
    assert_eq!(event.instance, id);
    assert_eq!(event.data["state"], "logged_out");

    // After logout, reconnect has nothing to restore, even if a session still saving left a store.
    let reconnect = app.post("/api/instance/reconnect/out", &token, json!({})).await;
    assert_eq!(reconnect.status, StatusCode::BAD_REQUEST);
    app.ports.blobs.put(&BlobKey::session_store(&id), b"late save".to_vec()).await.unwrap();
    let reconnect = app.post("/api/instance/reconnect/out", &token, json!({})).await;
    assert_eq!(reconnect.status, StatusCode::BAD_REQUEST);
    assert_eq!(reconnect.error_message(), "Instance has no saved session — call /connect first");
}
