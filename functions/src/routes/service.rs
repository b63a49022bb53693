//! Service routes (health) and the answers for requests that match no route.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::views::HealthResponse;
use crate::{AppState, auth};

/// Liveness: answers while the process serves, with no token and no storage call.
#[utoipa::path(get, path = "/health", tag = "Service",
    responses((status = 200, description = "The service is up", body = HealthResponse)))]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        success: true,
        message: "Service is healthy",
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// A per-instance route called without an instance name.
pub async fn instance_name_required(_caller: Authenticated) -> ApiError {
    ryze_core::Error::NameRequired.into()
}

/// The router's fallback: 404, counted for an authenticated caller like any request.
pub async fn route_not_found(State(app): State<AppState>, headers: HeaderMap) -> Response {
    auth::answer_unrouted(&app, &headers, ApiError::route_not_found()).await
}

/// A path served with other methods: 405, counted for an authenticated caller.
pub async fn method_not_allowed(State(app): State<AppState>, headers: HeaderMap) -> Response {
    auth::answer_unrouted(&app, &headers, ApiError::method_not_allowed()).await
}
