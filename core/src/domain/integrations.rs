//! Per-instance configuration of the outside world: proxy, S3, webhooks, WebSocket and Chatwoot.
//!
//! Stored forms: secrets are [`Sealed`] and never leave the store in clear through a view.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::EventKind;
use crate::secrets::Sealed;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    Http,
    Https,
    Socks5,
}

impl ProxyProtocol {
    /// Exactly as the contract spells them: `SOCKS5` would not read back as sent.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "http" => Some(Self::Http),
            "https" => Some(Self::Https),
            "socks5" => Some(Self::Socks5),
            _ => None,
        }
    }
}

/// The proxy the instance's WhatsApp socket and media downloads go through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    pub host: String,
    pub port: u16,
    pub protocol: ProxyProtocol,
    pub username: Option<String>,
    pub password: Option<Sealed>,
}

/// The customer's own bucket, where received media of the instance are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Config {
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: Sealed,
    /// `None` means AWS itself; anything S3-compatible works.
    pub endpoint: Option<String>,
    pub path_prefix: Option<String>,
}

/// One webhook receiver. An instance has up to three enabled, told apart by label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConfig {
    pub label: String,
    pub enabled: bool,
    /// Without credentials: a `user:password` the URL carried is in `url_credentials`.
    pub url: String,
    #[serde(default)]
    pub url_credentials: Option<Sealed>,
    pub authorization: Option<Sealed>,
    /// Post each event to `<url>/<event>` instead of `<url>`.
    pub by_events: bool,
    /// Events to deliver; empty means all.
    pub events: Vec<EventKind>,
    pub media_base64: bool,
    /// Newest first. A rotated-out secret keeps signing beside the new one until it retires.
    #[serde(default)]
    pub signing_secrets: Vec<SigningSecret>,
    /// Why the webhook was disabled by the system (a receiver that answered 410), if it was.
    #[serde(default)]
    pub disabled_reason: Option<String>,
}

/// A sealed `whsec_` secret and, once rotated out, when it stops signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningSecret {
    pub secret: Sealed,
    pub retires_at: Option<DateTime<Utc>>,
}

impl WebhookConfig {
    /// The label of the webhook configured inline on create.
    pub const DEFAULT_LABEL: &'static str = "default";
    /// Enabled webhooks an instance may have.
    pub const MAX_ENABLED: usize = 3;

    /// Whether this webhook wants `kind` (an empty list means every event).
    pub fn wants(&self, kind: EventKind) -> bool {
        self.enabled && (self.events.is_empty() || self.events.contains(&kind))
    }

    /// The secrets that sign at `now`, newest first.
    pub fn live_secrets(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Sealed> {
        self.signing_secrets.iter().filter(move |s| s.retires_at.is_none_or(|at| at > now)).map(|s| &s.secret)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebsocketConfig {
    pub enabled: bool,
    /// Events to stream; empty means all.
    pub events: Vec<EventKind>,
    pub media_base64: bool,
}

/// Whether an integration is working, as reported on create and in `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationStatus {
    Ok,
    Error,
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootConfig {
    pub enabled: bool,
    pub base_url: String,
    pub account_id: i64,
    pub api_token: Sealed,
    pub inbox_name: String,
    pub sign_messages: bool,
    pub ignore_groups: bool,
    pub start_as_pending: bool,
    pub reopen_resolved: bool,
    /// `ok` once linked to its inbox, `error` when linking failed (`last_error` says why).
    pub status: IntegrationStatus,
    /// The Chatwoot inbox the instance is linked to.
    #[serde(default)]
    pub inbox_id: Option<i64>,
    /// Why the last linking failed, in the words shown to the customer.
    #[serde(default)]
    pub last_error: Option<String>,
}
