//! The rules: who may do what, what is valid, and how a connect call meets its session host.
//!
//! Services hold the ports and carry every rule; the HTTP handlers and the CLI only call them.

mod accounts;
mod auth;
mod chatwoot;
pub mod dispatch;
pub mod fields;
mod inputs;
mod instances;
pub mod logout;
mod rate_limit;
pub mod routing;
mod sessions;
mod webhooks;

use std::sync::Arc;

pub use accounts::{AccountService, NewAccount};
pub use auth::{Auth, Caller, Scope};
pub use chatwoot::{ChatwootError, LINK_BUDGET, link_inbox, linked};
pub use inputs::{CreateInstance, PortValue, ProxyInput, S3Input};
pub use instances::{CreatedInstance, InstanceService};
pub use rate_limit::{Bucket, RateDecision, RateLimiter};
pub use sessions::{ConnectOptions, ConnectPolicy};
pub use webhooks::{
    ConfiguredWebhook, DELIVERY_PAGE, RedeliverInput, WebhookInput, WebsocketInput, redrive, restart_delivery,
};

use crate::clock::Clock;
use crate::outbound::OutboundClient;
use crate::ports::Ports;
use crate::secrets::Keyring;

/// Every service of a deployment, built once at start and shared.
#[derive(Clone)]
pub struct Services {
    pub auth: Arc<Auth>,
    pub limiter: Arc<RateLimiter>,
    pub instances: Arc<InstanceService>,
    pub accounts: Arc<AccountService>,
    /// The client to customer URLs, shared by everything that calls them (one connection pool).
    pub outbound: OutboundClient,
}

impl Services {
    /// Services on `ports`, sealing and hashing with `keys` (shared with a session host), reaching
    /// customer URLs through `outbound`.
    pub fn new(
        ports: Ports,
        keys: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        connect: ConnectPolicy,
        outbound: OutboundClient,
    ) -> Self {
        Self {
            auth: Arc::new(Auth::new(ports.registry.clone(), keys.clone())),
            limiter: Arc::new(RateLimiter::new(ports.counters.clone(), clock.clone())),
            accounts: Arc::new(AccountService::new(ports.registry.clone(), keys.clone(), clock.clone())),
            instances: Arc::new(InstanceService::new(ports, keys, clock, connect, outbound.clone())),
            outbound,
        }
    }
}
