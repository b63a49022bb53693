//! `ryze`: the all-in-one binary.
//!
//! - `ryze serve`: the whole system in one process on the embedded adapters (SQLite, in-process
//!   queues, a directory of blobs) under one data directory.
//! - `ryze account create|update`: the operator's account commands, against the same store.
//! - `ryze openapi`: prints the OpenAPI document.
//!
//! This file is wiring only: configuration in, adapters and services built once, then served.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ryze_core::adapters::embedded;
use ryze_core::clock::SystemClock;
use ryze_core::domain::{AccountId, AccountLimits};
use ryze_core::ports::Ports;
use ryze_core::secrets::Keyring;
use ryze_core::service::{ConnectPolicy, NewAccount, Services};
use ryze_core::telemetry::{self, LogFormat};
use ryze_session_host::whatsapp::WhatsAppFactory;
use ryze_session_host::{self as session_host, HostConfig, SessionHost, WhatsAppUrl};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "ryze", version, about = "WhatsApp instance API: server and operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: text or json.
    #[arg(long, global = true, env = "RYZE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API on the embedded store.
    Serve(ServeArgs),
    /// Manage accounts (the SaaS customers) and their TokenAccount.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Args, Debug)]
struct DataArgs {
    /// Where the embedded store lives; created on first use.
    #[arg(long, env = "RYZE_DATA_DIR", default_value = "ryze-data")]
    data_dir: PathBuf,
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[arg(long, env = "RYZE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataArgs,
    /// How long a connect call waits for the session host's code, in seconds.
    #[arg(long, env = "RYZE_CONNECT_WAIT_SECS", default_value_t = 60)]
    connect_wait_secs: u64,
    #[command(flatten)]
    host: HostArgs,
}

/// The in-process session host.
#[derive(Args, Debug)]
struct HostArgs {
    /// WhatsApp's WebSocket address; `ws://` only to loopback (the tests' fake server).
    #[arg(long, env = "RYZE_WHATSAPP_URL", default_value = session_host::config::WHATSAPP_URL)]
    whatsapp_url: String,
    /// The WhatsApp Web version announced, `2.3000.N`.
    #[arg(long, env = "RYZE_WHATSAPP_WEB_VERSION", value_parser = parse_web_version)]
    whatsapp_web_version: Option<(u32, u32, u32)>,
    /// How long a QR login waits for a scan, in seconds.
    #[arg(long, env = "RYZE_QR_BUDGET_SECS", default_value_t = 60)]
    qr_budget_secs: u64,
    /// Sessions this process holds at most.
    #[arg(long, env = "RYZE_MAX_SESSIONS", default_value_t = 10_000)]
    max_sessions: usize,
    /// PEM file of extra trust roots for HTTPS proxies (a private CA).
    #[arg(long, env = "RYZE_PROXY_CA_FILE")]
    proxy_ca_file: Option<std::path::PathBuf>,
}

fn parse_web_version(text: &str) -> Result<(u32, u32, u32), String> {
    let parts: Vec<u32> =
        text.split('.').map(str::parse).collect::<Result<_, _>>().map_err(|e| format!("{e}"))?;
    match parts.as_slice() {
        [a, b, c] => Ok((*a, *b, *c)),
        _ => Err("expected three numbers, like 2.3000.1026131876".into()),
    }
}

impl HostArgs {
    fn config(&self, data_dir: &Path) -> anyhow::Result<HostConfig> {
        let url =
            WhatsAppUrl::parse(&self.whatsapp_url).map_err(|e| anyhow::anyhow!("RYZE_WHATSAPP_URL: {e}"))?;
        let mut config = HostConfig::new(url, data_dir.join("sessions"));
        config.web_version = self.whatsapp_web_version.unwrap_or(config.web_version);
        config.qr_budget = Duration::from_secs(self.qr_budget_secs);
        config.max_sessions = self.max_sessions;
        if let Some(path) = &self.proxy_ca_file {
            config.proxy_roots = session_host::config::read_pem_certificates(path)?;
        }
        Ok(config)
    }
}

#[derive(Args, Debug)]
struct LimitArgs {
    /// How many instances the account may hold [default on create: 100].
    #[arg(long)]
    quota: Option<u32>,
    /// Requests per minute per token [default on create: 100].
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Instance creations per minute per token [default on create: 20].
    #[arg(long)]
    create_rate_limit: Option<u32>,
}

impl LimitArgs {
    fn apply(&self, mut limits: AccountLimits) -> AccountLimits {
        limits.instance_quota = self.quota.unwrap_or(limits.instance_quota);
        limits.requests_per_minute = self.rate_limit.unwrap_or(limits.requests_per_minute);
        limits.creates_per_minute = self.create_rate_limit.unwrap_or(limits.creates_per_minute);
        limits
    }
}

#[derive(Subcommand, Debug)]
enum AccountCommand {
    /// Create an account; prints `{"accountId": "...", "token": "..."}` with its TokenAccount, once.
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Change an account's quota or rate limits; prints the account.
    Update {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Account { command } => account(command).await,
        Command::Openapi => {
            println!("{}", ryze_functions::openapi().to_pretty_json()?);
            Ok(())
        }
    }
}

/// The embedded store's ports and the deployment's keys.
fn open_store(data_dir: &Path) -> anyhow::Result<(Ports, Arc<Keyring>)> {
    let ports =
        embedded::open(data_dir).with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let keys = Keyring::new(&embedded::master_key(data_dir).context("reading the sealing key")?);
    Ok((ports, Arc::new(keys)))
}

fn services(data_dir: &Path, connect: ConnectPolicy) -> anyhow::Result<Services> {
    let (ports, keys) = open_store(data_dir)?;
    Ok(Services::new(ports, keys, Arc::new(SystemClock), connect))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data.data_dir)?;
    // The store's instance cache assumes one serving process per data directory.
    let lock = std::fs::File::create(args.data.data_dir.join("serve.lock"))?;
    lock.try_lock()
        .map_err(|_| anyhow::anyhow!("{} is in use by another `ryze serve`", args.data.data_dir.display()))?;

    let host_config = args.host.config(&args.data.data_dir)?;
    let (ports, keys) = open_store(&args.data.data_dir)?;
    // A poll of the embedded store is a SQLite point read: polling often costs nothing and takes the
    // code to the caller sooner.
    let connect = ConnectPolicy {
        wait: Duration::from_secs(args.connect_wait_secs),
        poll_interval: Duration::from_millis(10),
    };
    let services = Services::new(ports.clone(), keys.clone(), Arc::new(SystemClock), connect);
    let app = ryze_functions::router(ryze_functions::AppState::new(services));
    let factory = WhatsAppFactory::new(&host_config)?;
    let host = SessionHost::new(ports, keys, host_config, factory);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, data_dir = %args.data.data_dir.display(), "serving");
    // One stop for both: a signal ends the API's intake and the sessions (each saves its store).
    let stop = CancellationToken::new();
    let host = tokio::spawn(host.run(stop.clone()));
    let api = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
    let signals = async {
        shutdown_signal().await;
        stop.cancel();
    };
    let (served, ()) = tokio::join!(api.into_future(), signals);
    served?;
    host.await??;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        () = terminate => {},
    }
}

async fn account(command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::Create { name, limits, data } => {
            let services = services(&data.data_dir, ConnectPolicy::default())?;
            let new = NewAccount { name, limits: limits.apply(AccountLimits::default()) };
            let (account, token) = services.accounts.create(new).await?;
            println!("{}", serde_json::json!({ "accountId": account.id, "token": token }));
        }
        AccountCommand::Update { id, limits, data } => {
            let services = services(&data.data_dir, ConnectPolicy::default())?;
            let id = AccountId::from_stored(id);
            let current = services.accounts.get(&id).await?.context("no such account")?;
            let account = services.accounts.update_limits(&id, limits.apply(current.limits)).await?;
            println!(
                "{}",
                serde_json::json!({ "accountId": account.id, "name": account.name, "limits": account.limits })
            );
        }
    }
    Ok(())
}
