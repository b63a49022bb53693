//! Failures outside any handler: unknown routes, wrong methods, missing names. All in the envelope.

use axum::http::{Method, StatusCode};
use ryze_tests::TestApp;

#[tokio::test]
async fn unknown_routes_answer_404_in_the_envelope() {
    let app = TestApp::on(crate::BACKEND).await;
    for path in ["/", "/nope", "/api/instance", "/api/instance/unknown/x", "/api/instance/connect/a/b"] {
        let response = app.request(Method::GET, path, None, None).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(response.error_message(), "Route not found", "{path}");
    }
}

#[tokio::test]
async fn wrong_methods_answer_405_in_the_envelope() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    for (method, path) in [
        (Method::GET, "/api/instance/new"),
        (Method::POST, "/api/instance/list"),
        (Method::GET, "/api/instance/delete/a"),
        (Method::POST, "/api/instance/connect/a"),
        (Method::PUT, "/api/instance/settings/a"),
        (Method::POST, "/health"),
    ] {
        let response = app.request(method.clone(), path, Some(&account.token), None).await;
        assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(response.error_message(), "Method not allowed", "{method} {path}");
    }
}

#[tokio::test]
async fn a_missing_instance_name_is_400() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    for path in [
        "/api/instance/connect/",
        "/api/instance/connect",
        "/api/instance/getSettings/",
        "/api/instance/delete/",
    ] {
        let response = app.request(Method::GET, path, Some(&account.token), None).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(response.error_message(), "Instance name is required", "{path}");
    }
}

#[tokio::test]
async fn an_unknown_instance_is_404() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    for path in ["/api/instance/getSettings/nope", "/api/instance/connect/nope"] {
        let response = app.get(path, &account.token).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(response.error_message(), "Instance not found", "{path}");
    }
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let huge = format!(r#"{{"name":"a","callRejectMessage":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let response = app
        .raw(Method::POST, "/api/instance/new", Some(("token", &account.token)), Some(huge.into_bytes()))
        .await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.error_message(), "Request body too large");
}

#[tokio::test]
async fn an_invalid_instance_name_in_the_path_is_400_whatever_the_token() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let instance_token = app.create(&account.token, serde_json::json!({"name": "abc"})).await;
    let long = "x".repeat(65);
    for name in ["bad%20name", "%20abc", "abc%09", "abc%20", "a%2Fb", long.as_str()] {
        for token in [&account.token, &instance_token] {
            let path = format!("/api/instance/getSettings/{name}");
            let response = app.get(&path, token).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{path}: {}", response.text);
            assert_eq!(response.error_message(), "Invalid instance name", "{path}");
        }
    }
    // A list filter only looks: a name that cannot exist is one that is not there.
    let listed = app.get("/api/instance/list?instanceName=bad%20name", &account.token).await;
    assert_eq!(listed.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unrouted_requests_with_a_valid_token_are_counted_and_carry_the_rate_limit_headers() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let not_found = app.get("/api/instance/nope", &account.token).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_eq!(not_found.error_message(), "Route not found");
    assert_eq!(not_found.header("x-ratelimit-limit"), Some("100"));
    assert_eq!(not_found.header("x-ratelimit-remaining"), Some("99"));
    assert!(not_found.header("x-ratelimit-reset").is_some());
    let wrong_method = app.request(Method::PUT, "/api/instance/list", Some(&account.token), None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.error_message(), "Method not allowed");
    assert_eq!(wrong_method.header("x-ratelimit-remaining"), Some("98"));
    let elsewhere = app.get("/nope", &account.token).await;
    assert_eq!(elsewhere.header("x-ratelimit-remaining"), Some("97"));
    // Without a token, or with one that is nobody's, the answer is the bare 404 or 405.
    for token in [None, Some("not-a-token")] {
        let response = app.request(Method::GET, "/api/instance/nope", token, None).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{token:?}");
        assert_eq!(response.header("x-ratelimit-limit"), None, "{token:?}");
        let response = app.request(Method::PUT, "/api/instance/list", token, None).await;
        assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED, "{token:?}");
        assert_eq!(response.header("x-ratelimit-limit"), None, "{token:?}");
    }
}

#[tokio::test]
async fn unrouted_requests_spend_the_budget_like_any_other() {
    let app = TestApp::on(crate::BACKEND).await;
    let limits = ryze_core::domain::AccountLimits { requests_per_minute: 2, ..Default::default() };
    let account = app.account_with(limits).await;
    for _ in 0..2 {
        assert_eq!(app.get("/api/instance/nope", &account.token).await.status, StatusCode::NOT_FOUND);
    }
    let refused = app.get("/api/instance/nope", &account.token).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    assert!(refused.header("retry-after").is_some());
    assert_eq!(app.get("/api/instance/list", &account.token).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_query_that_cannot_be_read_is_400_in_the_envelope() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    app.create(&account.token, serde_json::json!({"name": "q"})).await;
    for (path, field) in [
        ("/api/instance/list?instanceName=a&instanceName=b", "instanceName"),
        ("/api/instance/connect/q?number=1&number=2", "number"),
        ("/api/events/deliveries/q?status=dead&status=dead", "status"),
        ("/api/events/getWebhook/q?label=a&label=b", "label"),
    ] {
        let response = app.get(path, &account.token).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(response.header("content-type"), Some("application/json"), "{path}");
        assert_eq!(response.error_message(), format!("Invalid field: {field}"), "{path}");
    }
}
