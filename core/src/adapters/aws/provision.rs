//! Creates a deployment's table, queues and bucket at the configured endpoint: for a local emulator
//! and quick sandboxes. Production uses `template.yaml`, which declares the same resources with the
//! same shape. Every step may be repeated: what exists is kept.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;

use super::{AwsResources, items, s3_client, sdk_error};
use crate::{Error, Result};

/// Resource names for `prefix`: lower-case letters, digits and `-`, 3 to 40 characters (S3's bucket
/// rules are the strictest of the three services).
pub fn check_prefix(prefix: &str) -> Result<()> {
    let valid = (3..=40).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !prefix.starts_with('-')
        && !prefix.ends_with('-');
    if valid { Ok(()) } else { Err(Error::invalid_because("prefix", "3 to 40 of a-z, 0-9 and -")) }
}

/// Creates (or finds) every resource named after `prefix`.
pub async fn provision(config: &aws_config::SdkConfig, prefix: &str) -> Result<AwsResources> {
    check_prefix(prefix)?;
    let table = format!("{prefix}-registry");
    create_table(&aws_sdk_dynamodb::Client::new(config), &table).await?;
    let sqs = aws_sdk_sqs::Client::new(config);
    let (command_queue_url, _) =
        create_queue_with_dead_letters(&sqs, &format!("{prefix}-commands"), true, 120, 5).await?;
    let (event_queue_url, _) =
        create_queue_with_dead_letters(&sqs, &format!("{prefix}-events"), true, 60, 8).await?;
    // The dispatcher sends exhausted deliveries to the dead-letter queue itself; the redrive policies
    // catch only messages that keep failing to be handled at all.
    let (ordered_delivery_queue_url, _) =
        create_queue_with_dead_letters(&sqs, &format!("{prefix}-first-attempts"), true, 60, 8).await?;
    let (delivery_queue_url, dead_delivery_queue_url) =
        create_queue_with_dead_letters(&sqs, &format!("{prefix}-deliveries"), false, 60, 8).await?;
    let bucket = format!("{prefix}-blobs");
    create_bucket(&s3_client(config), &bucket, config.region().map(|r| r.as_ref())).await?;
    Ok(AwsResources {
        table,
        command_queue_url,
        event_queue_url,
        ordered_delivery_queue_url,
        delivery_queue_url,
        dead_delivery_queue_url,
        bucket,
    })
}

async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<()> {
    let attribute = |name: &str| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
    };
    let key =
        |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let listing = GlobalSecondaryIndex::builder()
        .index_name(items::GSI1)
        .key_schema(key(items::GSI1_PK, KeyType::Hash).map_err(Error::storage)?)
        .key_schema(key(items::GSI1_SK, KeyType::Range).map_err(Error::storage)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(Error::storage)?;
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(items::PK).map_err(Error::storage)?)
        .attribute_definitions(attribute(items::SK).map_err(Error::storage)?)
        .attribute_definitions(attribute(items::GSI1_PK).map_err(Error::storage)?)
        .attribute_definitions(attribute(items::GSI1_SK).map_err(Error::storage)?)
        .key_schema(key(items::PK, KeyType::Hash).map_err(Error::storage)?)
        .key_schema(key(items::SK, KeyType::Range).map_err(Error::storage)?)
        .global_secondary_indexes(listing)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {
            return Ok(());
        }
        Err(error) => return Err(sdk_error(error)),
    }
    // A new table takes a moment to become usable on AWS; the emulator's is at once.
    for _ in 0..120 {
        let described = client.describe_table().table_name(name).send().await.map_err(sdk_error)?;
        if described.table.and_then(|t| t.table_status).is_some_and(|s| s.as_str() == "ACTIVE") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let ttl = TimeToLiveSpecification::builder()
        .attribute_name(items::EXPIRES_AT)
        .enabled(true)
        .build()
        .map_err(Error::storage)?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(sdk_error)?;
    Ok(())
}

/// Creates `name` (with `.fifo` when `fifo`) and its dead-letter queue, returning both URLs.
async fn create_queue_with_dead_letters(
    client: &aws_sdk_sqs::Client,
    name: &str,
    fifo: bool,
    visibility_secs: u32,
    max_receives: u32,
) -> Result<(String, String)> {
    let suffix = if fifo { ".fifo" } else { "" };
    let mut dead_letters = client.create_queue().queue_name(format!("{name}-dlq{suffix}"));
    dead_letters = dead_letters.attributes(QueueAttributeName::MessageRetentionPeriod, "1209600");
    if fifo {
        dead_letters = dead_letters.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let dead_letters_url = dead_letters.send().await.map_err(sdk_error)?.queue_url.unwrap_or_default();
    let dead_letters_arn = client
        .get_queue_attributes()
        .queue_url(&dead_letters_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(sdk_error)?
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| Error::storage("the dead-letter queue has no ARN"))?;
    let redrive =
        serde_json::json!({ "deadLetterTargetArn": dead_letters_arn, "maxReceiveCount": max_receives });
    let mut queue = client
        .create_queue()
        .queue_name(format!("{name}{suffix}"))
        .attributes(QueueAttributeName::VisibilityTimeout, visibility_secs.to_string())
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string());
    if fifo {
        queue = queue.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let url = queue.send().await.map_err(sdk_error)?.queue_url;
    Ok((url.ok_or_else(|| Error::storage("the queue has no URL"))?, dead_letters_url))
}

async fn create_bucket(client: &aws_sdk_s3::Client, name: &str, region: Option<&str>) -> Result<()> {
    let mut request = client.create_bucket().bucket(name);
    // us-east-1 is the one region that refuses a location constraint.
    if let Some(region) = region.filter(|r| *r != "us-east-1") {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(error) if error.as_service_error().is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
        Err(error) => return Err(sdk_error(error)),
    }
    let encryption = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::Aes256)
                        .build()
                        .map_err(Error::storage)?,
                )
                .build(),
        )
        .build()
        .map_err(Error::storage)?;
    client
        .put_bucket_encryption()
        .bucket(name)
        .server_side_encryption_configuration(encryption)
        .send()
        .await
        .map_err(sdk_error)?;
    client
        .put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
        )
        .send()
        .await
        .map_err(sdk_error)?;
    let private = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .block_public_policy(true)
        .ignore_public_acls(true)
        .restrict_public_buckets(true)
        .build();
    client
        .put_public_access_block()
        .bucket(name)
        .public_access_block_configuration(private)
        .send()
        .await
        .map_err(sdk_error)?;
    Ok(())
}
