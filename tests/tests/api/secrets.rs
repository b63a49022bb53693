//! No response ever carries a secret, sealed or in clear.

use axum::http::{Method, StatusCode};
use ryze_tests::TestApp;
use ryze_tests::fake_chatwoot::FakeChatwoot;
use serde_json::json;

const SECRETS: [&str; 5] = [
    "proxy-pass-1234",
    "Bearer hook-secret-5678",
    "chatwoot-token-9012",
    "s3-secret-3456",
    "proxy-pass-new-7890",
];

#[tokio::test]
async fn no_response_contains_a_secret() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let chatwoot = FakeChatwoot::start(SECRETS[2]).await;
    let created = app
        .post("/api/instance/new", &account.token, json!({
            "name": "secretive",
            "proxyEnabled": true, "proxyHost": "p.local", "proxyPort": "1080", "proxyProtocol": "socks5",
            "proxyUsername": "u", "proxyPassword": SECRETS[0],
            "webhookEnabled": true, "webhookURL": "https://hooks.example", "webhookAuthorization": SECRETS[1],
            "chatwootEnabled": true, "chatwootBaseUrl": chatwoot.base_url(), "chatwootAccountId": 1,
            "chatwootApiToken": SECRETS[2],
            "s3Enabled": true, "s3Bucket": "b", "s3AccessKey": "AK", "s3SecretKey": SECRETS[3]
        }))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    // The sealed token was opened and sent: the fake Chatwoot accepts only that one.
    assert_eq!(created.json["integrations"]["chatwoot"]["status"], "ok", "{}", created.text);
    let token = created.json["instance"]["token"].as_str().unwrap().to_owned();
    let mut responses = vec![created];
    responses.push(
        app.post(
            "/api/instance/proxy/secretive",
            &token,
            json!({"enabled": true, "host": "q.local",
        "port": "1081", "protocol": "http", "password": SECRETS[4]}),
        )
        .await,
    );
    for path in [
        "/api/instance/list",
        "/api/instance/list?instanceName=secretive",
        "/api/instance/getSettings/secretive",
        "/api/instance/getProxy/secretive",
        "/api/instance/getS3/secretive",
    ] {
        responses.push(app.get(path, &account.token).await);
        responses.push(app.get(path, &token).await);
    }
    responses.push(
        app.post(
            "/api/instance/s3/secretive",
            &token,
            json!({"enabled": true, "bucket": "b",
        "accessKey": "AK", "secretKey": SECRETS[3]}),
        )
        .await,
    );
    responses.push(app.request(Method::GET, "/openapi.json", None, None).await);

    for response in &responses {
        assert!(response.status.is_success(), "{}", response.text);
        for secret in SECRETS {
            assert!(!response.text.contains(secret), "a response carries {secret:?}: {}", response.text);
        }
        // A sealed value would show as `v1.` and base64url; no field of any view carries one.
        assert!(!response.text.contains("\"v1."), "a response carries a sealed value: {}", response.text);
        assert!(!response.text.contains(&account.token), "a response carries the account token");
    }
}

#[tokio::test]
async fn the_store_holds_no_secret_in_clear() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app
        .create(
            &account.token,
            json!({"name": "x", "proxyEnabled": true, "proxyHost": "p", "proxyPort": "1",
            "proxyProtocol": "http", "proxyPassword": SECRETS[0], "s3Enabled": true, "s3Bucket": "b",
            "s3AccessKey": "AK", "s3SecretKey": SECRETS[3]}),
        )
        .await;
    let stored = app.storage.stored_bytes().await;
    let stored = String::from_utf8_lossy(&stored);
    for secret in [SECRETS[0], SECRETS[3], token.as_str(), account.token.as_str()] {
        assert!(!stored.contains(secret), "the data directory holds {secret:?} in clear");
    }
}
