//! The router as a Lambda function behind API Gateway (REST v1 and HTTP v2 events alike).
//!
//! Everything is built once per execution environment (the cold start), then every invocation is
//! one request through the same [`Router`](axum::Router) `ryze serve` runs. Configuration is the
//! environment: the AWS one (region, credentials, `AWS_ENDPOINT_URL`), and the `RYZE_*` variables of
//! [`FunctionArgs`] (the resource names, `RYZE_MASTER_KEY`, `RYZE_CONNECT_WAIT_SECS`...), parsed by
//! clap from an empty command line with `ryze serve`'s names and defaults. The websocket function
//! ([`crate::live::aws`]) builds its services here too.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::Uri;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use ryze_core::adapters::aws;
use ryze_core::clock::SystemClock;
use ryze_core::outbound::OutboundClient;
use ryze_core::ports::Ports;
use ryze_core::secrets::Keyring;
use ryze_core::service::Services;
use ryze_core::telemetry;
use tower::ServiceBuilder;

use crate::AppState;
use crate::config::FunctionArgs;

/// Which function this process is: its name, for the configuration's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Every route but the connect call (API Gateway's default 29 s integration timeout).
    Api,
    /// The connect route, with the long timeout it needs to wait for the session host's code
    /// (the template sets its `RYZE_CONNECT_WAIT_SECS`).
    Connect,
}

impl Function {
    fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Connect => "connect",
        }
    }
}

/// Builds the services from the environment and serves Lambda invocations until the runtime ends.
pub async fn run(function: Function) -> Result<(), lambda_http::Error> {
    let args: FunctionArgs = aws::config::from_env(function.name())?;
    telemetry::init(args.log_format);
    let resources = args.aws.resources()?;
    let keys = Arc::new(Keyring::new(&args.master_key.key()?));
    let services = services(aws::ports(&aws::sdk_config().await, &resources), keys, &args);
    let app = ServiceBuilder::new().map_request(strip_stage).service(crate::router(AppState::new(services)));
    lambda_http::run(app).await
}

/// The services on `ports`, configured by `args` (the connect wait, polling as often as the AWS
/// adapters call for, and the customer URLs' targets).
pub(crate) fn services(ports: Ports, keys: Arc<Keyring>, args: &FunctionArgs) -> Services {
    let policy = args.connect.policy(aws::CONNECT_POLL_INTERVAL);
    let outbound = OutboundClient::new(args.targets.policy());
    Services::new(ports, keys, Arc::new(SystemClock), policy, outbound)
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
