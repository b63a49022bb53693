//! Settings, proxy and S3.

use axum::http::StatusCode;
use ryze_tests::TestApp;
use serde_json::json;

#[tokio::test]
async fn settings_start_at_the_defaults_and_take_partial_updates() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "s"})).await;
    let defaults = json!({"autoRejectCalls": false, "callRejectMessage": "", "ignoreGroupMessages": false,
        "keepOnlineStatus": false, "autoReadMessages": false, "disableHistorySync": true, "ignoreStatus": false});
    let got = app.get("/api/instance/getSettings/s", &token).await;
    assert_eq!(
        got.json,
        json!({"success": true, "message": "Settings retrieved successfully", "settings": defaults})
    );

    let updated = app
        .post(
            "/api/instance/settings/s",
            &token,
            json!({"autoRejectCalls": true,
        "callRejectMessage": "Call me later"}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.json["message"], "Settings updated successfully");
    let mut expected = defaults.clone();
    expected["autoRejectCalls"] = json!(true);
    expected["callRejectMessage"] = json!("Call me later");
    assert_eq!(updated.json["settings"], expected);
    assert_eq!(app.get("/api/instance/getSettings/s", &token).await.json["settings"], expected);
    // The change goes to a live session too, whole.
    let commands = app.queued_commands().await;
    let [ryze_core::domain::SessionCommand::ApplySettings { settings, .. }] = commands.as_slice() else {
        panic!("{commands:?}")
    };
    assert_eq!(serde_json::to_value(settings).unwrap(), expected);
}

#[tokio::test]
async fn settings_refuse_empty_unknown_and_mistyped_bodies() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "s"})).await;
    let path = "/api/instance/settings/s";
    let empty = app.post(path, &account.token, json!({})).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert_eq!(empty.error_message(), "At least one field is required");
    let nothing = app.raw(axum::http::Method::POST, path, Some(("token", &account.token)), None).await;
    assert_eq!(nothing.error_message(), "Invalid request body");
    let unknown = app.post(path, &account.token, json!({"autoRejectCall": true})).await;
    assert_eq!(unknown.error_message(), "Unknown field: autoRejectCall");
    let mistyped = app.post(path, &account.token, json!({"keepOnlineStatus": "yes"})).await;
    assert_eq!(mistyped.error_message(), "Invalid field: keepOnlineStatus (expected a boolean)");
    let long = app.post(path, &account.token, json!({"callRejectMessage": "x".repeat(5000)})).await;
    assert!(long.error_message().starts_with("Invalid field: callRejectMessage"));
    let unchanged = app.get("/api/instance/getSettings/s", &account.token).await;
    assert_eq!(unchanged.json["settings"]["keepOnlineStatus"], false);
}

#[tokio::test]
async fn the_proxy_is_set_shown_without_password_and_removed() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "p"})).await;
    let none = app.get("/api/instance/getProxy/p", &token).await;
    assert_eq!(
        none.json,
        json!({"success": true, "message": "Proxy configuration retrieved successfully",
        "proxy": {"enabled": false, "host": null, "port": null, "protocol": null, "username": null, "password": null}})
    );

    let set = app
        .post(
            "/api/instance/proxy/p",
            &token,
            json!({"enabled": true, "host": "10.1.2.3",
        "port": "3128", "protocol": "https", "username": "user", "password": "proxy-secret"}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let expected = json!({"enabled": true, "host": "10.1.2.3", "port": "3128", "protocol": "https",
        "username": "user", "password": null});
    assert_eq!(
        set.json,
        json!({"success": true, "message": "Proxy configuration updated", "proxy": expected})
    );
    assert_eq!(app.get("/api/instance/getProxy/p", &token).await.json["proxy"], expected);

    let removed = app.post("/api/instance/proxy/p", &token, json!({"enabled": false})).await;
    assert_eq!(removed.json["proxy"]["enabled"], false);
    assert_eq!(app.get("/api/instance/getProxy/p", &token).await.json["proxy"]["host"], json!(null));
}

#[tokio::test]
async fn the_proxy_is_validated() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "p"})).await;
    let cases = [
        (json!({"host": "h", "port": "1", "protocol": "http"}), "Missing field: enabled"),
        (json!({"enabled": true, "port": "1", "protocol": "http"}), "Missing field: host"),
        (json!({"enabled": true, "host": "h", "protocol": "http"}), "Missing field: port"),
        (json!({"enabled": true, "host": "h", "port": "1"}), "Missing field: protocol"),
        (json!({"enabled": true, "host": "h", "port": "70000", "protocol": "http"}), "Invalid field: port"),
        (json!({"enabled": true, "host": "h", "port": "1", "protocol": "socks4"}), "Invalid field: protocol"),
        (
            json!({"enabled": true, "host": "bad host", "port": "1", "protocol": "http"}),
            "Invalid field: host",
        ),
        (json!({"enabled": "yes"}), "Invalid field: enabled"),
        (json!({"enabled": true, "pasword": "x"}), "Unknown field: pasword"),
    ];
    for (body, message) in cases {
        let response = app.post("/api/instance/proxy/p", &account.token, body.clone()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(response.error_message().starts_with(message), "{body}: {}", response.text);
    }
}

#[tokio::test]
async fn s3_is_set_shown_without_secret_and_deleted() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "b"})).await;
    let none = app.get("/api/instance/getS3/b", &token).await;
    assert_eq!(none.json["message"], "S3 configuration retrieved successfully");
    assert_eq!(none.json["s3"]["enabled"], false);

    let set = app
        .post(
            "/api/instance/s3/b",
            &token,
            json!({"enabled": true, "region": "sa-east-1",
        "bucket": "media", "accessKey": "AKIA1", "secretKey": "s3-secret-value", "endpoint": "",
        "pathPrefix": "in/"}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let expected = json!({"enabled": true, "region": "sa-east-1", "bucket": "media", "accessKey": "AKIA1",
        "secretKey": null, "endpoint": null, "pathPrefix": "in/"});
    assert_eq!(set.json, json!({"success": true, "message": "S3 configuration updated", "s3": expected}));
    assert_eq!(app.get("/api/instance/getS3/b", &token).await.json["s3"], expected);

    let deleted = app.post("/api/instance/s3/b", &token, json!({"enabled": false})).await;
    assert_eq!(deleted.json["s3"]["enabled"], false);
    assert_eq!(deleted.json["s3"]["accessKey"], json!(null));

    let invalid = app
        .post(
            "/api/instance/s3/b",
            &token,
            json!({"enabled": true, "bucket": "m",
        "accessKey": "a", "secretKey": "s", "endpoint": "ftp://x"}),
        )
        .await;
    assert!(invalid.error_message().starts_with("Invalid field: endpoint"));
    let missing = app.post("/api/instance/s3/b", &token, json!({"enabled": true, "bucket": "m"})).await;
    assert_eq!(missing.error_message(), "Missing field: secretKey");
}
