//! The routes, each documented where it is written: the OpenAPI document is collected from these
//! handlers' annotations by `utoipa-axum`, so it cannot drift from what is served.

mod config;
mod connection;
mod events;
mod instances;
mod service;

use axum::routing::any;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use service::{method_not_allowed, route_not_found};

use crate::AppState;

/// Every route that needs a token.
pub fn authenticated() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .routes(routes!(instances::create_instance))
        .routes(routes!(instances::list_instances))
        .routes(routes!(instances::delete_instance))
        .routes(routes!(connection::connect_instance))
        .routes(routes!(connection::reconnect_instance))
        .routes(routes!(connection::logout_instance))
        .routes(routes!(config::get_settings))
        .routes(routes!(config::update_settings))
        .routes(routes!(config::get_proxy))
        .routes(routes!(config::update_proxy))
        .routes(routes!(config::get_s3))
        .routes(routes!(config::update_s3))
        .routes(routes!(events::configure_webhook))
        .routes(routes!(events::get_webhooks))
        .routes(routes!(events::configure_websocket))
        .routes(routes!(events::get_websocket))
        .routes(routes!(events::list_deliveries))
        .routes(routes!(events::redeliver));
    // `/{instance}` does not match an empty segment; these answer the contract's 400 instead of 404.
    for prefix in PER_INSTANCE_ROUTES {
        router = router
            .route(&format!("/api/instance/{prefix}"), any(service::instance_name_required))
            .route(&format!("/api/instance/{prefix}/"), any(service::instance_name_required));
    }
    for prefix in PER_INSTANCE_EVENT_ROUTES {
        router = router
            .route(&format!("/api/events/{prefix}"), any(service::instance_name_required))
            .route(&format!("/api/events/{prefix}/"), any(service::instance_name_required));
    }
    router
}

/// Routes that need no token.
pub fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(service::health))
}

const PER_INSTANCE_EVENT_ROUTES: [&str; 6] =
    ["webhook", "getWebhook", "websocket", "getWebsocket", "deliveries", "redeliver"];

const PER_INSTANCE_ROUTES: [&str; 10] = [
    "delete",
    "connect",
    "reconnect",
    "logout",
    "getSettings",
    "settings",
    "getProxy",
    "proxy",
    "getS3",
    "s3",
];
