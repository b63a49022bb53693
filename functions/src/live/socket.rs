//! The upgrade routes of [`super::LiveHub`]: the API's checks, then one socket per client.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use ryze_core::domain::InstanceId;
use serde::Deserialize;

use super::{LiveHub, PING_EVERY};
use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
pub struct SocketQuery {
    instance: Option<String>,
    token: Option<String>,
}

/// `GET /ws/{instance}`.
pub async fn socket_by_path(
    State(app): State<AppState>,
    Path(instance): Path<String>,
    Query(query): Query<SocketQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    open(app, Some(instance), query.token, &headers, upgrade).await
}

/// `GET /ws?instance=<name>`: the same, for clients that cannot put the name in the path.
pub async fn socket_by_query(
    State(app): State<AppState>,
    Query(query): Query<SocketQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    open(app, query.instance, query.token, &headers, upgrade).await
}

/// The API's checks ([`super::admit`]), then the upgrade.
async fn open(
    app: AppState,
    instance: Option<String>,
    query_token: Option<String>,
    headers: &HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(hub) = app.live.clone() else { return ApiError::route_not_found().into_response() };
    let token = crate::auth::presented_token(headers).map(str::to_owned).or(query_token);
    let name = instance.unwrap_or_default();
    let admitted = match super::admit(&app.services, token.as_deref(), &name).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let mut response = match upgrade {
        Err(_) => {
            ApiError::new(axum::http::StatusCode::BAD_REQUEST, "WebSocket upgrade required").into_response()
        }
        Ok(upgrade) => {
            let id = admitted.instance.id.clone();
            upgrade.on_upgrade(move |socket| stream(socket, hub, id)).into_response()
        }
    };
    crate::auth::stamp_rate_headers(response.headers_mut(), &admitted.decision);
    response
}

/// One socket: frames out as they come, pings, and the client's close.
async fn stream(mut socket: WebSocket, hub: Arc<LiveHub>, instance: InstanceId) {
    let (id, mut frames) = hub.subscribe(&instance);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if socket.send(Message::Text(frame.as_ref().into())).await.is_err() {
                        break;
                    }
                }
                None => break, // dropped as too slow
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    hub.unsubscribe(&instance, id);
}
