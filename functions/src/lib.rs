//! The control plane: every route of the HTTP contract, in one axum [`Router`].
//!
//! The same router serves `ryze serve` (through `axum::serve`), the Lambda functions (through
//! `lambda_http`) and the tests (through `tower::ServiceExt::oneshot`). Handlers are thin: extract,
//! call one method of a `ryze_core` service, map the result to a view.
//!
//! Layout:
//! - [`routes`]: the handlers, each carrying its OpenAPI annotation.
//! - [`auth`]: the token and rate-limit layer in front of `/api`.
//! - [`extract`]: body, path and caller extractors whose rejections are [`ApiError`]s.
//! - [`error`]: [`ApiError`], the one place the contract's error messages are written.
//! - [`views`] and [`list`]: response bodies; [`qr`]: the QR code PNG.
//! - [`openapi`]: the document's frame, served at `/openapi.json`; [`docs`]: the Swagger UI page.
//! - [`config`]: the settings `ryze serve` and the Lambda functions share, as clap flags and
//!   `RYZE_*` variables.
//! - [`lambda`]: the router as a Lambda function (the `api` and `connect` binaries).
//! - [`dispatcher`]: the event dispatcher as a Lambda function on its SQS queues (`dispatcher`).
//! - [`live`]: WebSocket delivery: the hub and upgrade routes of `ryze serve`, and API Gateway's
//!   `$connect`/`$disconnect` as a Lambda function (`websocket`).
//! - [`server`]: the router on a TCP listener, for `ryze serve`, with timeouts and a connection cap.

pub mod auth;
pub mod config;
pub mod dispatcher;
pub mod docs;
pub mod error;
pub mod event_views;
pub mod extract;
pub mod lambda;
pub mod list;
pub mod live;
pub mod openapi;
pub mod qr;
pub mod routes;
pub mod server;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ryze_core::service::Services;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;

use crate::error::FailureCause;
use crate::list::ListRenderer;

/// What every handler shares: the services, built once per process.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub list_renderer: Arc<ListRenderer>,
    /// The WebSocket sockets of this process: `ryze serve` has them, Lambda does not (API
    /// Gateway's WebSocket API holds them there).
    pub live: Option<Arc<live::LiveHub>>,
}

impl AppState {
    pub fn new(services: Services) -> Self {
        Self { services, list_renderer: Arc::new(ListRenderer::default()), live: None }
    }

    /// This state, serving `GET /ws` from `hub` (which the dispatcher publishes to).
    pub fn with_live(mut self, hub: Arc<live::LiveHub>) -> Self {
        self.live = Some(hub);
        self
    }
}

/// The routes, split by whether they need a token, and the document collected from them.
struct Routes {
    authenticated: Router<AppState>,
    public: Router<AppState>,
    document: utoipa::openapi::OpenApi,
}

fn routes() -> Routes {
    let (authenticated, mut document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::authenticated())
        .split_for_parts();
    let (public, public_document) = routes::public().split_for_parts();
    document.merge(public_document);
    openapi::complete(&mut document);
    Routes { authenticated, public, document }
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().document
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let Routes { authenticated, public, document } = routes();
    // Serialised once: the document is fixed for the life of the process.
    let document = (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        Bytes::from(serde_json::to_vec(&document).expect("the OpenAPI document serialises")),
    );
    let authenticated =
        authenticated.route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    let router = Router::new().merge(authenticated);
    #[cfg(feature = "websocket")]
    let router = router
        .route("/ws", get(live::socket::socket_by_query))
        .route("/ws/{instance}", get(live::socket::socket_by_path));
    router
        .merge(public)
        .route("/openapi.json", get(move || std::future::ready(document.clone())))
        .merge(docs::routes())
        .fallback(routes::route_not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn(log_failures))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The span of a request: its method, path and route. Never its query, where a WebSocket upgrade
/// carries its token, nor its headers (`token`, `Authorization`).
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    tracing::debug_span!("request", method = %request.method(), path = request.uri().path(), route)
}

/// Logs the cause that an `ApiError` left on a 5xx response; the client saw only the fixed message.
async fn log_failures(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    if let Some(FailureCause(cause)) = response.extensions().get::<FailureCause>() {
        tracing::error!(%method, %path, status = response.status().as_u16(), error = %cause,
            source = ?std::error::Error::source(&**cause).map(ToString::to_string), "request failed");
    }
    response
}
