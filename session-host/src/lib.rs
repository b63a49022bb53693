//! The session host: the long-running side of the system that holds the WhatsApp sockets.
//!
//! It takes commands from the command queue, runs one whatsapp-rust client per instance inside a
//! session actor, answers connect requests with QR or pairing codes, writes state changes back
//! through the registry, saves credential stores through the blob store, and publishes
//! `instance.state` events. It depends on `ryze-core`'s ports only, never on an adapter, so the
//! same host runs inside `ryze serve` on the embedded adapters and on ECS on the AWS ones.
//!
//! Layout:
//! - [`fleet`]: [`SessionHost`], the supervisor that routes commands to sessions.
//! - `session`: the per-instance actor: states, codes, settings, credential persistence.
//! - `membership`: the host's record, heartbeat, liveness view and lease claims; `pacing`: the
//!   host-wide pace of client starts; `routed`: a command with the receipt acknowledged once it
//!   is applied.
//! - [`client`]: the seam between a session and its WhatsApp client.
//! - [`whatsapp`]: that seam on whatsapp-rust; [`proxy`]: its socket through HTTP/HTTPS/SOCKS5 proxies;
//!   `liveness`: its dead-socket watchdog.
//! - [`config`]: the host's configuration and the WhatsApp address rule.
//! - [`protection`]: ECS task scale-in protection while the host holds sessions.
//! - [`runtime`]: the flags and shutdown signal of a process that runs a host.

pub mod client;
pub mod config;
pub mod fleet;
mod liveness;
mod membership;
pub mod metrics;
mod pacing;
pub mod protection;
pub mod proxy;
mod retry;
mod routed;
pub mod runtime;
mod session;
pub mod whatsapp;

pub use config::{HostConfig, WhatsAppUrl};
pub use fleet::SessionHost;

/// What can go wrong in a session host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("whatsapp client: {0}")]
    Client(String),
    #[error("proxy: {0}")]
    Proxy(String),
    #[error("fleet: {0}")]
    Fleet(String),
}
