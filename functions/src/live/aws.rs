//! API Gateway's WebSocket API as a Lambda function (`websocket`): `$connect` runs the API's checks
//! ([`super::admit`]) and records the connection for the dispatcher; `$disconnect` forgets it.
//!
//! The endpoint is `wss://{api}.execute-api.{region}.amazonaws.com/{stage}?instance=<name>&token=...`
//! (a WebSocket API takes no path after its stage), the token also accepted in a `token` or
//! `Authorization: Bearer` header. API Gateway refuses the handshake with the status of a non-2xx
//! `$connect` answer, so a refusal is the API's own (status, envelope, rate-limit headers). Frames
//! reach clients through the dispatcher ([`ryze_core::adapters::aws::ApiGatewayLiveEvents`]), never
//! through this function; it builds no router, so its bootstrap stays small.

use std::sync::Arc;

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use ryze_core::adapters::aws::{self, DynamoLiveConnections, MAX_CONNECTION_DURATION};
use ryze_core::ports::{ConnectionId, LiveConnection, LiveConnections};
use ryze_core::service::Services;

use crate::error::ApiError;

/// The largest answer body this function gives (an error envelope is far smaller).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What `$connect` and `$disconnect` need, built once per execution environment.
pub struct ConnectionGate {
    services: Services,
    connections: Arc<dyn LiveConnections>,
}

/// Builds the gate from the environment once, then answers API Gateway until the runtime ends.
pub async fn run() -> Result<(), lambda_http::Error> {
    let args: crate::config::FunctionArgs = aws::config::from_env("websocket")?;
    ryze_core::telemetry::init(args.log_format);
    let resources = args.aws.resources()?;
    let keys = Arc::new(ryze_core::secrets::Keyring::new(&args.master_key.key()?));
    let config = aws::sdk_config().await;
    // It never waits for a connect call: the connect wait is configured, and unused.
    let services = crate::lambda::services(aws::ports(&config, &resources), keys, &args);
    let connections = Arc::new(DynamoLiveConnections::from_config(&config, &resources.table));
    let gate = Arc::new(ConnectionGate::new(services, connections));
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let gate = gate.clone();
            async move { Ok::<_, lambda_http::Error>(gate.handle(event.payload).await) }
        },
    ))
    .await
}

impl ConnectionGate {
    pub fn new(services: Services, connections: Arc<dyn LiveConnections>) -> Self {
        Self { services, connections }
    }

    /// Answers one event of the WebSocket API.
    pub async fn handle(&self, request: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let context = &request.request_context;
        let Some(id) = context.connection_id.clone().map(ConnectionId) else {
            return proxy_answer(ApiError::new(StatusCode::BAD_REQUEST, "No connection id").into_response())
                .await;
        };
        match context.event_type.as_deref() {
            Some("CONNECT") => self.connect(&request, id).await,
            Some("DISCONNECT") => self.disconnect(&id).await,
            // Messages from clients have no route to this function; answered harmlessly if one comes.
            _ => proxy_answer(StatusCode::OK.into_response()).await,
        }
    }

    #[tracing::instrument(skip_all)]
    async fn connect(
        &self,
        request: &ApiGatewayWebsocketProxyRequest,
        id: ConnectionId,
    ) -> ApiGatewayProxyResponse {
        let query = &request.query_string_parameters;
        let token = crate::auth::presented_token(&request.headers).or_else(|| query.first("token"));
        let name = query.first("instance").unwrap_or_default();
        let admitted = match super::admit(&self.services, token, name).await {
            Ok(admitted) => admitted,
            Err(refusal) => return proxy_answer(refusal).await,
        };
        let instance = admitted.instance.id.clone();
        let connection = LiveConnection {
            instance: instance.clone(),
            id,
            expires_at: chrono::Utc::now() + MAX_CONNECTION_DURATION,
        };
        let mut answer = match self.connections.put(&connection).await {
            Ok(()) => {
                tracing::info!(%instance, "websocket connected");
                StatusCode::OK.into_response()
            }
            Err(error) => {
                tracing::error!(%instance, %error, "websocket connection not recorded");
                ApiError::internal().into_response()
            }
        };
        crate::auth::stamp_rate_headers(answer.headers_mut(), &admitted.decision);
        proxy_answer(answer).await
    }

    async fn disconnect(&self, id: &ConnectionId) -> ApiGatewayProxyResponse {
        // API Gateway ignores this answer: a failure only leaves a record that expires, or that the
        // dispatcher forgets at its first post (Gone).
        let answer = match self.connections.delete_by_id(id).await {
            Ok(()) => StatusCode::OK.into_response(),
            Err(error) => {
                tracing::error!(%error, "websocket connection not forgotten");
                ApiError::internal().into_response()
            }
        };
        proxy_answer(answer).await
    }
}

/// An answer of the API as API Gateway's proxy response: status, headers and body.
async fn proxy_answer(response: Response) -> ApiGatewayProxyResponse {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await.unwrap_or_default();
    let mut answer = ApiGatewayProxyResponse::default();
    answer.status_code = i64::from(parts.status.as_u16());
    answer.headers = parts.headers;
    answer.body = (!body.is_empty()).then(|| Body::Text(String::from_utf8_lossy(&body).into_owned()));
    answer
}
