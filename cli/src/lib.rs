//! `ryze`: the all-in-one binary.
//!
//! - `ryze serve`: the whole system in one process: the API and a session host, on the embedded
//!   adapters (SQLite, in-process queues, a directory of blobs) under one data directory, or with
//!   `--backend aws` on DynamoDB, SQS and S3, where any number of them share one deployment.
//! - `ryze account create|update`: the operator's account commands, against either backend.
//! - `ryze aws provision`: creates a deployment's table, queues and bucket (an emulator, a sandbox).
//! - `ryze openapi`: prints the OpenAPI document.
//!
//! This crate is wiring only: configuration in, adapters and services built once, then served. It
//! is a library so that the tests can build the same binary against the fake WhatsApp server
//! (`tests/examples/localserve.rs`); `main.rs` only parses the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ryze_core::adapters::aws::{AwsArgs, MasterKeyArgs};
use ryze_core::adapters::{aws, embedded};
use ryze_core::clock::{Clock, SystemClock};
use ryze_core::domain::{AccountId, AccountLimits, LeaseTiming};
use ryze_core::outbound::{OutboundClient, TargetPolicy};
use ryze_core::ports::Ports;
use ryze_core::secrets::{Keyring, MasterKey};
use ryze_core::service::dispatch::{Dispatcher, DispatcherConfig};
use ryze_core::service::{ConnectPolicy, NewAccount, Services};
use ryze_core::telemetry::{self, LogFormat};
use ryze_functions::config::{ConnectArgs, EventArgs, TargetArgs};
use ryze_session_host::SessionHost;
use ryze_session_host::runtime::{HostArgs, shutdown_signal};
use ryze_session_host::whatsapp::WhatsAppFactory;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "ryze", version, about = "WhatsApp instance API: server and operator commands")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: text or json.
    #[arg(long, global = true, env = "RYZE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API and a session host: on the embedded store, or on AWS with `--backend aws`.
    Serve(Box<ServeArgs>),
    /// Manage accounts (the SaaS customers) and their TokenAccount.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// AWS resources for `--backend aws`.
    Aws {
        #[command(subcommand)]
        command: AwsCommand,
    },
    /// Webhook deliveries.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

#[derive(Subcommand, Debug)]
enum EventsCommand {
    /// Move dead deliveries (their schedule ran out) back from the dead-letter queue, each to start
    /// its schedule over; prints how many. Works while the server runs.
    Redrive {
        /// Only this instance's (its id, or its name); the others stay in the dead-letter queue.
        #[arg(long)]
        instance: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand, Debug)]
enum AwsCommand {
    /// Create (or find) the table, queues and bucket at the configured AWS endpoint, and print the
    /// `RYZE_*` variables that point at them, for `eval "$(ryze aws provision)"`, with a new
    /// `RYZE_MASTER_KEY` unless one is configured (that one is kept: what it sealed stays readable).
    /// For an emulator or a sandbox: production deploys template.yaml.
    Provision {
        /// Names every resource: lower-case letters, digits and dashes.
        #[arg(long, default_value = "ryze")]
        prefix: String,
        // Configured, the key is kept and not printed: what it sealed stays readable.
        #[command(flatten)]
        master_key: MasterKeyArgs,
    },
}

/// Where the state lives.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// SQLite, in-process queues and a directory, under `--data-dir`.
    Embedded,
    /// DynamoDB, SQS and S3 named by the AWS resource flags (the `RYZE_*` variables that
    /// `ryze aws provision` prints), sealed with `--master-key`; the AWS SDK's own variables apply.
    Aws,
}

#[derive(Args, Debug)]
struct DataArgs {
    #[arg(long, env = "RYZE_BACKEND", value_enum, default_value = "embedded")]
    backend: Backend,
    /// Where the embedded store lives, created on first use; on AWS, the sessions' working files.
    #[arg(long, env = "RYZE_DATA_DIR", default_value = "ryze-data")]
    data_dir: PathBuf,
    /// `--backend aws`: the deployment's resources.
    #[command(flatten)]
    aws: AwsArgs,
    /// `--backend aws`: its sealing key (the embedded store keeps its own in the data directory).
    #[command(flatten)]
    master_key: MasterKeyArgs,
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[arg(long, env = "RYZE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    targets: TargetArgs,
    #[command(flatten)]
    events: EventArgs,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    host: HostArgs,
}

/// The HTTP server's limits (functions/src/server.rs).
#[derive(Args, Debug)]
struct ServerArgs {
    /// Seconds a client has to send a request's head, and may pause while sending a body.
    #[arg(long, env = "RYZE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a kept-alive connection may stay idle between requests.
    #[arg(long, env = "RYZE_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    idle_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, env = "RYZE_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
}

impl ServerArgs {
    fn limits(&self) -> ryze_functions::server::ServerLimits {
        ryze_functions::server::ServerLimits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
            ..Default::default()
        }
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

/// Runs one command line of `ryze`.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Account { command } => account(command).await,
        Command::Events { command: EventsCommand::Redrive { instance, data } } => {
            let (ports, _keys, _poll) = open_store(&data, LeaseTiming::default()).await?;
            let count = ryze_core::service::redrive(&ports, instance.as_deref(), SystemClock.now()).await?;
            println!("{}", serde_json::json!({ "redriven": count }));
            Ok(())
        }
        Command::Openapi => {
            println!("{}", ryze_functions::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Aws { command: AwsCommand::Provision { prefix, master_key } } => {
            let resources = aws::provision::provision(&aws::sdk_config().await, &prefix).await?;
            print!("{}", resources.to_env_lines());
            // A shell that already has a key keeps it: what it sealed stays readable.
            if !master_key.is_set() {
                println!("{}={}", MasterKey::VARIABLE, MasterKey::generate().to_base64());
            }
            Ok(())
        }
    }
}

/// The backend's ports, the deployment's keys, and how often a connect call polls on the backend.
/// `timing` is the lease timing of the session host this process runs, which sets how long the
/// commands it receives stay hidden; a process that runs none passes the default.
async fn open_store(data: &DataArgs, timing: LeaseTiming) -> anyhow::Result<(Ports, Arc<Keyring>, Duration)> {
    let data_dir = &data.data_dir;
    let (ports, key, poll_interval) = match data.backend {
        Backend::Embedded => (
            embedded::open(data_dir)
                .with_context(|| format!("opening the store in {}", data_dir.display()))?,
            embedded::master_key(data_dir).context("reading the sealing key")?,
            embedded::CONNECT_POLL_INTERVAL,
        ),
        Backend::Aws => {
            let resources = data.aws.resources()?;
            let key = data.master_key.key()?;
            (aws::host_ports(&aws::sdk_config().await, &resources, timing), key, aws::CONNECT_POLL_INTERVAL)
        }
    };
    Ok((ports, Arc::new(Keyring::new(&key)), poll_interval))
}

async fn services(data: &DataArgs, connect: ConnectPolicy) -> anyhow::Result<Services> {
    let (ports, keys, _poll) = open_store(data, LeaseTiming::default()).await?;
    // The account commands call no customer URL: the default policy is as good as any.
    let outbound = OutboundClient::new(TargetPolicy::default());
    Ok(Services::new(ports, keys, Arc::new(SystemClock), connect, outbound))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    embedded::create_private_dir(&args.data.data_dir)?;
    // The embedded store's instance cache assumes one serving process per data directory. On AWS
    // processes share the deployment, and each keeps its sessions' working files apart, for its
    // own lifetime (their stores live in S3).
    let (_lock, work_dir) = match args.data.backend {
        Backend::Embedded => {
            let lock = std::fs::File::create(args.data.data_dir.join("serve.lock"))?;
            lock.try_lock().map_err(|_| {
                anyhow::anyhow!("{} is in use by another `ryze serve`", args.data.data_dir.display())
            })?;
            (Some(lock), args.data.data_dir.join("sessions"))
        }
        Backend::Aws => (None, args.data.data_dir.join(format!("sessions-{}", std::process::id()))),
    };

    let mut host_config = args.host.config(&work_dir)?;
    if args.data.backend == Backend::Embedded {
        // One machine is the whole fleet: its host keeps one name, and a stop keeps the sessions'
        // leases for the next start to resume (the in-memory command queue would lose a handover).
        if args.host.host_id.is_none() {
            host_config.host_id = ryze_core::domain::HostId::new("local").expect("a valid host id");
        }
        host_config.hand_over_on_stop = false;
    }
    let (ports, keys, poll_interval) = open_store(&args.data, host_config.lease).await?;
    let connect = args.connect.policy(poll_interval);
    let outbound = OutboundClient::new(args.targets.policy());
    let services =
        Services::new(ports.clone(), keys.clone(), Arc::new(SystemClock), connect, outbound.clone());
    // WebSocket sockets of this process: the dispatcher publishes, `GET /ws` subscribes.
    let live = Arc::new(ryze_functions::live::LiveHub::default());
    let dispatcher = Arc::new(Dispatcher::new(
        &ports,
        keys.clone(),
        Arc::new(SystemClock),
        Arc::new(outbound),
        Some(live.clone()),
        DispatcherConfig {
            schedule: args.events.webhook_retry_schedule.clone(),
            public_url: args.events.public_url.clone().unwrap_or_else(|| format!("http://{}", args.listen)),
        },
    ));
    let (events, deliveries) = (ports.events.clone(), ports.deliveries.clone());
    let app = ryze_functions::router(ryze_functions::AppState::new(services).with_live(live));
    let factory = WhatsAppFactory::new(&host_config)?;
    let host = SessionHost::new(ports, keys, host_config, factory);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, backend = ?args.data.backend, data_dir = %args.data.data_dir.display(), "serving");
    // One stop for both: a signal ends the API's intake and the sessions (each saves its store).
    let stop = CancellationToken::new();
    // The host ends on a signal, or by itself when superseded: then the whole server stops.
    let host = host.run_in_task(stop.clone());
    let dispatching = tokio::spawn(dispatcher.run(events, deliveries, stop.clone().cancelled_owned()));
    let api =
        ryze_functions::server::serve(listener, app, stop.clone().cancelled_owned(), args.server.limits());
    let signals = async {
        tokio::select! {
            () = shutdown_signal() => {}
            () = stop.cancelled() => {}
        }
        stop.cancel();
    };
    tokio::join!(api, signals);
    host.await??;
    dispatching.await?;
    if args.data.backend == Backend::Aws {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    tracing::info!("stopped");
    Ok(())
}

async fn account(command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::Create { name, limits, data } => {
            let services = services(&data, ConnectPolicy::default()).await?;
            let new = NewAccount { name, limits: limits.apply(AccountLimits::default()) };
            let (account, token) = services.accounts.create(new).await?;
            println!("{}", serde_json::json!({ "accountId": account.id, "token": token }));
        }
        AccountCommand::Update { id, limits, data } => {
            let services = services(&data, ConnectPolicy::default()).await?;
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
