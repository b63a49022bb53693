//! The AWS adapters: the registry, rate counters and delivery log on one DynamoDB table, the command
//! and event queues on SQS FIFO (group = instance), webhook attempts on a FIFO queue (first
//! attempts, group = webhook) beside a standard one (delayed retries), and blobs in S3.
//!
//! Clients come from the standard AWS environment (region, credentials, `AWS_ENDPOINT_URL` for a
//! local emulator); resource names come from [`AwsResources`], read from `RYZE_*` variables
//! through [`AwsArgs`] (see [`config`]).

mod blobs;
mod cache;
mod channels;
pub mod config;
mod counters;
mod deliveries;
mod items;
mod leases;
mod live;
mod ordered_and_delayed;
pub mod provision;
mod queue;
mod registry;

use std::sync::Arc;

pub use blobs::S3BlobStore;
pub use cache::READ_TTL;
pub use channels::SqsChannels;
pub use config::{AwsArgs, ConfigError, MasterKeyArgs};
pub use counters::DynamoRateCounter;
pub use deliveries::DynamoDeliveryLog;
pub use live::{ApiGatewayLiveEvents, DynamoLiveConnections, LiveOutcome, MAX_CONNECTION_DURATION};
pub use ordered_and_delayed::OrderedAndDelayed;
pub use queue::{COMMAND_VISIBILITY, SqsQueue};
pub use registry::DynamoRegistry;

use std::time::Duration;

use crate::Error;
use crate::domain::{Event, LeaseTiming, SessionCommand};
use crate::ports::Ports;

/// How often a waiting connect call reads its request item on these adapters: each read is a
/// DynamoDB consistent read, billed, and the host's code arrives within a second or two.
pub const CONNECT_POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Where a deployment's state lives, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsResources {
    pub table: String,
    pub command_queue_url: String,
    /// FIFO: one instance's events reach the dispatcher in the order they happened.
    pub event_queue_url: String,
    /// First attempts of webhook deliveries (FIFO, a group per webhook: each gets events in order).
    pub ordered_delivery_queue_url: String,
    /// Retries of webhook deliveries (standard: retries are delayed sends).
    pub delivery_queue_url: String,
    /// Its dead-letter queue: deliveries whose schedule ran out.
    pub dead_delivery_queue_url: String,
    pub bucket: String,
}

impl AwsResources {
    pub const VARIABLES: [&'static str; 7] = [
        "RYZE_TABLE",
        "RYZE_COMMAND_QUEUE_URL",
        "RYZE_EVENT_QUEUE_URL",
        "RYZE_ORDERED_DELIVERY_QUEUE_URL",
        "RYZE_DELIVERY_QUEUE_URL",
        "RYZE_DEAD_DELIVERY_QUEUE_URL",
        "RYZE_BUCKET",
    ];

    /// `NAME=value` lines that configure a shell (`eval "$(...)"`).
    pub fn to_env_lines(&self) -> String {
        let values = [
            &self.table,
            &self.command_queue_url,
            &self.event_queue_url,
            &self.ordered_delivery_queue_url,
            &self.delivery_queue_url,
            &self.dead_delivery_queue_url,
            &self.bucket,
        ];
        Self::VARIABLES.iter().zip(values).map(|(name, value)| format!("{name}={value}\n")).collect()
    }
}

/// The SDK configuration from the standard AWS environment.
pub async fn sdk_config() -> aws_config::SdkConfig {
    sdk_defaults().load().await
}

/// The standard AWS environment, with an HTTPS client on rustls and ring: the SDK crates are built
/// without their default client (see the workspace manifest), so every configuration starts here.
pub fn sdk_defaults() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let https =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https)
}

/// S3 clients address buckets by path when an endpoint is configured (a local emulator has no
/// per-bucket host names); on AWS itself virtual-hosted addressing is kept.
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = config.endpoint_url().is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config).force_path_style(path_style).build(),
    )
}

/// Every port on AWS, for a process that receives no session commands (the API, the dispatcher).
pub fn ports(config: &aws_config::SdkConfig, resources: &AwsResources) -> Ports {
    host_ports(config, resources, LeaseTiming::default())
}

/// Every port on AWS for a session host beating at `timing`: received commands stay hidden for
/// its [`LeaseTiming::command_visibility`], so the commands a dead host held are back in time for
/// its takeover.
pub fn host_ports(config: &aws_config::SdkConfig, resources: &AwsResources, timing: LeaseTiming) -> Ports {
    let visibility = timing.command_visibility();
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let registry = Arc::new(DynamoRegistry::new(dynamodb.clone(), &resources.table));
    Ports {
        registry: registry.clone(),
        leases: registry,
        counters: Arc::new(DynamoRateCounter::new(dynamodb.clone(), &resources.table)),
        delivery_log: Arc::new(DynamoDeliveryLog::new(dynamodb, &resources.table)),
        commands: Arc::new(
            SqsQueue::fifo(sqs.clone(), &resources.command_queue_url, |command: &SessionCommand| {
                command.instance().to_string()
            })
            .with_receive_visibility(visibility),
        ),
        channels: Arc::new(
            SqsChannels::new(sqs.clone(), &resources.command_queue_url).with_receive_visibility(visibility),
        ),
        events: Arc::new(SqsQueue::fifo(sqs.clone(), &resources.event_queue_url, |event: &Event| {
            event.instance.to_string()
        })),
        deliveries: Arc::new(OrderedAndDelayed::new(
            sqs.clone(),
            &resources.ordered_delivery_queue_url,
            &resources.delivery_queue_url,
        )),
        dead_deliveries: Arc::new(SqsQueue::standard(sqs, &resources.dead_delivery_queue_url)),
        blobs: Arc::new(S3BlobStore::new(s3_client(config), &resources.bucket)),
    }
}

/// An SDK failure as a storage error, with the service's message kept as its cause. Every service
/// crate shares the one `SdkError` type, so this serves DynamoDB, SQS and S3 alike.
fn sdk_error<E, R>(error: aws_sdk_dynamodb::error::SdkError<E, R>) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    Error::storage(aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_configuration_carries_the_https_client() {
        // The SDK crates have no default client: a configuration without ours would fail its first call.
        let config = sdk_defaults().region(aws_config::Region::new("us-east-1")).load().await;
        assert!(config.http_client().is_some());
    }
}
