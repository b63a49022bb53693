//! `ApiError`: the one error type of the HTTP layer, and the only place the contract's error
//! messages are written.
//!
//! Every failure, from a core rule to an unknown route or a panic, becomes
//! `{"success": false, "error": {"message": "..."}}` with its status. An internal cause travels in
//! the response's extensions to the logging layer and never into the body.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ryze_core::Error;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    cause: Option<Arc<Error>>,
}

/// The error envelope, for the OpenAPI document.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub error: ErrorMessage,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorMessage {
    /// What went wrong; clients classify by status and this text.
    pub message: String,
}

/// The cause of a 5xx, left in the response extensions for `log_failures`.
#[derive(Debug, Clone)]
pub struct FailureCause(pub Arc<Error>);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { status, message: message.into(), cause: None }
    }

    pub fn invalid_body() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Invalid request body")
    }

    pub fn unknown_field(name: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, format!("Unknown field: {name}"))
    }

    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Route not found")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
    }

    pub fn rate_limited() -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded. Try again later.")
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    pub fn payload_too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        use StatusCode as S;
        let (status, message): (StatusCode, Cow<'static, str>) = match &error {
            Error::MissingToken => (S::UNAUTHORIZED, "Missing token in header".into()),
            Error::InvalidToken => (S::UNAUTHORIZED, "Invalid token".into()),
            Error::AccountTokenRequired => (S::UNAUTHORIZED, "Invalid account token".into()),
            Error::InstanceMismatch => (S::FORBIDDEN, "Instance token does not match this instance".into()),
            Error::InstanceNotFound => (S::NOT_FOUND, "Instance not found".into()),
            Error::AccountNotFound => (S::NOT_FOUND, "Account not found".into()),
            Error::InstanceExists(_) => (S::CONFLICT, "Instance already exists".into()),
            Error::TokenInUse => (S::CONFLICT, "Token already in use".into()),
            Error::QuotaExceeded => (S::FORBIDDEN, "Account instance quota exceeded".into()),
            Error::NameRequired => (S::BAD_REQUEST, "Instance name is required".into()),
            Error::InvalidName => (S::BAD_REQUEST, "Invalid instance name".into()),
            Error::InvalidField { field, detail: None } => {
                (S::BAD_REQUEST, format!("Invalid field: {field}").into())
            }
            Error::InvalidField { field, detail: Some(detail) } => {
                (S::BAD_REQUEST, format!("Invalid field: {field} ({detail})").into())
            }
            Error::MissingField { field } => (S::BAD_REQUEST, format!("Missing field: {field}").into()),
            Error::EmptyUpdate => (S::BAD_REQUEST, "At least one field is required".into()),
            Error::InvalidPhoneNumber => (S::BAD_REQUEST, "Invalid phone number".into()),
            Error::AlreadyConnected => (S::CONFLICT, "Instance already connected".into()),
            Error::NoSavedSession => {
                (S::BAD_REQUEST, "Instance has no saved session — call /connect first".into())
            }
            Error::ConnectFailed { .. } => (S::INTERNAL_SERVER_ERROR, "Failed to generate QR code".into()),
            Error::ReconnectFailed { reason } => {
                (S::INTERNAL_SERVER_ERROR, format!("Failed to reconnect: {reason}").into())
            }
            Error::LogoutFailed(_) => (S::INTERNAL_SERVER_ERROR, "Failed to logout instance".into()),
            Error::WebhookLimit => {
                (S::CONFLICT, "Webhook limit reached: at most 3 enabled per instance".into())
            }
            Error::WebhookNotFound => (S::NOT_FOUND, "Webhook not found".into()),
            Error::WebsocketNotConfigured => {
                (S::NOT_FOUND, "WebSocket not configured for this instance".into())
            }
            Error::WebsocketDisabled(name) => (
                S::BAD_REQUEST,
                format!(
                    "WebSocket is not enabled for this instance. Configure it first using POST /api/events/websocket/{name}"
                )
                .into(),
            ),
            Error::DeliveryNotFound => (S::NOT_FOUND, "Delivery not found".into()),
            // The last two are the session hosts' own; a request never meets them.
            Error::Unseal
            | Error::BlobConflict
            | Error::Storage(_)
            | Error::LeaseLost
            | Error::HostSuperseded => {
                (S::INTERNAL_SERVER_ERROR, "Internal server error".into())
            }
        };
        let cause = status.is_server_error().then(|| Arc::new(error));
        Self { status, message, cause }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { success: false, error: ErrorMessage { message: self.message.into_owned() } };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(FailureCause(cause));
        }
        response
    }
}
