//! The session benchmark (`scripts/bench-sessions`): one session host holding N connected sessions
//! against a fake WhatsApp server in another process, reporting the host's resident memory per
//! session and the connect-to-QR latency a caller of the API sees.
//!
//!   ryze-sessionbench --whatsapp ws://127.0.0.1:P/ws/chat --control 127.0.0.1:Q --sessions 1000
//!
//! On the embedded adapters, or, with `RYZE_TEST_AWS_ENDPOINT` set, on the AWS adapters against the
//! moto server there (connect commands through SQS, answers through DynamoDB).
//!
//! An example rather than a binary: its session host must skip WhatsApp's certificate check to talk
//! to the fake server, and only this crate's examples and tests get that feature (tests/Cargo.toml).
//! `cargo build --release -p ryze-tests --example ryze-sessionbench` puts it in
//! `target/release/examples/`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ryze_core::adapters::embedded;
use ryze_core::clock::SystemClock;
use ryze_core::domain::{AccountLimits, ConnectOutcome, InstanceName, InstanceState};
use ryze_core::outbound::{OutboundClient, TargetPolicy};
use ryze_core::secrets::{Keyring, MasterKey};
use ryze_core::service::{Caller, ConnectOptions, ConnectPolicy, CreateInstance, NewAccount, Services};
use ryze_session_host::whatsapp::WhatsAppFactory;
use ryze_session_host::{HostConfig, SessionHost, WhatsAppUrl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    whatsapp: String,
    control: SocketAddr,
    sessions: usize,
    concurrency: usize,
}

fn options() -> Result<Options, BoxError> {
    let mut args = std::env::args().skip(1);
    let (mut whatsapp, mut control, mut sessions, mut concurrency) = (None, None, 1000, 16);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--whatsapp" => whatsapp = Some(value),
            "--control" => control = Some(value.parse()?),
            "--sessions" => sessions = value.parse()?,
            "--concurrency" => concurrency = value.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(Options {
        whatsapp: whatsapp.ok_or("--whatsapp is required")?,
        control: control.ok_or("--control is required")?,
        sessions,
        concurrency,
    })
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Plays the phone through the fake server's control endpoint.
async fn scan(control: SocketAddr, qr: &str, phone: &str) -> Result<(), BoxError> {
    let body = serde_json::json!({ "qr": qr, "phone": phone }).to_string();
    let mut stream = tokio::net::TcpStream::connect(control).await?;
    let request = format!(
        "POST /scan HTTP/1.1\r\nhost: control\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    if response.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("scan refused: {response}").into())
    }
}

struct Bench {
    services: Services,
    caller: Caller,
    control: SocketAddr,
}

impl Bench {
    /// Connects instance `n` by QR, plays the phone, and waits until it is connected; returns the
    /// connect-to-QR latency.
    async fn link(&self, n: usize) -> Result<Duration, BoxError> {
        let name = format!("bench-{n:05}");
        let started = Instant::now();
        let outcome = self.services.instances.connect(&self.caller, &name, ConnectOptions::default()).await?;
        let latency = started.elapsed();
        let ConnectOutcome::QrCode { code } = outcome else {
            return Err(format!("{name}: {outcome:?}").into());
        };
        scan(self.control, &code, &format!("55{:011}", n)).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let id = self.caller.account.id.clone();
        let name = InstanceName::parse(&name)?;
        loop {
            let ports_view = self.services.instances.list(&self.caller, Some(name.as_str())).await?;
            if ports_view.first().is_some_and(|i| i.connection.state == InstanceState::Connected) {
                return Ok(latency);
            }
            if Instant::now() > deadline {
                return Err(format!("{name} of {id} not connected within 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = options()?;
    let dir = tempfile::tempdir()?;
    let on_aws = std::env::var_os(ryze_tests::aws::ENDPOINT_VARIABLE).is_some();
    let (ports, poll_interval) = if on_aws {
        let (config, resources) = ryze_tests::aws::provision().await;
        (ryze_core::adapters::aws::ports(&config, &resources), Duration::from_millis(25))
    } else {
        (embedded::open(dir.path())?, Duration::from_millis(10))
    };
    println!("adapters: {}", if on_aws { "AWS (moto)" } else { "embedded" });
    let keys = Arc::new(Keyring::new(&MasterKey::generate()));
    let policy = ConnectPolicy { wait: Duration::from_secs(60), poll_interval };
    let outbound = OutboundClient::new(TargetPolicy::default());
    let services = Services::new(ports.clone(), keys.clone(), Arc::new(SystemClock), policy, outbound);
    let limits = AccountLimits {
        instance_quota: u32::MAX,
        requests_per_minute: u32::MAX,
        creates_per_minute: u32::MAX,
    };
    let (_, token) = services.accounts.create(NewAccount { name: "bench".into(), limits }).await?;
    let caller = services.auth.resolve(Some(&token)).await?;
    for n in 0..=options.sessions {
        let input = CreateInstance { name: Some(format!("bench-{n:05}")), ..CreateInstance::default() };
        services.instances.create(&caller, input).await?;
    }

    let mut config = HostConfig::new(WhatsAppUrl::parse(&options.whatsapp)?, dir.path().join("sessions"));
    config.max_sessions = options.sessions + 1;
    let factory = WhatsAppFactory::new(&config).expect("the host configuration is valid");
    let stop = CancellationToken::new();
    let host = tokio::spawn(SessionHost::new(ports, keys, config, factory).run(stop.clone()));
    let bench = Arc::new(Bench { services, caller, control: options.control });

    // One session first: code, caches and pools that every session shares are not per-session cost.
    bench.link(options.sessions).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_kib();

    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(options.concurrency));
    let mut tasks = Vec::with_capacity(options.sessions);
    for n in 0..options.sessions {
        let (bench, permit) = (bench.clone(), permits.clone().acquire_owned().await?);
        tasks.push(tokio::spawn(async move {
            let latency = bench.link(n).await;
            drop(permit);
            latency
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await??);
    }
    let linking = started.elapsed();
    // Let the sessions go idle (stores saved, app-state settled) before measuring.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let loaded = rss_kib();

    latencies.sort_unstable();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let per_session_kib = loaded.saturating_sub(baseline) as f64 / options.sessions as f64;
    println!(
        "| idle connected sessions | host RSS | RSS per session | connect-to-QR p50 | connect-to-QR p99 | linking time |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.1} MiB | {:.0} KiB | {:.0} ms | {:.0} ms | {:.1} s |",
        options.sessions,
        loaded as f64 / 1024.0,
        per_session_kib,
        percentile(0.50).as_secs_f64() * 1000.0,
        percentile(0.99).as_secs_f64() * 1000.0,
        linking.as_secs_f64(),
    );
    println!(
        "(baseline with one session: {:.1} MiB; {} connects at a time)",
        baseline as f64 / 1024.0,
        options.concurrency
    );
    stop.cancel();
    host.await??;
    Ok(())
}
