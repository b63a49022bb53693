//! The core of the Ryze WhatsApp instance API: the domain, the rules, and the ports to storage.
//!
//! Both sides of the system depend on this crate: the control plane (`ryze-functions`, the HTTP API)
//! and the session hosts (`ryze-session-host`, the WhatsApp sockets). It knows nothing of HTTP, Lambda
//! or WhatsApp; it only knows instances, accounts, tokens and the ports through which they are stored.
//!
//! Layout:
//! - [`domain`]: instances, their five states, settings, proxy/S3/webhook/websocket/Chatwoot configs,
//!   accounts, commands for the session host and event envelopes.
//! - [`secrets`]: random tokens, the keyed hash they are looked up by, and AES-256-GCM sealing.
//! - [`ports`]: the storage roles (instance registry, rate counters, command and event queues, blob
//!   store) as traits. Each has an embedded adapter in [`adapters`] and an AWS one.
//! - [`outbound`]: the one HTTP client for customer URLs (webhooks, Chatwoot), which refuses
//!   private and other non-public addresses unless the deployment allows them.
//! - [`service`]: the rules (validation, quotas, rate limits, authorisation, the connect protocol).
//!   Handlers and the CLI call services, never ports.
//!
//! The flow of a request: the HTTP layer resolves the token through [`service::Auth`] into a
//! [`service::Caller`], calls one method of [`service::InstanceService`], which checks the caller may
//! act on the named instance and reads or writes through [`ports::InstanceRegistry`].

pub mod adapters;
pub mod clock;
pub mod domain;
pub mod error;
pub mod outbound;
pub mod ports;
pub mod secrets;
pub mod service;
pub mod telemetry;

pub use error::{Error, Result};
