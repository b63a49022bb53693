//! Extractors whose every rejection is an [`ApiError`]: JSON bodies, the instance in the path, the
//! authenticated caller.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use ryze_core::Error;
use ryze_core::service::Caller;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body, read whatever its content type says (clients of the original API send bodies with
/// `curl -d`, which labels them as a form). Malformed JSON is `Invalid request body`, an unknown
/// field `Unknown field: <name>`, a value of the wrong type `Invalid field: <name>`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection: BytesRejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large()
            } else {
                ApiError::invalid_body()
            }
        })?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// Parses a request body into `T`, naming the offending field on failure.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let field = top_level_field(&error.path().to_string());
        body_error(field, error.into_inner())
    })?;
    deserializer.end().map_err(|_| ApiError::invalid_body())?;
    Ok(value)
}

fn top_level_field(path: &str) -> Option<String> {
    let first = path.split(['.', '[']).next().unwrap_or_default();
    (!first.is_empty() && first != "?").then(|| first.to_owned())
}

fn body_error(field: Option<String>, error: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    if !matches!(error.classify(), Category::Data) {
        return ApiError::invalid_body();
    }
    let text = error.to_string();
    if let Some(rest) = text.strip_prefix("unknown field `") {
        return ApiError::unknown_field(rest.split('`').next().unwrap_or_default());
    }
    if let Some(rest) = text.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default().to_owned();
        return ApiError::new(StatusCode::BAD_REQUEST, format!("Missing field: {name}"));
    }
    // A wrong type at the top (an array, a string) is not a field's fault: the body is malformed.
    let Some(field) = field else {
        return ApiError::invalid_body();
    };
    // Keep serde's "expected ..." but not the echo of the value, which may be a secret.
    let expected = text.find("expected ").map(|at| text[at..].split(" at line ").next().unwrap_or_default());
    match expected {
        Some(expected) => Error::invalid_because(field, expected).into(),
        None => Error::invalid(field).into(),
    }
}

/// A query string whose rejection is an [`ApiError`] in the envelope: a parameter that cannot be
/// read (given twice, say) is `Invalid field: <name>`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(query)) => Ok(Self(query)),
            Err(rejection) => {
                // serde names the parameter in backticks: "duplicate field `status`".
                let text = rejection.body_text();
                let field = text.split('`').nth(1).filter(|f| !f.is_empty()).unwrap_or("query");
                Err(Error::invalid(field.to_owned()).into())
            }
        }
    }
}

/// The `{instance}` path segment: the instance's name.
#[derive(Debug)]
pub struct InstancePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for InstancePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::from(Error::InstanceNotFound))?;
        Ok(Self(name))
    }
}

/// The caller the authentication layer resolved for this request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // Only reachable on a route without the authentication layer: a wiring bug, not a client's.
        parts.extensions.get::<Authenticated>().cloned().ok_or_else(ApiError::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ryze_core::service::CreateInstance;

    fn message(body: &str) -> String {
        parse_body::<CreateInstance>(body.as_bytes()).unwrap_err().message.into_owned()
    }

    #[test]
    fn bodies_fail_with_the_contract_messages() {
        assert_eq!(message(""), "Invalid request body");
        assert_eq!(message("{"), "Invalid request body");
        assert_eq!(message("[1]"), "Invalid request body");
        assert_eq!(message("\"name\""), "Invalid request body");
        assert_eq!(message("{\"name\":\"a\"} trailing"), "Invalid request body");
        assert_eq!(message("{\"nmae\":\"a\"}"), "Unknown field: nmae");
        assert_eq!(message("{\"proxyEnabled\":\"yes\"}"), "Invalid field: proxyEnabled (expected a boolean)");
        assert_eq!(
            message("{\"webhookEvents\":[\"nope\"]}").split(' ').take(3).collect::<Vec<_>>(),
            ["Invalid", "field:", "webhookEvents"]
        );
    }

    #[test]
    fn a_wrong_type_does_not_echo_the_value() {
        let text = message("{\"proxyPassword\": 123456789}");
        assert!(text.starts_with("Invalid field: proxyPassword"), "{text}");
        assert!(!text.contains("123456789"), "{text}");
    }
}
