//! The router as a Lambda function behind API Gateway (REST v1 and HTTP v2 events alike).
//!
//! Everything is built once per execution environment (the cold start), then every invocation is
//! one request through the same [`Router`](axum::Router) `ryze serve` runs. Configuration is the
//! environment: the AWS one (region, credentials, `AWS_ENDPOINT_URL`), the `RYZE_*` resource names,
//! `RYZE_MASTER_KEY`, and `RYZE_CONNECT_WAIT_SECS` for the connect function. The websocket function
//! ([`crate::live::aws`]) builds its services here too.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::Uri;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use ryze_core::adapters::aws;
use ryze_core::clock::SystemClock;
use ryze_core::outbound::{OutboundClient, TargetPolicy};
use ryze_core::ports::Ports;
use ryze_core::secrets::{Keyring, MasterKey};
use ryze_core::service::{ConnectPolicy, Services};
use ryze_core::telemetry::{self, LogFormat};
use tower::ServiceBuilder;

use crate::AppState;

/// Which function this process is: they differ only in how long a connect call may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Every route; short calls (API Gateway's default 29 s integration timeout).
    Api,
    /// The connect route, with the long timeout it needs to wait for the session host's code.
    Connect,
}

/// How often a waiting connect call reads its request item: the host answers within a second or
/// two, and each read is a consistent read billed as one unit.
const CONNECT_POLL: Duration = Duration::from_millis(50);

/// Builds the services from the environment and serves Lambda invocations until the runtime ends.
pub async fn run(function: Function) -> Result<(), lambda_http::Error> {
    init_logging();
    let resources = aws::AwsResources::from_env()?;
    let default_wait = match function {
        Function::Api => 20,
        Function::Connect => 55,
    };
    let services = services(aws::ports(&aws::sdk_config().await, &resources), default_wait)?;
    let app = ServiceBuilder::new().map_request(strip_stage).service(crate::router(AppState::new(services)));
    lambda_http::run(app).await
}

/// JSON logs unless `RYZE_LOG_FORMAT` says otherwise: what every function sets up first.
pub(crate) fn init_logging() {
    let format =
        std::env::var("RYZE_LOG_FORMAT").ok().and_then(|f| f.parse().ok()).unwrap_or(LogFormat::Json);
    telemetry::init(format);
}

/// The services on `ports`, configured from the environment (`RYZE_MASTER_KEY`,
/// `RYZE_CONNECT_WAIT_SECS`, else `default_wait_secs`, and `RYZE_ALLOW_PRIVATE_TARGETS`).
pub(crate) fn services(ports: Ports, default_wait_secs: u64) -> Result<Services, lambda_http::Error> {
    let keys = Arc::new(Keyring::new(&MasterKey::from_env()?));
    let wait_secs = match std::env::var("RYZE_CONNECT_WAIT_SECS") {
        Ok(text) => text.parse().map_err(|_| "RYZE_CONNECT_WAIT_SECS: expected whole seconds")?,
        Err(_) => default_wait_secs,
    };
    let policy = ConnectPolicy { wait: Duration::from_secs(wait_secs), poll_interval: CONNECT_POLL };
    let allow_private = match std::env::var("RYZE_ALLOW_PRIVATE_TARGETS") {
        Ok(text) => parse_flag(&text).ok_or("RYZE_ALLOW_PRIVATE_TARGETS: expected true or false")?,
        Err(_) => false,
    };
    let outbound = OutboundClient::new(TargetPolicy { allow_private });
    Ok(Services::new(ports, keys, Arc::new(SystemClock), policy, outbound))
}

/// A boolean variable's value, as `ryze serve` reads its flags.
pub(crate) fn parse_flag(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Removes the API Gateway stage (`/v1`) from the path: `lambda_http` puts it in front of every
/// path of a named stage, while the router's routes start at `/api` and `/health`.
fn strip_stage(mut request: Request<lambda_http::Body>) -> Request<lambda_http::Body> {
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.stage.clone(),
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") else { return request };
    let prefix = format!("/{stage}");
    let Some(path_and_query) = request.uri().path_and_query() else { return request };
    let Some(rest) = path_and_query.as_str().strip_prefix(&prefix) else { return request };
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return request;
    }
    let rest = if rest.starts_with('/') { rest.to_owned() } else { format!("/{rest}") };
    if let Ok(uri) = Uri::builder().path_and_query(rest).build() {
        *request.uri_mut() = uri;
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through_stage(stage: &str, uri: &str) -> String {
        let mut context = lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
        context.stage = Some(stage.to_owned());
        let request = lambda_http::http::Request::builder()
            .uri(uri)
            .body(lambda_http::Body::Empty)
            .unwrap()
            .with_request_context(RequestContext::ApiGatewayV1(context));
        strip_stage(request).uri().to_string()
    }

    #[test]
    fn the_stage_is_taken_off_the_front_of_the_path_only() {
        assert_eq!(through_stage("v1", "/v1/health"), "/health");
        assert_eq!(
            through_stage("v1", "/v1/api/instance/list?instanceName=a"),
            "/api/instance/list?instanceName=a"
        );
        assert_eq!(through_stage("v1", "/v1"), "/");
        assert_eq!(through_stage("v1", "/v10/health"), "/v10/health");
        assert_eq!(through_stage("$default", "/health"), "/health");
    }
}
