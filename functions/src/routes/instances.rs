//! Create, list and delete instances.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ryze_core::domain::{InstanceState, IntegrationStatus};
use ryze_core::service::CreateInstance;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Authenticated, InstancePath};
use crate::views::{
    CreatedInstanceView, CreatedResponse, InstanceStatusResponse, IntegrationsReport, ListResponse,
    StatusOnly, timestamp,
};

/// Provisions an instance in the caller's account, optionally with its proxy, webhook, WebSocket,
/// Chatwoot, settings and S3 configured inline. The TokenInstance is shown in the answer.
#[utoipa::path(post, path = "/api/instance/new", tag = "Instance", request_body = CreateInstance,
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Instance created", body = CreatedResponse),
        (status = 400, description = "Invalid request body, unknown or invalid field, invalid name", body = ErrorBody),
        (status = 401, description = "Missing token in header, Invalid token, or Invalid account token (an instance token)", body = ErrorBody),
        (status = 403, description = "Account instance quota exceeded", body = ErrorBody),
        (status = 409, description = "Instance already exists", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded (20 creates per minute)", body = ErrorBody)))]
pub async fn create_instance(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<CreateInstance>,
) -> Result<(StatusCode, Json<CreatedResponse>), ApiError> {
    let created = app.services.instances.create(&caller, body).await?;
    let instance = &created.instance;
    let view = CreatedInstanceView {
        id: instance.id.to_string(),
        name: instance.name.to_string(),
        token: created.token.clone(),
        status: InstanceState::Disconnected,
        number_jid: None,
        created_at: timestamp(&instance.created_at),
        updated_at: timestamp(&instance.updated_at),
    };
    let mut integrations = IntegrationsReport::of(instance);
    integrations.webhook.signing_secret = created.signing_secret.clone();
    if let Some(error) = &created.webhook_error {
        integrations.webhook.status = IntegrationStatus::Error;
        integrations.webhook.error = Some(error.clone());
    }
    Ok((
        StatusCode::CREATED,
        Json(CreatedResponse { success: true, message: "Instance created", instance: view, integrations }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// One name, or several separated by commas. Ignored for an instance token.
    #[serde(rename = "instanceName")]
    #[param(rename = "instanceName")]
    instance_name: Option<String>,
}

/// Lists the caller's instances: all of the account's for an account token (optionally filtered by
/// name), only its own for an instance token.
#[utoipa::path(get, path = "/api/instance/list", tag = "Instance", params(ListQuery),
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The instances", body = ListResponse),
        (status = 400, description = "Invalid field: instanceName (given more than once)", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "The one instance named does not exist", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded", body = ErrorBody)))]
pub async fn list_instances(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<axum::response::Response, ApiError> {
    let instances = app.services.instances.list(&caller, query.instance_name.as_deref()).await?;
    app.list_renderer.render(&app.services.instances, &instances)
}

/// Removes an instance permanently: its session, saved credentials, pending results and record.
#[utoipa::path(delete, path = "/api/instance/delete/{instance}", tag = "Instance",
    params(("instance" = String, Path, description = "The instance's name")),
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Instance deleted", body = InstanceStatusResponse),
        (status = 401, description = "Missing token in header, Invalid token, or Invalid account token (an instance token)", body = ErrorBody),
        (status = 404, description = "Instance not found", body = ErrorBody)))]
pub async fn delete_instance(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
) -> Result<Json<InstanceStatusResponse>, ApiError> {
    let id = app.services.instances.delete(&caller, &name).await?;
    app.list_renderer.forget(&id);
    Ok(Json(InstanceStatusResponse {
        success: true,
        message: "Instance deleted",
        instance: StatusOnly { status: "deleted" },
    }))
}
