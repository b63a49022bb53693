//! Fixtures for the integration tests: an app on the embedded adapters in a temporary directory, a
//! controllable clock, an HTTP request helper, and a stand-in session host that answers connect
//! commands the way the real one does (through the command queue and the registry).

// Fixtures are test code: a failed step should panic with the step's error.
#![allow(clippy::unwrap_used)]

pub mod contract;
pub mod fake_whatsapp;
pub mod proxies;
pub mod system;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use chrono::{TimeZone, Utc};
use http_body_util::BodyExt;
use ryze_core::adapters::embedded;
use ryze_core::clock::ManualClock;
use ryze_core::domain::{AccountLimits, ConnectOutcome, SessionCommand};
use ryze_core::ports::Ports;
use ryze_core::secrets::Keyring;
use ryze_core::service::{ConnectPolicy, NewAccount, Services};
use ryze_functions::AppState;
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

/// The wait budget of connect calls in tests: long enough for a local answer, short enough to make
/// the no-answer path quick.
pub const TEST_CONNECT_WAIT: Duration = Duration::from_millis(400);

pub struct TestApp {
    pub router: Router,
    pub services: Services,
    pub ports: Ports,
    /// The deployment's keys, for a session host beside the app.
    pub keys: Arc<Keyring>,
    pub clock: Arc<ManualClock>,
    /// Holds the data directory alive; `reopen` builds a new app on the same one.
    pub dir: Arc<TempDir>,
}

/// An account made for a test, with its TokenAccount.
pub struct TestAccount {
    pub id: String,
    pub token: String,
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl TestResponse {
    /// `error.message` of an error envelope, after checking the envelope has nothing else.
    pub fn error_message(&self) -> &str {
        assert_eq!(self.json["success"], false, "not an error envelope: {}", self.text);
        let object = self.json.as_object().expect("envelope is an object");
        assert_eq!(object.len(), 2, "error envelope has only success and error: {}", self.text);
        assert_eq!(self.json["error"].as_object().map(|e| e.len()), Some(1), "{}", self.text);
        self.json["error"]["message"].as_str().expect("error.message is a string")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    pub fn new() -> Self {
        Self::with_ports(|ports| ports)
    }

    /// A fresh process on the same data directory, as after a restart.
    pub fn reopen(&self) -> Self {
        Self::build(self.dir.clone(), |ports| ports, TEST_CONNECT_WAIT)
    }

    /// An app whose ports are the embedded ones as changed by `adapt` (to inject failures, say).
    pub fn with_ports(adapt: impl FnOnce(Ports) -> Ports) -> Self {
        Self::build(Arc::new(tempfile::tempdir().expect("temp dir")), adapt, TEST_CONNECT_WAIT)
    }

    /// An app on `dir` whose connect calls wait `connect_wait` for a session host.
    pub fn with_connect_wait(dir: Arc<TempDir>, connect_wait: Duration) -> Self {
        Self::build(dir, |ports| ports, connect_wait)
    }

    fn build(dir: Arc<TempDir>, adapt: impl FnOnce(Ports) -> Ports, connect_wait: Duration) -> Self {
        let ports = adapt(embedded::open(dir.path()).expect("embedded store opens"));
        let keys = Arc::new(Keyring::new(&embedded::master_key(dir.path()).expect("key")));
        let clock = Arc::new(ManualClock::at(Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()));
        let policy = ConnectPolicy { wait: connect_wait, poll_interval: Duration::from_millis(5) };
        let services = Services::new(ports.clone(), keys.clone(), clock.clone(), policy);
        let router = ryze_functions::router(AppState::new(services.clone()));
        Self { router, services, ports, keys, clock, dir }
    }

    pub async fn account(&self) -> TestAccount {
        self.account_with(AccountLimits::default()).await
    }

    pub async fn account_with(&self, limits: AccountLimits) -> TestAccount {
        let new = NewAccount { name: "test account".into(), limits };
        let (account, token) = self.services.accounts.create(new).await.expect("account created");
        TestAccount { id: account.id.to_string(), token }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let body = body.map(|b| b.to_string());
        self.raw(method, path, token.map(|t| ("token", t)), body.map(String::into_bytes)).await
    }

    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.request(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> TestResponse {
        self.request(Method::DELETE, path, Some(token), None).await
    }

    /// A request with any header and any body bytes.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        header: Option<(&str, &str)>,
        body: Option<Vec<u8>>,
    ) -> TestResponse {
        let mut request = Request::builder().method(method).uri(path);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty)).expect("request");
        let response = self.router.clone().oneshot(request).await.expect("router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        TestResponse { status, headers, text, json }
    }

    /// Creates an instance and returns its TokenInstance.
    pub async fn create(&self, account_token: &str, body: Value) -> String {
        let response = self.post("/api/instance/new", account_token, body).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
        response.json["instance"]["token"].as_str().expect("token").to_owned()
    }

    /// Plays the session host for one command: takes the next command off the queue (waiting up to
    /// 5 s), answers it when it is a connect, and returns it.
    pub async fn answer_next_command(&self, outcome: Option<ConnectOutcome>) -> SessionCommand {
        let deliveries = self.ports.commands.receive(1, Duration::from_secs(5)).await.expect("queue");
        let command = deliveries.into_iter().next().expect("a command within 5 s").message;
        if let (SessionCommand::Connect { request, .. }, Some(outcome)) = (&command, outcome) {
            self.ports.registry.answer_connect_request(request, outcome).await.expect("answer");
        }
        command
    }

    /// Takes whatever commands are queued, without waiting.
    pub async fn queued_commands(&self) -> Vec<SessionCommand> {
        let deliveries = self.ports.commands.receive(100, Duration::ZERO).await.expect("queue");
        deliveries.into_iter().map(|d| d.message).collect()
    }
}

/// Decodes a `data:image/png;base64,...` QR image back to the string it encodes.
pub fn decode_qr_data_url(data_url: &str) -> String {
    use base64::Engine;
    let png_bytes = base64::engine::general_purpose::STANDARD
        .decode(data_url.strip_prefix("data:image/png;base64,").expect("a PNG data URL"))
        .expect("base64");
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("a frame");
    let (width, height) = (info.width as usize, info.height as usize);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code in the image");
    grids[0].decode().expect("a QR code").1
}

impl Default for TestApp {
    fn default() -> Self {
        Self::new()
    }
}
