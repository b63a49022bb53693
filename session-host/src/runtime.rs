//! What a process that runs a session host needs around it, shared by `ryze serve` and the
//! `ryze-session-host` binary: the host's flags (each also a `RYZE_*` variable) and the shutdown
//! signal.

use std::time::Duration;

use ryze_core::domain::{HostId, LeaseTiming};

use crate::HostError;
use crate::config::{HostConfig, WHATSAPP_URL, WhatsAppUrl, read_pem_certificates};

/// The host's settings as command-line flags and `RYZE_*` variables, shared by `ryze serve` and
/// the `ryze-session-host` binary.
#[derive(clap::Args, Debug)]
pub struct HostArgs {
    /// WhatsApp's WebSocket address; `ws://` only to loopback (the tests' fake server).
    #[arg(long, env = "RYZE_WHATSAPP_URL", default_value = WHATSAPP_URL)]
    pub whatsapp_url: String,
    /// The WhatsApp Web version announced, `2.3000.N`.
    #[arg(long, env = "RYZE_WHATSAPP_WEB_VERSION", value_parser = parse_web_version)]
    pub whatsapp_web_version: Option<(u32, u32, u32)>,
    /// How long a QR login waits for a scan, in seconds.
    #[arg(long, env = "RYZE_QR_BUDGET_SECS", default_value_t = 60)]
    pub qr_budget_secs: u64,
    /// Seconds a logged-in WhatsApp socket may bring nothing in before it is dropped and dialled
    /// again (noticed within a third more); 0 turns the watchdog off.
    #[arg(long, env = "RYZE_DEAD_SOCKET_SECS", default_value_t = 30)]
    pub dead_socket_secs: u64,
    /// Sessions this process holds at most.
    #[arg(long, env = "RYZE_MAX_SESSIONS", default_value_t = 10_000)]
    pub max_sessions: usize,
    /// PEM file of extra trust roots for HTTPS proxies (a private CA).
    #[arg(long, env = "RYZE_PROXY_CA_FILE")]
    pub proxy_ca_file: Option<std::path::PathBuf>,
    /// This host's name in the fleet (1 to 64 of A-Z a-z 0-9 - _ .); a new one per start when
    /// unset. A stable name lets a restart resume what the last start held.
    #[arg(long, env = "RYZE_HOST_ID", value_parser = parse_host_id)]
    pub host_id: Option<HostId>,
    /// Seconds between heartbeats.
    #[arg(long, env = "RYZE_HEARTBEAT_SECS", default_value_t = 5)]
    pub heartbeat_secs: u64,
    /// Seconds a host's heartbeat may stand still before others take its sessions over.
    #[arg(long, env = "RYZE_LEASE_SECS", default_value_t = 15)]
    pub lease_secs: u64,
    /// Client starts per second, host-wide (resumes and takeovers included); 0 for no pace.
    #[arg(long, env = "RYZE_CONNECTS_PER_SECOND", default_value_t = 25)]
    pub connects_per_second: u32,
    /// The sessions per task the service's autoscaling aims at (the template's
    /// SessionsPerTaskTarget): hosts beyond what the fleet's sessions need lift their ECS
    /// scale-in protection after five minutes, so that a scale-in can stop them; 0 keeps every
    /// host with sessions protected.
    #[arg(long, env = "RYZE_SESSIONS_PER_TASK_TARGET", default_value_t = 0)]
    pub sessions_per_task_target: usize,
}

fn parse_host_id(text: &str) -> Result<HostId, String> {
    HostId::new(text).ok_or_else(|| "1 to 64 of A-Z a-z 0-9 - _ .".to_owned())
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
    /// The configuration, with sessions' working files under `work_dir`.
    pub fn config(&self, work_dir: &std::path::Path) -> Result<HostConfig, HostError> {
        let url = WhatsAppUrl::parse(&self.whatsapp_url)
            .map_err(|e| HostError::Config(format!("RYZE_WHATSAPP_URL: {e}")))?;
        let mut config = HostConfig::new(url, work_dir.to_owned());
        config.web_version = self.whatsapp_web_version.unwrap_or(config.web_version);
        config.qr_budget = Duration::from_secs(self.qr_budget_secs);
        config.dead_socket_after = Duration::from_secs(self.dead_socket_secs);
        config.max_sessions = self.max_sessions;
        if let Some(id) = &self.host_id {
            config.host_id = id.clone();
        }
        if self.heartbeat_secs == 0 || self.lease_secs < 2 * self.heartbeat_secs {
            return Err(HostError::Config(
                "RYZE_LEASE_SECS must be at least twice RYZE_HEARTBEAT_SECS".into(),
            ));
        }
        config.lease = LeaseTiming {
            beat: Duration::from_secs(self.heartbeat_secs),
            lease: Duration::from_secs(self.lease_secs),
        };
        config.connects_per_second = self.connects_per_second;
        config.sessions_per_task_target = Some(self.sessions_per_task_target).filter(|t| *t > 0);
        if let Some(path) = &self.proxy_ca_file {
            config.proxy_roots = read_pem_certificates(path)?;
        }
        Ok(config)
    }
}

/// Resolves on SIGTERM (how ECS and systemd stop a process) or Ctrl-C.
pub async fn shutdown_signal() {
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
