//! The WhatsApp connection: connect (QR or pairing code), reconnect, logout.

use axum::Json;
use axum::extract::State;
use ryze_core::Error;
use ryze_core::domain::ConnectOutcome;
use ryze_core::service::ConnectOptions;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, Authenticated, InstancePath};
use crate::qr;
use crate::views::{ConnectResponse, InstanceStatusResponse, ReconnectResponse, StatusOnly};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectQuery {
    /// Phone number, digits only (8 to 15): log in with a pairing code instead of a QR code.
    #[param(pattern = "^[0-9]{8,15}$")]
    number: Option<String>,
    /// Days of history to request on this first pairing (1 to 365), even when `disableHistorySync`.
    #[param(value_type = Option<u16>, minimum = 1, maximum = 365)]
    history: Option<String>,
}

/// Starts the WhatsApp login and blocks until the session host reports a QR code or a pairing code
/// (about 60 s at most). Calling it again while connecting returns the current code.
#[utoipa::path(get, path = "/api/instance/connect/{instance}", tag = "WhatsApp connection",
    params(("instance" = String, Path, description = "The instance's name"), ConnectQuery),
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "QR code generated, or Pairing code generated", body = ConnectResponse),
        (status = 400, description = "Invalid instance name, Invalid phone number, or Invalid field: history", body = ErrorBody),
        (status = 404, description = "Instance not found", body = ErrorBody),
        (status = 409, description = "Instance already connected", body = ErrorBody),
        (status = 500, description = "Failed to generate QR code", body = ErrorBody)))]
pub async fn connect_instance(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
    ApiQuery(query): ApiQuery<ConnectQuery>,
) -> Result<Json<ConnectResponse>, ApiError> {
    let history_days = query
        .history
        .map(|days| {
            let number = days.bytes().all(|b| b.is_ascii_digit()).then(|| days.parse::<i64>().ok()).flatten();
            number.ok_or_else(|| Error::invalid_because("history", "a number of days"))
        })
        .transpose()?;
    let options = ConnectOptions { number: query.number, history_days };
    let response = match app.services.instances.connect(&caller, &name, options).await? {
        ConnectOutcome::QrCode { code } => {
            let png = qr::png_data_url(&code).map_err(|_| {
                tracing::error!(length = code.len(), "QR string too long to render");
                ApiError::from(Error::ConnectFailed { reason: "unrenderable QR".into() })
            })?;
            ConnectResponse {
                success: true,
                message: "QR code generated",
                qr_code: Some(code),
                qr_code_base64: Some(png),
                pairing_code: None,
                status: "qr",
            }
        }
        ConnectOutcome::PairingCode { code } => ConnectResponse {
            success: true,
            message: "Pairing code generated",
            qr_code: None,
            qr_code_base64: None,
            pairing_code: Some(code),
            status: "pairing_code",
        },
        ConnectOutcome::Failed { reason } => return Err(Error::ConnectFailed { reason }.into()),
    };
    Ok(Json(response))
}

/// Restores a dropped session from its saved credentials, with no QR; returns at once.
#[utoipa::path(post, path = "/api/instance/reconnect/{instance}", tag = "WhatsApp connection",
    params(("instance" = String, Path, description = "The instance's name")),
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Reconnect initiated", body = ReconnectResponse),
        (status = 400, description = "Instance has no saved session — call /connect first, or Invalid instance name", body = ErrorBody),
        (status = 404, description = "Instance not found", body = ErrorBody),
        (status = 409, description = "Instance already connected", body = ErrorBody),
        (status = 500, description = "Failed to reconnect: <reason>", body = ErrorBody)))]
pub async fn reconnect_instance(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
) -> Result<Json<ReconnectResponse>, ApiError> {
    app.services.instances.reconnect(&caller, &name).await?;
    Ok(Json(ReconnectResponse { success: true, message: "Reconnect initiated", status: "connecting" }))
}

/// Unlinks the device from WhatsApp and wipes the saved credentials; the instance and its token
/// stay. Idempotent.
#[utoipa::path(delete, path = "/api/instance/logout/{instance}", tag = "WhatsApp connection",
    params(("instance" = String, Path, description = "The instance's name")),
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Instance logged out", body = InstanceStatusResponse),
        (status = 404, description = "Instance not found", body = ErrorBody),
        (status = 500, description = "Failed to logout instance", body = ErrorBody)))]
pub async fn logout_instance(
    State(app): State<AppState>,
    Authenticated(caller): Authenticated,
    InstancePath(name): InstancePath,
) -> Result<Json<InstanceStatusResponse>, ApiError> {
    app.services.instances.logout(&caller, &name).await?;
    Ok(Json(InstanceStatusResponse {
        success: true,
        message: "Instance logged out",
        instance: StatusOnly { status: "loggedout" },
    }))
}
