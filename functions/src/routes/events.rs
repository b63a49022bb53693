//! The events API: webhooks, the WebSocket configuration, the delivery log and redeliveries.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ryze_core::service::{RedeliverInput, WebhookInput, WebsocketInput};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::event_views::{
    DeliveriesResponse, DeliveryView, RedeliveryResponse, WebhookListing, WebhookResponse, WebhookRowView,
    WebhooksResponse, WebsocketResponse,
};
use crate::extract::{ApiJson, ApiQuery, Authenticated, InstancePath};

/// Creates or overwrites the webhook with this `label` (default `default`); at most 3 enabled.
/// `signingSecret` is shown once: in the answer that created the webhook or rotated its secret.
#[utoipa::path(post, path = "/api/events/webhook/{instance}", tag = "Events",
    params(("instance" = String, Path, description = "The instance's name")),
    request_body = WebhookInput, security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Webhook configured", body = WebhookResponse),
        (status = 400, description = "Invalid request body or field", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Instance token does not match this instance", body = ErrorBody),
        (status = 404, description = "Instance not found", body = ErrorBody),
        (status = 409, description = "Webhook limit reached: at most 3 enabled per instance", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded", body = ErrorBody)))]
pub async fn configure_webhook(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
    ApiJson(input): ApiJson<WebhookInput>,
) -> Result<Json<WebhookResponse>, ApiError> {
    let configured = app.services.instances.configure_webhook(&caller, &name, input).await?;
    let webhook = WebhookRowView::written(configured);
    Ok(Json(WebhookResponse { success: true, message: "Webhook configured", webhook }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LabelQuery {
    /// One webhook by label; all of them when absent.
    label: Option<String>,
}

/// Every webhook row of the instance (sorted by label), or the one with `?label=`.
#[utoipa::path(get, path = "/api/events/getWebhook/{instance}", tag = "Events",
    params(("instance" = String, Path, description = "The instance's name"), LabelQuery),
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Webhooks retrieved (or, with `label`, Webhook retrieved with `webhook`)",
            body = WebhookListing),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Instance token does not match this instance", body = ErrorBody),
        (status = 404, description = "Instance not found, or Webhook not found", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded", body = ErrorBody)))]
pub async fn get_webhooks(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
    ApiQuery(query): ApiQuery<LabelQuery>,
) -> Result<Json<WebhookListing>, ApiError> {
    let instances = &app.services.instances;
    Ok(Json(match query.label {
        Some(label) => {
            let webhook = WebhookRowView::of(&instances.webhook(&caller, &name, &label).await?, None);
            WebhookListing::One(WebhookResponse { success: true, message: "Webhook retrieved", webhook })
        }
        None => {
            let webhooks = instances.webhooks(&caller, &name).await?;
            let webhooks = webhooks.iter().map(|w| WebhookRowView::of(w, None)).collect();
            WebhookListing::All(WebhooksResponse { success: true, message: "Webhooks retrieved", webhooks })
        }
    }))
}

/// Configures the instance's WebSocket stream; `{"enabled": false}` clears its events and refuses
/// new upgrades (sockets already open stay open).
#[utoipa::path(post, path = "/api/events/websocket/{instance}", tag = "Events",
    params(("instance" = String, Path, description = "The instance's name")),
    request_body = WebsocketInput, security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "WebSocket configured", body = WebsocketResponse),
        (status = 400, description = "Invalid request body or field", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Instance token does not match this instance", body = ErrorBody),
        (status = 404, description = "Instance not found", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded", body = ErrorBody)))]
pub async fn configure_websocket(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
    ApiJson(input): ApiJson<WebsocketInput>,
) -> Result<Json<WebsocketResponse>, ApiError> {
    let websocket = app.services.instances.configure_websocket(&caller, &name, input).await?;
    Ok(Json(WebsocketResponse::of("WebSocket configured", &websocket)))
}

#[utoipa::path(get, path = "/api/events/getWebsocket/{instance}", tag = "Events",
    params(("instance" = String, Path, description = "The instance's name")),
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "WebSocket configuration retrieved", body = WebsocketResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Instance token does not match this instance", body = ErrorBody),
        (status = 404, description = "Instance not found, or WebSocket not configured for this instance", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded", body = ErrorBody)))]
pub async fn get_websocket(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
) -> Result<Json<WebsocketResponse>, ApiError> {
    let websocket = app.services.instances.websocket(&caller, &name).await?;
    Ok(Json(WebsocketResponse::of("WebSocket configuration retrieved", &websocket)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only this webhook's deliveries.
    label: Option<String>,
    /// `pending`, `failed`, `delivered` or `dead`.
    #[param(pattern = "^(pending|failed|delivered|dead)$")]
    status: Option<String>,
}

/// The latest deliveries (at most 100, kept 7 days), newest first.
#[utoipa::path(get, path = "/api/events/deliveries/{instance}", tag = "Events",
    params(("instance" = String, Path, description = "The instance's name"), DeliveriesQuery),
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Deliveries retrieved", body = DeliveriesResponse),
        (status = 400, description = "Invalid field: status", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Instance token does not match this instance", body = ErrorBody),
        (status = 404, description = "Instance not found", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded", body = ErrorBody)))]
pub async fn list_deliveries(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> Result<Json<DeliveriesResponse>, ApiError> {
    let records =
        app.services.instances.deliveries(&caller, &name, query.label, query.status.as_deref()).await?;
    let deliveries = records.iter().map(DeliveryView::from).collect();
    Ok(Json(DeliveriesResponse { success: true, message: "Deliveries retrieved", deliveries }))
}

/// Starts deliveries over from their first attempt: one event's (`id`, optionally one `label`), or
/// every dead one of the instance (`{"status": "dead"}`).
#[utoipa::path(post, path = "/api/events/redeliver/{instance}", tag = "Events",
    params(("instance" = String, Path, description = "The instance's name")),
    request_body = RedeliverInput, security(("token" = []), ("bearer" = [])),
    responses(
        (status = 202, description = "Redelivery scheduled", body = RedeliveryResponse),
        (status = 400, description = "Invalid request body or field", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Instance token does not match this instance", body = ErrorBody),
        (status = 404, description = "Instance not found, or Delivery not found", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded", body = ErrorBody)))]
pub async fn redeliver(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
    ApiJson(input): ApiJson<RedeliverInput>,
) -> Result<(StatusCode, Json<RedeliveryResponse>), ApiError> {
    let count = app.services.instances.redeliver(&caller, &name, input).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RedeliveryResponse { success: true, message: "Redelivery scheduled", count }),
    ))
}
