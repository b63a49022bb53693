//! The instance: one WhatsApp number's connection, its state and its configuration.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    AccountId, ChatwootConfig, InstanceId, InstanceName, ProxyConfig, S3Config, Settings, WebhookConfig,
    WebsocketConfig,
};
use crate::secrets::{Keyring, Purpose, Sealed, TokenHash};

/// The five states of `connection.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Created, or no live session.
    Disconnected,
    /// Waiting for a QR scan or pairing code, or reconnecting.
    Connecting,
    Connected,
    /// Unlinked on the phone or logged out through the API.
    #[serde(rename = "loggedout")]
    LoggedOut,
    /// Banned by WhatsApp (temporary bans too; the event carries reason and expiry).
    Banned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Available,
    #[default]
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub state: InstanceState,
    /// The linked number's JID, once paired.
    pub number_jid: Option<String>,
    /// The presence the session last sent.
    pub presence_status: PresenceStatus,
    /// The account's "about" text as WhatsApp shows it, once known.
    pub display_status: Option<String>,
}

impl Default for Connection {
    fn default() -> Self {
        Self {
            state: InstanceState::Disconnected,
            number_jid: None,
            presence_status: PresenceStatus::Unavailable,
            display_status: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub name: Option<String>,
    pub picture_url: Option<String>,
    pub is_business: bool,
    pub business_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub id: InstanceId,
    pub account_id: AccountId,
    pub name: InstanceName,
    /// Shown again in `list`, so kept sealed rather than only hashed.
    pub token: Sealed,
    pub token_hash: TokenHash,
    /// Bumped by every write; lets readers cache what they derive from a record.
    pub revision: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub connection: Connection,
    pub profile: Profile,
    pub settings: Settings,
    pub proxy: Option<ProxyConfig>,
    pub s3: Option<S3Config>,
    pub webhooks: Vec<WebhookConfig>,
    /// `None` until configured (inline on create or through the events API).
    #[serde(default)]
    pub websocket: Option<WebsocketConfig>,
    pub chatwoot: Option<ChatwootConfig>,
}

/// One write to an existing instance. Each variant replaces one part of the record, so that a store
/// can apply it as one conditional update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceChange {
    Settings(Settings),
    Proxy(Option<ProxyConfig>),
    S3(Option<S3Config>),
    Session {
        connection: Connection,
        profile: Profile,
    },
    /// Replaces the webhook with the same label, or adds it.
    UpsertWebhook(WebhookConfig),
    /// Turns a webhook off on the system's initiative (a receiver that answered 410), saying why.
    DisableWebhook {
        label: String,
        reason: String,
    },
    Websocket(WebsocketConfig),
    /// The Chatwoot configuration, as linking left it.
    Chatwoot(Option<ChatwootConfig>),
}

impl Instance {
    /// A new instance as created: `disconnected`, default settings, nothing configured; its token
    /// kept sealed for `list` and hashed for lookups.
    pub fn new(
        account_id: AccountId,
        name: InstanceName,
        token: &str,
        keys: &Keyring,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: InstanceId::generate(),
            account_id,
            name,
            token: keys.seal(Purpose::InstanceToken, token),
            token_hash: keys.hash_token(token),
            revision: 1,
            created_at: at,
            updated_at: at,
            connection: Connection::default(),
            profile: Profile::default(),
            settings: Settings::default(),
            proxy: None,
            s3: None,
            webhooks: Vec::new(),
            websocket: None,
            chatwoot: None,
        }
    }

    /// Applies `change` as of `at`, bumping the revision.
    pub fn apply(&mut self, change: InstanceChange, at: DateTime<Utc>) {
        match change {
            InstanceChange::Settings(settings) => self.settings = settings,
            InstanceChange::Proxy(proxy) => self.proxy = proxy,
            InstanceChange::S3(s3) => self.s3 = s3,
            InstanceChange::Session { connection, profile } => {
                self.connection = connection;
                self.profile = profile;
            }
            InstanceChange::UpsertWebhook(webhook) => {
                match self.webhooks.iter_mut().find(|w| w.label == webhook.label) {
                    Some(existing) => *existing = webhook,
                    None => self.webhooks.push(webhook),
                }
                self.webhooks.sort_by(|a, b| a.label.cmp(&b.label));
            }
            InstanceChange::DisableWebhook { label, reason } => {
                if let Some(webhook) = self.webhooks.iter_mut().find(|w| w.label == label) {
                    webhook.enabled = false;
                    webhook.disabled_reason = Some(reason);
                }
            }
            InstanceChange::Chatwoot(chatwoot) => self.chatwoot = chatwoot,
            InstanceChange::Websocket(websocket) => self.websocket = Some(websocket),
        }
        self.revision += 1;
        self.updated_at = at;
    }
}
