//! Health, the OpenAPI document and the docs page.

use axum::http::{Method, StatusCode};
use ryze_tests::TestApp;

#[tokio::test]
async fn health_needs_no_token() {
    let app = TestApp::on(crate::BACKEND).await;
    let response = app.request(Method::GET, "/health", None, None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json["success"], true);
    assert_eq!(response.json["status"], "ok");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = TestApp::on(crate::BACKEND).await;
    let response = app.request(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let document = &response.json;
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/instance/new", "post"),
        ("/api/instance/list", "get"),
        ("/api/instance/delete/{instance}", "delete"),
        ("/api/instance/connect/{instance}", "get"),
        ("/api/instance/reconnect/{instance}", "post"),
        ("/api/instance/logout/{instance}", "delete"),
        ("/api/instance/getSettings/{instance}", "get"),
        ("/api/instance/settings/{instance}", "post"),
        ("/api/instance/getProxy/{instance}", "get"),
        ("/api/instance/proxy/{instance}", "post"),
        ("/api/instance/getS3/{instance}", "get"),
        ("/api/instance/s3/{instance}", "post"),
        ("/health", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not documented");
    }
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["token"]["in"], "header");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let create = &document["components"]["schemas"]["CreateInstance"]["allOf"][0]["properties"];
    assert!(create.get("webhookURL").is_some() && create.get("s3PathPrefix").is_some());
    assert_eq!(
        *document,
        ryze_functions::openapi()
            .to_json()
            .map(|j| serde_json::from_str::<serde_json::Value>(&j).unwrap())
            .unwrap()
    );
}

#[tokio::test]
async fn the_docs_page_and_its_assets_are_served_by_the_binary() {
    let app = TestApp::on(crate::BACKEND).await;
    let page = app.request(Method::GET, "/docs/", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("swagger-ui"), "{}", page.text);
    let assets = [
        ("swagger-ui.css", "text/css"),
        ("swagger-ui-bundle.js", "application/javascript"),
        ("swagger-initializer.js", "application/javascript"),
    ];
    for (asset, content_type) in assets {
        assert!(page.text.contains(&format!("\"{asset}\"")), "the page loads {asset} by a relative link");
        let response = app.request(Method::GET, &format!("/docs/{asset}"), None, None).await;
        assert_eq!(response.status, StatusCode::OK, "{asset}");
        assert!(response.header("content-type").unwrap().starts_with(content_type));
        assert!(response.text.len() > 100, "{asset} is empty");
    }
    let bundle = app.request(Method::GET, "/docs/swagger-ui-bundle.js", None, None).await;
    assert!(bundle.text.contains("SwaggerUIBundle"), "the bundle arrives inflated");
    let initializer = app.request(Method::GET, "/docs/swagger-initializer.js", None, None).await;
    assert!(initializer.text.contains("\"../openapi.json\""), "relative, so a stage prefix is kept");
    assert!(!initializer.text.contains("https://"), "the page must not need the internet");

    let bare = app.request(Method::GET, "/docs", None, None).await;
    assert_eq!(bare.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(bare.header("location"), Some("docs/"), "relative, so a stage prefix is kept");
    let missing = app.request(Method::GET, "/docs/swagger-ui-bundle.js.map", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_message(), "Route not found");
}

/// Everything a subscriber at TRACE writes, spans opened and closed included.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_log_line_carries_a_token() {
    use tracing_subscriber::fmt::format::FmtSpan;
    let app = TestApp::on(crate::BACKEND).await;
    let account = app.account().await;
    let instance_token = app.create(&account.token, serde_json::json!({"name": "quiet"})).await;
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let secrets = ["SECRET-never-logged", account.token.as_str(), instance_token.as_str()];
    {
        let _guard = tracing::subscriber::set_default(subscriber);
        for secret in secrets {
            for path in [
                format!("/api/instance/list?token={secret}"),
                format!("/api/instance/getSettings/quiet?token={secret}&x=1"),
                format!("/api/instance/connect/quiet?token={secret}"),
                format!("/nope?token={secret}"),
            ] {
                let request = axum::http::Request::builder()
                    .uri(&path)
                    .header("token", secret)
                    .header("authorization", format!("Bearer {secret}"))
                    .body(axum::body::Body::empty())
                    .unwrap();
                let _ = tower::ServiceExt::oneshot(app.router.clone(), request).await.unwrap();
            }
        }
    }
    let captured = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(captured.contains("/api/instance/list"), "the requests were not traced: {captured}");
    for secret in secrets {
        assert!(!captured.contains(secret), "{secret} was logged:\n{captured}");
    }
}
