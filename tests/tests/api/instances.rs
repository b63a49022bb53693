//! Create, list, delete.

use axum::http::StatusCode;
use ryze_core::domain::AccountLimits;
use ryze_tests::TestApp;
use ryze_tests::fake_chatwoot::FakeChatwoot;
use serde_json::{Value, json};

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<_> = value.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn create_answers_201_with_the_instance_and_its_token() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let response = app.post("/api/instance/new", &account.token, json!({"name": "sales"})).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    let body = &response.json;
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Instance created");
    assert_eq!(
        keys(&body["instance"]),
        ["createdAt", "id", "name", "numberJid", "status", "token", "updatedAt"]
    );
    assert_eq!(body["instance"]["name"], "sales");
    assert_eq!(body["instance"]["status"], "disconnected");
    assert_eq!(body["instance"]["numberJid"], Value::Null);
    assert!(body["instance"]["token"].as_str().unwrap().len() >= 32);
    assert_eq!(body["instance"]["createdAt"], "2026-01-01T12:00:00.000Z");
    for integration in ["webhook", "websocket", "chatwoot"] {
        assert_eq!(body["integrations"][integration]["status"], "disabled", "{integration}");
    }
    // The new token works, for this instance.
    let token = body["instance"]["token"].as_str().unwrap();
    let settings = app.get("/api/instance/getSettings/sales", token).await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.text);
}

#[tokio::test]
async fn create_stores_every_inline_field() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let chatwoot = FakeChatwoot::start("cw-token").await;
    let response = app
        .post("/api/instance/new", &account.token, json!({
            "name": "full", "token": "client-chosen-token-1",
            "proxyEnabled": true, "proxyHost": "proxy.local", "proxyPort": "1080", "proxyProtocol": "socks5",
            "proxyUsername": "u", "proxyPassword": "proxy-pass",
            "webhookEnabled": true, "webhookURL": "http://127.0.0.1:9/ryze", "webhookAuthorization": "Bearer w",
            "webhookByEvents": true, "webhookEvents": ["instance.state", "message.exchange"], "webhookMediaBase64": true,
            "websocketEnabled": true, "websocketEvents": ["instance.state"], "websocketMediaBase64": false,
            "chatwootEnabled": true, "chatwootBaseUrl": chatwoot.base_url(), "chatwootAccountId": 7,
            "chatwootApiToken": "cw-token", "chatwootInboxName": "Sales", "chatwootSignMessages": true,
            "chatwootIgnoreGroups": true, "chatwootStartAsPending": false, "chatwootReopenResolved": true,
            "autoRejectCalls": true, "callRejectMessage": "busy", "ignoreGroupMessages": true,
            "keepOnlineStatus": true, "autoReadMessages": true, "disableHistorySync": false, "ignoreStatus": true,
            "s3Enabled": true, "s3Region": "eu-west-1", "s3Bucket": "media", "s3AccessKey": "AKIA",
            "s3SecretKey": "s3-secret", "s3Endpoint": "https://s3.example", "s3PathPrefix": "/ryze/"
        }))
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    assert_eq!(response.json["instance"]["token"], "client-chosen-token-1");
    for integration in ["webhook", "websocket", "chatwoot"] {
        assert_eq!(response.json["integrations"][integration]["status"], "ok", "{integration}");
    }

    let list = app.get("/api/instance/list?instanceName=full", &account.token).await;
    let item = &list.json["instances"][0];
    assert_eq!(
        item["proxy"],
        json!({"enabled": true, "host": "proxy.local", "port": "1080",
        "protocol": "socks5", "username": "u", "password": null})
    );
    assert_eq!(
        item["webhook"],
        json!({"enabled": true, "url": "http://127.0.0.1:9/ryze", "byEvents": true,
        "events": ["instance.state", "message.exchange"], "mediaBase64": true})
    );
    assert_eq!(
        item["websocket"],
        json!({"enabled": true, "events": ["instance.state"], "mediaBase64": false})
    );
    assert_eq!(
        item["chatwoot"],
        json!({"enabled": true, "baseUrl": chatwoot.base_url(), "accountId": 7,
        "inboxName": "Sales", "status": "ok", "inboxId": 1})
    );
    assert_eq!(
        item["settings"],
        json!({"autoRejectCalls": true, "callRejectMessage": "busy",
        "ignoreGroupMessages": true, "keepOnlineStatus": true, "autoReadMessages": true,
        "disableHistorySync": false, "ignoreStatus": true})
    );
    assert_eq!(
        item["s3"],
        json!({"enabled": true, "region": "eu-west-1", "bucket": "media", "accessKey": "AKIA",
        "secretKey": null, "endpoint": "https://s3.example", "pathPrefix": "/ryze/"})
    );
    // The chosen token is the instance's token.
    assert_eq!(app.get("/api/instance/getProxy/full", "client-chosen-token-1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn create_refuses_invalid_bodies_and_leaves_nothing_behind() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let cases = [
        (json!({}), "Instance name is required"),
        (json!({"name": ""}), "Instance name is required"),
        (json!({"name": "has space"}), "Invalid instance name"),
        (json!({"name": "x".repeat(65)}), "Invalid instance name"),
        (json!({"name": "a", "colour": "red"}), "Unknown field: colour"),
        (json!({"name": 5}), "Invalid field: name (expected a string)"),
        (
            json!({"name": "a", "proxyEnabled": true, "proxyPort": "1", "proxyProtocol": "http"}),
            "Missing field: proxyHost",
        ),
        (
            json!({"name": "a", "proxyEnabled": true, "proxyHost": "h", "proxyPort": "0", "proxyProtocol": "http"}),
            "Invalid field: proxyPort (must be a port from 1 to 65535)",
        ),
        (
            json!({"name": "a", "webhookEnabled": true, "webhookURL": "not a url"}),
            "Invalid field: webhookURL (must be an http or https URL)",
        ),
        (json!({"name": "a", "webhookEvents": ["nope"]}), "Invalid field: webhookEvents"),
        (
            json!({"name": "a", "chatwootEnabled": true, "chatwootBaseUrl": "https://c.example", "chatwootApiToken": "t"}),
            "Missing field: chatwootAccountId",
        ),
        (json!({"name": "a", "chatwootAccountId": "seven"}), "Invalid field: chatwootAccountId"),
        (
            json!({"name": "a", "s3Enabled": true, "s3Bucket": "b", "s3AccessKey": "k"}),
            "Missing field: s3SecretKey",
        ),
        (json!({"name": "a", "token": "short"}), "Invalid field: token (8 to 256 visible ASCII characters)"),
    ];
    for (body, message) in cases {
        let response = app.post("/api/instance/new", &account.token, body.clone()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}: {}", response.text);
        let actual = response.error_message();
        assert!(actual.starts_with(message), "{body}: expected {message:?}, got {actual:?}");
    }
    let list = app.get("/api/instance/list", &account.token).await;
    assert_eq!(list.json["meta"]["total"], 0, "a failed create left something: {}", list.text);
}

#[tokio::test]
async fn names_are_unique_within_an_account_only() {
    let app = TestApp::on(crate::BACKEND).await;
    let (acme, globex) = (app.account().await, app.account().await);
    app.create(&acme.token, json!({"name": "sales"})).await;
    let again = app.post("/api/instance/new", &acme.token, json!({"name": "sales"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_message(), "Instance already exists");
    app.create(&globex.token, json!({"name": "sales"})).await;
}

#[tokio::test]
async fn a_chosen_token_already_in_use_is_refused() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "a", "token": "shared-token-123"})).await;
    let response = app
        .post("/api/instance/new", &account.token, json!({"name": "b", "token": "shared-token-123"}))
        .await;
    assert_eq!(response.status, StatusCode::CONFLICT);
    assert_eq!(response.error_message(), "Token already in use");
    // An account token cannot be taken as an instance token either.
    let response =
        app.post("/api/instance/new", &account.token, json!({"name": "c", "token": account.token})).await;
    assert_eq!(response.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_name_give_one_201_and_one_409() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    for round in 0..5 {
        let name = format!("race-{round}");
        let (first, second) = tokio::join!(
            app.post("/api/instance/new", &account.token, json!({"name": name})),
            app.post("/api/instance/new", &account.token, json!({"name": name})),
        );
        let mut statuses = [first.status.as_u16(), second.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}");
    }
    let list = app.get("/api/instance/list", &account.token).await;
    assert_eq!(list.json["meta"]["total"], 5);
}

#[tokio::test]
async fn the_quota_caps_creates() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account_with(AccountLimits { instance_quota: 2, ..AccountLimits::default() }).await;
    app.create(&account.token, json!({"name": "one"})).await;
    app.create(&account.token, json!({"name": "two"})).await;
    let third = app.post("/api/instance/new", &account.token, json!({"name": "three"})).await;
    assert_eq!(third.status, StatusCode::FORBIDDEN);
    assert_eq!(third.error_message(), "Account instance quota exceeded");
    // Deleting frees a place.
    assert_eq!(app.delete("/api/instance/delete/one", &account.token).await.status, StatusCode::OK);
    app.create(&account.token, json!({"name": "three"})).await;
}

#[tokio::test]
async fn list_with_an_account_token_shows_the_account_and_filters_by_name() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let empty = app.get("/api/instance/list", &account.token).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(
        (empty.json["message"].clone(), empty.json["meta"]["total"].clone()),
        (json!("0 Instances found"), json!(0))
    );
    for name in ["c", "a", "b"] {
        app.create(&account.token, json!({"name": name})).await;
    }
    let all = app.get("/api/instance/list", &account.token).await;
    assert_eq!(all.json["message"], "3 Instances found");
    assert_eq!(all.json["meta"], json!({"total": 3}));
    let names: Vec<_> = all.json["instances"].as_array().unwrap().iter().map(|i| i["name"].clone()).collect();
    assert_eq!(names, [json!("a"), json!("b"), json!("c")]);

    let one = app.get("/api/instance/list?instanceName=b", &account.token).await;
    assert_eq!(one.json["message"], "1 Instance found");
    assert_eq!(one.json["instances"][0]["name"], "b");

    let some = app.get("/api/instance/list?instanceName=c,zz,a", &account.token).await;
    let names: Vec<_> =
        some.json["instances"].as_array().unwrap().iter().map(|i| i["name"].clone()).collect();
    assert_eq!(names, [json!("c"), json!("a")], "unknown names in a list are skipped");

    let missing = app.get("/api/instance/list?instanceName=zz", &account.token).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_message(), "Instance not found");
}

#[tokio::test]
async fn list_items_have_the_contract_shape() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "shape"})).await;
    let list = app.get("/api/instance/list", &account.token).await;
    let item = &list.json["instances"][0];
    assert_eq!(
        keys(item),
        [
            "chatwoot",
            "connection",
            "createdAt",
            "id",
            "name",
            "profile",
            "proxy",
            "s3",
            "settings",
            "status",
            "token",
            "updatedAt",
            "webhook",
            "websocket"
        ]
    );
    assert_eq!(item["token"], token);
    // Published clients read `status`: the same value as `connection.state`.
    assert_eq!(item["status"], item["connection"]["state"]);
    assert_eq!(
        item["connection"],
        json!({"state": "disconnected", "numberJid": null,
        "presenceStatus": "unavailable", "displayStatus": null})
    );
    assert_eq!(
        item["profile"],
        json!({"name": null, "pictureUrl": null, "isBusiness": false, "businessName": null})
    );
    assert_eq!(
        item["proxy"],
        json!({"enabled": false, "host": null, "port": null, "protocol": null,
        "username": null, "password": null})
    );
    assert_eq!(
        item["webhook"],
        json!({"enabled": false, "url": null, "byEvents": false, "events": [], "mediaBase64": false})
    );
    assert_eq!(item["chatwoot"]["status"], "disabled");
    assert_eq!(item["s3"]["enabled"], false);
}

#[tokio::test]
async fn list_with_an_instance_token_shows_only_its_instance() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "mine"})).await;
    app.create(&account.token, json!({"name": "sibling"})).await;
    for path in [
        "/api/instance/list",
        "/api/instance/list?instanceName=sibling",
        "/api/instance/list?instanceName=zz",
    ] {
        let list = app.get(path, &token).await;
        assert_eq!(list.status, StatusCode::OK, "{path}");
        assert_eq!(list.json["meta"]["total"], 1, "{path}");
        assert_eq!(list.json["instances"][0]["name"], "mine", "{path}");
    }
}

#[tokio::test]
async fn list_reflects_every_change() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "a"})).await;
    let before = app.get("/api/instance/list", &account.token).await;
    assert_eq!(before.json["instances"][0]["settings"]["keepOnlineStatus"], false);
    app.post("/api/instance/settings/a", &account.token, json!({"keepOnlineStatus": true})).await;
    let after = app.get("/api/instance/list", &account.token).await;
    assert_eq!(after.json["instances"][0]["settings"]["keepOnlineStatus"], true);
    app.delete("/api/instance/delete/a", &account.token).await;
    app.create(&account.token, json!({"name": "a"})).await;
    let recreated = app.get("/api/instance/list", &account.token).await;
    assert_eq!(recreated.json["instances"][0]["settings"]["keepOnlineStatus"], false);
    assert_ne!(recreated.json["instances"][0]["id"], before.json["instances"][0]["id"]);
}

#[tokio::test]
async fn delete_removes_the_instance_its_token_and_its_credentials() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "gone"})).await;
    let id = app.get("/api/instance/list?instanceName=gone", &account.token).await.json["instances"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = ryze_core::ports::BlobKey::session_store(&ryze_core::domain::InstanceId::from_stored(id));
    app.ports.blobs.put(&store, b"creds".to_vec()).await.unwrap();

    let response = app.delete("/api/instance/delete/gone", &account.token).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(
        response.json,
        json!({"success": true, "message": "Instance deleted", "instance": {"status": "deleted"}})
    );
    assert!(!app.ports.blobs.exists(&store).await.unwrap());
    let commands = app.queued_commands().await;
    assert!(
        matches!(commands.as_slice(), [ryze_core::domain::SessionCommand::Delete { .. }]),
        "{commands:?}"
    );
    let list = app.get("/api/instance/list?instanceName=gone", &account.token).await;
    assert_eq!(list.status, StatusCode::NOT_FOUND);
    let with_old_token = app.get("/api/instance/getSettings/gone", &token).await;
    assert_eq!(with_old_token.status, StatusCode::UNAUTHORIZED);
    assert_eq!(with_old_token.error_message(), "Invalid token");
    let again = app.delete("/api/instance/delete/gone", &account.token).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn instances_survive_a_restart() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "durable", "keepOnlineStatus": true})).await;
    app.post(
        "/api/instance/proxy/durable",
        &token,
        json!({"enabled": true, "host": "p.local", "port": "8080",
        "protocol": "http"}),
    )
    .await;
    let before = app.get("/api/instance/list", &account.token).await;

    let restarted = app.reopen();
    let after = restarted.get("/api/instance/list", &account.token).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.json, before.json);
    assert_eq!(
        restarted.get("/api/instance/getSettings/durable", &token).await.json["settings"]["keepOnlineStatus"],
        true
    );
}

#[tokio::test]
async fn create_validates_every_field_sent_even_for_an_integration_left_disabled() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let cases = [
        (json!({"name": "a", "proxyProtocol": "ftp"}), "Invalid field: proxyProtocol"),
        (json!({"name": "a", "proxyEnabled": false, "proxyPort": "70000"}), "Invalid field: proxyPort"),
        (json!({"name": "a", "proxyHost": "bad host"}), "Invalid field: proxyHost"),
        (json!({"name": "a", "s3Endpoint": "ftp://files.example"}), "Invalid field: s3Endpoint"),
        (json!({"name": "a", "s3Enabled": false, "s3Region": "a\u{7}b"}), "Invalid field: s3Region"),
        (json!({"name": "a", "chatwootBaseUrl": "chat.example"}), "Invalid field: chatwootBaseUrl"),
        (json!({"name": "a", "chatwootAccountId": 0}), "Invalid field: chatwootAccountId"),
        (
            json!({"name": "a", "chatwootEnabled": false, "chatwootAccountId": -4}),
            "Invalid field: chatwootAccountId",
        ),
        (json!({"name": "a", "webhookURL": "mailto:x@example.com"}), "Invalid field: webhookURL"),
        (json!({"name": "a", "proxyPort": 1080.5}), "Invalid field: proxyPort"),
    ];
    for (body, message) in cases {
        let response = app.post("/api/instance/new", &account.token, body.clone()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}: {}", response.text);
        let actual = response.error_message();
        assert!(actual.starts_with(message), "{body}: expected {message:?}, got {actual:?}");
    }
    // Valid values of a disabled integration are accepted, and not stored: nothing is configured.
    let body = json!({"name": "quiet", "proxyHost": "p.local", "proxyPort": 3128, "proxyProtocol": "http",
        "s3Bucket": "media", "chatwootBaseUrl": "https://chat.example", "chatwootAccountId": 3});
    app.create(&account.token, body).await;
    let item = &app.get("/api/instance/list?instanceName=quiet", &account.token).await.json["instances"][0];
    assert_eq!(item["proxy"]["enabled"], false);
    assert_eq!(item["s3"]["enabled"], false);
    assert_eq!(item["chatwoot"]["enabled"], false);
}

#[tokio::test]
async fn names_are_taken_as_sent() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    for name in ["  abc\t", " abc", "abc ", "   ", "\t"] {
        let response = app.post("/api/instance/new", &account.token, json!({ "name": name })).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{name:?}");
        assert_eq!(response.error_message(), "Invalid instance name", "{name:?}");
    }
    for body in [json!({}), json!({"name": ""}), json!({"name": null})] {
        let response = app.post("/api/instance/new", &account.token, body.clone()).await;
        assert_eq!(response.error_message(), "Instance name is required", "{body}");
    }
    assert_eq!(app.get("/api/instance/list", &account.token).await.json["meta"]["total"], 0);
}

#[tokio::test]
async fn configuration_reads_back_as_it_was_sent() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app
        .create(
            &account.token,
            json!({"name": "asis", "s3Enabled": true, "s3Bucket": "media",
            "s3AccessKey": "AK", "s3SecretKey": "secret", "s3PathPrefix": "media/x/",
            "proxyEnabled": true, "proxyHost": "p.local", "proxyPort": "1080", "proxyProtocol": "socks5",
            "proxyUsername": " user "}),
        )
        .await;
    let s3 = app.get("/api/instance/getS3/asis", &token).await;
    assert_eq!(s3.json["s3"]["pathPrefix"], "media/x/");
    let proxy = app.get("/api/instance/getProxy/asis", &token).await;
    assert_eq!(proxy.json["proxy"]["username"], " user ");
    let body =
        json!({"enabled": true, "bucket": "b", "accessKey": "AK", "secretKey": "s", "pathPrefix": "/in/"});
    assert_eq!(app.post("/api/instance/s3/asis", &token, body).await.json["s3"]["pathPrefix"], "/in/");
    assert_eq!(app.get("/api/instance/getS3/asis", &token).await.json["s3"]["pathPrefix"], "/in/");
    // The contract's spelling only: `SOCKS5` could not read back as sent.
    let shouted = json!({"enabled": true, "host": "p", "port": "1080", "protocol": "SOCKS5"});
    let refused = app.post("/api/instance/proxy/asis", &token, shouted).await;
    assert!(refused.error_message().starts_with("Invalid field: protocol"), "{}", refused.text);
}

#[tokio::test]
async fn list_items_carry_status_as_their_connection_state() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "st"})).await;
    let before = app.get("/api/instance/list", &account.token).await;
    let item = &before.json["instances"][0];
    assert_eq!(
        (&item["status"], &item["connection"]["state"]),
        (&json!("disconnected"), &json!("disconnected"))
    );

    // A state change reaches the item even though its fragment was cached by the list above.
    let id = ryze_core::domain::InstanceId::from_stored(item["id"].as_str().unwrap());
    let connection = ryze_core::domain::Connection {
        state: ryze_core::domain::InstanceState::Connected,
        ..Default::default()
    };
    let change = ryze_core::domain::InstanceChange::Session { connection, profile: Default::default() };
    app.ports.registry.update_instance(&id, change, chrono::Utc::now()).await.unwrap();
    let after = app.get("/api/instance/list", &account.token).await;
    let item = &after.json["instances"][0];
    assert_eq!((&item["status"], &item["connection"]["state"]), (&json!("connected"), &json!("connected")));
}
