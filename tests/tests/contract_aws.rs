//! The port contracts on the AWS adapters, against moto: the same suites as `contract_embedded`.

use std::sync::Arc;

use ryze_core::adapters::aws::{self as adapters, DynamoRegistry, S3BlobStore, SqsQueue};
use ryze_tests::{aws, contract};

#[tokio::test]
async fn the_dynamodb_registry_keeps_the_registry_contract() {
    let (config, resources) = aws::provision().await;
    let registry = DynamoRegistry::new(aws_sdk_dynamodb::Client::new(&config), &resources.table);
    contract::registry_contract(Arc::new(registry)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_registry_keeps_the_contract_under_parallel_writers() {
    let (config, resources) = aws::provision().await;
    let registry = DynamoRegistry::new(aws_sdk_dynamodb::Client::new(&config), &resources.table);
    contract::registry_contract(Arc::new(registry)).await;
}

#[tokio::test]
async fn the_s3_bucket_keeps_the_blob_store_contract() {
    let (config, resources) = aws::provision().await;
    let s3 = adapters::s3_client(&config);
    contract::blob_store_contract(Arc::new(S3BlobStore::new(s3, &resources.bucket))).await;
}

#[tokio::test]
async fn the_sqs_fifo_queue_keeps_the_queue_contract() {
    let (config, resources) = aws::provision().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = SqsQueue::fifo(sqs, &resources.command_queue_url, |_: &String| "one-group".to_owned());
    contract::queue_contract(Arc::new(queue)).await;
}

#[tokio::test]
async fn the_sqs_standard_queue_keeps_the_queue_contract() {
    let (config, resources) = aws::provision().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    contract::queue_contract(Arc::new(SqsQueue::standard(sqs, &resources.event_queue_url))).await;
}
