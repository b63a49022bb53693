//! The session host's configuration, and the rule that keeps the WhatsApp address honest.

use std::net::IpAddr;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use ryze_core::domain::{HostId, LeaseTiming};

use crate::HostError;

/// WhatsApp Web's socket.
pub const WHATSAPP_URL: &str = "wss://web.whatsapp.com/ws/chat";

/// The WhatsApp Web version announced to the server. Set explicitly: otherwise every client fetches
/// it from the web at start. Bump with the whatsapp-rust pin.
pub const WEB_VERSION: (u32, u32, u32) = (2, 3000, 1_026_131_876);

#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where the WhatsApp socket goes (`RYZE_WHATSAPP_URL`).
    pub whatsapp_url: WhatsAppUrl,
    pub web_version: (u32, u32, u32),
    /// How long a QR login may wait for a scan before the session gives up.
    pub qr_budget: Duration,
    /// How long a dropped session may keep retrying before it is `disconnected`.
    pub reconnect_budget: Duration,
    /// How long after a change the credential store is saved.
    pub persist_debounce: Duration,
    /// How long a logged-in socket may bring nothing in before the session calls it dead, reports
    /// `connecting` and makes the client dial again (`RYZE_DEAD_SOCKET_SECS`). Noticed within a
    /// third more (see `liveness`); zero turns the watchdog off.
    pub dead_socket_after: Duration,
    /// Sessions this host holds at most; connects beyond it are refused.
    pub max_sessions: usize,
    /// Where running clients keep their working copy of the credential store.
    pub work_dir: std::path::PathBuf,
    /// Trust roots for HTTPS proxies besides the web PKI's (a private CA), from
    /// `RYZE_PROXY_CA_FILE`.
    pub proxy_roots: Vec<CertificateDer<'static>>,
    /// This host's name in the fleet (`RYZE_HOST_ID`): stable across restarts where the
    /// deployment has one, so that a restart resumes what the last start held.
    pub host_id: HostId,
    /// The heartbeat interval and the lease period.
    pub lease: LeaseTiming,
    /// On stop, hand every session to the fleet (release its lease and queue its reconnect)
    /// rather than keep it for this host's next start: true where other hosts share the queue.
    pub hand_over_on_stop: bool,
    /// Client starts per second, host-wide (`RYZE_CONNECTS_PER_SECOND`); 0 for no pace.
    pub connects_per_second: u32,
    /// The sessions per task the service's scaling aims at (`RYZE_SESSIONS_PER_TASK_TARGET`):
    /// hosts beyond what the fleet's sessions need lift their scale-in protection
    /// (`fleet/consolidation.rs`). `None` outside an autoscaled service.
    pub sessions_per_task_target: Option<usize>,
    /// How long a host must stay surplus before it lifts its protection: longer than a burst's
    /// lull, shorter than ECS's own wait before a scale-in (15 minutes below the target).
    pub surplus_lasts: Duration,
}

impl HostConfig {
    pub fn new(whatsapp_url: WhatsAppUrl, work_dir: std::path::PathBuf) -> Self {
        Self {
            whatsapp_url,
            web_version: WEB_VERSION,
            qr_budget: Duration::from_secs(60),
            reconnect_budget: Duration::from_secs(120),
            persist_debounce: Duration::from_secs(3),
            dead_socket_after: Duration::from_secs(30),
            max_sessions: 10_000,
            work_dir,
            proxy_roots: Vec::new(),
            host_id: HostId::generate(),
            lease: LeaseTiming::default(),
            hand_over_on_stop: true,
            connects_per_second: 25,
            sessions_per_task_target: None,
            surplus_lasts: Duration::from_secs(5 * 60),
        }
    }
}

/// Reads every certificate of a PEM file.
pub fn read_pem_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, HostError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| HostError::Config(format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HostError::Config(format!("bad PEM in {}: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(HostError::Config(format!("no certificate in {}", path.display())));
    }
    Ok(certificates)
}

/// A checked WhatsApp address: `wss://` anywhere, `ws://` only to loopback; and, in a build with
/// the `insecure-test-whatsapp` feature (which skips the certificate-chain check), loopback only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatsAppUrl(String);

impl WhatsAppUrl {
    pub fn parse(text: &str) -> Result<Self, HostError> {
        let url = url::Url::parse(text).map_err(|_| HostError::Config(format!("not a URL: {text}")))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        match url.scheme() {
            "wss" => {}
            "ws" if loopback => {}
            "ws" => return Err(HostError::Config("ws:// is allowed only to a loopback address".into())),
            other => return Err(HostError::Config(format!("unsupported scheme {other}: use wss://"))),
        }
        if cfg!(feature = "insecure-test-whatsapp") && !loopback {
            return Err(HostError::Config(
                "this build skips WhatsApp's certificate check (insecure-test-whatsapp): it may only talk to a \
                 loopback address"
                    .into(),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_websockets_only_to_loopback() {
        assert!(WhatsAppUrl::parse("ws://127.0.0.1:9000/ws/chat").is_ok());
        assert!(WhatsAppUrl::parse("ws://localhost:9000/ws/chat").is_ok());
        assert!(WhatsAppUrl::parse("ws://[::1]:9000/ws/chat").is_ok());
        assert!(WhatsAppUrl::parse("ws://10.0.0.1:9000/ws/chat").is_err());
        assert!(WhatsAppUrl::parse("http://127.0.0.1/").is_err());
        assert!(WhatsAppUrl::parse("nonsense").is_err());
    }

    #[test]
    fn the_real_address_needs_a_verifying_build() {
        let real = WhatsAppUrl::parse(WHATSAPP_URL);
        assert_eq!(real.is_ok(), !cfg!(feature = "insecure-test-whatsapp"));
    }
}
