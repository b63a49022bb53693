//! The rules: who may do what, what is valid, and how a connect call meets its session host.
//!
//! Services hold the ports and carry every rule; the HTTP handlers and the CLI only call them.

mod accounts;
mod auth;
mod inputs;
mod instances;
mod rate_limit;
mod sessions;

use std::sync::Arc;

pub use accounts::{AccountService, NewAccount};
pub use auth::{Auth, Caller, Scope};
pub use inputs::{CreateInstance, PortValue, ProxyInput, S3Input};
pub use instances::{CreatedInstance, InstanceService};
pub use rate_limit::{Bucket, RateDecision, RateLimiter};
pub use sessions::{ConnectOptions, ConnectPolicy};

use crate::clock::Clock;
use crate::ports::Ports;
use crate::secrets::Keyring;

/// Every service of a deployment, built once at start and shared.
#[derive(Clone)]
pub struct Services {
    pub auth: Arc<Auth>,
    pub limiter: Arc<RateLimiter>,
    pub instances: Arc<InstanceService>,
    pub accounts: Arc<AccountService>,
}

impl Services {
    /// Services on `ports`, sealing and hashing with `keys` (shared with a session host).
    pub fn new(ports: Ports, keys: Arc<Keyring>, clock: Arc<dyn Clock>, connect: ConnectPolicy) -> Self {
        Self {
            auth: Arc::new(Auth::new(ports.registry.clone(), keys.clone())),
            limiter: Arc::new(RateLimiter::new(ports.counters.clone(), clock.clone())),
            accounts: Arc::new(AccountService::new(ports.registry.clone(), keys.clone(), clock.clone())),
            instances: Arc::new(InstanceService::new(ports, keys, clock, connect)),
        }
    }
}
