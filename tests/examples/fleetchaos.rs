//! The fleet's chaos run (`scripts/chaos-fleet`): session host processes (`ryze-fleethost`) on the
//! AWS adapters against moto, the API in this process (the HTTP router on `Services`, real clock)
//! and the fake WhatsApp server in this process. For `--duration-secs`, every 1 to 3 s (a seeded
//! schedule) one random action:
//!
//! - on a host: `kill -9` and a restart 2 to 6 s later; SIGSTOP and SIGCONT lease+1 to lease+4 s
//!   later; SIGTERM (a drain) and a restart once it exited. At least one host always runs unfrozen.
//! - on an instance, through the API: connect and scan the QR as its phone, reconnect, logout. The
//!   API's answers are part of the run (a reconnect of a logged-out instance is a 400, a connect of
//!   a connected one a 409); each instance keeps the state its last successful command asked for.
//!
//! Then every stopped host is woken or restarted, and the run waits (bounded) until every instance
//! is in that state. What it checks, and exits non-zero on:
//!
//! 1. Never two clients for one device: the fake server's overlapping logins and `conflict replaced`
//!    may grow only inside a SIGSTOP window (from the STOP to `--grace-secs` after the CONT), at
//!    most once per session the frozen host held: a frozen process keeps its sockets open, so a
//!    takeover overlaps each of them once. Any other is a violation.
//! 2. Every instance ends in the state its last command asked for, and WhatsApp agrees (a device is
//!    logged in exactly when its instance reads `connected`).
//! 3. No instance left linked is handed a second QR: its logins after the link are from saved
//!    stores (the fake logs in only a device with valid credentials); links and logins per phone
//!    are reported.
//!
//! Also: API answers that contradict the last command (a reconnect of a logged-out instance not
//! refused, a linked one without a saved session, a failed logout), hosts that exit by themselves
//! or ignore SIGTERM, instances reading `connected` for long with no client logged in at WhatsApp,
//! connect calls that failed and were carried out later. A host woken from SIGSTOP that finds
//! itself judged dead and replaced exits, and the run restarts it, as its runner would; one whose
//! process stays up out of the fleet is reported and restarted.
//!
//!   RYZE_TEST_AWS_ENDPOINT=http://127.0.0.1:P ryze-fleetchaos --duration-secs 300 --seed 42 \
//!       --fleethost target/release/examples/ryze-fleethost --log-dir DIR
//!
//! The hosts' logs (JSON, one file per host id, every start appended) and `timeline.txt` (the
//! driver's actions merged with the hosts' notable lines) stay in `--log-dir`.
//!
//! An example rather than a binary: its hosts' clients must skip WhatsApp's certificate check to
//! talk to the fake server, and only this crate's examples and tests get that feature
//! (tests/Cargo.toml).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use ryze_core::clock::SystemClock;
use ryze_core::domain::{
    AccountLimits, Event, HostId, HostRecord, InstanceId, InstanceState, SessionCommand,
};
use ryze_core::outbound::{OutboundClient, TargetPolicy};
use ryze_core::ports::Ports;
use ryze_core::secrets::{Keyring, MasterKey};
use ryze_core::service::{ConnectPolicy, NewAccount, Services};
use ryze_tests::env_or;
use ryze_tests::fake_whatsapp::FakeWhatsApp;
use serde_json::{Value, json};
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a connect call waits for a session host to answer with a QR.
const CONNECT_WAIT: Duration = Duration::from_secs(30);
/// How long after a scan the instance gets to read `connected` before the link counts as cut short.
const LINK_WAIT: Duration = Duration::from_secs(30);
/// A connect call that failed may still be carried out later: its command can sit in a killed host's
/// abandoned long poll for a command's visibility timeout (10 s, once per host that dies holding
/// it), and its pairing then waits the QR budget (a minute) before it ends `disconnected`. The wait
/// at the end covers that, with room for several such deaths.
const LATE_CONNECT: Duration = Duration::from_secs(120 + 60 + 20);
/// How long an instance may read `connected` with no client logged in at WhatsApp before the run
/// reports it (a takeover of a frozen or killed host's sessions takes a few seconds).
const NO_CLIENT_LIMIT: Duration = Duration::from_secs(30);
/// How long an instance may read `connecting` with no client logged in: a pairing (no login yet)
/// lasts the QR budget (a minute).
const CONNECTING_LIMIT: Duration = Duration::from_secs(90);
/// How long a SIGTERM may take before the host counts as not honouring it (the drain's budget is
/// 25 s, plus up to a long poll's 21 s of waiting for an abandoned receive).
const TERM_LIMIT: Duration = Duration::from_secs(90);

struct Options {
    duration: Duration,
    seed: u64,
    hosts: usize,
    instances: usize,
    heartbeat_secs: u64,
    lease_secs: u64,
    fleethost: PathBuf,
    log_dir: PathBuf,
    converge: Duration,
    grace: Duration,
}

fn options() -> Result<Options, BoxError> {
    let exe = std::env::current_exe()?;
    let clock_seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
    let mut options = Options {
        duration: Duration::from_secs(300),
        seed: clock_seed % 1_000_000_007,
        hosts: 3,
        instances: 12,
        heartbeat_secs: env_or("RYZE_HEARTBEAT_SECS", 1)?,
        lease_secs: env_or("RYZE_LEASE_SECS", 3)?,
        fleethost: exe.with_file_name("ryze-fleethost"),
        log_dir: std::env::temp_dir().join(format!("ryze-fleetchaos-{}", std::process::id())),
        converge: Duration::from_secs(120),
        grace: Duration::from_secs(10),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--duration-secs" => options.duration = Duration::from_secs(value.parse()?),
            "--seed" => options.seed = value.parse()?,
            "--hosts" => options.hosts = value.parse()?,
            "--instances" => options.instances = value.parse()?,
            "--heartbeat-secs" => options.heartbeat_secs = value.parse()?,
            "--lease-secs" => options.lease_secs = value.parse()?,
            "--fleethost" => options.fleethost = value.into(),
            "--log-dir" => options.log_dir = value.into(),
            "--converge-secs" => options.converge = Duration::from_secs(value.parse()?),
            "--grace-secs" => options.grace = Duration::from_secs(value.parse()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if !(2..=9).contains(&options.hosts) {
        return Err("--hosts: 2 to 9".into());
    }
    if options.instances == 0 || options.instances > 999 {
        return Err("--instances: 1 to 999".into());
    }
    if options.heartbeat_secs == 0 || options.lease_secs < 2 * options.heartbeat_secs {
        return Err("the lease must be at least twice the heartbeat".into());
    }
    if !options.fleethost.exists() {
        return Err(format!(
            "{} missing: cargo build --release -p ryze-tests --example ryze-fleethost",
            options.fleethost.display()
        )
        .into());
    }
    Ok(options)
}

/// SplitMix64: a small seeded generator, so that a seed names a schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A duration between `lo` and `hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }

    /// Picks an index by weight.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut pick = self.next() % total.max(1);
        for (n, &weight) in weights.iter().enumerate() {
            if pick < u64::from(weight) {
                return n;
            }
            pick -= u64::from(weight);
        }
        weights.len() - 1
    }
}

/// What an instance's last successful command asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Connected,
    LoggedOut,
    Disconnected,
    /// A scanned link that did not read `connected` within [`LINK_WAIT`] (its host went before the
    /// login): whether its store was saved first decides.
    ConnectedOrDisconnected,
    /// A logged-out instance whose connect call failed: its pairing may still have begun later,
    /// and then ended unscanned.
    LoggedOutOrDisconnected,
}

impl Expect {
    fn accepts(self, state: InstanceState) -> bool {
        use InstanceState as S;
        match self {
            Self::Connected => state == S::Connected,
            Self::LoggedOut => state == S::LoggedOut,
            Self::Disconnected => state == S::Disconnected,
            Self::ConnectedOrDisconnected => matches!(state, S::Connected | S::Disconnected),
            Self::LoggedOutOrDisconnected => matches!(state, S::LoggedOut | S::Disconnected),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::LoggedOut => "loggedout",
            Self::Disconnected => "disconnected",
            Self::ConnectedOrDisconnected => "connected|disconnected",
            Self::LoggedOutOrDisconnected => "loggedout|disconnected",
        }
    }
}

fn state_name(state: Option<InstanceState>) -> &'static str {
    match state {
        Some(InstanceState::Disconnected) => "disconnected",
        Some(InstanceState::Connecting) => "connecting",
        Some(InstanceState::Connected) => "connected",
        Some(InstanceState::LoggedOut) => "loggedout",
        Some(InstanceState::Banned) => "banned",
        None => "unreadable",
    }
}

#[derive(Debug, Clone, Copy)]
enum Act {
    Connect,
    Reconnect,
    Logout,
}

struct Inst {
    name: String,
    id: InstanceId,
    phone: String,
    expect: Expect,
    last_command: String,
    busy: bool,
    /// QRs scanned for it (links made).
    links: usize,
}

/// A SIGSTOP window: from the STOP to the CONT (and the grace after it).
struct Window {
    host: String,
    stop_at: Instant,
    cont_at: Option<Instant>,
    /// The instances (by index) whose lease the host held when frozen.
    held: Vec<usize>,
}

/// A growth of one of the fake server's counters, as the monitor saw it.
struct Spike {
    at: Instant,
    instance: usize,
    overlap: bool,
    by: usize,
}

/// Everything the run records; the driver's tasks share it.
struct Book {
    t0: Instant,
    lines: Vec<(f64, String)>,
    instances: Vec<Inst>,
    outcomes: BTreeMap<&'static str, BTreeMap<String, usize>>,
    spikes: Vec<Spike>,
    windows: Vec<Window>,
    contradictions: Vec<String>,
    qr_for_linked: Vec<String>,
    host_failures: Vec<String>,
    idle_hosts: Vec<String>,
    /// Hosts that exited by themselves once superseded.
    superseded_exits: Vec<String>,
    drains: Vec<f64>,
    /// When a connect call last failed (see [`LATE_CONNECT`]).
    last_failed_connect: Option<Instant>,
    /// Every connect call: (instance, seconds into the run when sent, when answered, status).
    connects: Vec<(usize, f64, f64, u16)>,
    /// Spells of an instance reading `connected` or `connecting` with no client of it logged in
    /// at WhatsApp, over [`NO_CLIENT_LIMIT`] or [`CONNECTING_LIMIT`]: (instance, from, to, lease
    /// then, the state).
    without_client: Vec<(usize, f64, f64, String, &'static str)>,
}

impl Book {
    fn at(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.t0).as_secs_f64()
    }

    fn note(&mut self, text: impl Into<String>) {
        let t = self.at(Instant::now());
        let text = text.into();
        eprintln!("  +{t:7.2} s  {text}");
        self.lines.push((t, text));
    }

    fn count(&mut self, kind: &'static str, outcome: impl Into<String>) {
        *self.outcomes.entry(kind).or_default().entry(outcome.into()).or_default() += 1;
    }
}

struct Driver {
    router: Router,
    token: String,
    ports: Ports,
    fake: FakeWhatsApp,
    book: Mutex<Book>,
}

impl Driver {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut builder = Request::builder().method(method).uri(path).header("token", self.token.as_str());
        let body = match body {
            Some(body) => {
                builder = builder.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let Ok(request) = builder.body(body) else { return (StatusCode::BAD_REQUEST, Value::Null) };
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn state(&self, id: &InstanceId) -> Option<InstanceState> {
        self.ports.registry.instance(id).await.ok().flatten().map(|i| i.connection.state)
    }

    async fn holder(&self, id: &InstanceId) -> String {
        match self.ports.leases.lease(id).await {
            Ok(lease) => match lease.holder {
                Some(h) => format!("{}@{} (fence {})", h.host, h.epoch, lease.fence),
                None => format!("nobody (fence {})", lease.fence),
            },
            Err(error) => format!("unreadable: {error}"),
        }
    }

    async fn wait_state(&self, id: &InstanceId, state: InstanceState, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.state(id).await == Some(state) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One instance action through the API, and what it leaves the instance expecting.
    async fn act(&self, n: usize, action: Act) {
        let (name, phone, id, before) = {
            let book = self.book();
            let inst = &book.instances[n];
            (inst.name.clone(), inst.phone.clone(), inst.id.clone(), inst.expect)
        };
        let seen = state_name(self.state(&id).await);
        let sent = Instant::now();
        let who = format!("{name} [{phone}]");
        let was = format!("(reads {seen}, expects {})", before.label());
        match action {
            Act::Connect => {
                let (status, body) =
                    self.api(Method::GET, &format!("/api/instance/connect/{name}"), None).await;
                let qr = body["qrCode"].as_str().map(str::to_owned);
                match (status, qr) {
                    (StatusCode::OK, Some(qr)) => {
                        let scanned = self.fake.scan_qr(&qr, &phone).await;
                        let (after, outcome) = match &scanned {
                            Ok(()) => {
                                if self.wait_state(&id, InstanceState::Connected, LINK_WAIT).await {
                                    (Expect::Connected, "200 QR, scanned, connected".to_owned())
                                } else {
                                    (
                                        Expect::ConnectedOrDisconnected,
                                        "200 QR, scanned, not connected in 30 s".into(),
                                    )
                                }
                            }
                            Err(error) => (Expect::Disconnected, format!("200 QR, scan failed ({error})")),
                        };
                        let mut book = self.book();
                        if scanned.is_ok() {
                            book.instances[n].links += 1;
                        }
                        if before == Expect::Connected {
                            let line = format!(
                                "{who}: connect {was} → 200 with a QR: a linked instance's credentials discarded"
                            );
                            book.qr_for_linked.push(line);
                        }
                        let (sent, now) = (book.at(sent), book.at(Instant::now()));
                        book.connects.push((n, sent, now, 200));
                        let short = outcome.split(" (").next().unwrap_or_default().to_owned();
                        book.count("connect + scan", short);
                        book.note(format!("{who}: connect {was} → {outcome}; expects {}", after.label()));
                        book.instances[n].expect = after;
                        book.instances[n].last_command = "connect + scan".into();
                    }
                    (status, _) => {
                        let mut book = self.book();
                        let code = status.as_u16();
                        let message = body["error"]["message"].as_str().unwrap_or_default().to_owned();
                        if status == StatusCode::CONFLICT && before == Expect::LoggedOut {
                            book.contradictions.push(format!("{who}: connect {was} → 409 {message}"));
                        }
                        let after = match before {
                            Expect::LoggedOut if status != StatusCode::CONFLICT => {
                                Expect::LoggedOutOrDisconnected
                            }
                            other => other,
                        };
                        book.count("connect + scan", code.to_string());
                        let (sent, now) = (book.at(sent), book.at(Instant::now()));
                        book.connects.push((n, sent, now, code));
                        if status != StatusCode::CONFLICT {
                            book.last_failed_connect = Some(Instant::now());
                        }
                        book.note(format!(
                            "{who}: connect {was} → {code} {message}; expects {}",
                            after.label()
                        ));
                        book.instances[n].expect = after;
                    }
                }
            }
            Act::Reconnect => {
                let (status, body) =
                    self.api(Method::POST, &format!("/api/instance/reconnect/{name}"), None).await;
                let code = status.as_u16();
                let message = body["error"]["message"].as_str().unwrap_or_default().to_owned();
                let mut book = self.book();
                let contradicts = match before {
                    Expect::LoggedOut => status != StatusCode::BAD_REQUEST,
                    Expect::Connected => status == StatusCode::BAD_REQUEST,
                    _ => false,
                };
                if contradicts {
                    book.contradictions.push(format!("{who}: reconnect {was} → {code} {message}"));
                }
                let after = if status.is_success() { Expect::Connected } else { before };
                book.count("reconnect", code.to_string());
                book.note(format!("{who}: reconnect {was} → {code} {message}; expects {}", after.label()));
                book.instances[n].expect = after;
                if status.is_success() {
                    book.instances[n].last_command = "reconnect".into();
                }
            }
            Act::Logout => {
                let (status, body) =
                    self.api(Method::DELETE, &format!("/api/instance/logout/{name}"), None).await;
                let code = status.as_u16();
                let message = body["error"]["message"].as_str().unwrap_or_default().to_owned();
                let mut book = self.book();
                if status != StatusCode::OK {
                    book.contradictions.push(format!("{who}: logout {was} → {code} {message}"));
                }
                let after = if status == StatusCode::OK { Expect::LoggedOut } else { before };
                book.count("logout", code.to_string());
                book.note(format!("{who}: logout {was} → {code} {message}; expects {}", after.label()));
                book.instances[n].expect = after;
                if status == StatusCode::OK {
                    book.instances[n].last_command = "logout".into();
                }
            }
        }
        self.book().instances[n].busy = false;
    }

    /// Whether instance `n` is where its last command asked, on our side and on WhatsApp's.
    async fn settled(&self, n: usize) -> (bool, Option<InstanceState>, bool) {
        let (id, phone, expect) = {
            let book = self.book();
            let inst = &book.instances[n];
            (inst.id.clone(), inst.phone.clone(), inst.expect)
        };
        let state = self.state(&id).await;
        let logged_in = self.fake.logged_in(&phone);
        let agrees = match state {
            Some(InstanceState::Connected) => logged_in,
            Some(InstanceState::LoggedOut | InstanceState::Disconnected) => !logged_in,
            _ => false,
        };
        (state.is_some_and(|s| expect.accepts(s)) && agrees, state, logged_in)
    }
}

/// Watches the fake server's counters of overlapping logins and `conflict replaced`, per phone.
async fn monitor(driver: Arc<Driver>) {
    let targets: Vec<(String, InstanceId, String)> = {
        let book = driver.book();
        book.instances.iter().map(|i| (i.phone.clone(), i.id.clone(), i.name.clone())).collect()
    };
    let mut last = vec![(0usize, 0usize); targets.len()];
    loop {
        for (n, (phone, id, name)) in targets.iter().enumerate() {
            let overlaps = driver.fake.overlapping_logins(phone);
            let replaced = driver.fake.replaced_conflicts(phone);
            let at = Instant::now();
            let (grew_o, grew_r) = (overlaps.saturating_sub(last[n].0), replaced.saturating_sub(last[n].1));
            last[n] = (overlaps, replaced);
            if grew_o + grew_r == 0 {
                continue;
            }
            let holder = driver.holder(id).await;
            let mut book = driver.book();
            for (by, overlap) in [(grew_o, true), (grew_r, false)] {
                if by > 0 {
                    book.spikes.push(Spike { at, instance: n, overlap, by });
                }
            }
            book.note(format!(
                "WhatsApp: {name} [{phone}] overlapping logins +{grew_o} (total {overlaps}), conflict replaced +{grew_r} (total {replaced}); lease now {holder}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Looks every 2 s for instances with no client logged in at WhatsApp while they read `connected`
/// (for over [`NO_CLIENT_LIMIT`]) or `connecting` (for over [`CONNECTING_LIMIT`]: a pairing reads
/// that for its QR budget), and records those spells (the open ones are closed by `flush`).
async fn watch_clients(driver: Arc<Driver>, flush: Arc<tokio::sync::Notify>) {
    let targets: Vec<(InstanceId, String)> =
        driver.book().instances.iter().map(|i| (i.id.clone(), i.phone.clone())).collect();
    // (since, the state it reads, the lease once reported)
    let mut since: Vec<Option<(Instant, InstanceState, String)>> = vec![None; targets.len()];
    let limit = |state: InstanceState| {
        if state == InstanceState::Connected { NO_CLIENT_LIMIT } else { CONNECTING_LIMIT }
    };
    let close = |book: &mut Book, n: usize, spell: (Instant, InstanceState, String), now: Instant| {
        let (from, state, lease) = spell;
        if now.duration_since(from) > limit(state) {
            let (from, to) = (book.at(from), book.at(now));
            book.without_client.push((n, from, to, lease, state_name(Some(state))));
        }
    };
    loop {
        for (n, (id, phone)) in targets.iter().enumerate() {
            let state = driver.state(id).await;
            let now = Instant::now();
            let watched = state
                .filter(|s| matches!(s, InstanceState::Connected | InstanceState::Connecting))
                .filter(|_| !driver.fake.logged_in(phone));
            let same = matches!((&since[n], watched), (Some((_, was, _)), Some(is)) if *was == is);
            if !same && let Some(spell) = since[n].take() {
                close(&mut driver.book(), n, spell, now);
            }
            match (&mut since[n], watched) {
                (slot @ None, Some(state)) => *slot = Some((now, state, String::new())),
                (Some((from, state, lease)), Some(_))
                    if lease.is_empty() && now.duration_since(*from) > limit(*state) =>
                {
                    *lease = driver.holder(id).await;
                    let name = driver.book().instances[n].name.clone();
                    driver.book().note(format!(
                        "{name} reads {} with no client logged in at WhatsApp for {:.0} s; lease {lease}",
                        state_name(Some(*state)),
                        now.duration_since(*from).as_secs_f64()
                    ));
                }
                _ => {}
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = flush.notified() => {
                let now = Instant::now();
                let mut book = driver.book();
                for (n, slot) in since.iter_mut().enumerate() {
                    if let Some(spell) = slot.take() {
                        close(&mut book, n, spell, now);
                    }
                }
                return;
            }
        }
    }
}

/// The shared command queue and its dead-letter queue at the end: (visible, in flight) and the
/// dead letters (command, instance).
async fn queues(sqs: &aws_sdk_sqs::Client, url: &str) -> ((String, String), Vec<(String, InstanceId)>) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .ok()
        .and_then(|a| a.attributes)
        .unwrap_or_default();
    let get = |name: &A| attributes.get(name).cloned().unwrap_or_else(|| "?".into());
    let counts = (get(&A::ApproximateNumberOfMessages), get(&A::ApproximateNumberOfMessagesNotVisible));
    let dead_url = url.replace("-commands.fifo", "-commands-dlq.fifo");
    let mut dead = Vec::new();
    for _ in 0..10 {
        let Ok(answer) = sqs
            .receive_message()
            .queue_url(&dead_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
        else {
            break;
        };
        let messages = answer.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            if let Some(command) =
                message.body.as_deref().and_then(|b| serde_json::from_str::<SessionCommand>(b).ok())
            {
                let kind = format!("{command:?}").split([' ', '{']).next().unwrap_or_default().to_owned();
                dead.push((kind, command.instance().clone()));
            }
        }
    }
    (counts, dead)
}

/// Reads the `instance.state` events the hosts publish (nothing else reads the event queue here)
/// into the timeline, stamped with the event's own time.
async fn collect_events(driver: Arc<Driver>, sqs: aws_sdk_sqs::Client, url: String, wall0: DateTime<Utc>) {
    let names: HashMap<InstanceId, String> =
        driver.book().instances.iter().map(|i| (i.id.clone(), i.name.clone())).collect();
    loop {
        let answer = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await;
        let Ok(answer) = answer else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut entries = Vec::new();
        for (n, message) in answer.messages.unwrap_or_default().into_iter().enumerate() {
            if let Some(event) = message.body.as_deref().and_then(|b| serde_json::from_str::<Event>(b).ok()) {
                let name = names.get(&event.instance).map_or(event.instance.as_str(), String::as_str);
                let state = event.data["state"].as_str().unwrap_or("?");
                let reason = event.data["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
                let t = (event.timestamp - wall0).num_milliseconds() as f64 / 1000.0;
                driver.book().lines.push((t, format!("event: {name} → {state}{reason}")));
            }
            if let Some(receipt) = message.receipt_handle {
                let entry = aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .receipt_handle(receipt)
                    .build();
                entries.extend(entry.ok());
            }
        }
        if !entries.is_empty() {
            let _ = sqs.delete_message_batch().queue_url(&url).set_entries(Some(entries)).send().await;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum HostState {
    Running,
    Frozen { cont_at: Instant, window: usize },
    Terminating { since: Instant, idle: bool },
    Down { restart_at: Instant },
}

struct Host {
    id: String,
    log: PathBuf,
    child: Option<Child>,
    state: HostState,
    starts: usize,
    /// When it last started, was woken, or was seen in the fleet's records.
    seen: Instant,
    in_fleet: bool,
}

impl Host {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // A frozen process would not die of SIGKILL any later for being woken, but be sure.
            signal(pid, "-CONT");
        }
        self.kill();
    }
}

/// Whether the host's log says, near its end, that this start was judged dead and replaced, or
/// fenced itself.
fn superseded(log: &std::path::Path) -> bool {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    // Superseded, or fenced by its own heartbeat after a lease period without a beat (the same
    // fresh start follows).
    tail.iter().any(|line| {
        line.contains("judged dead and replaced")
            || line.contains("was superseded")
            || line.contains("no heartbeat went through")
    })
}

fn signal(pid: u32, which: &str) -> bool {
    Command::new("kill")
        .args([which, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// How host processes are started.
struct Launcher {
    fleethost: PathBuf,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    heartbeat_secs: u64,
    lease_secs: u64,
}

impl Launcher {
    fn start(&self, host: &mut Host) -> Result<(), BoxError> {
        host.starts += 1;
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&host.log)?;
        let marker = json!({
            "timestamp": Utc::now().to_rfc3339(),
            "level": "INFO",
            "message": format!("fleetchaos: start {} of {}", host.starts, host.id),
            "target": "fleetchaos",
        });
        writeln!(log, "{marker}")?;
        let child = Command::new(&self.fleethost)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RYZE_HOST_ID", &host.id)
            .env("RYZE_HEARTBEAT_SECS", self.heartbeat_secs.to_string())
            .env("RYZE_LEASE_SECS", self.lease_secs.to_string())
            .env("RYZE_WORK_DIR", self.log_dir.join(format!("work-{}", host.id)))
            .env(
                "RUST_LOG",
                std::env::var("FLEET_RUST_LOG")
                    .unwrap_or_else(|_| "warn,ryze_session_host=info,ryze_core=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        host.child = Some(child);
        host.state = HostState::Running;
        // Time to join before its absence from the fleet's records means anything.
        host.seen = Instant::now() + Duration::from_secs(15);
        host.in_fleet = false;
        Ok(())
    }
}

/// The hosts and what the driver does to them.
struct Fleet {
    hosts: Vec<Host>,
    launcher: Launcher,
    lease: Duration,
    records: Vec<HostRecord>,
    next_look: Instant,
}

impl Fleet {
    fn healthy(&self) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&n| matches!(self.hosts[n].state, HostState::Running) && self.hosts[n].in_fleet)
            .collect()
    }

    fn all_running(&self) -> bool {
        self.hosts.iter().all(|h| matches!(h.state, HostState::Running) && h.in_fleet)
    }

    /// Looks at the fleet's records (once a second), then moves every host along its schedule;
    /// `ending` wakes and restarts at once.
    async fn tick(&mut self, driver: &Driver, rng: &mut Rng, ending: bool) -> Result<(), BoxError> {
        let now = Instant::now();
        if now >= self.next_look {
            self.next_look = now + Duration::from_secs(1);
            if let Ok(records) = driver.ports.leases.hosts().await {
                self.records = records;
            }
            for host in &mut self.hosts {
                host.in_fleet = self.records.iter().any(|r| r.id.as_str() == host.id);
                if host.in_fleet && matches!(host.state, HostState::Running) {
                    host.seen = now;
                }
            }
        }
        for n in 0..self.hosts.len() {
            let host = &mut self.hosts[n];
            match host.state {
                HostState::Frozen { cont_at, window } if ending || now >= cont_at => {
                    if let Some(pid) = host.pid() {
                        signal(pid, "-CONT");
                    }
                    host.state = HostState::Running;
                    host.seen = now;
                    let mut book = driver.book();
                    book.windows[window].cont_at = Some(now);
                    let frozen = now.duration_since(book.windows[window].stop_at).as_secs_f64();
                    book.note(format!("SIGCONT {} after {frozen:.1} s frozen", host.id));
                }
                HostState::Frozen { .. } => {}
                HostState::Terminating { since, idle } => {
                    let exited = host.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    let took = now.duration_since(since).as_secs_f64();
                    if let Some(status) = exited {
                        host.child = None;
                        let restart = if ending || idle { Duration::ZERO } else { rng.millis(1000, 3000) };
                        host.state = HostState::Down { restart_at: now + restart };
                        let mut book = driver.book();
                        if !idle {
                            book.drains.push(took);
                            book.count(
                                "SIGTERM + restart",
                                if status.success() { "exit 0" } else { "exit not 0" },
                            );
                            if !status.success() {
                                book.host_failures
                                    .push(format!("{} exited with {status} after SIGTERM", host.id));
                            }
                        }
                        book.note(format!(
                            "{} exited {took:.1} s after SIGTERM ({status}); restart in {:.1} s",
                            host.id,
                            restart.as_secs_f64()
                        ));
                    } else if now.duration_since(since) > TERM_LIMIT {
                        host.kill();
                        host.state = HostState::Down { restart_at: now };
                        let mut book = driver.book();
                        let line = format!("{} still running {took:.0} s after SIGTERM: killed", host.id);
                        book.host_failures.push(line.clone());
                        book.note(line);
                    }
                }
                HostState::Down { restart_at } if ending || now >= restart_at => {
                    self.launcher.start(host)?;
                    let starts = host.starts;
                    driver.book().note(format!("started {} (start {starts})", host.id));
                }
                HostState::Down { .. } => {}
                HostState::Running => {
                    let exited = host.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    if let Some(status) = exited {
                        host.child = None;
                        host.state = HostState::Down { restart_at: now + Duration::from_secs(1) };
                        // A start judged dead and replaced (woken from SIGSTOP, or starved of CPU
                        // past its lease) ends its process, for its runner to start a fresh one.
                        let superseded = superseded(&host.log);
                        let mut book = driver.book();
                        let frozen = book.windows.iter().any(|w| {
                            w.host == host.id
                                && w.cont_at.is_some_and(|c| now.duration_since(c) < Duration::from_secs(30))
                        });
                        let why = match (superseded, frozen) {
                            (true, true) => "superseded while frozen",
                            (true, false) => {
                                "superseded without a SIGSTOP (it could not beat for a lease period)"
                            }
                            (false, _) => "not superseded",
                        };
                        let line = format!("{} exited by itself ({status}; {why}); restart in 1 s", host.id);
                        if superseded {
                            book.superseded_exits.push(line.clone());
                        } else {
                            book.host_failures.push(line.clone());
                        }
                        book.note(line);
                    } else if !host.in_fleet
                        && now.duration_since(host.seen) > self.lease + Duration::from_secs(3)
                    {
                        // Judged dead and replaced while frozen: its run loop ended, its process
                        // stays. An orchestrator's health check would replace it; so does this.
                        let gone = now.duration_since(host.seen).as_secs_f64();
                        if let Some(pid) = host.pid() {
                            signal(pid, "-TERM");
                        }
                        host.state = HostState::Terminating { since: now, idle: true };
                        let mut book = driver.book();
                        let line = format!(
                            "{} process up but out of the fleet (no host record) for {gone:.1} s: SIGTERM, restart",
                            host.id
                        );
                        book.idle_hosts.push(line.clone());
                        book.note(line);
                    }
                }
            }
        }
        Ok(())
    }

    /// One random host action on a healthy host; `false` when no host may be touched now.
    async fn act(&mut self, driver: &Driver, rng: &mut Rng, lease_secs: u64) -> bool {
        let healthy = self.healthy();
        if healthy.len() < 2 {
            return false;
        }
        let n = healthy[rng.below(healthy.len())];
        let now = Instant::now();
        let kind = rng.below(3);
        let host = &mut self.hosts[n];
        let Some(pid) = host.pid() else { return false };
        match kind {
            0 => {
                host.kill();
                let restart = rng.millis(2000, 6000);
                host.state = HostState::Down { restart_at: now + restart };
                let mut book = driver.book();
                book.count("kill -9 + restart", "done");
                book.note(format!("kill -9 {}; restart in {:.1} s", host.id, restart.as_secs_f64()));
            }
            1 => {
                signal(pid, "-STOP");
                let cont = rng.millis((lease_secs + 1) * 1000, (lease_secs + 4) * 1000);
                // Read once frozen: nothing the host does can change it any more.
                let epoch = self.records.iter().find(|r| r.id.as_str() == host.id).map(|r| r.epoch);
                let held = match HostId::new(host.id.clone()) {
                    Some(id) => driver.ports.leases.held_by(&id).await.unwrap_or_default(),
                    None => Vec::new(),
                };
                let held: HashSet<InstanceId> = held
                    .into_iter()
                    .filter(|(_, lease)| {
                        lease.holder.as_ref().is_some_and(|h| epoch.is_none_or(|e| h.epoch == e))
                    })
                    .map(|(instance, _)| instance)
                    .collect();
                let mut book = driver.book();
                let held: Vec<usize> =
                    (0..book.instances.len()).filter(|&i| held.contains(&book.instances[i].id)).collect();
                let names: Vec<&str> = held.iter().map(|&i| book.instances[i].name.as_str()).collect();
                let line = format!(
                    "SIGSTOP {} holding {} sessions ({}); SIGCONT in {:.1} s",
                    host.id,
                    held.len(),
                    names.join(", "),
                    cont.as_secs_f64()
                );
                book.windows.push(Window { host: host.id.clone(), stop_at: now, cont_at: None, held });
                let window = book.windows.len() - 1;
                host.state = HostState::Frozen { cont_at: now + cont, window };
                book.count("SIGSTOP + SIGCONT", "done");
                book.note(line);
            }
            _ => {
                signal(pid, "-TERM");
                host.state = HostState::Terminating { since: now, idle: false };
                // What its drain will see as peers: the records, and whose processes are up.
                let id = host.id.clone();
                let records: Vec<String> = self
                    .records
                    .iter()
                    .filter(|r| r.id.as_str() != id)
                    .map(|r| {
                        let up = self.hosts.iter().find(|h| h.id == r.id.as_str()).map_or("?", |h| {
                            match h.state {
                                HostState::Running => "running",
                                HostState::Frozen { .. } => "frozen",
                                HostState::Terminating { .. } => "draining",
                                HostState::Down { .. } => "process down",
                            }
                        });
                        format!("{}@{} ({up})", r.id, r.epoch)
                    })
                    .collect();
                driver
                    .book()
                    .note(format!("SIGTERM {id}; the fleet's other records: {}", records.join(", ")));
            }
        }
        true
    }
}

/// A host log line worth a place in the timeline: (seconds into the run, text).
fn notable(
    line: &str,
    host: &str,
    wall0: DateTime<Utc>,
    names: &HashMap<String, String>,
) -> Option<(f64, String)> {
    const KEPT: [&str; 9] = [
        "fleetchaos: start",
        "joined the fleet",
        "sessions taken over",
        "dead host removed",
        "sessions handed over",
        "session host stopped",
        "resuming from the saved store",
        "session gave up",
        "waiting for the abandoned poll to hand back what it took",
    ];
    let value: Value = serde_json::from_str(line).ok()?;
    let at = DateTime::parse_from_rfc3339(value["timestamp"].as_str()?).ok()?.with_timezone(&Utc);
    let level = value["level"].as_str().unwrap_or("?");
    let message = value["message"].as_str().unwrap_or_default();
    if !(matches!(level, "WARN" | "ERROR") || KEPT.iter().any(|k| message.starts_with(k))) {
        return None;
    }
    let mut text = format!("[{host}] {level} {message}");
    if let Some(fields) = value.as_object() {
        for (key, field) in fields {
            if matches!(key.as_str(), "timestamp" | "level" | "message" | "target" | "span" | "spans") {
                continue;
            }
            let shown = field.as_str().map_or_else(|| field.to_string(), str::to_owned);
            let shown = names.get(&shown).cloned().unwrap_or(shown);
            let _ = write!(text, " {key}={shown}");
        }
    }
    if let Some(instance) = value["span"]["instance"].as_str() {
        let _ = write!(text, " instance={}", names.get(instance).map_or(instance, String::as_str));
    }
    let t = (at - wall0).num_milliseconds() as f64 / 1000.0;
    Some((t, text))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let options = options()?;
    std::fs::create_dir_all(&options.log_dir)?;
    let mut rng = Rng(options.seed);

    let (config, resources) = ryze_tests::aws::provision().await;
    let ports = ryze_core::adapters::aws::ports(&config, &resources);
    let master = MasterKey::generate();
    let keys = Arc::new(Keyring::new(&master));
    let policy = ConnectPolicy { wait: CONNECT_WAIT, poll_interval: Duration::from_millis(50) };
    let outbound = OutboundClient::new(TargetPolicy { allow_private: true });
    let services = Services::new(ports.clone(), keys, Arc::new(SystemClock), policy, outbound);
    let limits = AccountLimits {
        instance_quota: u32::MAX,
        requests_per_minute: u32::MAX,
        creates_per_minute: u32::MAX,
    };
    let (_, token) = services.accounts.create(NewAccount { name: "chaos".into(), limits }).await?;
    let router = ryze_functions::router(ryze_functions::AppState::new(services));
    let fake = FakeWhatsApp::start().await;

    let mut env = ryze_tests::aws_process_env(&resources, &master, Some(&ryze_tests::aws::endpoint()));
    env.push(("RYZE_WHATSAPP_URL".into(), fake.url()));

    let t0 = Instant::now();
    let wall0 = Utc::now();
    let book = Book {
        t0,
        lines: Vec::new(),
        instances: Vec::new(),
        outcomes: BTreeMap::new(),
        spikes: Vec::new(),
        windows: Vec::new(),
        contradictions: Vec::new(),
        qr_for_linked: Vec::new(),
        host_failures: Vec::new(),
        idle_hosts: Vec::new(),
        superseded_exits: Vec::new(),
        drains: Vec::new(),
        last_failed_connect: None,
        connects: Vec::new(),
        without_client: Vec::new(),
    };
    let driver = Arc::new(Driver { router, token, ports, fake, book: Mutex::new(book) });

    println!(
        "fleet chaos: seed {}, {} s, {} hosts (beat {} s, lease {} s), {} instances; logs in {}",
        options.seed,
        options.duration.as_secs(),
        options.hosts,
        options.heartbeat_secs,
        options.lease_secs,
        options.instances,
        options.log_dir.display()
    );
    let lease = Duration::from_secs(options.lease_secs);
    let mut fleet = Fleet {
        hosts: (0..options.hosts)
            .map(|n| Host {
                id: format!("h{n}"),
                log: options.log_dir.join(format!("host-h{n}.log")),
                child: None,
                state: HostState::Down { restart_at: t0 },
                starts: 0,
                seen: t0,
                in_fleet: false,
            })
            .collect(),
        launcher: Launcher {
            fleethost: options.fleethost.clone(),
            env,
            log_dir: options.log_dir.clone(),
            heartbeat_secs: options.heartbeat_secs,
            lease_secs: options.lease_secs,
        },
        lease,
        records: Vec::new(),
        next_look: t0,
    };
    let up_by = Instant::now() + Duration::from_secs(60);
    while !fleet.all_running() {
        fleet.tick(&driver, &mut rng, true).await?;
        if Instant::now() > up_by {
            return Err("the hosts did not all join within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The instances, each linked by QR as its own phone.
    for n in 0..options.instances {
        let name = format!("chaos-{n:02}");
        let (status, body) = driver.api(Method::POST, "/api/instance/new", Some(json!({"name": name}))).await;
        if status != StatusCode::CREATED {
            return Err(format!("creating {name}: {status} {body}").into());
        }
        let id = InstanceId::from_stored(body["instance"]["id"].as_str().ok_or("no instance id")?);
        driver.book().instances.push(Inst {
            name,
            id,
            phone: format!("5511{:09}", n + 1),
            expect: Expect::Disconnected,
            last_command: "create".into(),
            busy: false,
            links: 0,
        });
        for _ in 0..3 {
            driver.act(n, Act::Connect).await;
            if driver.book().instances[n].expect == Expect::Connected {
                break;
            }
        }
        if driver.book().instances[n].expect != Expect::Connected {
            return Err(format!("instance {n} could not be linked").into());
        }
    }
    {
        let mut book = driver.book();
        book.outcomes.clear();
        book.note(format!("{} instances linked; chaos begins", options.instances));
    }
    let overlaps_before = driver.fake.total_overlapping_logins();
    let replaced_before = driver.fake.total_replaced_conflicts();
    let monitor = tokio::spawn(monitor(driver.clone()));
    let flush = Arc::new(tokio::sync::Notify::new());
    let watcher = tokio::spawn(watch_clients(driver.clone(), flush.clone()));
    let events = tokio::spawn(collect_events(
        driver.clone(),
        aws_sdk_sqs::Client::new(&config),
        resources.event_queue_url.clone(),
        wall0,
    ));

    // The chaos.
    let chaos_start = Instant::now();
    let end = chaos_start + options.duration;
    let mut next_action = chaos_start + rng.millis(1000, 3000);
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut actions = 0usize;
    while Instant::now() < end {
        fleet.tick(&driver, &mut rng, false).await?;
        let now = Instant::now();
        if now >= next_action {
            next_action = now + rng.millis(1000, 3000);
            actions += 1;
            let free: Vec<usize> = {
                let book = driver.book();
                (0..book.instances.len()).filter(|&n| !book.instances[n].busy).collect()
            };
            let on_host = free.is_empty() || rng.below(2) == 0;
            let done = on_host && fleet.act(&driver, &mut rng, options.lease_secs).await;
            if !done && !free.is_empty() {
                let n = free[rng.below(free.len())];
                let expect = {
                    let mut book = driver.book();
                    book.instances[n].busy = true;
                    book.instances[n].expect
                };
                // Linked ones are mostly reconnected or logged out, the others mostly linked again.
                let weights: [u32; 3] = if expect == Expect::Connected { [30, 45, 25] } else { [85, 10, 5] };
                let action = [Act::Connect, Act::Reconnect, Act::Logout][rng.weighted(&weights)];
                let driver = driver.clone();
                tasks.push(tokio::spawn(async move { driver.act(n, action).await }));
            } else if !done {
                actions -= 1;
            }
        }
        tasks.retain(|t| !t.is_finished());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Everything back, then wait for the instances to settle.
    driver.book().note(format!("{actions} actions; chaos over: every host woken or restarted"));
    let restore_by = Instant::now() + TERM_LIMIT + Duration::from_secs(60);
    let mut restored_at = None;
    let mut converged_at = None;
    let mut last_unsettled = String::new();
    loop {
        fleet.tick(&driver, &mut rng, true).await?;
        tasks.retain(|t| !t.is_finished());
        let now = Instant::now();
        if restored_at.is_none() && tasks.is_empty() && fleet.all_running() {
            restored_at = Some(now);
            driver.book().note("every host running and in the fleet; no instance command in flight");
        }
        if restored_at.is_none() && now > restore_by {
            driver.book().note("the hosts did not all come back in time");
            break;
        }
        if restored_at.is_some() {
            let mut unsettled = Vec::new();
            for n in 0..options.instances {
                let (ok, state, logged_in) = driver.settled(n).await;
                if !ok {
                    let book = driver.book();
                    let inst = &book.instances[n];
                    unsettled.push(format!(
                        "{} reads {} (expects {}, WhatsApp logged in: {logged_in})",
                        inst.name,
                        state_name(state),
                        inst.expect.label()
                    ));
                }
            }
            let summary = unsettled.join("; ");
            if summary != last_unsettled {
                if !summary.is_empty() {
                    driver.book().note(format!("not settled yet: {summary}"));
                }
                last_unsettled = summary;
            }
            if unsettled.is_empty() {
                converged_at = Some(now);
                break;
            }
            let late = driver.book().last_failed_connect.map(|at| at + LATE_CONNECT);
            let bound = restored_at.map(|at| (at + options.converge).max(late.unwrap_or(at)));
            if bound.is_some_and(|bound| now > bound) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let settled_at = Instant::now();
    // Late overlaps and late state changes: the grace, then the last look.
    let settle_until = Instant::now() + options.grace;
    while Instant::now() < settle_until {
        fleet.tick(&driver, &mut rng, true).await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut finals = Vec::new();
    for n in 0..options.instances {
        finals.push(driver.settled(n).await);
    }
    monitor.abort();
    events.abort();
    flush.notify_one();
    let _ = watcher.await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let ((queued, in_flight), dead_letters) = queues(&sqs, &resources.command_queue_url).await;
    let overlaps_total = driver.fake.total_overlapping_logins() - overlaps_before;
    let replaced_total = driver.fake.total_replaced_conflicts() - replaced_before;
    let mut holders = Vec::new();
    {
        let ids: Vec<InstanceId> = driver.book().instances.iter().map(|i| i.id.clone()).collect();
        for id in &ids {
            holders.push(driver.holder(id).await);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    drop(fleet);

    // The accounting.
    let book = driver.book();
    let far = Instant::now() + Duration::from_secs(3600);
    // (window, instance, overlap?) → used: one overlap and one replaced per held session per window.
    let mut used: HashSet<(usize, usize, bool)> = HashSet::new();
    let (mut inside, mut unexplained, mut outside) = ([0usize; 2], [0usize; 2], [0usize; 2]);
    let mut violations = Vec::new();
    for spike in &book.spikes {
        let kind = usize::from(!spike.overlap);
        for _ in 0..spike.by {
            let windows: Vec<usize> = (0..book.windows.len())
                .filter(|&w| {
                    let window = &book.windows[w];
                    window.stop_at <= spike.at && spike.at <= window.cont_at.unwrap_or(far) + options.grace
                })
                .collect();
            let inst = &book.instances[spike.instance];
            let what = if spike.overlap { "overlapping login" } else { "conflict replaced" };
            if windows.is_empty() {
                outside[kind] += 1;
                violations.push(format!(
                    "{what} of {} [{}] at +{:.2} s, outside every SIGSTOP window",
                    inst.name,
                    inst.phone,
                    book.at(spike.at)
                ));
                continue;
            }
            let explained = windows.iter().copied().find(|&w| {
                book.windows[w].held.contains(&spike.instance)
                    && !used.contains(&(w, spike.instance, spike.overlap))
            });
            match explained {
                Some(w) => {
                    used.insert((w, spike.instance, spike.overlap));
                    inside[kind] += 1;
                }
                None => {
                    unexplained[kind] += 1;
                    let hosts: Vec<&str> = windows.iter().map(|&w| book.windows[w].host.as_str()).collect();
                    violations.push(format!(
                        "{what} of {} [{}] at +{:.2} s, in the SIGSTOP window of {} but not one per session it held",
                        inst.name,
                        inst.phone,
                        book.at(spike.at),
                        hosts.join(", ")
                    ));
                }
            }
        }
    }
    let held_in_windows: usize = book.windows.iter().map(|w| w.held.len()).sum();
    let finals_ok = finals.iter().filter(|(ok, _, _)| *ok).count();
    let converge = converged_at.map(|at| at.duration_since(end).as_secs_f64());
    let waited = restored_at.map_or(0.0, |at| settled_at.saturating_duration_since(at).as_secs_f64());
    let restored = restored_at.map(|at| at.duration_since(end).as_secs_f64());
    let links: usize = book.instances.iter().map(|i| i.links).sum();
    let logins: usize = book.instances.iter().map(|i| driver.fake.logins(&i.phone)).sum();

    let mut out = String::new();
    let _ = writeln!(out, "\n## Fleet chaos run\n");
    let _ = writeln!(
        out,
        "seed {}, {} s of chaos, {} hosts (heartbeat {} s, lease {} s), {} instances; {} actions; \
         machine: {} cores, load average at the end {}",
        options.seed,
        options.duration.as_secs(),
        options.hosts,
        options.heartbeat_secs,
        options.lease_secs,
        options.instances,
        actions,
        std::thread::available_parallelism().map_or(0, usize::from),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let _ = writeln!(out, "\n| action | count | outcomes |\n|---|---:|---|");
    for kind in [
        "kill -9 + restart",
        "SIGSTOP + SIGCONT",
        "SIGTERM + restart",
        "connect + scan",
        "reconnect",
        "logout",
    ] {
        let outcomes = book.outcomes.get(kind);
        let count: usize = outcomes.map_or(0, |o| o.values().sum());
        let mut shown: Vec<String> =
            outcomes.into_iter().flatten().map(|(outcome, n)| format!("{outcome}: {n}")).collect();
        if kind == "SIGTERM + restart" {
            let signalled = book.lines.iter().filter(|(_, l)| l.starts_with("SIGTERM ")).count();
            let mut drains = book.drains.clone();
            drains.sort_by(f64::total_cmp);
            if let (Some(first), Some(last)) = (drains.first(), drains.last()) {
                shown.push(format!(
                    "exit after {first:.1}–{last:.1} s (median {:.1} s)",
                    drains[drains.len() / 2]
                ));
            }
            let _ = writeln!(out, "| {kind} | {signalled} | {} |", shown.join(", "));
            continue;
        }
        if kind == "SIGSTOP + SIGCONT" {
            shown = vec![format!("{held_in_windows} sessions held by the frozen hosts")];
        }
        if kind == "kill -9 + restart" {
            shown.clear();
        }
        let _ = writeln!(out, "| {kind} | {count} | {} |", shown.join(", "));
    }
    let ok = |good: bool| if good { "OK" } else { "NOT OK" };
    let _ = writeln!(out, "\n| check | result |\n|---|---|");
    let _ = writeln!(
        out,
        "| overlapping logins in SIGSTOP windows (one per session the frozen host held, at most) | {} of at most {held_in_windows} |",
        inside[0]
    );
    let _ = writeln!(
        out,
        "| overlapping logins outside SIGSTOP windows, or beyond one per held session | {} + {} ({}) |",
        outside[0],
        unexplained[0],
        ok(outside[0] + unexplained[0] == 0)
    );
    let _ = writeln!(
        out,
        "| conflict replaced in SIGSTOP windows / outside or beyond | {} / {} ({}) |",
        inside[1],
        outside[1] + unexplained[1],
        ok(outside[1] + unexplained[1] == 0)
    );
    let _ = writeln!(
        out,
        "| fake server totals over the chaos (overlapping logins / conflict replaced) | {overlaps_total} / {replaced_total} |"
    );
    let _ = writeln!(
        out,
        "| every host back (after the last action) | {} |",
        restored.map_or("not within the bound".to_owned(), |s| format!("{s:.1} s"))
    );
    let _ = writeln!(
        out,
        "| time to converge (after the last action) | {} |",
        converge.map_or_else(
            || format!("not converged ({waited:.0} s waited once every host was back)"),
            |s| format!("{s:.1} s")
        )
    );
    let _ = writeln!(
        out,
        "| final states: the last command's, WhatsApp agreeing (after {} s more) | {finals_ok} of {} ({}) |",
        options.grace.as_secs(),
        options.instances,
        ok(finals_ok == options.instances)
    );
    let _ = writeln!(
        out,
        "| QRs handed to an instance left linked | {} ({}) |",
        book.qr_for_linked.len(),
        ok(book.qr_for_linked.is_empty())
    );
    let _ = writeln!(out, "| QR links / logins at WhatsApp (setup included) | {links} / {logins} |");
    let _ = writeln!(
        out,
        "| API answers contradicting the last command | {} ({}) |",
        book.contradictions.len(),
        ok(book.contradictions.is_empty())
    );
    let _ = writeln!(
        out,
        "| hosts exiting by themselves, failing or ignoring SIGTERM | {} ({}) |",
        book.host_failures.len(),
        ok(book.host_failures.is_empty())
    );
    let unfrozen = book.superseded_exits.iter().filter(|l| l.contains("without a SIGSTOP")).count();
    let _ = writeln!(
        out,
        "| hosts superseded (judged dead, replaced) that exited by themselves / of them without a SIGSTOP | {} / {unfrozen} |",
        book.superseded_exits.len()
    );
    let _ = writeln!(
        out,
        "| superseded hosts left up out of the fleet (restarted by the run) | {} |",
        book.idle_hosts.len()
    );
    for (label, limit) in [("connected", NO_CLIENT_LIMIT), ("connecting", CONNECTING_LIMIT)] {
        let spells: Vec<f64> = book
            .without_client
            .iter()
            .filter(|s| s.4 == label)
            .map(|(_, from, to, _, _)| to - from)
            .collect();
        let longest = spells.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "| instances reading `{label}` with no client logged in at WhatsApp for over {} s, during the run | {} spells, longest {longest:.0} s ({}) |",
            limit.as_secs(),
            spells.len(),
            ok(spells.is_empty())
        );
    }
    let (mut failed_connects, mut late, mut never) = (0usize, Vec::new(), 0usize);
    for &(n, sent, answered, code) in &book.connects {
        if code == 200 || code == 409 {
            continue;
        }
        failed_connects += 1;
        let next = book
            .connects
            .iter()
            .filter(|c| c.0 == n && c.1 > sent)
            .map(|c| c.1)
            .fold(f64::INFINITY, f64::min);
        let needle = format!("event: {} → qr_ready", book.instances[n].name);
        let seen = book
            .lines
            .iter()
            .filter(|(t, line)| *t > answered && *t < next && *line == needle)
            .map(|(t, _)| *t)
            .fold(f64::INFINITY, f64::min);
        if seen.is_finite() { late.push(seen - sent) } else { never += 1 }
    }
    late.sort_by(f64::total_cmp);
    let _ = writeln!(
        out,
        "| connect calls that failed (no code in {} s), then carried out later / never seen | {failed_connects}: {} later{} / {never} |",
        CONNECT_WAIT.as_secs(),
        late.len(),
        match (late.first(), late.last()) {
            (Some(first), Some(last)) => format!(" (a QR {first:.0}–{last:.0} s after the call)"),
            _ => String::new(),
        }
    );
    let dead: Vec<String> = dead_letters
        .iter()
        .map(|(kind, id)| {
            let name = book.instances.iter().find(|i| &i.id == id).map_or(id.as_str(), |i| i.name.as_str());
            format!("{kind} {name}")
        })
        .collect();
    let _ = writeln!(
        out,
        "| shared command queue at the end: visible / in flight; dead letters | {queued} / {in_flight}; {} |",
        if dead.is_empty() { "none".to_owned() } else { dead.join(", ") }
    );
    let _ = writeln!(
        out,
        "\n| instance | phone | last command | expects | final state | WhatsApp logged in | QR links | logins | lease | |\n|---|---|---|---|---|---|---:|---:|---|---|"
    );
    for (n, inst) in book.instances.iter().enumerate() {
        let (good, state, logged_in) = finals[n];
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            inst.name,
            inst.phone,
            inst.last_command,
            inst.expect.label(),
            state_name(state),
            if logged_in { "yes" } else { "no" },
            inst.links,
            driver.fake.logins(&inst.phone),
            holders[n],
            ok(good)
        );
    }
    print!("{out}");

    // The timeline: the driver's lines and the hosts' notable ones.
    let names: HashMap<String, String> =
        book.instances.iter().map(|i| (i.id.as_str().to_owned(), i.name.clone())).collect();
    let mut timeline: Vec<(f64, String)> = book.lines.clone();
    let mut warnings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..options.hosts {
        let id = format!("h{n}");
        let text =
            std::fs::read_to_string(options.log_dir.join(format!("host-{id}.log"))).unwrap_or_default();
        for line in text.lines() {
            if let Some(entry) = notable(line, &id, wall0, &names) {
                if entry.1.contains(" WARN ") || entry.1.contains(" ERROR ") {
                    warnings.entry(id.clone()).or_default().push(format!("+{:7.2} s  {}", entry.0, entry.1));
                }
                timeline.push(entry);
            }
        }
    }
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0));
    let timeline_path = options.log_dir.join("timeline.txt");
    let mut file = std::fs::File::create(&timeline_path)?;
    for (t, line) in &timeline {
        writeln!(file, "+{t:8.2} s  {line}")?;
    }

    let spells: Vec<String> = book
        .without_client
        .iter()
        .map(|(n, from, to, lease, state)| {
            format!(
                "{} read {state} with no client logged in at WhatsApp from +{from:.1} s to +{to:.1} s ({:.0} s); lease {lease}",
                book.instances[*n].name,
                to - from
            )
        })
        .collect();
    let failed = !violations.is_empty()
        || !spells.is_empty()
        || finals_ok != options.instances
        || !book.qr_for_linked.is_empty()
        || !book.contradictions.is_empty()
        || !book.host_failures.is_empty();
    let findings: Vec<&String> = violations
        .iter()
        .chain(&spells)
        .chain(&book.qr_for_linked)
        .chain(&book.contradictions)
        .chain(&book.host_failures)
        .chain(&book.idle_hosts)
        .chain(book.superseded_exits.iter().filter(|l| l.contains("without a SIGSTOP")))
        .collect();
    if !findings.is_empty() {
        println!("\nfindings:");
        for finding in findings {
            println!("  - {finding}");
        }
    }
    if failed {
        println!("\nNOT OK. Evidence:");
        for (n, inst) in book.instances.iter().enumerate() {
            if finals[n].0 {
                continue;
            }
            println!("\n{} [{}], id {}: its timeline (last 30 lines)", inst.name, inst.phone, inst.id);
            let mine: Vec<&(f64, String)> =
                timeline.iter().filter(|(_, l)| l.contains(&inst.name) || l.contains(&inst.phone)).collect();
            for (t, line) in mine.iter().skip(mine.len().saturating_sub(30)) {
                println!("  +{t:8.2} s  {line}");
            }
        }
        for spike in &book.spikes {
            let at = book.at(spike.at);
            let inst = &book.instances[spike.instance];
            if !violations.iter().any(|v| v.contains(&inst.phone) && v.contains(&format!("+{at:.2} s"))) {
                continue;
            }
            println!(
                "\naround the {} of {} at +{at:.2} s:",
                if spike.overlap { "overlap" } else { "replace" },
                inst.name
            );
            for (t, line) in timeline.iter().filter(|(t, _)| (t - at).abs() <= 10.0) {
                println!("  +{t:8.2} s  {line}");
            }
        }
        for (n, from, to, _, state) in &book.without_client {
            let inst = &book.instances[*n];
            println!(
                "\n{} read {state} with no client from +{from:.1} s to +{to:.1} s; around its start:",
                inst.name
            );
            let fleet_wide = [
                "kill -9",
                "started ",
                "SIGSTOP",
                "SIGCONT",
                "SIGTERM",
                "sessions taken over",
                "joined the fleet",
            ];
            for (t, line) in timeline.iter().filter(|(t, line)| {
                *t >= from - 20.0
                    && *t <= from + 20.0
                    && (line.contains(&inst.name) || fleet_wide.iter().any(|k| line.contains(k)))
                    && !line.starts_with("not settled")
            }) {
                println!("  +{t:8.2} s  {line}");
            }
        }
        println!("\nthe hosts' last WARN/ERROR lines:");
        for (host, lines) in &warnings {
            println!("  {host}:");
            for line in lines.iter().skip(lines.len().saturating_sub(15)) {
                println!("    {line}");
            }
        }
    }
    println!("\ntimeline: {}", timeline_path.display());
    println!("hosts' logs: {}", options.log_dir.display());
    drop(book);
    if failed {
        return Err("the chaos run broke an invariant (see above)".into());
    }
    Ok(())
}
