//! Fixtures for the integration tests: an app on either adapter set (the embedded ones in a temporary
//! directory, or the AWS ones on moto), a controllable clock, an HTTP request helper, and a stand-in
//! session host that answers connect commands the way the real one does (through the command queue
//! and the registry).
//!
//! A suite runs on both adapter sets by being compiled into two test binaries, each of which names
//! its [`Backend`].

// Fixtures are test code: a failed step should panic with the step's error.
#![allow(clippy::unwrap_used)]

pub mod aws;
pub mod contract;
pub mod fake_chatwoot;
pub mod fake_whatsapp;
pub mod proxies;
pub mod receiver;
pub mod sockets;
pub mod system;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use chrono::{TimeZone, Utc};
use http_body_util::BodyExt;
use ryze_core::adapters::aws::AwsResources;
use ryze_core::adapters::{aws as aws_adapters, embedded};
use ryze_core::clock::ManualClock;
use ryze_core::domain::RetrySchedule;
use ryze_core::domain::{AccountLimits, ConnectOutcome, SessionCommand};
use ryze_core::outbound::{OutboundClient, TargetPolicy};
use ryze_core::ports::Ports;
use ryze_core::secrets::{Keyring, MasterKey};
use ryze_core::service::dispatch::{Dispatcher, DispatcherConfig};
use ryze_core::service::{ConnectPolicy, NewAccount, Services};
use ryze_functions::AppState;
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

/// The wait budget of connect calls in tests: long enough for a local answer, short enough to make
/// the no-answer path quick.
pub const TEST_CONNECT_WAIT: Duration = Duration::from_millis(400);

/// The outbound policy of test apps: the fake receivers are on 127.0.0.1.
const LOCAL_TARGETS: TargetPolicy = TargetPolicy { allow_private: true };

/// Which adapter set an app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    /// The AWS adapters on the moto server of [`aws::endpoint`].
    Aws,
}

/// Where an app's state is: `reopen` builds a new app on the same one.
/// The variables a process needs to run on an AWS deployment: its resources, the sealing key, the
/// SDK's endpoint (moto's) and test credentials.
pub fn aws_process_env(
    resources: &AwsResources,
    master_key: &MasterKey,
    endpoint: Option<&str>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = resources
        .to_env_lines()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    env.push(("RYZE_MASTER_KEY".into(), master_key.to_base64()));
    if let Some(endpoint) = endpoint {
        env.push(("AWS_ENDPOINT_URL".into(), endpoint.to_owned()));
    }
    for (name, value) in
        [("AWS_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")]
    {
        env.push((name.into(), value.into()));
    }
    env
}

/// `target/<profile>/examples/<name>`, an example of this crate beside the running test binary:
/// `cargo test` and `cargo nextest run` build examples when no target filter is given.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(std::path::Path::parent).expect("target/<profile>/deps/<test>");
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.exists(),
        "{} missing: run the whole test build, or `cargo build -p ryze-tests --example {name}`",
        binary.display()
    );
    binary
}

/// A number from the environment, or `default` when unset or blank (the benches' and chaos run's
/// timing variables).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            value.trim().parse().map_err(|_| format!("{name}: not a number: {value:?}"))
        }
        _ => Ok(default),
    }
}

pub struct Storage {
    /// The embedded data directory; on AWS, the session host's working directory.
    pub dir: TempDir,
    pub aws: Option<(aws_config::SdkConfig, AwsResources)>,
    master_key: MasterKey,
}

impl Storage {
    pub async fn new(backend: Backend) -> Arc<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (aws, master_key) = match backend {
            Backend::Embedded => (None, embedded::master_key(dir.path()).expect("key")),
            Backend::Aws => (Some(aws::provision().await), MasterKey::generate()),
        };
        Arc::new(Self { dir, aws, master_key })
    }

    /// The variables a process needs to run on this deployment (AWS only): the resources, the
    /// sealing key and the SDK's endpoint and test credentials.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        let Some((config, resources)) = &self.aws else { return Vec::new() };
        aws_process_env(resources, &self.master_key, config.endpoint_url())
    }

    pub fn backend(&self) -> Backend {
        if self.aws.is_some() { Backend::Aws } else { Backend::Embedded }
    }

    pub fn ports(&self) -> Ports {
        match &self.aws {
            None => embedded::open(self.dir.path()).expect("embedded store opens"),
            Some((config, resources)) => aws_adapters::ports(config, resources),
        }
    }

    /// Every byte the deployment stores (files, or table items and objects), for secret scans.
    pub async fn stored_bytes(&self) -> Vec<u8> {
        let mut stored = Vec::new();
        for entry in walk(self.dir.path()) {
            stored.extend(std::fs::read(entry).unwrap_or_default());
        }
        if let Some((config, resources)) = &self.aws {
            let table = aws_sdk_dynamodb::Client::new(config);
            let items: Vec<_> = table
                .scan()
                .table_name(&resources.table)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<_, _>>()
                .await
                .unwrap();
            stored.extend(format!("{items:?}").into_bytes());
            let blobs = self.ports().blobs;
            let mut keys = self.blob_keys("").await;
            keys.dedup();
            for key in keys {
                let blob = ryze_core::ports::BlobKey::new(key).unwrap();
                stored.extend(blobs.get(&blob).await.unwrap().unwrap_or_default());
            }
        }
        stored
    }

    /// Where a session's credential store may still be: store files and blobs, every version of
    /// them on a versioned bucket included.
    pub async fn session_store_leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = walk(&self.dir.path().join("sessions"))
            .chain(walk(&self.dir.path().join("blobs/sessions")))
            .map(|path| path.display().to_string())
            .collect();
        left.extend(self.blob_keys("sessions/").await);
        left
    }

    /// Keys of every object version and delete marker under `prefix` in the bucket.
    async fn blob_keys(&self, prefix: &str) -> Vec<String> {
        let Some((config, resources)) = &self.aws else { return Vec::new() };
        let listed = aws_adapters::s3_client(config)
            .list_object_versions()
            .bucket(&resources.bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list versions");
        let versions = listed.versions().iter().filter_map(|v| v.key());
        let markers = listed.delete_markers().iter().filter_map(|m| m.key());
        versions.chain(markers).map(str::to_owned).collect()
    }
}

/// Every file under `dir`, recursively; nothing when it does not exist.
fn walk(dir: &std::path::Path) -> impl Iterator<Item = std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() { pending.push(path) } else { files.push(path) }
        }
    }
    files.into_iter()
}

pub struct TestApp {
    pub router: Router,
    pub services: Services,
    pub ports: Ports,
    /// The deployment's keys, for a session host beside the app.
    pub keys: Arc<Keyring>,
    pub clock: Arc<ManualClock>,
    /// Holds the state alive; `reopen` builds a new app on the same one.
    pub storage: Arc<Storage>,
    /// The app's WebSocket sockets, which its [`TestApp::dispatch`] publishes to.
    pub live: Arc<ryze_functions::live::LiveHub>,
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
    pub async fn on(backend: Backend) -> Self {
        Self::with_ports(backend, |ports| ports).await
    }

    /// An app whose outbound client refuses private targets, as a deployment's does by default
    /// (every other app allows them, to reach the fake servers on 127.0.0.1).
    pub async fn refusing_private_targets(backend: Backend) -> Self {
        Self::build(Storage::new(backend).await, |ports| ports, TEST_CONNECT_WAIT, TargetPolicy::default())
    }

    /// A fresh process on the same state, as after a restart.
    pub fn reopen(&self) -> Self {
        Self::build(self.storage.clone(), |ports| ports, TEST_CONNECT_WAIT, LOCAL_TARGETS)
    }

    /// An app whose ports are the backend's as changed by `adapt` (to inject failures, say).
    pub async fn with_ports(backend: Backend, adapt: impl FnOnce(Ports) -> Ports) -> Self {
        Self::build(Storage::new(backend).await, adapt, TEST_CONNECT_WAIT, LOCAL_TARGETS)
    }

    /// An app on `storage` whose connect calls wait `connect_wait` for a session host.
    pub fn with_connect_wait(storage: Arc<Storage>, connect_wait: Duration) -> Self {
        Self::build(storage, |ports| ports, connect_wait, LOCAL_TARGETS)
    }

    fn build(
        storage: Arc<Storage>,
        adapt: impl FnOnce(Ports) -> Ports,
        connect_wait: Duration,
        targets: TargetPolicy,
    ) -> Self {
        let ports = adapt(storage.ports());
        let keys = Arc::new(Keyring::new(&storage.master_key));
        let clock = Arc::new(ManualClock::at(Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()));
        let poll_interval = match storage.backend() {
            Backend::Embedded => Duration::from_millis(5),
            Backend::Aws => Duration::from_millis(20),
        };
        let policy = ConnectPolicy { wait: connect_wait, poll_interval };
        let outbound = OutboundClient::new(targets);
        let services = Services::new(ports.clone(), keys.clone(), clock.clone(), policy, outbound);
        let live = Arc::new(ryze_functions::live::LiveHub::default());
        let router = ryze_functions::router(AppState::new(services.clone()).with_live(live.clone()));
        Self { router, services, ports, keys, clock, storage, live }
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

    /// Runs a dispatcher on the app's state (the system clock, local targets allowed) with the retry
    /// `schedule`, until the returned handle is dropped or stopped.
    pub fn dispatch(&self, schedule: &str) -> Dispatching {
        self.dispatch_with(schedule, LOCAL_TARGETS)
    }

    /// [`TestApp::dispatch`] with the outbound policy `targets`.
    pub fn dispatch_with(&self, schedule: &str, targets: TargetPolicy) -> Dispatching {
        let config = DispatcherConfig {
            schedule: RetrySchedule::parse(schedule).expect("schedule"),
            public_url: "http://ryze.test".into(),
        };
        let dispatcher = Arc::new(Dispatcher::new(
            &self.ports,
            self.keys.clone(),
            Arc::new(ryze_core::clock::SystemClock),
            Arc::new(OutboundClient::new(targets)),
            Some(self.live.clone()),
            config,
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = dispatcher.clone().run(self.ports.events.clone(), self.ports.deliveries.clone(), async {
            let _ = stopped.await;
        });
        Dispatching { dispatcher, stop: Some(stop), task: tokio::spawn(run) }
    }

    /// Serves the app on a real socket on 127.0.0.1 (for WebSocket upgrades), until the runtime ends.
    pub async fn listen(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let router = self.router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        address
    }

    /// Takes whatever commands are queued, without waiting.
    pub async fn queued_commands(&self) -> Vec<SessionCommand> {
        let deliveries = self.ports.commands.receive(100, Duration::ZERO).await.expect("queue");
        deliveries.into_iter().map(|d| d.message).collect()
    }
}

/// A dispatcher running beside a [`TestApp`].
pub struct Dispatching {
    pub dispatcher: Arc<Dispatcher>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Dispatching {
    /// Stops it as a signal would: attempts in flight finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Dispatching {
    fn drop(&mut self) {
        self.task.abort();
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
