//! The dispatcher as a Lambda function: SQS hands it batches from the event queue (expand each
//! event into deliveries) and from the two delivery queues (make one attempt each); it answers with
//! the batch items that failed (`ReportBatchItemFailures`), so SQS hands out again only those.
//!
//! A record is told apart by its body: a delivery attempt names its `key`, an event does not.
//! Records of one FIFO message group (one instance's events, one webhook's first attempts) are
//! handled one after another in the order SQS gave them, and after a failure the rest of the group
//! is reported failed unhandled, as SQS requires of FIFO batches to keep their order. Groups, and
//! the ungrouped retries, run all at once: an attempt may take up to 15 s.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use ryze_core::adapters::aws;
use ryze_core::clock::SystemClock;
use ryze_core::domain::{DeliveryAttempt, Event};
use ryze_core::outbound::OutboundClient;
use ryze_core::secrets::Keyring;
use ryze_core::service::dispatch::{Dispatcher, DispatcherConfig, LiveEvents};
use ryze_core::telemetry;
use serde::Deserialize;

use crate::config::DispatcherArgs;

#[derive(Deserialize)]
#[serde(untagged)]
enum Record {
    Attempt(DeliveryAttempt),
    Event(Event),
}

/// Builds the dispatcher from the environment once, then handles batches until the runtime ends.
pub async fn run() -> Result<(), lambda_http::Error> {
    let args: DispatcherArgs = aws::config::from_env("dispatcher")?;
    telemetry::init(args.log_format);
    let resources = args.aws.resources()?;
    let keys = Arc::new(Keyring::new(&args.master_key.key()?));
    let config = aws::sdk_config().await;
    let ports = aws::ports(&config, &resources);
    // WebSocket frames go to API Gateway's connections when the stack has its WebSocket API.
    let live = args.websocket_endpoint.as_deref().filter(|e| !e.is_empty()).map(|endpoint| {
        let connections = Arc::new(aws::DynamoLiveConnections::from_config(&config, &resources.table));
        Arc::new(aws::ApiGatewayLiveEvents::new(&config, endpoint, connections)) as Arc<dyn LiveEvents>
    });
    let schedule = args.events.webhook_retry_schedule;
    let public_url = args.events.public_url.unwrap_or_default();
    let dispatcher = Arc::new(Dispatcher::new(
        &ports,
        keys,
        Arc::new(SystemClock),
        Arc::new(OutboundClient::new(args.targets.policy())),
        live,
        DispatcherConfig { schedule, public_url },
    ));
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<SqsEvent>| {
        let dispatcher = dispatcher.clone();
        async move { Ok::<_, lambda_http::Error>(handle(&dispatcher, event.payload).await) }
    }))
    .await
}

/// Handles one batch; what failed is reported back for SQS to deliver again.
pub async fn handle(dispatcher: &Dispatcher, batch: SqsEvent) -> SqsBatchResponse {
    let mut groups: Vec<(Option<&str>, Vec<&SqsMessage>)> = Vec::new();
    for message in &batch.records {
        let group = message.attributes.get("MessageGroupId").map(String::as_str);
        match groups.iter_mut().find(|(known, _)| group.is_some() && *known == group) {
            Some((_, members)) => members.push(message),
            None => groups.push((group, vec![message])),
        }
    }
    let failed = futures::future::join_all(groups.iter().map(|(_, members)| async move {
        for (handled, message) in members.iter().enumerate() {
            if !handle_one(dispatcher, message).await {
                return members[handled..].iter().filter_map(|m| identifier(m)).collect();
            }
        }
        Vec::new()
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed.into_iter().flatten().collect();
    response
}

/// Handles one record: `false` when it is to be delivered again.
async fn handle_one(dispatcher: &Dispatcher, message: &SqsMessage) -> bool {
    let outcome = match parse(message) {
        Some(Record::Event(event)) => dispatcher.on_event(&event).await,
        Some(Record::Attempt(attempt)) => {
            let receives = message
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|count| count.parse().ok())
                .unwrap_or(1);
            dispatcher.on_attempt(&attempt, receives).await
        }
        // Unreadable by any version of this code: left to the redrive policy's dead-letter queue.
        None => {
            tracing::error!(message_id = ?message.message_id, "unreadable record");
            return false;
        }
    };
    if let Err(error) = &outcome {
        tracing::error!(%error, message_id = ?message.message_id, "record not handled");
    }
    outcome.is_ok()
}

fn parse(message: &SqsMessage) -> Option<Record> {
    serde_json::from_str(message.body.as_deref()?).ok()
}

fn identifier(message: &SqsMessage) -> Option<BatchItemFailure> {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = message.message_id.clone()?;
    Some(failure)
}
