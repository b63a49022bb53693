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
    for path in [
        "/api/instance/getSettings/nope",
        "/api/instance/getSettings/bad%20name",
        "/api/instance/connect/nope",
    ] {
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
