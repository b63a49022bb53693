//! The port contracts on the AWS adapters, against moto: the same suites as `contract_embedded`.

use std::sync::Arc;
use std::time::Duration;

use ryze_core::adapters::aws::{self as adapters, DynamoRegistry, OrderedAndDelayed, S3BlobStore, SqsQueue};
use ryze_core::domain::InstanceId;
use ryze_core::ports::{BlobKey, BlobStore, Queue, SendOptions};
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
async fn a_deleted_store_leaves_no_version_behind_and_an_absent_one_no_delete_marker() {
    let (config, resources) = aws::provision().await;
    let s3 = adapters::s3_client(&config);
    let blobs = S3BlobStore::new(s3.clone(), &resources.bucket);
    let key = BlobKey::session_store(&InstanceId::generate());
    // Every version and delete marker of `key` in the (versioned) bucket.
    let left = || async {
        let page =
            s3.list_object_versions().bucket(&resources.bucket).prefix(key.as_str()).send().await.unwrap();
        page.versions().len() + page.delete_markers().len()
    };
    // A connect of a new device deletes a store that is not there: nothing is written.
    blobs.delete(&key).await.unwrap();
    assert_eq!(left().await, 0, "deleting nothing left a delete marker");
    blobs.put(&key, b"first".to_vec()).await.unwrap();
    blobs.put(&key, b"second".to_vec()).await.unwrap();
    assert_eq!(left().await, 2);
    blobs.delete(&key).await.unwrap();
    assert_eq!(left().await, 0, "a deleted credential store lingers as a version");
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
    contract::queue_contract(Arc::new(SqsQueue::standard(sqs, &resources.delivery_queue_url))).await;
}

#[tokio::test]
async fn the_sqs_fifo_queue_keeps_the_grouped_queue_contract() {
    let (config, resources) = aws::provision().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = SqsQueue::fifo(sqs, &resources.command_queue_url, |_: &String| "unused".to_owned());
    contract::grouped_queue_contract(Arc::new(queue)).await;
}

#[tokio::test]
async fn an_sqs_queue_hides_a_received_message_for_its_visibility_and_as_long_as_it_is_kept() {
    let (config, resources) = aws::provision().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let visibility = Duration::from_secs(2);
    let queue = SqsQueue::fifo(sqs, &resources.command_queue_url, |_: &String| "one-group".to_owned())
        .with_receive_visibility(visibility);
    contract::visibility_contract(Arc::new(queue), visibility).await;
}

#[tokio::test]
async fn the_delivery_queues_keep_order_on_fifo_and_delay_on_standard() {
    let (config, resources) = aws::provision().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queues = || {
        OrderedAndDelayed::<String>::new(
            sqs.clone(),
            &resources.ordered_delivery_queue_url,
            &resources.delivery_queue_url,
        )
    };
    // One port for both: a poll it left under way is its own next receive's (another port on the
    // same queues would find those messages hidden, then given back behind later ones).
    let queue = Arc::new(queues());
    contract::grouped_queue_contract(queue.clone()).await;
    contract::queue_contract(queue.clone()).await;

    // A delayed send goes to the standard queue, which holds it back for its delay.
    let delayed = SendOptions { group: None, delay: Duration::from_secs(2) };
    queue.send_with(&"later".to_owned(), delayed).await.unwrap();
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty(), "not before its delay");
    let standard = SqsQueue::<String>::standard(sqs.clone(), &resources.delivery_queue_url);
    let mut arrived = Vec::new();
    while arrived.is_empty() {
        arrived = standard.receive(10, Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(arrived[0].message, "later");
    assert_eq!(queue.max_delay(), Duration::from_secs(900));
}

#[tokio::test]
async fn the_dynamodb_registry_keeps_the_leases_contract() {
    let (config, resources) = aws::provision().await;
    let registry = Arc::new(DynamoRegistry::new(aws_sdk_dynamodb::Client::new(&config), &resources.table));
    contract::leases_contract(registry.clone(), registry).await;
}
