//! WebSocket delivery on AWS: the connections API Gateway's WebSocket API holds, recorded on the
//! table ([`DynamoLiveConnections`]), and the dispatcher's [`LiveEvents`] that posts each frame to
//! them through the API Gateway Management API ([`ApiGatewayLiveEvents`]).
//!
//! A connection is one item under its instance (`LIVE#{instance}` / `CONNECTION#{id}`), so the
//! dispatcher's read per event is one consistent query of one partition. `$disconnect` knows only
//! the connection id, so the items are also in the listing index by id; that index trails writes by
//! a moment, and a connection that closes within that moment keeps its item until a post to it
//! answers Gone (which forgets it) or its `expiresAt` passes. Reads skip expired items, since TTL
//! deletion is lazy (and an emulator does not do it at all).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::items::{self, Item, n, s};
use super::sdk_error;
use crate::domain::{Instance, InstanceId};
use crate::ports::{ConnectionId, LiveConnection, LiveConnections};
use crate::service::dispatch::LiveEvents;
use crate::{Error, Result};

/// API Gateway closes every WebSocket connection after two hours at the latest.
pub const MAX_CONNECTION_DURATION: chrono::Duration = chrono::Duration::hours(2);

/// How long one post may take: a stalled management endpoint must not hold up the dispatcher's
/// batch (its webhook deliveries wait behind it).
const POST_TIMEOUT: Duration = Duration::from_secs(5);

const CONNECTION: &str = "connection";

/// [`LiveConnections`] on the single table (layout in [`super::items`]).
#[derive(Debug, Clone)]
pub struct DynamoLiveConnections {
    client: Client,
    table: Arc<str>,
}

impl DynamoLiveConnections {
    pub fn new(client: Client, table: &str) -> Self {
        Self { client, table: table.into() }
    }

    /// On a client of its own from `config`.
    pub fn from_config(config: &aws_config::SdkConfig, table: &str) -> Self {
        Self::new(Client::new(config), table)
    }

    fn item(connection: &LiveConnection) -> Item {
        let id = &connection.id.0;
        items::with(
            items::live_connection_key(&connection.instance, id),
            [
                (CONNECTION, s(id.clone())),
                (items::EXPIRES_AT, n(connection.expires_at.timestamp())),
                (items::GSI1_PK, s(items::live_connection_by_id(id))),
                (items::GSI1_SK, s(connection.instance.to_string())),
            ],
        )
    }

    async fn delete_key(&self, key: Item) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}

fn expiry(item: &Item) -> Result<DateTime<Utc>> {
    let seconds = i64::try_from(items::number(item, items::EXPIRES_AT)?).map_err(Error::storage)?;
    DateTime::from_timestamp(seconds, 0).ok_or_else(|| Error::storage("expiresAt out of range"))
}

#[async_trait]
impl LiveConnections for DynamoLiveConnections {
    async fn put(&self, connection: &LiveConnection) -> Result<()> {
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(Self::item(connection)))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn of_instance(&self, instance: &InstanceId) -> Result<Vec<LiveConnection>> {
        let query = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(items::live_connections_of(instance)))
            .consistent_read(true);
        let now = Utc::now();
        let mut found = Vec::new();
        for item in items::all(query).await? {
            let expires_at = expiry(&item)?;
            if expires_at > now {
                let id = ConnectionId(items::string(&item, CONNECTION)?.to_owned());
                found.push(LiveConnection { instance: instance.clone(), id, expires_at });
            }
        }
        Ok(found)
    }

    async fn delete(&self, connection: &LiveConnection) -> Result<()> {
        self.delete_key(items::live_connection_key(&connection.instance, &connection.id.0)).await
    }

    async fn delete_by_id(&self, id: &ConnectionId) -> Result<()> {
        let found = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(items::GSI1)
            .key_condition_expression("gsi1pk = :pk")
            .expression_attribute_values(":pk", s(items::live_connection_by_id(&id.0)))
            .send()
            .await
            .map_err(sdk_error)?;
        // One item in practice: API Gateway never reuses a connection id.
        for item in found.items.unwrap_or_default() {
            let Some(AttributeValue::S(instance)) = item.get(items::GSI1_SK) else {
                return Err(Error::storage("a live connection without its instance"));
            };
            let instance = InstanceId::from_stored(instance.clone());
            self.delete_key(items::live_connection_key(&instance, &id.0)).await?;
        }
        Ok(())
    }
}

/// The dispatcher's [`LiveEvents`] on AWS: each frame goes to every recorded connection of its
/// instance at once (`PostToConnection`), and a connection API Gateway no longer has (410 Gone) is
/// forgotten. Delivery is live only: a post that fails otherwise is logged, not retried.
pub struct ApiGatewayLiveEvents {
    client: aws_sdk_apigatewaymanagement::Client,
    connections: Arc<dyn LiveConnections>,
}

impl ApiGatewayLiveEvents {
    /// Posts through the management endpoint of one WebSocket API stage:
    /// `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`.
    pub fn new(
        config: &aws_config::SdkConfig,
        endpoint: &str,
        connections: Arc<dyn LiveConnections>,
    ) -> Self {
        let client = aws_sdk_apigatewaymanagement::Client::from_conf(
            aws_sdk_apigatewaymanagement::config::Builder::from(config).endpoint_url(endpoint).build(),
        );
        Self { client, connections }
    }
}

/// How one post ended.
enum Posted {
    Sent,
    Gone,
    Failed(String),
}

async fn post(client: aws_sdk_apigatewaymanagement::Client, id: String, frame: Arc<str>) -> Posted {
    let sent =
        client.post_to_connection().connection_id(id).data(Blob::new(frame.as_bytes().to_vec())).send();
    match tokio::time::timeout(POST_TIMEOUT, sent).await {
        Ok(Ok(_)) => Posted::Sent,
        // By status too: the error type of a 410 is read from a header a proxy may not keep.
        Ok(Err(error))
            if error.as_service_error().is_some_and(|e| e.is_gone_exception())
                || error.raw_response().is_some_and(|r| r.status().as_u16() == 410) =>
        {
            Posted::Gone
        }
        Ok(Err(error)) => Posted::Failed(sdk_error(error).to_string()),
        Err(_) => Posted::Failed(format!("no answer within {} s", POST_TIMEOUT.as_secs())),
    }
}

/// What became of one frame's posts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveOutcome {
    pub sent: usize,
    /// Answered Gone (410), so forgotten.
    pub gone: usize,
    pub failed: usize,
}

impl ApiGatewayLiveEvents {
    /// Posts `frame` to every recorded connection of `instance`, all at once: an instance has few
    /// sockets, and each post is one short request. It returns when every post has ended, so the
    /// frames of one connection keep their order.
    pub async fn deliver(&self, instance: &InstanceId, frame: Arc<str>) -> Result<LiveOutcome> {
        let mut posts = tokio::task::JoinSet::new();
        for connection in self.connections.of_instance(instance).await? {
            let posting = post(self.client.clone(), connection.id.0.clone(), frame.clone());
            posts.spawn(async move { (connection, posting.await) });
        }
        let mut outcome = LiveOutcome::default();
        while let Some(joined) = posts.join_next().await {
            let Ok((connection, posted)) = joined else {
                outcome.failed += 1;
                continue;
            };
            match posted {
                Posted::Sent => outcome.sent += 1,
                Posted::Gone => {
                    outcome.gone += 1;
                    if let Err(error) = self.connections.delete(&connection).await {
                        tracing::warn!(%instance, %error, "gone websocket connection kept");
                    }
                }
                Posted::Failed(error) => {
                    outcome.failed += 1;
                    tracing::warn!(%instance, %error, "websocket frame not delivered");
                }
            }
        }
        Ok(outcome)
    }
}

#[async_trait]
impl LiveEvents for ApiGatewayLiveEvents {
    async fn publish(&self, instance: &Instance, frame: Arc<str>) {
        if let Err(error) = self.deliver(&instance.id, frame).await {
            tracing::warn!(instance = %instance.id, %error, "websocket connections not read");
        }
    }
}
