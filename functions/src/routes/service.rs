//! Service routes (health) and the answers for requests that match no route.

use axum::Json;

use crate::error::ApiError;
use crate::extract::Authenticated;
use crate::views::HealthResponse;

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

pub async fn route_not_found() -> ApiError {
    ApiError::route_not_found()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
