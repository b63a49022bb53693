//! `ryze serve` on the embedded store as a real process, killed with `kill -9` while its session is
//! connected and started again on the same data directory: the session comes back by itself, from
//! the store saved on disk, with no QR and never two clients. The in-process restart of
//! `sessions.rs` stops gracefully; this one gives the process no chance to save or write anything.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ryze_tests::fake_whatsapp::FakeWhatsApp;
use serde_json::{Value, json};

const PHONE: &str = "5511977777777";
const DEADLINE: Duration = Duration::from_secs(30);

/// `target/<profile>/examples/ryze-localserve`, which the whole test build builds.
fn localserve() -> PathBuf {
    ryze_tests::example_binary("ryze-localserve")
}

/// One data directory, and the `ryze serve` processes started on it one after another.
struct LocalServe {
    data: tempfile::TempDir,
    whatsapp_url: String,
    port: u16,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl LocalServe {
    fn new(fake: &FakeWhatsApp) -> Self {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = probe.local_addr().expect("its address").port();
        Self {
            data: tempfile::tempdir().expect("data directory"),
            whatsapp_url: fake.url(),
            port,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(localserve());
        command
            .env("RYZE_DATA_DIR", self.data.path().join("data"))
            .env("RYZE_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("RYZE_WHATSAPP_URL", &self.whatsapp_url)
            .env("RYZE_LOG_FORMAT", "json");
        command
    }

    /// `ryze account create`, before any serve: its TokenAccount.
    fn create_account(&self) -> String {
        let output = self
            .command()
            .args(["account", "create", "--name", "crash", "--rate-limit", "100000"])
            .stderr(Stdio::inherit())
            .output()
            .expect("ryze account create runs");
        assert!(output.status.success(), "account create: {output:?}");
        let created: Value = serde_json::from_slice(&output.stdout).expect("account JSON");
        created["token"].as_str().expect("token").to_owned()
    }

    /// Starts `ryze serve`, appending its log to `serve.log`, and waits for its health check.
    async fn start(&self) -> Child {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("serve log");
        let child =
            self.command().arg("serve").stdout(Stdio::null()).stderr(log).spawn().expect("serve starts");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self.call(Method::GET, "/health", "", None).await.0 != StatusCode::OK {
            assert!(tokio::time::Instant::now() < deadline, "serve not healthy: {}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child
    }

    fn log_path(&self) -> PathBuf {
        self.data.path().join("serve.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// One API call. A refused connection (nothing listening yet) reads as `SERVICE_UNAVAILABLE`,
    /// which a started server's health check never answers.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port))
            .header("token", token)
            .header("content-type", "application/json")
            .body(Full::new(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default()))
            .expect("request");
        let Ok(response) = self.http.request(request).await else {
            return (StatusCode::SERVICE_UNAVAILABLE, Value::Null);
        };
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn connection(&self, token: &str, name: &str) -> Value {
        let (_, list) =
            self.call(Method::GET, &format!("/api/instance/list?instanceName={name}"), token, None).await;
        list["instances"][0]["connection"].clone()
    }

    /// Polls `list` until the instance reads `state`; returns its connection, and every state
    /// read on the way (repeats folded).
    async fn wait_for_state(&self, token: &str, name: &str, state: &str) -> (Value, Vec<String>) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let connection = self.connection(token, name).await;
            if let Some(read) = connection["state"].as_str()
                && seen.last().map(String::as_str) != Some(read)
            {
                seen.push(read.to_owned());
            }
            if connection["state"] == state {
                return (connection, seen);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never reached {state} (read {seen:?}); serve's log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn kill_9(mut child: Child) {
    child.kill().expect("SIGKILL sent");
    child.wait().expect("the killed process reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_killed_with_sigkill_resumes_its_connected_session_on_its_next_start_with_no_qr() {
    let fake = FakeWhatsApp::start().await;
    let serve = LocalServe::new(&fake);
    let token = serve.create_account();
    let first = serve.start().await;

    let (created, body) =
        serve.call(Method::POST, "/api/instance/new", &token, Some(json!({"name": "durable"}))).await;
    assert_eq!(created, StatusCode::CREATED, "{body}");
    let (connected, body) = serve.call(Method::GET, "/api/instance/connect/durable", &token, None).await;
    assert_eq!(connected, StatusCode::OK, "{body}");
    fake.scan_qr(body["qrCode"].as_str().expect("qrCode"), PHONE).await.expect("the phone scans");
    serve.wait_for_state(&token, "durable", "connected").await;
    assert_eq!(fake.logins(PHONE), 1);

    // No stop, no save, no state write: the process is gone the moment it reads connected.
    kill_9(first);
    let second = serve.start().await;
    let (connection, seen) = serve.wait_for_state(&token, "durable", "connected").await;
    assert_eq!(connection["numberJid"], format!("{PHONE}@s.whatsapp.net"));
    assert!(!seen.iter().any(|state| state == "qr_ready"), "no QR on the way back: {seen:?}");
    assert_eq!(fake.logins(PHONE), 2, "logged in again with the credentials saved before the kill");
    assert_eq!(fake.overlapping_logins(PHONE), 0, "never two clients for one device");

    // The resumed session is the live one: a reconnect starts no second client.
    let (reconnect, body) =
        serve.call(Method::POST, "/api/instance/reconnect/durable", &token, Some(json!({}))).await;
    assert_eq!(reconnect, StatusCode::CONFLICT, "{body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.logins(PHONE), 2);
    kill_9(second);
}
