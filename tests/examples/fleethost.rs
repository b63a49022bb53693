//! A session host as its own process, on the AWS adapters, against the fake WhatsApp server: what
//! the fleet tests start two or three of and kill with `kill -9`, `SIGSTOP` or `SIGTERM`.
//!
//!   RYZE_TABLE=… (the `ryze aws provision` variables) RYZE_MASTER_KEY=… AWS_ENDPOINT_URL=… \
//!   RYZE_WHATSAPP_URL=ws://127.0.0.1:P/ws/chat RYZE_HOST_ID=a ryze-fleethost
//!
//! The same wiring as `ryze-session-host` (its flags are `HostArgs`), without the health endpoint.
//! An example rather than a binary: its clients must skip WhatsApp's certificate check to talk to
//! the fake server, and only this crate's examples and tests get that feature (tests/Cargo.toml).

use std::sync::Arc;

use clap::Parser;
use ryze_core::adapters::aws;
use ryze_core::secrets::{Keyring, MasterKey};
use ryze_session_host::SessionHost;
use ryze_session_host::runtime::{HostArgs, shutdown_signal};
use ryze_session_host::whatsapp::WhatsAppFactory;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    host: HostArgs,
    #[arg(long, env = "RYZE_WORK_DIR")]
    work_dir: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ryze_core::telemetry::init(ryze_core::telemetry::LogFormat::Json);
    let cli = Cli::parse();
    let resources = aws::AwsResources::from_env()?;
    let keys = Arc::new(Keyring::new(&MasterKey::from_env()?));
    std::fs::create_dir_all(&cli.work_dir)?;
    let mut config = cli.host.config(&cli.work_dir)?;
    let ports = aws::host_ports(&aws::sdk_config().await, &resources, config.lease);
    config.persist_debounce = std::time::Duration::from_millis(200);
    let factory = WhatsAppFactory::new(&config)?;
    let host = SessionHost::new(ports, keys, config, factory);
    let stop = CancellationToken::new();
    let running = host.run_in_task(stop.clone());
    tokio::select! {
        () = shutdown_signal() => {}
        () = stop.cancelled() => {}
    }
    stop.cancel();
    let stopped = running.await?;
    stopped?;
    Ok(())
}
