//! Authentication and tenant isolation.

use axum::http::{Method, StatusCode};
use ryze_tests::TestApp;
use serde_json::json;

/// Every per-instance route, as (method, path prefix, body).
fn per_instance_routes() -> Vec<(Method, &'static str, Option<serde_json::Value>)> {
    vec![
        (Method::GET, "/api/instance/connect/", None),
        (Method::POST, "/api/instance/reconnect/", None),
        (Method::DELETE, "/api/instance/logout/", None),
        (Method::GET, "/api/instance/getSettings/", None),
        (Method::POST, "/api/instance/settings/", Some(json!({"keepOnlineStatus": true}))),
        (Method::GET, "/api/instance/getProxy/", None),
        (Method::POST, "/api/instance/proxy/", Some(json!({"enabled": false}))),
        (Method::GET, "/api/instance/getS3/", None),
        (Method::POST, "/api/instance/s3/", Some(json!({"enabled": false}))),
        (Method::DELETE, "/api/instance/delete/", None),
    ]
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, json!({"name": "a"})).await;
    let mut routes = per_instance_routes();
    routes.push((Method::GET, "/api/instance/list", None));
    routes.push((Method::POST, "/api/instance/new", Some(json!({"name": "b"}))));
    for (method, path, body) in routes {
        let path = if path.ends_with('/') { format!("{path}a") } else { path.to_owned() };
        let missing = app.request(method.clone(), &path, None, body.clone()).await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(missing.error_message(), "Missing token in header", "{method} {path}");
        let invalid = app.request(method.clone(), &path, Some("not-a-token"), body).await;
        assert_eq!(invalid.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(invalid.error_message(), "Invalid token", "{method} {path}");
    }
}

#[tokio::test]
async fn a_bearer_token_works_like_the_token_header() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let bearer = format!("Bearer {}", account.token);
    let response = app.raw(Method::GET, "/api/instance/list", Some(("authorization", &bearer)), None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let wrong =
        app.raw(Method::GET, "/api/instance/list", Some(("authorization", "Bearer nope")), None).await;
    assert_eq!(wrong.error_message(), "Invalid token");
    let basic = app.raw(Method::GET, "/api/instance/list", Some(("authorization", "Basic abc")), None).await;
    assert_eq!(basic.error_message(), "Missing token in header");
}

#[tokio::test]
async fn an_instance_token_cannot_create_or_delete() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "a"})).await;
    let create = app.post("/api/instance/new", &token, json!({"name": "b"})).await;
    assert_eq!(create.status, StatusCode::UNAUTHORIZED);
    assert_eq!(create.error_message(), "Invalid account token");
    let delete = app.delete("/api/instance/delete/a", &token).await;
    assert_eq!(delete.status, StatusCode::UNAUTHORIZED);
    assert_eq!(delete.error_message(), "Invalid account token");
    assert_eq!(app.get("/api/instance/list", &account.token).await.json["meta"]["total"], 1);
}

#[tokio::test]
async fn an_instance_token_can_do_nothing_to_a_sibling() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let token = app.create(&account.token, json!({"name": "mine"})).await;
    app.create(&account.token, json!({"name": "sibling"})).await;
    for (method, prefix, body) in per_instance_routes() {
        if prefix.contains("delete") {
            continue; // refused earlier, as an instance token may never delete
        }
        let path = format!("{prefix}sibling");
        let response = app.request(method.clone(), &path, Some(&token), body).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{method} {path}: {}", response.text);
        assert_eq!(response.error_message(), "Instance token does not match this instance");
    }
    let sibling = app.get("/api/instance/getSettings/sibling", &account.token).await;
    assert_eq!(sibling.json["settings"]["keepOnlineStatus"], false, "the sibling was changed");
}

#[tokio::test]
async fn tokens_of_one_account_can_do_nothing_to_another() {
    let app = TestApp::on(crate::BACKEND).await;
    let (acme, globex) = (app.account().await, app.account().await);
    let acme_instance = app.create(&acme.token, json!({"name": "acme-only"})).await;
    app.create(&globex.token, json!({"name": "globex-only"})).await;
    for (method, prefix, body) in per_instance_routes() {
        let path = format!("{prefix}globex-only");
        let by_account = app.request(method.clone(), &path, Some(&acme.token), body.clone()).await;
        assert_eq!(by_account.status, StatusCode::NOT_FOUND, "{method} {path}: {}", by_account.text);
        assert_eq!(by_account.error_message(), "Instance not found");
        let by_instance = app.request(method.clone(), &path, Some(&acme_instance), body).await;
        assert!(matches!(by_instance.status.as_u16(), 401 | 403), "{method} {path}: {}", by_instance.text);
    }
    let list = app.get("/api/instance/list?instanceName=globex-only", &acme.token).await;
    assert_eq!(list.status, StatusCode::NOT_FOUND);
    let all = app.get("/api/instance/list", &acme.token).await;
    assert_eq!(all.json["meta"]["total"], 1);
    let globex_view = app.get("/api/instance/list", &globex.token).await;
    assert_eq!(globex_view.json["instances"][0]["settings"]["keepOnlineStatus"], false);
    assert_eq!(globex_view.json["meta"]["total"], 1);
}
