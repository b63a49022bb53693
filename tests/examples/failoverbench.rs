//! The failover benchmark (`scripts/bench-failover`): session host processes (`ryze-fleethost`) on
//! the AWS adapters against moto, N sessions linked by QR through the API's connect path, then
//! `kill -9` of the host holding the most; reports, per session, the time from the kill until it is
//! `connected` again on a survivor (from the `instance.state` events' timestamps, which the new
//! owner stamps right after its fenced state write), and the command-routing latency: an
//! `ApplySettings` toggling `keepOnlineStatus`, from `routing::send_command` (what the API does) to
//! the owner's client sending the presence it asks for, as the fake WhatsApp server records it.
//!
//!   RYZE_TEST_AWS_ENDPOINT=http://127.0.0.1:P ryze-failoverbench --sessions 1000 --hosts 3 \
//!       --placement one --fleethost target/release/examples/ryze-fleethost --log-dir DIR
//!
//! `--placement spread` links with every host up (the fleet spreads the sessions) and kills the one
//! holding the most; `--placement one` links them all on the first host, alone, then starts the
//! others and kills it: the killed host holds every session. The hosts' timings are read from
//! `RYZE_HEARTBEAT_SECS` (5), `RYZE_LEASE_SECS` (15) and `RYZE_CONNECTS_PER_SECOND` (25), as the
//! session host reads them, and passed on to every host.
//!
//! The driver holds the API's `Services`, the fake WhatsApp server (in process) and an event reader;
//! the hosts' logs (JSON) stay in `--log-dir`. Lines starting `failover-row:` and `routing-row:` are
//! Markdown table rows for the script to gather. Exits non-zero when a check fails: a session not
//! back in time, a QR shown, a login count other than two, an overlapping login or a replaced one.
//!
//! An example rather than a binary: its hosts' clients must skip WhatsApp's certificate check to
//! talk to the fake server, and only this crate's examples and tests get that feature
//! (tests/Cargo.toml).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ryze_core::clock::SystemClock;
use ryze_core::domain::{
    AccountLimits, ConnectOutcome, Event, InstanceId, InstanceState, SessionCommand, Settings,
};
use ryze_core::outbound::{OutboundClient, TargetPolicy};
use ryze_core::ports::Ports;
use ryze_core::secrets::{Keyring, MasterKey};
use ryze_core::service::{
    Caller, ConnectOptions, ConnectPolicy, CreateInstance, NewAccount, Services, routing,
};
use ryze_tests::env_or;
use ryze_tests::fake_whatsapp::FakeWhatsApp;
use tokio::sync::Semaphore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    Spread,
    One,
}

struct Options {
    sessions: usize,
    hosts: usize,
    placement: Placement,
    concurrency: usize,
    commands: usize,
    fleethost: PathBuf,
    log_dir: PathBuf,
    deadline: Duration,
    heartbeat_secs: u64,
    lease_secs: u64,
    connects_per_second: u32,
}

fn options() -> Result<Options, BoxError> {
    let exe = std::env::current_exe()?;
    let mut options = Options {
        sessions: 100,
        hosts: 2,
        placement: Placement::Spread,
        concurrency: 8,
        commands: 200,
        fleethost: exe.with_file_name("ryze-fleethost"),
        log_dir: std::env::temp_dir().join(format!("ryze-failoverbench-{}", std::process::id())),
        deadline: Duration::from_secs(300),
        heartbeat_secs: env_or("RYZE_HEARTBEAT_SECS", 5)?,
        lease_secs: env_or("RYZE_LEASE_SECS", 15)?,
        connects_per_second: env_or("RYZE_CONNECTS_PER_SECOND", 25)?,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sessions" => options.sessions = value.parse()?,
            "--hosts" => options.hosts = value.parse()?,
            "--placement" => {
                options.placement = match value.as_str() {
                    "spread" => Placement::Spread,
                    "one" => Placement::One,
                    other => return Err(format!("--placement {other}: spread or one").into()),
                }
            }
            "--concurrency" => options.concurrency = value.parse()?,
            "--commands" => options.commands = value.parse()?,
            "--fleethost" => options.fleethost = value.into(),
            "--log-dir" => options.log_dir = value.into(),
            "--deadline-secs" => options.deadline = Duration::from_secs(value.parse()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if options.hosts < 2 || options.hosts > 26 {
        return Err("--hosts: 2 to 26".into());
    }
    if options.sessions == 0 || options.concurrency == 0 {
        return Err("--sessions and --concurrency must be at least 1".into());
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

/// A session host process, killed on drop.
struct HostProcess {
    id: String,
    log: PathBuf,
    child: Option<Child>,
}

impl HostProcess {
    fn start(options: &Options, env: &[(String, String)], id: &str) -> Result<Self, BoxError> {
        let log = options.log_dir.join(format!("host-{id}.log"));
        let child = Command::new(&options.fleethost)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RYZE_HOST_ID", id)
            .env("RYZE_HEARTBEAT_SECS", options.heartbeat_secs.to_string())
            .env("RYZE_LEASE_SECS", options.lease_secs.to_string())
            .env("RYZE_CONNECTS_PER_SECOND", options.connects_per_second.to_string())
            .env("RYZE_WORK_DIR", options.log_dir.join(format!("work-{id}")))
            .env(
                "RUST_LOG",
                std::env::var("FLEET_RUST_LOG").unwrap_or_else(|_| "warn,ryze_session_host=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Self { id: id.to_owned(), log, child: Some(child) })
    }

    /// `kill -9`: no drain, no release; the kernel closes its sockets.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An `instance.state` event as the event queue delivered it.
#[derive(Debug, Clone)]
struct Seen {
    instance: InstanceId,
    state: String,
    at: DateTime<Utc>,
}

/// Reads the event queue (the dispatcher's input; nothing else reads it here) and deletes what it
/// read, ten at a time.
async fn collect_events(sqs: aws_sdk_sqs::Client, url: String, sink: Arc<Mutex<Vec<Seen>>>) {
    loop {
        let answer = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await;
        let messages = match answer {
            Ok(answer) => answer.messages.unwrap_or_default(),
            Err(error) => {
                eprintln!("event queue: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut entries = Vec::new();
        {
            let mut sink = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (n, message) in messages.iter().enumerate() {
                if let Some(event) =
                    message.body.as_deref().and_then(|b| serde_json::from_str::<Event>(b).ok())
                {
                    let state = event.data["state"].as_str().unwrap_or_default().to_owned();
                    sink.push(Seen { instance: event.instance, state, at: event.timestamp });
                }
                if let Some(receipt) = &message.receipt_handle {
                    let entry = aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(n.to_string())
                        .receipt_handle(receipt)
                        .build();
                    if let Ok(entry) = entry {
                        entries.push(entry);
                    }
                }
            }
        }
        if !entries.is_empty() {
            let deleted = sqs.delete_message_batch().queue_url(&url).set_entries(Some(entries)).send().await;
            if let Err(error) = deleted {
                eprintln!("event queue delete: {error}");
            }
        }
    }
}

struct Linked {
    id: InstanceId,
    phone: String,
    settings: Settings,
    /// Seconds from the link's start to: created, QR answered, scanned, logged in, `connected`.
    phases: [f64; 5],
}

struct Bench {
    services: Services,
    ports: Ports,
    caller: Caller,
    fake: FakeWhatsApp,
}

impl Bench {
    /// Creates instance `n`, connects it by QR, plays the phone, and waits until it is connected.
    async fn link(&self, n: usize) -> Result<Linked, BoxError> {
        let name = format!("fo-{n:05}");
        let started = Instant::now();
        let mut phases = [0.0; 5];
        let input = CreateInstance { name: Some(name.clone()), ..CreateInstance::default() };
        let created = self.services.instances.create(&self.caller, input).await?;
        let id = created.instance.id.clone();
        phases[0] = started.elapsed().as_secs_f64();
        let outcome = self.services.instances.connect(&self.caller, &name, ConnectOptions::default()).await?;
        phases[1] = started.elapsed().as_secs_f64();
        let ConnectOutcome::QrCode { code } = outcome else {
            return Err(format!("{name}: {outcome:?}").into());
        };
        let phone = format!("55{:011}", n + 1);
        self.fake.scan_qr(&code, &phone).await?;
        phases[2] = started.elapsed().as_secs_f64();
        self.fake.wait_logged_in(&phone, Duration::from_secs(60)).await?;
        phases[3] = started.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let instance = self.ports.registry.instance(&id).await?.ok_or("instance gone")?;
            if instance.connection.state == InstanceState::Connected {
                phases[4] = started.elapsed().as_secs_f64();
                return Ok(Linked { id, phone, settings: instance.settings.clone(), phases });
            }
            if Instant::now() > deadline {
                return Err(format!("{name} not connected within 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn holder(&self, id: &InstanceId) -> Result<Option<String>, BoxError> {
        Ok(self.ports.leases.lease(id).await?.holder.map(|h| h.host.to_string()))
    }

    /// Waits until `ids` (host ids) are registered and have beaten at least once.
    async fn wait_for_hosts(&self, ids: &[String], hosts: &mut [HostProcess]) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let records = self.ports.leases.hosts().await?;
            let up =
                ids.iter().all(|id| records.iter().any(|r| r.id.as_str() == id && r.beat > 0 && !r.draining));
            if up {
                return Ok(());
            }
            for host in hosts.iter_mut() {
                if let Some(status) = host.exited() {
                    return Err(
                        format!("host {} exited with {status}; see {}", host.id, host.log.display()).into()
                    );
                }
            }
            if Instant::now() > deadline {
                return Err(format!("hosts {ids:?} not up within 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn secs(value: f64) -> String {
    format!("{value:.1} s")
}

fn millis(value: f64) -> String {
    format!("{value:.0} ms")
}

/// What a survivor's log says about the takeover: (time, host, line).
fn takeover_lines(log: &Path, host: &str, after: DateTime<Utc>) -> Vec<(DateTime<Utc>, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lines = Vec::new();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(at) = value["timestamp"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
            continue;
        };
        let at = at.with_timezone(&Utc);
        if at < after {
            continue;
        }
        let message = value["message"].as_str().unwrap_or_default();
        let text = match message {
            "host judged dead; taking over" => {
                format!("{host}: judged {} dead", value["dead"].as_str().unwrap_or("?"))
            }
            "sessions taken over" => format!(
                "{host}: took {} of {} orphaned leases of {}",
                value["taken"],
                value["of"],
                value["from"].as_str().unwrap_or("?")
            ),
            "dead host removed" => format!("{host}: removed the dead host's record"),
            _ => continue,
        };
        lines.push((at, text));
    }
    lines
}

/// The machine's busy and total CPU time (clock ticks), from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// CPU time (clock ticks) of process `pid` so far, from `/proc/PID/stat`.
fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // After the name: the state (field 3), ..., utime and stime (fields 14 and 15).
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// Busy CPU between two samples, in cores: the machine's, and each named process's.
struct CpuSample {
    at: Instant,
    machine: (u64, u64),
    processes: Vec<(String, u64)>,
}

fn cpu_sample(pids: &[(String, u32)]) -> CpuSample {
    CpuSample {
        at: Instant::now(),
        machine: machine_ticks(),
        processes: pids.iter().map(|(name, pid)| (name.clone(), process_ticks(*pid))).collect(),
    }
}

fn cpu_report(from: &CpuSample, to: &CpuSample) -> String {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
    let (busy, total) = (to.machine.0 - from.machine.0, to.machine.1 - from.machine.1);
    let machine = if total == 0 { 0.0 } else { busy as f64 / total as f64 * cores };
    // Linux counts process CPU time in USER_HZ ticks, 100 a second.
    let seconds = to.at.duration_since(from.at).as_secs_f64().max(1e-3);
    let mut parts = vec![format!("machine {machine:.2} of {cores:.0} cores busy")];
    for ((name, before), (_, after)) in from.processes.iter().zip(&to.processes) {
        parts.push(format!("{name} {:.2}", (after - before) as f64 / 100.0 / seconds));
    }
    parts.join(", ")
}

fn since(kill: DateTime<Utc>, at: DateTime<Utc>) -> f64 {
    (at - kill).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let options = options()?;
    std::fs::create_dir_all(&options.log_dir)?;
    let (config, resources) = ryze_tests::aws::provision().await;
    let ports = ryze_core::adapters::aws::ports(&config, &resources);
    let master = MasterKey::generate();
    let keys = Arc::new(Keyring::new(&master));
    let policy = ConnectPolicy { wait: Duration::from_secs(60), poll_interval: Duration::from_millis(50) };
    let outbound = OutboundClient::new(TargetPolicy::default());
    let services = Services::new(ports.clone(), keys, Arc::new(SystemClock), policy, outbound);
    let limits = AccountLimits {
        instance_quota: u32::MAX,
        requests_per_minute: u32::MAX,
        creates_per_minute: u32::MAX,
    };
    let (_, token) = services.accounts.create(NewAccount { name: "failover".into(), limits }).await?;
    let caller = services.auth.resolve(Some(&token)).await?;
    let fake = FakeWhatsApp::start().await;

    let endpoint = ryze_tests::aws::endpoint();
    let mut env = ryze_tests::aws_process_env(&resources, &master, Some(&endpoint));
    env.push(("RYZE_WHATSAPP_URL".into(), fake.url()));

    let events = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let collector = tokio::spawn(collect_events(
        aws_sdk_sqs::Client::new(&config),
        resources.event_queue_url.clone(),
        events.clone(),
    ));

    let ids: Vec<String> = (0..options.hosts).map(|n| ((b'a' + n as u8) as char).to_string()).collect();
    let first = match options.placement {
        Placement::Spread => ids.len(),
        Placement::One => 1,
    };
    let bench = Arc::new(Bench { services, ports: ports.clone(), caller, fake });
    let mut hosts = Vec::new();
    for id in &ids[..first] {
        hosts.push(HostProcess::start(&options, &env, id)?);
    }
    bench.wait_for_hosts(&ids[..first], &mut hosts).await?;
    println!(
        "hosts: {} ({}); beat {} s, lease {} s, {} client starts/s per host; logs in {}",
        options.hosts,
        match options.placement {
            Placement::Spread => "all up while linking",
            Placement::One => "the first alone while linking, the others started after",
        },
        options.heartbeat_secs,
        options.lease_secs,
        options.connects_per_second,
        options.log_dir.display()
    );

    // Linking.
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(options.concurrency));
    let mut tasks = Vec::with_capacity(options.sessions);
    for n in 0..options.sessions {
        let (bench, permit) = (bench.clone(), permits.clone().acquire_owned().await?);
        tasks.push(tokio::spawn(async move {
            let linked = bench.link(n).await;
            drop(permit);
            linked
        }));
    }
    let mut linked = Vec::with_capacity(tasks.len());
    let step = (options.sessions / 10).max(1);
    for task in tasks {
        linked.push(task.await??);
        if linked.len() % step == 0 {
            eprintln!(
                "  linked {} of {} ({:.0} s)",
                linked.len(),
                options.sessions,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let linking = started.elapsed();
    println!(
        "linked {} sessions by QR in {:.1} s ({} at a time)",
        linked.len(),
        linking.as_secs_f64(),
        options.concurrency
    );
    let mut to_qr: Vec<f64> = linked.iter().map(|l| (l.phases[1] - l.phases[0]) * 1000.0).collect();
    to_qr.sort_by(f64::total_cmp);
    let mut total: Vec<f64> = linked.iter().map(|l| l.phases[4]).collect();
    total.sort_by(f64::total_cmp);
    println!(
        "  connect-to-QR p50 {} p99 {} max {}; whole link p50 {} p99 {} max {}",
        millis(percentile(&to_qr, 0.5)),
        millis(percentile(&to_qr, 0.99)),
        millis(percentile(&to_qr, 1.0)),
        secs(percentile(&total, 0.5)),
        secs(percentile(&total, 0.99)),
        secs(percentile(&total, 1.0)),
    );
    if let Some((n, slowest)) =
        linked.iter().enumerate().max_by(|a, b| a.1.phases[4].total_cmp(&b.1.phases[4]))
    {
        let [created, qr, scanned, logged_in, connected] = slowest.phases;
        println!(
            "  slowest link (#{n}): created {created:.2} s, QR {qr:.2} s, scanned {scanned:.2} s, logged in {logged_in:.2} s, connected {connected:.2} s"
        );
    }
    if first < ids.len() {
        for id in &ids[first..] {
            hosts.push(HostProcess::start(&options, &env, id)?);
        }
        bench.wait_for_hosts(&ids, &mut hosts).await?;
    }
    // Stores saved, presences settled, every host seen by every other at least once.
    tokio::time::sleep(Duration::from_secs(options.heartbeat_secs.max(5) + 1)).await;

    // Command routing: ApplySettings toggling keepOnlineStatus, to the presence it makes the owner
    // send; one at a time, round-robin over the sessions (so over the hosts holding them).
    let mut routing_ms = Vec::with_capacity(options.commands);
    let mut routing_failures = 0usize;
    for n in 0..options.commands {
        let session = &mut linked[n % options.sessions];
        session.settings.keep_online_status = !session.settings.keep_online_status;
        let expected = if session.settings.keep_online_status { "available" } else { "unavailable" };
        let before = bench.fake.presences(&session.phone).len();
        let command = SessionCommand::ApplySettings {
            instance: session.id.clone(),
            settings: session.settings.clone(),
        };
        let sent = Instant::now();
        routing::send_command(&bench.ports, &command).await?;
        let phone = session.phone.clone();
        let seen = bench
            .fake
            .wait_for("the presence", Duration::from_secs(10), || {
                bench
                    .fake
                    .presences(&phone)
                    .get(before..)
                    .is_some_and(|new| new.iter().any(|p| p == expected))
            })
            .await;
        match seen {
            Ok(()) => routing_ms.push(sent.elapsed().as_secs_f64() * 1000.0),
            Err(error) => {
                routing_failures += 1;
                eprintln!("  command {n}: {error}");
            }
        }
    }
    routing_ms.sort_by(f64::total_cmp);

    // Who holds what.
    let mut by_host: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (n, session) in linked.iter().enumerate() {
        let holder = bench.holder(&session.id).await?.unwrap_or_else(|| "nobody".into());
        by_host.entry(holder).or_default().push(n);
    }
    let placement: Vec<String> = by_host.iter().map(|(h, s)| format!("{h}: {}", s.len())).collect();
    println!("sessions per host before the kill: {}", placement.join(", "));
    let (victim, victims) = by_host
        .iter()
        .max_by_key(|(_, s)| s.len())
        .map(|(h, s)| (h.clone(), s.clone()))
        .ok_or("no sessions")?;
    let survivors: HashSet<String> = ids.iter().filter(|id| **id != victim).cloned().collect();
    let victim_ids: HashSet<InstanceId> = victims.iter().map(|&n| linked[n].id.clone()).collect();

    // WhatsApp's side: when each moved session's device logged in again.
    let phones: Vec<String> = victims.iter().map(|&n| linked[n].phone.clone()).collect();
    let logins_before: Vec<usize> = phones.iter().map(|p| bench.fake.logins(p)).collect();
    let logged_in_again: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; phones.len()]));
    let login_watch = {
        let (bench, back) = (bench.clone(), logged_in_again.clone());
        let (phones, before) = (phones.clone(), logins_before.clone());
        tokio::spawn(async move {
            loop {
                let now = Instant::now();
                {
                    let mut back = back.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for (n, phone) in phones.iter().enumerate() {
                        if back[n].is_none() && bench.fake.logins(phone) > before[n] {
                            back[n] = Some(now);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // kill -9.
    let overlapping_before = bench.fake.total_overlapping_logins();
    let replaced_before = bench.fake.total_replaced_conflicts();
    let mut pids: Vec<(String, u32)> = vec![("bench (API, fake WhatsApp)".into(), std::process::id())];
    // One emulator, or one per service (`scripts/bench-failover`).
    for (variable, name) in [("MOTO_PID", "moto"), ("MOTO_S3_PID", "moto S3"), ("MOTO_SQS_PID", "moto SQS")] {
        if let Some(pid) = std::env::var(variable).ok().and_then(|p| p.parse().ok()) {
            pids.push((name.into(), pid));
        }
    }
    for host in hosts.iter().filter(|h| h.id != victim) {
        if let Some(child) = &host.child {
            pids.push((format!("host {}", host.id), child.id()));
        }
    }
    let killed_host = hosts.iter_mut().find(|h| h.id == victim).ok_or("victim is not a host of this run")?;
    let cpu_before = cpu_sample(&pids);
    let kill_wall = Utc::now();
    let kill_at = Instant::now();
    killed_host.kill();
    println!("kill -9 of host {victim} holding {} sessions", victims.len());

    let deadline = kill_at + options.deadline;
    let mut all_seen_at = None;
    let connected_at: HashMap<InstanceId, DateTime<Utc>> = loop {
        let connected: HashMap<InstanceId, DateTime<Utc>> = {
            let seen = events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut connected = HashMap::new();
            for event in seen.iter() {
                if event.at > kill_wall && event.state == "connected" && victim_ids.contains(&event.instance)
                {
                    let at = connected.entry(event.instance.clone()).or_insert(event.at);
                    *at = (*at).min(event.at);
                }
            }
            connected
        };
        if connected.len() == victim_ids.len() {
            all_seen_at = Some(kill_at.elapsed());
            break connected;
        }
        if Instant::now() > deadline {
            break connected;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recovered = connected_at.len();
    let cpu_after = cpu_sample(&pids);
    login_watch.abort();

    // Checks: the state and the lease in DynamoDB, the logins and QRs on WhatsApp's side.
    let mut wrong_state = 0;
    let mut wrong_holder = 0;
    for id in &victim_ids {
        let state = bench.ports.registry.instance(id).await?.map(|i| i.connection.state);
        if state != Some(InstanceState::Connected) {
            wrong_state += 1;
        }
        if !bench.holder(id).await?.is_some_and(|h| survivors.contains(&h)) {
            wrong_holder += 1;
        }
    }
    let logins_not_two = phones.iter().filter(|p| bench.fake.logins(p) != 2).count();
    let overlapping = bench.fake.total_overlapping_logins() - overlapping_before;
    let replaced = bench.fake.total_replaced_conflicts() - replaced_before;
    let (first_takeover, qrs) = {
        let seen = events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let after: Vec<&Seen> =
            seen.iter().filter(|e| e.at > kill_wall && victim_ids.contains(&e.instance)).collect();
        let first = after.iter().filter(|e| e.state == "connecting").map(|e| e.at).min();
        (first, after.iter().filter(|e| e.state == "qr_ready").count())
    };
    collector.abort();

    let mut recovery: Vec<f64> = connected_at.values().map(|&at| since(kill_wall, at)).collect();
    recovery.sort_by(f64::total_cmp);
    println!("takeover, from the survivors' logs (seconds after the kill):");
    let mut timeline = Vec::new();
    for host in hosts.iter().filter(|h| h.id != victim) {
        timeline.extend(takeover_lines(&host.log, &host.id, kill_wall));
    }
    timeline.sort();
    for (at, line) in &timeline {
        println!("  +{:5.1} s  {line}", since(kill_wall, *at));
    }
    if let Some(at) = first_takeover {
        println!("  first `connecting` of a moved session: +{:.1} s", since(kill_wall, at));
    }
    // Sessions the survivors hold now.
    let mut now_by_host: BTreeMap<String, usize> = BTreeMap::new();
    for &n in &victims {
        let holder = bench.holder(&linked[n].id).await?.unwrap_or_else(|| "nobody".into());
        *now_by_host.entry(holder).or_default() += 1;
    }
    let spread: Vec<String> = now_by_host.iter().map(|(h, s)| format!("{h}: {s}")).collect();
    println!("moved sessions per host now: {}", spread.join(", "));
    let mut logins: Vec<f64> = logged_in_again
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .flatten()
        .map(|at| at.duration_since(kill_at).as_secs_f64())
        .collect();
    logins.sort_by(f64::total_cmp);
    if !logins.is_empty() {
        println!(
            "logged in again at WhatsApp (fake server), {} sessions: p50 {} p99 {} max {}",
            logins.len(),
            secs(percentile(&logins, 0.5)),
            secs(percentile(&logins, 0.99)),
            secs(percentile(&logins, 1.0))
        );
    }
    println!(
        "CPU from the kill until the last one connected (cores): {}",
        cpu_report(&cpu_before, &cpu_after)
    );
    println!(
        "checks: {recovered} of {} connected again; state not connected {wrong_state}, lease not a survivor's {wrong_holder}, \
         login count not 2 {logins_not_two}, QRs shown {qrs}, overlapping logins {overlapping}, replaced conflicts {replaced}; \
         commands not applied {routing_failures}",
        victim_ids.len()
    );

    let survivors_count = options.hosts - 1;
    let timing = format!(
        "{} s / {} s / {}/s",
        options.heartbeat_secs, options.lease_secs, options.connects_per_second
    );
    let na = "-".to_owned();
    let conflicts = format!("{qrs} / {overlapping} / {replaced}");
    println!(
        "failover-row: | {} of {} | {} → {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        victims.len(),
        options.sessions,
        options.hosts,
        survivors_count,
        timing,
        first_takeover.map_or(na.clone(), |at| secs(since(kill_wall, at))),
        secs(percentile(&recovery, 0.5)),
        secs(percentile(&recovery, 0.99)),
        secs(percentile(&recovery, 1.0)),
        all_seen_at.map_or(format!("not all in {} s", options.deadline.as_secs()), |d| secs(d.as_secs_f64())),
        if recovered == victim_ids.len() { "yes".to_owned() } else { format!("{recovered} only") },
        conflicts,
    );
    println!(
        "routing-row: | {} | {} | {} | {} | {} | {} |",
        options.sessions,
        options.hosts,
        routing_ms.len(),
        millis(percentile(&routing_ms, 0.5)),
        millis(percentile(&routing_ms, 0.99)),
        millis(percentile(&routing_ms, 1.0)),
    );
    drop(hosts);

    let failed = recovered != victim_ids.len()
        || wrong_state + wrong_holder + logins_not_two + qrs + overlapping + replaced + routing_failures > 0;
    if failed {
        return Err("a check failed (see `checks:` above)".into());
    }
    Ok(())
}
