//! The delivery log on the DynamoDB table.
//!
//! One item per event and webhook (`DELIVERY#{instance}#{event}` / `DELIVERY#{label}`), so that a
//! redelivery by event id is one query; the listing index (`gsi1`) keeps an instance's deliveries
//! in creation order (`DELIVERIES#{instance}` / `{millis}#{event}#{label}`), read newest first.
//! Updates are conditional on `rev`. Items carry `expiresAt` (seven days), and reads ignore older
//! ones, since TTL deletion is lazy (and an emulator does not do it at all).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

use super::items::{self, Item, n, s};
use super::registry::is_condition_failure;
use super::sdk_error;
use crate::domain::{DeliveryFilter, DeliveryKey, DeliveryRecord, InstanceId};
use crate::ports::DeliveryLog;
use crate::{Error, Result};

const RETENTION: chrono::Duration = chrono::Duration::days(7);

pub struct DynamoDeliveryLog {
    client: Client,
    table: std::sync::Arc<str>,
}

impl DynamoDeliveryLog {
    pub fn new(client: Client, table: &str) -> Self {
        Self { client, table: table.into() }
    }

    fn item(record: &DeliveryRecord) -> Result<Item> {
        let key = &record.key;
        Ok(items::with(
            items::delivery_key(key),
            [
                (items::DOC, items::json(record)?),
                ("rev", n(record.revision)),
                (items::GSI1_PK, s(items::deliveries_of(&key.instance))),
                (
                    items::GSI1_SK,
                    s(sort_key(record.created_at.timestamp_millis(), &key.event_id, &key.label)),
                ),
                (items::EXPIRES_AT, n((record.created_at + RETENTION).timestamp())),
            ],
        ))
    }

    /// Writes the record if `condition` holds (`:expected` bound to `expected`); `false` if not.
    async fn put_if(
        &self,
        record: &DeliveryRecord,
        condition: &str,
        expected: Option<AttributeValue>,
    ) -> Result<bool> {
        let put = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(Self::item(record)?))
            .condition_expression(condition)
            .set_expression_attribute_values(expected.map(|value| [(":expected".to_owned(), value)].into()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(sdk_error(error)),
        }
    }

    async fn query_all(&self, pk: String, newest_first: bool, floor: Option<String>) -> Result<Vec<Item>> {
        let query = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(items::GSI1)
            .scan_index_forward(!newest_first)
            .expression_attribute_values(":pk", s(pk));
        let query = match floor {
            Some(floor) => query
                .key_condition_expression("gsi1pk = :pk AND gsi1sk >= :floor")
                .expression_attribute_values(":floor", s(floor)),
            None => query.key_condition_expression("gsi1pk = :pk"),
        };
        items::all(query).await
    }
}

fn sort_key(millis: i64, event_id: &str, label: &str) -> String {
    format!("{millis:015}#{event_id}#{label}")
}

#[async_trait]
impl DeliveryLog for DynamoDeliveryLog {
    async fn insert(&self, record: &DeliveryRecord) -> Result<bool> {
        self.put_if(record, "attribute_not_exists(pk)", None).await
    }

    async fn get(&self, key: &DeliveryKey) -> Result<Option<DeliveryRecord>> {
        let output = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(items::delivery_key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        output.item.map(|item| items::parse(&item, items::DOC)).transpose()
    }

    async fn update(&self, record: &DeliveryRecord, expected: u64) -> Result<bool> {
        self.put_if(record, "rev = :expected", Some(n(expected))).await
    }

    async fn list(
        &self,
        instance: &InstanceId,
        filter: &DeliveryFilter,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>> {
        let floor = sort_key((Utc::now() - RETENTION).timestamp_millis(), "", "");
        let mut found = Vec::new();
        for item in self.query_all(items::deliveries_of(instance), true, Some(floor)).await? {
            let record: DeliveryRecord = items::parse(&item, items::DOC)?;
            if filter.matches(&record) {
                found.push(record);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    async fn of_event(&self, instance: &InstanceId, event_id: &str) -> Result<Vec<DeliveryRecord>> {
        let key = items::delivery_key(&DeliveryKey {
            instance: instance.clone(),
            event_id: event_id.into(),
            label: String::new(),
        });
        let Some(AttributeValue::S(pk)) = key.get(items::PK) else {
            return Err(Error::storage("delivery keys have a string partition"));
        };
        let output = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        output.items.unwrap_or_default().iter().map(|item| items::parse(item, items::DOC)).collect()
    }

    async fn delete_instance(&self, instance: &InstanceId) -> Result<()> {
        for item in self.query_all(items::deliveries_of(instance), false, None).await? {
            let key: Item = [items::PK, items::SK]
                .into_iter()
                .filter_map(|name| item.get(name).map(|value| (name.to_owned(), value.clone())))
                .collect();
            self.client
                .delete_item()
                .table_name(&*self.table)
                .set_key(Some(key))
                .send()
                .await
                .map_err(sdk_error)?;
        }
        Ok(())
    }
}
