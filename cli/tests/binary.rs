//! The `ryze` binary end to end: accounts from the CLI, the server on a real socket, a restart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

const RYZE: &str = env!("CARGO_BIN_EXE_ryze");

/// A running `ryze serve`, killed on drop, with everything it logged so far.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts the server with `RYZE_DATA_DIR` and `RYZE_LISTEN` from the environment.
    fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// Starts the server with more environment variables.
    fn start_with(data_dir: &Path, env: &[(String, String)]) -> Self {
        let mut command = Command::new(RYZE);
        command.arg("serve");
        Self::spawn(command, data_dir, env)
    }

    /// Starts the server allowed only `open_files` descriptors (the shell's `ulimit -n`).
    fn start_with_open_files(data_dir: &Path, env: &[(String, String)], open_files: u32) -> Self {
        let mut command = Command::new("sh");
        command.args(["-c", &format!("ulimit -n {open_files} && exec \"$0\" serve"), RYZE]);
        Self::spawn(command, data_dir, env)
    }

    fn spawn(mut command: Command, data_dir: &Path, env: &[(String, String)]) -> Self {
        let mut child = command
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env("RYZE_DATA_DIR", data_dir)
            .env("RYZE_LISTEN", "127.0.0.1:0")
            .env("RYZE_LOG_FORMAT", "json")
            .env("RYZE_CONNECT_WAIT_SECS", "1")
            // Nothing listens there: the in-process session host must not reach out (and a test
            // build, which skips WhatsApp's certificate check, accepts only loopback).
            .env("RYZE_WHATSAPP_URL", "ws://127.0.0.1:9/ws/chat")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ryze serve starts");
        let (lines, log) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        // Owned by `Server` from here, so that a failed start is still killed and reaped on drop.
        let mut server = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), log };
        loop {
            let line = server
                .log
                .recv_timeout(Duration::from_secs(30))
                .expect("the server logs `serving` within 30 s");
            let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if entry["message"] == "serving" {
                server.addr = entry["listen"].as_str().expect("listen").parse().expect("an address");
                return server;
            }
        }
    }

    fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let (status, _, body) = self.exchange(method, path, token, body);
        (status, body)
    }

    /// One request; the answer's status, head and JSON body.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let token = token.map(|t| format!("token: {t}\r\n")).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: test\r\n{token}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let status = response[9..12].parse().expect("status");
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or_default();
        (status, head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Stops the server with SIGTERM, as a service manager would, and returns what it logged.
    fn stop(mut self) -> String {
        let status =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("the server exits");
        assert!(exit.success(), "a graceful stop exits 0, got {exit}");
        self.log.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ryze(args: &[&str], data_dir: &Path) -> std::process::Output {
    Command::new(RYZE).args(args).env("RYZE_DATA_DIR", data_dir).output().expect("ryze runs")
}

#[test]
fn the_binary_serves_the_api_on_its_embedded_store_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");

    let created =
        ryze(&["account", "create", "--name", "acme", "--quota", "5", "--rate-limit", "1000"], &data_dir);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8(created.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout}");
    let account: Value = serde_json::from_str(&stdout).expect("JSON");
    let token = account["token"].as_str().expect("token").to_owned();
    assert!(account["accountId"].is_string());
    assert!(!String::from_utf8_lossy(&created.stderr).contains(&token), "the token was logged");
    assert!(data_dir.join("seal.key").exists(), "the first start creates the sealing key");
    #[cfg(unix)]
    for (path, expected) in [(data_dir.clone(), 0o700), (data_dir.join("ryze.db"), 0o600)] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, expected, "{} is {mode:o}", path.display());
    }

    let server = Server::start(&data_dir);
    let (status, health) = server.request("GET", "/health", None, None);
    assert_eq!((status, &health["status"]), (200, &json!("ok")));
    let (status, body) =
        server.request("POST", "/api/instance/new", Some(&token), Some(json!({"name": "sales"})));
    assert_eq!(status, 201, "{body}");
    let instance_token = body["instance"]["token"].as_str().expect("instance token").to_owned();
    let (status, list) = server.request("GET", "/api/instance/list", Some(&token), None);
    assert_eq!((status, &list["meta"]["total"]), (200, &json!(1)));
    assert_eq!(server.request("GET", "/api/instance/list", Some(&token), None).0, 200);
    let (status, limited) = server.request("GET", "/api/instance/list", None, None);
    assert_eq!((status, &limited["error"]["message"]), (401, &json!("Missing token in header")));

    // A second server on the same data directory is refused.
    let second = ryze(&["serve", "--listen", "127.0.0.1:0"], &data_dir);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use"));

    // An account added while the server runs is usable at once.
    let created = ryze(&["account", "create", "--name", "globex"], &data_dir);
    let globex: Value = serde_json::from_slice(&created.stdout).expect("JSON");
    let (status, _) = server.request("GET", "/api/instance/list", globex["token"].as_str(), None);
    assert_eq!(status, 200);

    // A limit changed by the CLI reaches the running server (accounts are cached for a second).
    let id = account["accountId"].as_str().expect("id");
    let updated = ryze(&["account", "update", "--id", id, "--rate-limit", "777"], &data_dir);
    assert!(updated.status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, head, _) = server.exchange("GET", "/api/instance/list", Some(&token), None);
        if head.contains("x-ratelimit-limit: 777") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new limit did not arrive within 10 s: {head}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let log = server.stop();
    for secret in [&token, &instance_token] {
        assert!(!log.contains(secret.as_str()), "the server logged a token");
    }

    let restarted = Server::start(&data_dir);
    let (status, list) = restarted.request("GET", "/api/instance/list", Some(&token), None);
    assert_eq!(status, 200);
    assert_eq!(list["instances"][0]["name"], "sales");
    assert_eq!(list["instances"][0]["token"], instance_token.as_str());
    let (status, _) =
        restarted.request("GET", "/api/instance/getSettings/sales", Some(&instance_token), None);
    assert_eq!(status, 200);
}

#[test]
fn account_update_changes_the_limits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let created = ryze(&["account", "create", "--name", "acme"], dir.path());
    let account: Value = serde_json::from_slice(&created.stdout).expect("JSON");
    let id = account["accountId"].as_str().expect("id");
    let updated =
        ryze(&["account", "update", "--id", id, "--quota", "9", "--create-rate-limit", "3"], dir.path());
    assert!(updated.status.success(), "{}", String::from_utf8_lossy(&updated.stderr));
    let updated: Value = serde_json::from_slice(&updated.stdout).expect("JSON");
    assert_eq!(
        updated["limits"],
        json!({"instanceQuota": 9, "requestsPerMinute": 100, "createsPerMinute": 3})
    );
    let unknown = ryze(&["account", "update", "--id", "nope", "--quota", "1"], dir.path());
    assert!(!unknown.status.success());
}

#[test]
fn openapi_prints_the_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = ryze(&["openapi"], dir.path());
    assert!(output.status.success());
    let document: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/api/instance/connect/{instance}"]["get"].is_object());
}

/// The `RYZE_*` names in a help text, sorted, each once.
fn variables_in(help: &str) -> Vec<&str> {
    let mut names: Vec<&str> = help
        .split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|word| word.starts_with("RYZE_") && word.len() > "RYZE_".len())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// `ryze serve --help` with the sealing key (and one resource name) in the environment.
fn help_of(args: &[&str], secret: &str) -> String {
    let output = Command::new(RYZE)
        .args(args)
        .arg("--help")
        .env("RYZE_MASTER_KEY", secret)
        .env("RYZE_TABLE", "shown-table")
        .output()
        .expect("ryze runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn serve_help_lists_every_variable_and_never_the_master_key() {
    let secret = "a-master-key-that-must-never-be-printed-0123456789";
    let help = help_of(&["serve"], secret);
    let mut expected = vec![
        "RYZE_LOG_FORMAT",
        "RYZE_LISTEN",
        "RYZE_BACKEND",
        "RYZE_DATA_DIR",
        "RYZE_CONNECT_WAIT_SECS",
        "RYZE_ALLOW_PRIVATE_TARGETS",
        "RYZE_PUBLIC_URL",
        "RYZE_WEBHOOK_RETRY_SCHEDULE",
        "RYZE_HEADER_TIMEOUT_SECS",
        "RYZE_IDLE_TIMEOUT_SECS",
        "RYZE_MAX_CONNECTIONS",
        // The session host's (session-host/src/runtime.rs).
        "RYZE_WHATSAPP_URL",
        "RYZE_WHATSAPP_WEB_VERSION",
        "RYZE_QR_BUDGET_SECS",
        "RYZE_DEAD_SOCKET_SECS",
        "RYZE_MAX_SESSIONS",
        "RYZE_PROXY_CA_FILE",
        "RYZE_HOST_ID",
        "RYZE_HEARTBEAT_SECS",
        "RYZE_LEASE_SECS",
        "RYZE_CONNECTS_PER_SECOND",
        "RYZE_SESSIONS_PER_TASK_TARGET",
        // `--backend aws`.
        "RYZE_TABLE",
        "RYZE_COMMAND_QUEUE_URL",
        "RYZE_EVENT_QUEUE_URL",
        "RYZE_ORDERED_DELIVERY_QUEUE_URL",
        "RYZE_DELIVERY_QUEUE_URL",
        "RYZE_DEAD_DELIVERY_QUEUE_URL",
        "RYZE_BUCKET",
        "RYZE_MASTER_KEY",
    ];
    expected.sort_unstable();
    assert_eq!(variables_in(&help), expected, "{help}");
    assert!(!help.contains(secret), "the key's value is printed:\n{help}");
    assert!(help.contains("[env: RYZE_MASTER_KEY]"), "{help}");
    // Other values show, as clap shows them: only the key is hidden.
    assert!(help.contains("[env: RYZE_TABLE=shown-table]"), "{help}");
}

#[test]
fn every_command_on_aws_takes_the_resources_and_hides_the_key() {
    let secret = "a-master-key-that-must-never-be-printed-0123456789";
    for command in [&["account", "create"][..], &["account", "update"], &["events", "redrive"]] {
        let help = help_of(command, secret);
        for variable in
            ["RYZE_BACKEND", "RYZE_TABLE", "RYZE_BUCKET", "RYZE_DEAD_DELIVERY_QUEUE_URL", "RYZE_MASTER_KEY"]
        {
            assert!(help.contains(variable), "{command:?} lacks {variable}:\n{help}");
        }
        assert!(!help.contains(secret), "{command:?} prints the key's value:\n{help}");
    }
    let help = help_of(&["aws", "provision"], secret);
    assert!(help.contains("[env: RYZE_MASTER_KEY]") && !help.contains(secret), "{help}");
}

#[test]
fn a_missing_resource_is_named_and_the_key_never_printed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = "a-master-key-that-must-never-be-printed-0123456789";
    let mut command = Command::new(RYZE);
    command.args(["account", "create", "--name", "a", "--backend", "aws", "--bucket", "b"]);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("RYZE_")) {
        command.env_remove(name);
    }
    let output =
        command.env("RYZE_DATA_DIR", dir.path()).env("RYZE_MASTER_KEY", secret).output().expect("ryze runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing configuration: RYZE_TABLE, RYZE_COMMAND_QUEUE_URL"), "{stderr}");
    assert!(!stderr.contains("RYZE_BUCKET") && !stderr.contains(secret), "{stderr}");
}

/// `ryze aws provision` against the tests' moto server: the AWS variables and the `RYZE_*` lines
/// it printed, as one environment.
fn aws_deployment() -> Vec<(String, String)> {
    let endpoint = std::env::var("RYZE_TEST_AWS_ENDPOINT")
        .expect("RYZE_TEST_AWS_ENDPOINT: run ./scripts/test, which starts moto");
    let mut env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .into();
    let prefix = format!("cli-{}", std::process::id());
    let provisioned = Command::new(RYZE)
        .args(["aws", "provision", "--prefix", &prefix])
        .envs(env.clone())
        .env_remove("RYZE_MASTER_KEY")
        .output()
        .expect("ryze runs");
    assert!(provisioned.status.success(), "{}", String::from_utf8_lossy(&provisioned.stderr));
    let stdout = String::from_utf8(provisioned.stdout).expect("utf-8");
    let lines: Vec<(String, String)> = stdout
        .lines()
        .map(|line| {
            let (name, value) = line.split_once('=').expect("NAME=value lines only");
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let names: Vec<&str> = lines.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "RYZE_TABLE",
            "RYZE_COMMAND_QUEUE_URL",
            "RYZE_EVENT_QUEUE_URL",
            "RYZE_ORDERED_DELIVERY_QUEUE_URL",
            "RYZE_DELIVERY_QUEUE_URL",
            "RYZE_DEAD_DELIVERY_QUEUE_URL",
            "RYZE_BUCKET",
            "RYZE_MASTER_KEY"
        ]
    );
    assert_eq!(lines[0].1, format!("{prefix}-registry"));
    env.extend(lines);
    env
}

#[test]
fn two_servers_on_aws_share_one_deployment() {
    let env = aws_deployment();
    let dir = tempfile::tempdir().expect("temp dir");
    let created = Command::new(RYZE)
        .args(["account", "create", "--backend", "aws", "--name", "acme"])
        .envs(env.clone())
        .env("RYZE_DATA_DIR", dir.path())
        .output()
        .expect("ryze runs");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let account: Value = serde_json::from_slice(&created.stdout).expect("JSON");
    let token = account["token"].as_str().expect("token").to_owned();

    let mut serve_env = env.clone();
    serve_env.push(("RYZE_BACKEND".into(), "aws".into()));
    let first = Server::start_with(&dir.path().join("one"), &serve_env);
    let second = Server::start_with(&dir.path().join("two"), &serve_env);

    let (status, body) =
        first.request("POST", "/api/instance/new", Some(&token), Some(json!({"name": "shared"})));
    assert_eq!(status, 201, "{body}");
    let (status, list) = second.request("GET", "/api/instance/list", Some(&token), None);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["instances"][0]["name"], "shared", "created through one, listed by the other");
    let instance_token = body["instance"]["token"].as_str().expect("token");
    let (status, _) = second.request("GET", "/api/instance/getSettings/shared", Some(instance_token), None);
    assert_eq!(status, 200, "the instance token works on the other server");

    let (status, _) = second.request("DELETE", "/api/instance/delete/shared", Some(&token), None);
    assert_eq!(status, 200);
    let (_, list) = first.request("GET", "/api/instance/list", Some(&token), None);
    assert_eq!(list["meta"]["total"], 0, "deleted through the other: {list}");
    first.stop();
    second.stop();
}

/// Many idle and half-sent connections, more than the server has descriptors for: it closes them
/// after its timeouts, rides out the failed accepts, and keeps answering.
#[cfg(unix)]
#[test]
fn the_server_closes_idle_connections_and_survives_running_out_of_descriptors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env: Vec<(String, String)> = [("RYZE_HEADER_TIMEOUT_SECS", "1"), ("RYZE_IDLE_TIMEOUT_SECS", "1")]
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .into();
    let server = Server::start_with_open_files(&dir.path().join("data"), &env, 128);
    let mut sockets: Vec<TcpStream> = (0..300)
        .map(|n| {
            let mut socket = TcpStream::connect(server.addr).expect("connect");
            // A third say nothing, a third stop inside the head, a third inside the body.
            let sent = match n % 3 {
                0 => "",
                1 => "GET /health HTTP/1.1\r\nhost: test\r\n",
                _ => "POST /api/instance/new HTTP/1.1\r\nhost: test\r\ncontent-length: 50\r\n\r\n{",
            };
            socket.write_all(sent.as_bytes()).expect("write");
            socket
        })
        .collect();
    for socket in &mut sockets {
        socket.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let mut rest = Vec::new();
        // The server closes it (a reset counts): a read timeout would fail here instead.
        if let Err(error) = socket.read_to_end(&mut rest) {
            assert_ne!(error.kind(), std::io::ErrorKind::WouldBlock, "not closed within 60 s");
            assert_ne!(error.kind(), std::io::ErrorKind::TimedOut, "not closed within 60 s");
        }
    }
    let (status, health) = server.request("GET", "/health", None, None);
    assert_eq!((status, &health["status"]), (200, &json!("ok")));
    let log = server.stop();
    assert!(log.contains("accept failed"), "the descriptors never ran out: {log}");
}

/// A webhook receiver on a port chosen now, down until [`HookReceiver::up`]: records the
/// `webhook-id` of every request it answers (204).
struct HookReceiver {
    port: u16,
    ids: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl HookReceiver {
    fn reserve() -> Self {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        Self { port, ids: Default::default() }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    fn up(&self) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("the reserved port");
        let ids = self.ids.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let ids = ids.clone();
                std::thread::spawn(move || answer_hook(stream, &ids));
            }
        });
    }

    fn distinct_ids(&self) -> std::collections::BTreeSet<String> {
        self.ids.lock().expect("ids").iter().cloned().collect()
    }
}

/// Serves one connection's requests (keep-alive), 204 each.
fn answer_hook(stream: TcpStream, ids: &std::sync::Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let (mut length, mut id) = (0usize, None);
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "webhook-id" => id = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        ids.lock().expect("ids").extend(id);
        if writer.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

#[test]
fn events_survive_a_kill_of_the_server_in_the_middle_of_a_burst() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    kill_mid_burst_then_deliver_everything(&data_dir, &[], Duration::from_secs(60));
    // The operator's redrive opens the same store (nothing is dead here).
    let redriven = ryze(&["events", "redrive", "--instance", "i0"], &data_dir);
    assert!(redriven.status.success(), "{}", String::from_utf8_lossy(&redriven.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&redriven.stdout).expect("json"), json!({"redriven": 0}));
}

/// 30 instances with a webhook each, a `logged_out` event for each, `kill -9` of `ryze serve` right
/// after the last while the receiver is down, a restart with the receiver up: every event is
/// delivered within `within`, and every delivery log agrees.
fn kill_mid_burst_then_deliver_everything(data_dir: &Path, env: &[(String, String)], within: Duration) {
    let limits = ["--rate-limit", "100000", "--create-rate-limit", "1000"];
    let backend: &[&str] = if env.iter().any(|(name, value)| name == "RYZE_BACKEND" && value == "aws") {
        &["--backend", "aws"]
    } else {
        &[]
    };
    let created = Command::new(RYZE)
        .args([&["account", "create", "--name", "acme"][..], backend, &limits].concat())
        .envs(env.iter().map(|(name, value)| (name, value)))
        .env("RYZE_DATA_DIR", data_dir)
        .output()
        .expect("ryze runs");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let token = serde_json::from_slice::<Value>(&created.stdout).expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let receiver = HookReceiver::reserve();
    // An attempt every two seconds for over three minutes (the schedule's 100 attempts at most):
    // the receiver is down until after the restart.
    let schedule = std::iter::once("0").chain(std::iter::repeat_n("2", 99)).collect::<Vec<_>>().join(",");
    let mut env = env.to_vec();
    env.push(("RYZE_ALLOW_PRIVATE_TARGETS".to_owned(), "true".to_owned()));
    env.push(("RYZE_WEBHOOK_RETRY_SCHEDULE".to_owned(), schedule));
    const INSTANCES: usize = 30;
    let server = Server::start_with(data_dir, &env);
    for n in 0..INSTANCES {
        let body = json!({"name": format!("i{n}"), "webhookEnabled": true, "webhookURL": receiver.url()});
        let (status, body) = server.request("POST", "/api/instance/new", Some(&token), Some(body));
        assert_eq!(status, 201, "{body}");
    }
    // Each logout records one `logged_out` event; the server is killed right after the last.
    for n in 0..INSTANCES {
        let (status, body) =
            server.request("DELETE", &format!("/api/instance/logout/i{n}"), Some(&token), None);
        assert_eq!(status, 200, "{body}");
    }
    drop(server); // SIGKILL: no graceful stop, attempts in flight are cut off

    receiver.up();
    let server = Server::start_with(data_dir, &env);
    let deadline = std::time::Instant::now() + within;
    while receiver.distinct_ids().len() < INSTANCES {
        assert!(
            std::time::Instant::now() < deadline,
            "after the restart only {} of {INSTANCES} events were delivered",
            receiver.distinct_ids().len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every delivery log agrees: one event each, delivered, with the id the receiver got.
    let received = receiver.distinct_ids();
    for n in 0..INSTANCES {
        let (status, log) =
            server.request("GET", &format!("/api/events/deliveries/i{n}"), Some(&token), None);
        assert_eq!(status, 200, "{log}");
        let deliveries = log["deliveries"].as_array().expect("deliveries");
        assert_eq!(deliveries.len(), 1, "{log}");
        assert!(received.contains(deliveries[0]["id"].as_str().expect("id")), "{log}");
    }
    assert_eq!(received.len(), INSTANCES, "no event was invented");
    drop(server);
}

/// The same on the AWS adapters (moto): what SQS handed to the killed process comes back after
/// its visibility timeout (60 s as provisioned), and the restarted dispatcher delivers it.
#[test]
fn events_survive_a_kill_of_a_server_on_aws_in_the_middle_of_a_burst() {
    let mut env = aws_deployment();
    env.push(("RYZE_BACKEND".into(), "aws".into()));
    let dir = tempfile::tempdir().expect("temp dir");
    kill_mid_burst_then_deliver_everything(&dir.path().join("data"), &env, Duration::from_secs(150));
}
