//! The delivery log in `events.db`: one row per event and webhook, its record a JSON document.
//!
//! Its statements run on the file's [`GroupCommit`] thread beside the queues', so a record written
//! and the attempt queued after it share commits with every other caller's.

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{OptionalExtension, params};

use super::durable_queue::{EventsDb, RETENTION, millis};
use crate::domain::{DeliveryFilter, DeliveryKey, DeliveryRecord, InstanceId};
use crate::ports::DeliveryLog;
use crate::{Error, Result};

/// How many records one read of [`DeliveryLog::list`] looks at.
const LIST_PAGE: i64 = 500;

/// The delivery log in `events.db`.
#[derive(Clone)]
pub struct SqliteDeliveryLog {
    db: EventsDb,
}

impl SqliteDeliveryLog {
    pub fn new(db: &EventsDb) -> Self {
        Self { db: db.clone() }
    }
}

fn records(docs: Vec<String>) -> Result<Vec<DeliveryRecord>> {
    docs.iter().map(|doc| serde_json::from_str(doc).map_err(Error::storage)).collect()
}

#[async_trait]
impl DeliveryLog for SqliteDeliveryLog {
    async fn insert(&self, record: &DeliveryRecord) -> Result<bool> {
        let doc = serde_json::to_string(record).map_err(Error::storage)?;
        let key = record.key.clone();
        let created_at = millis(record.created_at);
        let inserted = self
            .db
            .thread()
            .call(move |connection| {
                connection
                    .prepare_cached(
                        "INSERT OR IGNORE INTO deliveries (instance_id, event_id, label, created_at, doc)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![key.instance.as_str(), key.event_id, key.label, created_at, doc])
            })
            .await?;
        Ok(inserted == 1)
    }

    async fn get(&self, key: &DeliveryKey) -> Result<Option<DeliveryRecord>> {
        let key = key.clone();
        let doc: Option<String> = self
            .db
            .thread()
            .call(move |connection| {
                connection
                    .prepare_cached(
                        "SELECT doc FROM deliveries WHERE instance_id = ?1 AND event_id = ?2 AND label = ?3",
                    )?
                    .query_row(params![key.instance.as_str(), key.event_id, key.label], |row| row.get(0))
                    .optional()
            })
            .await?;
        doc.map(|doc| serde_json::from_str(&doc).map_err(Error::storage)).transpose()
    }

    async fn update(&self, record: &DeliveryRecord, expected: u64) -> Result<bool> {
        let doc = serde_json::to_string(record).map_err(Error::storage)?;
        let key = record.key.clone();
        let updated = self
            .db
            .thread()
            .call(move |connection| {
                connection
                    .prepare_cached(
                        "UPDATE deliveries SET doc = ?4
                         WHERE instance_id = ?1 AND event_id = ?2 AND label = ?3
                           AND coalesce(json_extract(doc, '$.revision'), 0) = ?5",
                    )?
                    .execute(params![key.instance.as_str(), key.event_id, key.label, doc, expected as i64])
            })
            .await?;
        Ok(updated == 1)
    }

    async fn list(
        &self,
        instance: &InstanceId,
        filter: &DeliveryFilter,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>> {
        let cutoff = millis(Utc::now() - RETENTION);
        let mut found = Vec::new();
        let mut offset = 0i64;
        // Filters apply to the JSON document, so read pages until enough records match.
        loop {
            let instance = instance.clone();
            let page: Vec<String> = self
                .db
                .thread()
                .call(move |connection| {
                    connection
                        .prepare_cached(
                            "SELECT doc FROM deliveries WHERE instance_id = ?1 AND created_at >= ?2
                             ORDER BY created_at DESC, rowid DESC LIMIT ?3 OFFSET ?4",
                        )?
                        .query_map(params![instance.as_str(), cutoff, LIST_PAGE, offset], |row| row.get(0))?
                        .collect()
                })
                .await?;
            let exhausted = (page.len() as i64) < LIST_PAGE;
            offset += page.len() as i64;
            found.extend(records(page)?.into_iter().filter(|r| filter.matches(r)));
            if found.len() >= limit || exhausted {
                found.truncate(limit);
                return Ok(found);
            }
        }
    }

    async fn of_event(&self, instance: &InstanceId, event_id: &str) -> Result<Vec<DeliveryRecord>> {
        let (instance, event_id) = (instance.clone(), event_id.to_owned());
        let docs: Vec<String> = self
            .db
            .thread()
            .call(move |connection| {
                connection
                    .prepare_cached(
                        "SELECT doc FROM deliveries WHERE instance_id = ?1 AND event_id = ?2 ORDER BY label",
                    )?
                    .query_map(params![instance.as_str(), event_id], |row| row.get(0))?
                    .collect()
            })
            .await?;
        records(docs)
    }

    async fn delete_instance(&self, instance: &InstanceId) -> Result<()> {
        let instance = instance.clone();
        self.db
            .thread()
            .call(move |connection| {
                connection
                    .execute("DELETE FROM deliveries WHERE instance_id = ?1", [instance.as_str()])
                    .map(drop)
            })
            .await
    }
}
