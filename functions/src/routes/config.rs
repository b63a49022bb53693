//! Per-instance configuration: behaviour settings, the proxy, and the customer's S3 bucket.

use axum::Json;
use axum::extract::State;
use ryze_core::domain::SettingsPatch;
use ryze_core::service::{ProxyInput, S3Input};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Authenticated, InstancePath};
use crate::views::{ProxyResponse, S3Response, SettingsResponse};

#[utoipa::path(get, path = "/api/instance/getSettings/{instance}", tag = "Instance configuration",
    params(("instance" = String, Path, description = "The instance's name")),
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Settings retrieved successfully", body = SettingsResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Instance token does not match this instance", body = ErrorBody),
        (status = 404, description = "Instance not found", body = ErrorBody)))]
pub async fn get_settings(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
) -> Result<Json<SettingsResponse>, ApiError> {
    let settings = app.services.instances.settings(&caller, &name).await?;
    Ok(Json(SettingsResponse { success: true, message: "Settings retrieved successfully", settings }))
}

/// Changes the named settings (at least one); a live session applies them at once.
#[utoipa::path(post, path = "/api/instance/settings/{instance}", tag = "Instance configuration",
    params(("instance" = String, Path, description = "The instance's name")),
    request_body = SettingsPatch, security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Settings updated successfully; the whole object", body = SettingsResponse),
        (status = 400, description = "Empty, malformed or invalid body, or Invalid instance name", body = ErrorBody),
        (status = 404, description = "Instance not found", body = ErrorBody)))]
pub async fn update_settings(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> Result<Json<SettingsResponse>, ApiError> {
    let settings = app.services.instances.update_settings(&caller, &name, patch).await?;
    Ok(Json(SettingsResponse { success: true, message: "Settings updated successfully", settings }))
}

#[utoipa::path(get, path = "/api/instance/getProxy/{instance}", tag = "Instance configuration",
    params(("instance" = String, Path, description = "The instance's name")),
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Proxy configuration retrieved successfully", body = ProxyResponse),
        (status = 404, description = "Instance not found", body = ErrorBody)))]
pub async fn get_proxy(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
) -> Result<Json<ProxyResponse>, ApiError> {
    let proxy = app.services.instances.proxy(&caller, &name).await?;
    Ok(Json(ProxyResponse {
        success: true,
        message: "Proxy configuration retrieved successfully",
        proxy: proxy.as_ref().into(),
    }))
}

/// Sets (`enabled: true`) or removes (`enabled: false`) the proxy of the WhatsApp socket, from the
/// next connect or reconnect on; a live session reconnects through it at once (no QR).
#[utoipa::path(post, path = "/api/instance/proxy/{instance}", tag = "Instance configuration",
    params(("instance" = String, Path, description = "The instance's name")),
    request_body = ProxyInput, security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Proxy configuration updated", body = ProxyResponse),
        (status = 400, description = "Missing or invalid field, or Invalid instance name", body = ErrorBody),
        (status = 404, description = "Instance not found", body = ErrorBody)))]
pub async fn update_proxy(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
    ApiJson(input): ApiJson<ProxyInput>,
) -> Result<Json<ProxyResponse>, ApiError> {
    let proxy = app.services.instances.set_proxy(&caller, &name, input).await?;
    Ok(Json(ProxyResponse {
        success: true,
        message: "Proxy configuration updated",
        proxy: proxy.as_ref().into(),
    }))
}

#[utoipa::path(get, path = "/api/instance/getS3/{instance}", tag = "Instance configuration",
    params(("instance" = String, Path, description = "The instance's name")),
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "S3 configuration retrieved successfully", body = S3Response),
        (status = 404, description = "Instance not found", body = ErrorBody)))]
pub async fn get_s3(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
) -> Result<Json<S3Response>, ApiError> {
    let s3 = app.services.instances.s3(&caller, &name).await?;
    Ok(Json(S3Response {
        success: true,
        message: "S3 configuration retrieved successfully",
        s3: s3.as_ref().into(),
    }))
}

/// Sets the bucket received media are stored in; `{"enabled": false}` deletes the stored credentials.
#[utoipa::path(post, path = "/api/instance/s3/{instance}", tag = "Instance configuration",
    params(("instance" = String, Path, description = "The instance's name")),
    request_body = S3Input, security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "S3 configuration updated", body = S3Response),
        (status = 400, description = "Missing or invalid field, or Invalid instance name", body = ErrorBody),
        (status = 404, description = "Instance not found", body = ErrorBody)))]
pub async fn update_s3(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
    ApiJson(input): ApiJson<S3Input>,
) -> Result<Json<S3Response>, ApiError> {
    let s3 = app.services.instances.set_s3(&caller, &name, input).await?;
    Ok(Json(S3Response { success: true, message: "S3 configuration updated", s3: s3.as_ref().into() }))
}
