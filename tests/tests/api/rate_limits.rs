//! Rate limits: per token, per minute, with the three headers, on a controllable clock.

use std::time::Duration;

use axum::http::StatusCode;
use ryze_core::domain::AccountLimits;
use ryze_tests::TestApp;
use serde_json::json;

#[tokio::test]
async fn the_101st_request_in_a_minute_is_429() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    for n in 1..=100u32 {
        let response = app.get("/api/instance/list", &account.token).await;
        assert_eq!(response.status, StatusCode::OK, "request {n}");
        assert_eq!(response.header("x-ratelimit-limit"), Some("100"));
        assert_eq!(response.header("x-ratelimit-remaining"), Some((100 - n).to_string().as_str()));
    }
    let refused = app.get("/api/instance/list", &account.token).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error_message(), "Rate limit exceeded. Try again later.");
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    // The clock stands at 12:00:00: the window resets at 12:01:00, 60 s away.
    let reset = chrono::DateTime::parse_from_rfc3339("2026-01-01T12:01:00Z").unwrap().timestamp();
    assert_eq!(refused.header("x-ratelimit-reset"), Some(reset.to_string().as_str()));
    assert_eq!(refused.header("retry-after"), Some("60"));

    app.clock.advance(Duration::from_secs(30));
    let still = app.get("/api/instance/list", &account.token).await;
    assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(still.header("retry-after"), Some("30"));

    app.clock.advance(Duration::from_secs(30));
    let next_window = app.get("/api/instance/list", &account.token).await;
    assert_eq!(next_window.status, StatusCode::OK);
    assert_eq!(next_window.header("x-ratelimit-remaining"), Some("99"));
}

#[tokio::test]
async fn limits_are_per_token() {
    let app = TestApp::on(crate::BACKEND).await;
    let account =
        app.account_with(AccountLimits { requests_per_minute: 3, ..AccountLimits::default() }).await;
    let instance_token = app.create(&account.token, json!({"name": "a"})).await;
    for _ in 0..3 {
        app.get("/api/instance/list", &account.token).await;
    }
    assert_eq!(app.get("/api/instance/list", &account.token).await.status, StatusCode::TOO_MANY_REQUESTS);
    // The instance token has its own budget, with its account's limit.
    let other = app.get("/api/instance/getSettings/a", &instance_token).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(other.header("x-ratelimit-remaining"), Some("2"));
}

#[tokio::test]
async fn create_has_its_own_budget_of_20() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    for n in 0..20 {
        let response = app.post("/api/instance/new", &account.token, json!({"name": format!("i{n}")})).await;
        assert_eq!(response.status, StatusCode::CREATED, "create {n}");
        assert_eq!(response.header("x-ratelimit-limit"), Some("20"));
    }
    let refused = app.post("/api/instance/new", &account.token, json!({"name": "i20"})).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.header("x-ratelimit-limit"), Some("20"));
    assert!(refused.header("retry-after").is_some());
    // Other routes still have their budget, and the refused create left nothing.
    let list = app.get("/api/instance/list", &account.token).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.header("x-ratelimit-limit"), Some("100"));
    assert_eq!(list.json["meta"]["total"], 20);
}

#[tokio::test]
async fn limits_are_set_per_account_and_read_live() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app
        .account_with(AccountLimits {
            requests_per_minute: 2,
            creates_per_minute: 1,
            ..AccountLimits::default()
        })
        .await;
    assert_eq!(app.get("/api/instance/list", &account.token).await.header("x-ratelimit-limit"), Some("2"));
    app.create(&account.token, json!({"name": "one"})).await;
    let second = app.post("/api/instance/new", &account.token, json!({"name": "two"})).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);

    // The operator raises the limit; the next request sees it.
    let id = ryze_core::domain::AccountId::from_stored(account.id.clone());
    let raised =
        AccountLimits { requests_per_minute: 500, creates_per_minute: 50, ..AccountLimits::default() };
    app.services.accounts.update_limits(&id, raised).await.unwrap();
    let response = app.get("/api/instance/list", &account.token).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("x-ratelimit-limit"), Some("500"));
}

#[tokio::test]
async fn errors_carry_the_headers_too() {
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let response = app.get("/api/instance/getSettings/missing", &account.token).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.header("x-ratelimit-limit"), Some("100"));
    assert_eq!(response.header("x-ratelimit-remaining"), Some("99"));
}
