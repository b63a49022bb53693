//! Response bodies: the contract's shapes, built from domain records, never carrying a secret.

use chrono::{DateTime, SecondsFormat, Utc};
use ryze_core::domain::{
    EventKind, Instance, InstanceState, IntegrationStatus, PresenceStatus, Profile, ProxyConfig,
    ProxyProtocol, S3Config, Settings, WebhookConfig, WebsocketConfig,
};
use serde::Serialize;
use utoipa::ToSchema;

/// RFC 3339 in UTC with milliseconds, as every timestamp of the API.
pub fn timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedInstanceView {
    pub id: String,
    pub name: String,
    /// The TokenInstance.
    pub token: String,
    /// Always `disconnected` for a new instance.
    pub status: InstanceState,
    pub number_jid: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationReport {
    pub status: IntegrationStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The inline webhook's `whsec_` signing secret: shown in this answer only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    /// The Chatwoot inbox the instance was linked to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox_id: Option<i64>,
}

impl IntegrationReport {
    fn of(enabled: bool) -> Self {
        let status = if enabled { IntegrationStatus::Ok } else { IntegrationStatus::Disabled };
        Self { status, error: None, signing_secret: None, inbox_id: None }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IntegrationsReport {
    pub webhook: IntegrationReport,
    pub websocket: IntegrationReport,
    pub chatwoot: IntegrationReport,
}

impl IntegrationsReport {
    pub fn of(instance: &Instance) -> Self {
        let chatwoot = match &instance.chatwoot {
            Some(chatwoot) => IntegrationReport {
                status: chatwoot.status,
                error: chatwoot.last_error.clone(),
                signing_secret: None,
                inbox_id: chatwoot.inbox_id,
            },
            None => IntegrationReport::of(false),
        };
        Self {
            webhook: IntegrationReport::of(instance.webhooks.iter().any(|w| w.enabled)),
            websocket: IntegrationReport::of(instance.websocket.as_ref().is_some_and(|w| w.enabled)),
            chatwoot,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    pub state: InstanceState,
    pub number_jid: Option<String>,
    pub presence_status: PresenceStatus,
    /// The account's "about" text, once known.
    pub display_status: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub enabled: bool,
    pub url: Option<String>,
    pub by_events: bool,
    pub events: Vec<EventKind>,
    pub media_base64: bool,
}

#[derive(Serialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebsocketView {
    pub enabled: bool,
    pub events: Vec<EventKind>,
    pub media_base64: bool,
}

impl From<&WebsocketConfig> for WebsocketView {
    fn from(websocket: &WebsocketConfig) -> Self {
        Self {
            enabled: websocket.enabled,
            events: websocket.events.clone(),
            media_base64: websocket.media_base64,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatwootView {
    pub enabled: bool,
    pub base_url: Option<String>,
    pub account_id: Option<i64>,
    pub inbox_name: Option<String>,
    pub status: IntegrationStatus,
    /// The linked Chatwoot inbox; `null` until linked.
    pub inbox_id: Option<i64>,
}

/// A proxy as shown: never with its password.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyView {
    pub enabled: bool,
    pub host: Option<String>,
    /// The port as a string, e.g. `"1080"`.
    pub port: Option<String>,
    pub protocol: Option<ProxyProtocol>,
    pub username: Option<String>,
    /// Always `null`: a password is never returned.
    pub password: Option<String>,
}

impl From<Option<&ProxyConfig>> for ProxyView {
    fn from(proxy: Option<&ProxyConfig>) -> Self {
        match proxy {
            Some(p) => Self {
                enabled: true,
                host: Some(p.host.clone()),
                port: Some(p.port.to_string()),
                protocol: Some(p.protocol),
                username: p.username.clone(),
                password: None,
            },
            None => Self {
                enabled: false,
                host: None,
                port: None,
                protocol: None,
                username: None,
                password: None,
            },
        }
    }
}

/// An S3 configuration as shown: never with its secret key.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3View {
    pub enabled: bool,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub access_key: Option<String>,
    /// Always `null`: the secret key is never returned.
    pub secret_key: Option<String>,
    pub endpoint: Option<String>,
    pub path_prefix: Option<String>,
}

impl From<Option<&S3Config>> for S3View {
    fn from(s3: Option<&S3Config>) -> Self {
        match s3 {
            Some(s) => Self {
                enabled: true,
                region: Some(s.region.clone()),
                bucket: Some(s.bucket.clone()),
                access_key: Some(s.access_key.clone()),
                secret_key: None,
                endpoint: s.endpoint.clone(),
                path_prefix: s.path_prefix.clone(),
            },
            None => Self {
                enabled: false,
                region: None,
                bucket: None,
                access_key: None,
                secret_key: None,
                endpoint: None,
                path_prefix: None,
            },
        }
    }
}

/// One item of `list`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub id: String,
    pub name: String,
    /// The TokenInstance.
    pub token: String,
    /// The same value as `connection.state`, where published clients read it.
    pub status: InstanceState,
    pub created_at: String,
    pub updated_at: String,
    pub connection: ConnectionView,
    pub profile: Profile,
    pub webhook: WebhookView,
    pub websocket: WebsocketView,
    pub chatwoot: ChatwootView,
    pub proxy: ProxyView,
    pub settings: Settings,
    pub s3: S3View,
}

impl InstanceView {
    pub fn new(instance: &Instance, token: String) -> Self {
        let webhook = instance
            .webhooks
            .iter()
            .find(|w| w.label == WebhookConfig::DEFAULT_LABEL)
            .or_else(|| instance.webhooks.first());
        Self {
            id: instance.id.to_string(),
            name: instance.name.to_string(),
            token,
            status: instance.connection.state,
            created_at: timestamp(&instance.created_at),
            updated_at: timestamp(&instance.updated_at),
            connection: ConnectionView {
                state: instance.connection.state,
                number_jid: instance.connection.number_jid.clone(),
                presence_status: instance.connection.presence_status,
                display_status: instance.connection.display_status.clone(),
            },
            profile: instance.profile.clone(),
            webhook: WebhookView {
                enabled: webhook.is_some_and(|w| w.enabled),
                url: webhook.map(|w| w.url.clone()),
                by_events: webhook.is_some_and(|w| w.by_events),
                events: webhook.map(|w| w.events.clone()).unwrap_or_default(),
                media_base64: webhook.is_some_and(|w| w.media_base64),
            },
            websocket: instance.websocket.as_ref().map(WebsocketView::from).unwrap_or_default(),
            chatwoot: match &instance.chatwoot {
                Some(c) => ChatwootView {
                    enabled: c.enabled,
                    base_url: Some(c.base_url.clone()),
                    account_id: Some(c.account_id),
                    inbox_name: Some(c.inbox_name.clone()),
                    status: c.status,
                    inbox_id: c.inbox_id,
                },
                None => ChatwootView {
                    enabled: false,
                    base_url: None,
                    account_id: None,
                    inbox_name: None,
                    status: IntegrationStatus::Disabled,
                    inbox_id: None,
                },
            },
            proxy: instance.proxy.as_ref().into(),
            settings: instance.settings.clone(),
            s3: instance.s3.as_ref().into(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ListMeta {
    pub total: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ListResponse {
    pub success: bool,
    /// `"1 Instance found"` or `"<N> Instances found"`.
    pub message: String,
    pub instances: Vec<InstanceView>,
    pub meta: ListMeta,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedResponse {
    pub success: bool,
    pub message: &'static str,
    pub instance: CreatedInstanceView,
    pub integrations: IntegrationsReport,
}

#[derive(Serialize, ToSchema)]
pub struct StatusOnly {
    /// `deleted` or `loggedout`.
    pub status: &'static str,
}

/// Delete and logout.
#[derive(Serialize, ToSchema)]
pub struct InstanceStatusResponse {
    pub success: bool,
    pub message: &'static str,
    pub instance: StatusOnly,
}

#[derive(Serialize, ToSchema)]
pub struct ReconnectResponse {
    pub success: bool,
    pub message: &'static str,
    /// Always `connecting`.
    pub status: &'static str,
}

/// A QR code (`status: "qr"`) or a pairing code (`status: "pairing_code"`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectResponse {
    pub success: bool,
    pub message: &'static str,
    /// The string WhatsApp expects, for a QR login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_code: Option<String>,
    /// `data:image/png;base64,...`: a PNG of `qrCode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_code_base64: Option<String>,
    /// The 8-character code to type on the phone, for a pairing-code login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairing_code: Option<String>,
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct SettingsResponse {
    pub success: bool,
    pub message: &'static str,
    pub settings: Settings,
}

#[derive(Serialize, ToSchema)]
pub struct ProxyResponse {
    pub success: bool,
    pub message: &'static str,
    pub proxy: ProxyView,
}

#[derive(Serialize, ToSchema)]
pub struct S3Response {
    pub success: bool,
    pub message: &'static str,
    pub s3: S3View,
}

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    pub success: bool,
    pub message: &'static str,
    pub status: &'static str,
    pub version: &'static str,
}
