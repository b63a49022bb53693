//! The domain: what an instance, an account, a command and an event are.
//!
//! These types are what every port stores and every service returns. Their serde form is the storage
//! form (camelCase, secrets sealed); the HTTP views are built from them in `ryze-functions`.

mod account;
mod command;
mod delivery;
mod event;
mod ids;
mod instance;
mod integrations;
mod lease;
mod settings;

pub use account::{Account, AccountLimits};
pub use command::{ConnectOutcome, ConnectRequest, LoginMethod, PhoneNumber, SessionCommand};
pub use delivery::{
    DeliveryAttempt, DeliveryFilter, DeliveryKey, DeliveryRecord, DeliveryStatus, RetrySchedule,
};
pub use event::{Event, EventKind, StateChange};
pub use ids::{AccountId, ConnectRequestId, InstanceId, InstanceName};
pub use instance::{Connection, Instance, InstanceChange, InstanceState, PresenceStatus, Profile};
pub use integrations::{
    ChatwootConfig, IntegrationStatus, ProxyConfig, ProxyProtocol, S3Config, SigningSecret, WebhookConfig,
    WebsocketConfig,
};
pub use lease::{Holder, HostId, HostRecord, Lease, LeaseTiming, Liveness, MAX_COMMAND_VISIBILITY};
pub use settings::{Settings, SettingsPatch};
