//! The error of every core operation, in terms a caller can act on.
//!
//! Variants carry data, not wire text: the HTTP layer owns the contract's exact messages. Storage
//! failures keep their cause as a source and never reach a client's body.

use crate::domain::InstanceName;

/// A boxed cause from an adapter (SQLite, the AWS SDK, the file system).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no token was presented")]
    MissingToken,
    #[error("the token is not known")]
    InvalidToken,
    #[error("an account token is required")]
    AccountTokenRequired,
    #[error("the instance token belongs to another instance")]
    InstanceMismatch,
    #[error("instance not found")]
    InstanceNotFound,
    #[error("account not found")]
    AccountNotFound,
    #[error("instance {0} already exists")]
    InstanceExists(InstanceName),
    #[error("the chosen token is already in use")]
    TokenInUse,
    #[error("the account's instance quota is exhausted")]
    QuotaExceeded,
    #[error("the instance name is missing")]
    NameRequired,
    #[error("the instance name is invalid")]
    InvalidName,
    #[error("field {field} is invalid")]
    InvalidField { field: String, detail: Option<String> },
    #[error("field {field} is required")]
    MissingField { field: &'static str },
    #[error("the update names no field")]
    EmptyUpdate,
    #[error("the phone number is invalid")]
    InvalidPhoneNumber,
    #[error("the instance is already connected")]
    AlreadyConnected,
    #[error("the instance has no saved session")]
    NoSavedSession,
    #[error("no login code: {reason}")]
    ConnectFailed { reason: String },
    #[error("reconnect failed: {reason}")]
    ReconnectFailed { reason: &'static str },
    #[error("logout failed")]
    LogoutFailed(#[source] Box<Error>),
    #[error("the instance already has three enabled webhooks")]
    WebhookLimit,
    #[error("webhook not found")]
    WebhookNotFound,
    #[error("the instance's WebSocket was never configured")]
    WebsocketNotConfigured,
    #[error("the WebSocket of instance {0} is not enabled")]
    WebsocketDisabled(InstanceName),
    #[error("delivery not found")]
    DeliveryNotFound,
    #[error("the stored object changed since it was read")]
    BlobConflict,
    /// The instance's lease moved on (another host took it, or it was released): the writer no
    /// longer runs it and must stop its client.
    #[error("the instance's lease is no longer the writer's")]
    LeaseLost,
    /// The host record belongs to a later start of the same host id.
    #[error("another start of this host took its record over")]
    HostSuperseded,
    #[error("a sealed secret could not be opened")]
    Unseal,
    /// Its cause is in the text, so that a log line with the error says what failed (the HTTP
    /// layer answers with a fixed message and never shows it).
    #[error("storage unavailable: {0}")]
    Storage(BoxError),
}

impl Error {
    pub fn invalid(field: impl Into<String>) -> Self {
        Self::InvalidField { field: field.into(), detail: None }
    }

    pub fn invalid_because(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidField { field: field.into(), detail: Some(detail.into()) }
    }

    pub fn storage(cause: impl Into<BoxError>) -> Self {
        Self::Storage(cause.into())
    }

    /// This failure again, as a storage failure with the same cause: for each item of a batch
    /// that failed as a whole (the error itself cannot be cloned).
    pub(crate) fn for_each_item(&self) -> Self {
        match self {
            Self::Storage(cause) => Self::storage(cause.to_string()),
            other => Self::storage(other.to_string()),
        }
    }
}
