//! The dispatcher as a Lambda function: SQS hands it batches from the event queue (expand each
//! event into deliveries) and from the delivery queue (make one attempt each); it answers with the
//! batch items that failed (`ReportBatchItemFailures`), so SQS hands out again only those.
//!
//! A record is told apart by its body: a delivery attempt names its `key`, an event does not. The
//! events of a batch are expanded one after another, in the order SQS gave them; attempts run all
//! at once, since each is one receiver's and may take up to 15 s.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use ryze_core::adapters::aws;
use ryze_core::clock::SystemClock;
use ryze_core::domain::{DeliveryAttempt, Event, RetrySchedule};
use ryze_core::outbound::{OutboundClient, TargetPolicy};
use ryze_core::secrets::{Keyring, MasterKey};
use ryze_core::service::dispatch::{Dispatcher, DispatcherConfig};
use ryze_core::telemetry::{self, LogFormat};
use serde::Deserialize;

use crate::lambda::parse_flag;

#[derive(Deserialize)]
#[serde(untagged)]
enum Record {
    Attempt(DeliveryAttempt),
    Event(Event),
}

/// Builds the dispatcher from the environment once, then handles batches until the runtime ends.
pub async fn run() -> Result<(), lambda_http::Error> {
    let format =
        std::env::var("RYZE_LOG_FORMAT").ok().and_then(|f| f.parse().ok()).unwrap_or(LogFormat::Json);
    telemetry::init(format);
    let resources = aws::AwsResources::from_env()?;
    let keys = Arc::new(Keyring::new(&MasterKey::from_env()?));
    let ports = aws::ports(&aws::sdk_config().await, &resources);
    let schedule = match std::env::var("RYZE_WEBHOOK_RETRY_SCHEDULE") {
        Ok(text) => RetrySchedule::parse(&text)?,
        Err(_) => RetrySchedule::default(),
    };
    let allow_private = match std::env::var("RYZE_ALLOW_PRIVATE_TARGETS") {
        Ok(text) => parse_flag(&text).ok_or("RYZE_ALLOW_PRIVATE_TARGETS: expected true or false")?,
        Err(_) => false,
    };
    let public_url = std::env::var("RYZE_PUBLIC_URL").unwrap_or_default();
    let dispatcher = Arc::new(Dispatcher::new(
        &ports,
        keys,
        Arc::new(SystemClock),
        Arc::new(OutboundClient::new(TargetPolicy { allow_private })),
        None,
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
    let mut failures = Vec::new();
    let mut attempts = Vec::new();
    for message in &batch.records {
        match parse(message) {
            Some(Record::Event(event)) => {
                if let Err(error) = dispatcher.on_event(&event).await {
                    tracing::error!(%error, "event not expanded");
                    failures.extend(identifier(message));
                }
            }
            Some(Record::Attempt(attempt)) => attempts.push((message, attempt)),
            // Unreadable by any version of this code: left to the redrive policy's dead-letter queue.
            None => {
                tracing::error!(message_id = ?message.message_id, "unreadable record");
                failures.extend(identifier(message));
            }
        }
    }
    let outcomes = futures::future::join_all(attempts.iter().map(|(message, attempt)| async move {
        match dispatcher.on_attempt(attempt).await {
            Ok(()) => None,
            Err(error) => {
                tracing::error!(%error, "attempt not recorded");
                identifier(message)
            }
        }
    }))
    .await;
    failures.extend(outcomes.into_iter().flatten());
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

fn parse(message: &SqsMessage) -> Option<Record> {
    serde_json::from_str(message.body.as_deref()?).ok()
}

fn identifier(message: &SqsMessage) -> Option<BatchItemFailure> {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = message.message_id.clone()?;
    Some(failure)
}
