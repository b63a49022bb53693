//! Rate-limit counters on DynamoDB: one item per key and window, incremented atomically, so every
//! API function and process of a deployment counts against the same budget. Items carry a TTL a
//! little past their window; nothing reads an old window, so a late TTL deletion is harmless.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::ReturnValue;

use super::items::{self, n};
use super::sdk_error;
use crate::ports::RateCounter;
use crate::{Error, Result};

/// Windows are a minute; their items may go two minutes after they start.
const COUNTER_TTL_SECS: i64 = 120;

#[derive(Debug, Clone)]
pub struct DynamoRateCounter {
    client: Client,
    table: Arc<str>,
}

impl DynamoRateCounter {
    pub fn new(client: Client, table: &str) -> Self {
        Self { client, table: table.into() }
    }
}

#[async_trait]
impl RateCounter for DynamoRateCounter {
    async fn hit(&self, key: &str, window_start: i64) -> Result<u32> {
        let output = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(items::rate_key(key, window_start)))
            .update_expression("ADD hits :one SET expiresAt = :expires")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n(window_start + COUNTER_TTL_SECS))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk_error)?;
        let attributes = output.attributes.ok_or_else(|| Error::storage("the counter returned no value"))?;
        let hits = items::number(&attributes, "hits")?;
        Ok(u32::try_from(hits).unwrap_or(u32::MAX))
    }
}
