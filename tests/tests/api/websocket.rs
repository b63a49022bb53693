//! `GET /ws/{instance}` and `GET /ws?instance=`: the API's refusals before the upgrade, then the
//! event envelopes as text frames, to several sockets at once, with a real WebSocket client.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ryze_core::domain::{Event, InstanceId, StateChange};
use ryze_tests::TestApp;
use ryze_tests::sockets::{connect, next_frame};
use serde_json::{Value, json};

/// A plain HTTP GET of `path` on the live server: status and body.
async fn plain_get(address: std::net::SocketAddr, path: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Read the head, then as much body as it announces (the connection stays open).
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    let complete = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            })
            .unwrap_or(0);
        body.len() >= length
    };
    while !complete(&response) {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(read > 0, "closed before a whole answer");
        response.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&response);
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn upgrades_are_refused_in_the_envelope_until_the_websocket_is_enabled() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "ws"})).await;
    let other = app.create(&account.token, json!({"name": "other"})).await;
    let address = app.listen().await;

    let (status, body) = plain_get(address, "/ws/ws").await;
    assert_eq!((status, body["error"]["message"].clone()), (401, json!("Missing token in header")));
    let (status, body) = plain_get(address, &format!("/ws/ws?token={other}")).await;
    assert_eq!(
        (status, body["error"]["message"].clone()),
        (403, json!("Instance token does not match this instance"))
    );
    let (status, body) = plain_get(address, &format!("/ws/nope?token={}", account.token)).await;
    assert_eq!((status, body["error"]["message"].clone()), (404, json!("Instance not found")));
    let (status, body) = plain_get(address, &format!("/ws/ws?token={token}")).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "WebSocket is not enabled for this instance. Configure it first using POST /api/events/websocket/ws"
    );
    assert_eq!(body.as_object().unwrap().len(), 2, "the contract's envelope: {body}");
}

#[tokio::test]
async fn every_open_socket_gets_the_configured_events_as_envelopes() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app
        .create(
            &account.token,
            json!({"name": "ws", "websocketEnabled": true, "websocketEvents": ["instance.state"]}),
        )
        .await;
    let list = app.get("/api/instance/list", &account.token).await;
    let id = InstanceId::from_stored(list.json["instances"][0]["id"].as_str().unwrap());
    let address = app.listen().await;
    let _dispatching = app.dispatch("0");

    // One socket per token kind and per way of naming the instance.
    let mut by_path = connect(address, &format!("/ws/ws?token={token}")).await.unwrap();
    let mut by_query = connect(address, &format!("/ws?instance=ws&token={}", account.token)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.live.open_sockets(&id) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the sockets never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let event =
        Event::state(id.clone(), &StateChange::QrReady { qr_code: "2@qr".into() }, chrono::Utc::now());
    app.ports.events.send(&event).await.unwrap();
    for socket in [&mut by_path, &mut by_query] {
        let frame = next_frame(socket).await;
        assert_eq!(frame["id"], event.id.as_str());
        assert_eq!(frame["event"], "instance.state");
        assert_eq!(frame["data"], json!({"state": "qr_ready", "qrCode": "2@qr"}));
        assert_eq!(frame["instanceData"]["instance"], "ws");
        assert_eq!(frame["instanceData"]["token"], token.as_str());
    }

    // Disabled: open sockets stay open, new upgrades are refused.
    let off = app.post("/api/events/websocket/ws", &token, json!({"enabled": false})).await;
    assert_eq!(off.json["websocket"]["enabled"], false);
    assert!(connect(address, &format!("/ws/ws?token={token}")).await.is_err());
    assert_eq!(app.live.open_sockets(&id), 2);
}
