//! Response bodies of the events API: webhooks, the WebSocket configuration, the delivery log.
//! Never a secret: `authorization` is always `null`, and `signingSecret` only in the answer that
//! issued it.

use ryze_core::domain::{
    DeliveryRecord, DeliveryStatus, EventKind, IntegrationStatus, WebhookConfig, WebsocketConfig,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::views::{WebsocketView, timestamp};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRowView {
    pub label: String,
    pub enabled: bool,
    /// Without any `user:password` it was configured with.
    pub url: Option<String>,
    pub by_events: bool,
    pub events: Vec<EventKind>,
    pub media_base64: bool,
    /// Always `null`: a secret is never returned.
    pub authorization: Option<String>,
    /// `whsec_...`, shown only in the answer that issued it; `null` everywhere else.
    pub signing_secret: Option<String>,
    /// Why the system disabled the webhook (a receiver that answered 410), if it did.
    pub disabled_reason: Option<String>,
    /// In the answer of a write only: `ok`, `disabled`, or `error` when the URL cannot be reached
    /// from here (a refused address, a host that does not resolve); the URL is stored either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<IntegrationStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl WebhookRowView {
    pub fn of(webhook: &WebhookConfig, new_secret: Option<String>) -> Self {
        Self {
            label: webhook.label.clone(),
            enabled: webhook.enabled,
            url: (!webhook.url.is_empty()).then(|| webhook.url.clone()),
            by_events: webhook.by_events,
            events: webhook.events.clone(),
            media_base64: webhook.media_base64,
            authorization: None,
            signing_secret: new_secret,
            disabled_reason: webhook.disabled_reason.clone(),
            status: None,
            error: None,
        }
    }

    /// The row as a write answers it: with its status.
    pub fn written(configured: ryze_core::service::ConfiguredWebhook) -> Self {
        let mut view = Self::of(&configured.webhook, configured.new_secret);
        view.status = Some(match (&configured.unreachable, configured.webhook.enabled) {
            (Some(_), _) => IntegrationStatus::Error,
            (None, true) => IntegrationStatus::Ok,
            (None, false) => IntegrationStatus::Disabled,
        });
        view.error = configured.unreachable;
        view
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookResponse {
    pub success: bool,
    pub message: &'static str,
    pub webhook: WebhookRowView,
}

#[derive(Serialize, ToSchema)]
pub struct WebhooksResponse {
    pub success: bool,
    pub message: &'static str,
    pub webhooks: Vec<WebhookRowView>,
}

/// `getWebhook`: every row, or with `?label=` the one (the document says `oneOf`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum WebhookListing {
    All(WebhooksResponse),
    One(WebhookResponse),
}

#[derive(Serialize, ToSchema)]
pub struct WebsocketResponse {
    pub success: bool,
    pub message: &'static str,
    pub websocket: WebsocketView,
}

impl WebsocketResponse {
    pub fn of(message: &'static str, websocket: &WebsocketConfig) -> Self {
        Self { success: true, message, websocket: websocket.into() }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The event's id: the `webhook-id` header of every attempt.
    pub id: String,
    pub event: EventKind,
    pub label: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
}

impl From<&DeliveryRecord> for DeliveryView {
    fn from(record: &DeliveryRecord) -> Self {
        Self {
            id: record.key.event_id.clone(),
            event: record.kind(),
            label: record.key.label.clone(),
            status: record.status,
            attempts: record.attempts,
            last_status_code: record.last_status_code,
            last_error: record.last_error.clone(),
            next_attempt_at: record.next_attempt_at.as_ref().map(timestamp),
            created_at: timestamp(&record.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveriesResponse {
    pub success: bool,
    pub message: &'static str,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Serialize, ToSchema)]
pub struct RedeliveryResponse {
    pub success: bool,
    pub message: &'static str,
    /// How many deliveries were started over.
    pub count: usize,
}
