//! `ryze-session-host`: a session host as its own process, as ECS runs it.
//!
//! - `ryze-session-host` (or `serve`): takes commands from the SQS command queue and holds the
//!   WhatsApp sessions, on the AWS adapters configured by flags or their `RYZE_*` variables (the
//!   resource names of `ryze aws provision`: the table, the five queue URLs and the bucket;
//!   `RYZE_MASTER_KEY`), and the AWS SDK's own variables; `--help` lists them all. Serves
//!   `GET /health` on `RYZE_HEALTH_LISTEN`; on SIGTERM stops taking commands, lets every session
//!   save its store and hand itself to the fleet, and exits. While it holds sessions it keeps ECS
//!   task scale-in protection on (`protection`).
//! - `ryze-session-host health`: asks the running host's health endpoint and exits 0 when it is
//!   serving: the container health check, in an image that has no curl.
//!
//! With `RYZE_METRICS_SERVICE` set it prints, once a minute, the sessions it holds as a CloudWatch
//! embedded-metric line on stdout, which the autoscaling policy reads per task.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::http::StatusCode;
use axum::routing::get;
use clap::{Parser, Subcommand};
use ryze_core::adapters::aws::{self, AwsArgs, MasterKeyArgs};
use ryze_core::secrets::Keyring;
use ryze_core::telemetry::{self, LogFormat};
use ryze_session_host::SessionHost;
use ryze_session_host::metrics::{SessionStates, SessionsGauge, sessions_metric};
use ryze_session_host::protection::{self, ProtectionConfig, TaskProtection};
use ryze_session_host::runtime::{HostArgs, shutdown_signal};
use ryze_session_host::whatsapp::WhatsAppFactory;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "ryze-session-host", version, about = "Holds WhatsApp sessions for the Ryze API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    host: HostArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    master_key: MasterKeyArgs,
    /// Where sessions keep their working files (their stores live in S3).
    #[arg(long, env = "RYZE_WORK_DIR", default_value = "/tmp/ryze-sessions")]
    work_dir: PathBuf,
    /// The health endpoint's address.
    #[arg(long, env = "RYZE_HEALTH_LISTEN", default_value = "0.0.0.0:8081")]
    health_listen: SocketAddr,
    /// The ECS service name the sessions metric is published under; no metric without it.
    #[arg(long, env = "RYZE_METRICS_SERVICE")]
    metrics_service: Option<String>,
    #[arg(long, env = "RYZE_LOG_FORMAT", default_value = "json")]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hold sessions (the default).
    Serve,
    /// Exit 0 if the host on this machine answers its health check.
    Health,
}

/// How often the sessions metric is printed.
const METRIC_INTERVAL: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Health) => health_check(cli.health_listen.port()).await,
        Some(Command::Serve) | None => {
            telemetry::init(cli.log_format);
            serve(cli).await
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let resources = cli.aws.resources()?;
    let keys = Arc::new(Keyring::new(&cli.master_key.key()?));
    std::fs::create_dir_all(&cli.work_dir).with_context(|| format!("creating {}", cli.work_dir.display()))?;
    let config = cli.host.config(&cli.work_dir)?;
    let ports = aws::host_ports(&aws::sdk_config().await, &resources, config.lease);
    let max_sessions = config.max_sessions;
    let factory = WhatsAppFactory::new(&config)?;
    let host = SessionHost::new(ports, keys, config, factory);
    let gauge = host.gauge();

    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(cli.health_listen)
        .await
        .with_context(|| format!("binding {}", cli.health_listen))?;
    tracing::info!(health = %listener.local_addr()?, max_sessions, "session host serving");
    let health = health_router(gauge.clone(), stop.clone(), max_sessions);
    let health = tokio::spawn(
        axum::serve(listener, health).with_graceful_shutdown(stop.clone().cancelled_owned()).into_future(),
    );
    if let Some(service) = cli.metrics_service {
        tokio::spawn(publish_sessions_metric(service, gauge.clone(), host.states(), stop.clone()));
    }
    // Scale-in and deployments leave a task alone while it holds sessions (unless the fleet has
    // more hosts than its sessions need); off once drained.
    let protection = tokio::spawn(protection::keep(
        TaskProtection::from_env()?,
        ProtectionConfig::default(),
        host.protected_sessions().subscribe(),
        stop.clone(),
    ));
    // The host ends on SIGTERM, or by itself when it was superseded; either way everything stops.
    let host = host.run_in_task(stop.clone());
    tokio::select! {
        () = shutdown_signal() => tracing::info!("stopping: sessions save their stores and go to other hosts"),
        () = stop.cancelled() => {}
    }
    stop.cancel();
    let stopped = host.await?;
    // The drain brought the count to 0: protection goes off (three tries at most, 5 s each).
    if tokio::time::timeout(Duration::from_secs(20), protection).await.is_err() {
        tracing::warn!("scale-in protection not turned off in time; it expires by itself");
    }
    health.await??;
    stopped?;
    tracing::info!("stopped");
    Ok(())
}

fn health_router(gauge: SessionsGauge, stop: CancellationToken, max_sessions: usize) -> axum::Router {
    axum::Router::new().route(
        "/health",
        get(move || async move {
            let draining = stop.is_cancelled();
            let status = if draining { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
            let body = serde_json::json!({
                "status": if draining { "draining" } else { "ok" },
                "sessions": gauge.get(),
                "maxSessions": max_sessions,
            });
            (status, Json(body))
        }),
    )
}

/// Prints the host's metrics once a minute as an embedded-metric line (`metrics`): CloudWatch Logs
/// turns it into `Ryze/SessionHost` metrics, `SessionsHeld` scaling the service.
async fn publish_sessions_metric(
    service: String,
    gauge: SessionsGauge,
    states: SessionStates,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(METRIC_INTERVAL);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                println!("{}", sessions_metric(&service, gauge.get(), &states.counts(), chrono::Utc::now()));
            }
            () = stop.cancelled() => return,
        }
    }
}

/// A plain HTTP/1.0 GET on loopback: the runtime image has no HTTP client to run.
async fn health_check(port: u16) -> anyhow::Result<()> {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        anyhow::Ok(head)
    };
    let head =
        tokio::time::timeout(Duration::from_secs(3), ask).await.context("health check timed out")??;
    let status = String::from_utf8_lossy(&head[9..12]).into_owned();
    anyhow::ensure!(status == "200", "unhealthy: HTTP {status}");
    Ok(())
}
