//! Durable queues and the delivery log in one SQLite file, `events.db`: what makes events survive a
//! `kill -9` of `ryze serve`.
//!
//! A message stays in `messages` until it is acknowledged. Receiving hides it for a visibility
//! timeout and gives it a fresh receipt; a consumer that dies leaves it to come back once that timeout
//! is over. The first process to open the file holds `events.lock` for its lifetime and, since
//! nothing can be in flight before it, makes every hidden message visible at once; a process that
//! opens the file beside it (an operator command while `ryze serve` runs) changes nothing at open. Delays are a `visible_at` in the future, of any
//! length. A grouped message is received only while no earlier message of its group is still in
//! the table, which is SQS FIFO's rule: one in flight per group, in the order sent.
//!
//! The file runs in WAL mode with `synchronous = NORMAL`: every commit is in the file before the
//! call returns, so a crash of the process loses nothing; only a crash of the machine itself can
//! lose the last commits, a trade that keeps a commit at tens of microseconds instead of an fsync.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::time::{Instant, timeout_at};

use crate::domain::{DeliveryFilter, DeliveryKey, DeliveryRecord, InstanceId};
use crate::ports::{Delivery, DeliveryLog, Queue, Receipt, SendOptions};
use crate::{Error, Result};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, grp TEXT, body TEXT NOT NULL,
        visible_at INTEGER NOT NULL, receipt TEXT, receives INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX IF NOT EXISTS messages_ungrouped ON messages (queue, visible_at, id) WHERE grp IS NULL;
    CREATE INDEX IF NOT EXISTS messages_groups ON messages (queue, grp, id);
    CREATE INDEX IF NOT EXISTS messages_receipts ON messages (receipt);
    CREATE TABLE IF NOT EXISTS deliveries (
        instance_id TEXT NOT NULL, event_id TEXT NOT NULL, label TEXT NOT NULL,
        created_at INTEGER NOT NULL, doc TEXT NOT NULL,
        PRIMARY KEY (instance_id, event_id, label));
    CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (instance_id, created_at DESC);
";

/// The queue of delivery attempts, whose orphans [`EventsDb::open`] reschedules.
pub const DELIVERY_QUEUE: &str = "deliveries";

/// A process killed between recording an attempt's outcome and queueing the next attempt leaves a
/// pending or failed delivery with no message: at open, each such delivery gets its next attempt.
/// (A duplicate is harmless: an attempt whose number does not follow the record's is dropped.)
const RESCHEDULE_ORPHANS: &str = "
    INSERT INTO messages (queue, grp, body, visible_at)
    SELECT ?1, NULL,
        json_object('key', json_object('instance', d.instance_id, 'eventId', d.event_id, 'label', d.label),
                    'attempt', json_extract(d.doc, '$.attempts') + 1,
                    'dueAt', coalesce(json_extract(d.doc, '$.nextAttemptAt'), json_extract(d.doc, '$.updatedAt'))),
        0
    FROM deliveries d
    WHERE json_extract(d.doc, '$.status') IN ('pending', 'failed')
      AND NOT EXISTS (
        SELECT 1 FROM messages m WHERE m.queue = ?1
          AND json_extract(m.body, '$.key.eventId') = d.event_id
          AND json_extract(m.body, '$.key.label') = d.label
          AND json_extract(m.body, '$.key.instance') = d.instance_id)";

/// How long a received message stays hidden: longer than a webhook attempt's 15 s bound.
pub const VISIBILITY: Duration = Duration::from_secs(60);

/// Delivery records older than this are forgotten (API.md: kept 7 days).
const RETENTION: chrono::Duration = chrono::Duration::days(7);

fn storage(error: impl Into<crate::error::BoxError>) -> Error {
    Error::storage(error)
}

/// The open `events.db`, shared by its queues and the delivery log.
#[derive(Clone)]
pub struct EventsDb {
    connection: Arc<Mutex<Connection>>,
    /// Woken on every send, so that a waiting receive looks again.
    arrived: Arc<Notify>,
    /// Held by the process that recovered the file at open, for as long as it uses it.
    _owner: Option<Arc<std::fs::File>>,
}

impl EventsDb {
    pub fn open(path: &Path) -> Result<Self> {
        let lock = std::fs::File::create(path.with_extension("lock")).map_err(storage)?;
        let owner = lock.try_lock().is_ok().then(|| Arc::new(lock));
        let connection = Connection::open(path).map_err(storage)?;
        connection.busy_timeout(Duration::from_secs(10)).map_err(storage)?;
        connection
            // Checkpoints are the only fsyncs in this mode: fewer, larger ones.
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 8000;",
            )
            .map_err(storage)?;
        connection.execute_batch(SCHEMA).map_err(storage)?;
        if owner.is_some() {
            // Nothing is in flight when the first process to use this file starts.
            connection
                .execute("UPDATE messages SET visible_at = 0, receipt = NULL WHERE receipt IS NOT NULL", [])
                .map_err(storage)?;
            let cutoff = (Utc::now() - RETENTION).timestamp_millis();
            connection.execute("DELETE FROM deliveries WHERE created_at < ?1", [cutoff]).map_err(storage)?;
            connection.execute(RESCHEDULE_ORPHANS, [DELIVERY_QUEUE]).map_err(storage)?;
        }
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            arrived: Arc::new(Notify::new()),
            _owner: owner,
        })
    }

    /// A queue named `name` in this file.
    pub fn queue<M>(&self, name: &'static str) -> DurableQueue<M> {
        DurableQueue { db: self.clone(), name, _messages: PhantomData }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut connection = self.connection.lock().map_err(|_| storage("events.db poisoned"))?;
        f(&mut connection).map_err(storage)
    }
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn now_millis() -> i64 {
    millis(Utc::now())
}

/// One named queue of `events.db`.
pub struct DurableQueue<M> {
    db: EventsDb,
    name: &'static str,
    _messages: PhantomData<fn(M) -> M>,
}

impl<M> std::fmt::Debug for DurableQueue<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableQueue").field("name", &self.name).finish()
    }
}

impl<M: DeserializeOwned> DurableQueue<M> {
    /// Takes up to `max` due messages, hiding each for [`VISIBILITY`].
    fn take(&self, max: usize) -> Result<Vec<Delivery<M>>> {
        let now = now_millis();
        let rows = self.db.with(|connection| {
            let transaction = connection.transaction()?;
            let rows = {
                // A group's head is its oldest message still in the table (in flight or not): only
                // a due head is taken. Ungrouped messages are taken by due time.
                let mut heads = transaction.prepare_cached(
                    "SELECT m.id, m.body FROM messages m
                     JOIN (SELECT MIN(id) AS id FROM messages WHERE queue = ?1 AND grp IS NOT NULL GROUP BY grp) h
                       ON m.id = h.id
                     WHERE m.visible_at <= ?2 ORDER BY m.id LIMIT ?3",
                )?;
                let mut rows = heads
                    .query_map(params![self.name, now, max as i64], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut ungrouped = transaction.prepare_cached(
                    "SELECT id, body FROM messages
                     WHERE queue = ?1 AND grp IS NULL AND visible_at <= ?2 ORDER BY visible_at, id LIMIT ?3",
                )?;
                let room = max.saturating_sub(rows.len()) as i64;
                rows.extend(
                    ungrouped
                        .query_map(params![self.name, now, room], |row| {
                            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?,
                );
                let mut hide = transaction.prepare_cached(
                    "UPDATE messages SET visible_at = ?2, receipt = ?3, receives = receives + 1 WHERE id = ?1",
                )?;
                let hidden_until = now + VISIBILITY.as_millis() as i64;
                let mut taken = Vec::with_capacity(rows.len());
                for (id, body) in rows {
                    let receipt = format!("{id}.{}", uuid::Uuid::new_v4().simple());
                    hide.execute(params![id, hidden_until, receipt])?;
                    taken.push((receipt, body));
                }
                taken
            };
            transaction.commit()?;
            Ok(rows)
        })?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for (receipt, body) in rows {
            match serde_json::from_str(&body) {
                Ok(message) => deliveries.push(Delivery { message, receipt: Receipt(receipt) }),
                // No version of this code can read it: drop it rather than see it come back forever.
                Err(error) => {
                    tracing::error!(queue = self.name, %error, "unreadable queued message dropped");
                    self.remove(&Receipt(receipt))?;
                }
            }
        }
        Ok(deliveries)
    }

    /// When the next message that time alone makes takeable falls due: an ungrouped one, or a
    /// group's head. (A message behind its group's head waits for an acknowledgement, which wakes
    /// receivers by itself.)
    fn next_due(&self) -> Result<Option<i64>> {
        let now = now_millis();
        self.db.with(|connection| {
            connection
                .prepare_cached(
                    "SELECT MIN(v) FROM (
                        SELECT MIN(visible_at) AS v FROM messages WHERE queue = ?1 AND grp IS NULL AND visible_at > ?2
                        UNION ALL
                        SELECT m.visible_at FROM messages m
                        JOIN (SELECT MIN(id) AS id FROM messages WHERE queue = ?1 AND grp IS NOT NULL GROUP BY grp) h
                          ON m.id = h.id
                        WHERE m.visible_at > ?2)",
                )?
                .query_row(params![self.name, now], |row| row.get(0))
                .optional()
                .map(Option::flatten)
        })
    }

    fn remove(&self, receipt: &Receipt) -> Result<()> {
        self.db.with(|connection| {
            connection.execute("DELETE FROM messages WHERE receipt = ?1", [&receipt.0]).map(|_| ())
        })
    }
}

#[async_trait]
impl<M> Queue<M> for DurableQueue<M>
where
    M: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn send_with(&self, message: &M, options: SendOptions) -> Result<()> {
        let body = serde_json::to_string(message).map_err(storage)?;
        let visible_at = now_millis() + options.delay.as_millis() as i64;
        self.db.with(|connection| {
            connection
                .prepare_cached(
                    "INSERT INTO messages (queue, grp, body, visible_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![self.name, options.group, body, visible_at])
                .map(|_| ())
        })?;
        self.db.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery<M>>> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let arrived = self.db.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let batch = self.take(max.max(1))?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            // Sleep until a send, the deadline, or the next delayed message falls due.
            let mut wake = deadline;
            if let Some(due) = self.next_due()? {
                let until_due = Duration::from_millis(due.saturating_sub(now_millis()).max(1) as u64);
                wake = wake.min(Instant::now() + until_due);
            }
            if timeout_at(wake, arrived).await.is_err() && Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        self.remove(receipt)?;
        // An acknowledged head frees the next message of its group.
        self.db.arrived.notify_waiters();
        Ok(())
    }

    async fn release(&self, receipt: &Receipt) -> Result<()> {
        self.db.with(|connection| {
            connection
                .execute(
                    "UPDATE messages SET visible_at = 0, receipt = NULL WHERE receipt = ?1",
                    [&receipt.0],
                )
                .map(|_| ())
        })?;
        self.db.arrived.notify_waiters();
        Ok(())
    }
}

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
    docs.iter().map(|doc| serde_json::from_str(doc).map_err(storage)).collect()
}

#[async_trait]
impl DeliveryLog for SqliteDeliveryLog {
    async fn insert(&self, record: &DeliveryRecord) -> Result<bool> {
        let doc = serde_json::to_string(record).map_err(storage)?;
        let key = &record.key;
        let inserted = self.db.with(|connection| {
            connection
                .prepare_cached(
                    "INSERT OR IGNORE INTO deliveries (instance_id, event_id, label, created_at, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    key.instance.as_str(),
                    key.event_id,
                    key.label,
                    millis(record.created_at),
                    doc
                ])
        })?;
        Ok(inserted == 1)
    }

    async fn get(&self, key: &DeliveryKey) -> Result<Option<DeliveryRecord>> {
        let doc: Option<String> = self.db.with(|connection| {
            connection
                .prepare_cached(
                    "SELECT doc FROM deliveries WHERE instance_id = ?1 AND event_id = ?2 AND label = ?3",
                )?
                .query_row(params![key.instance.as_str(), key.event_id, key.label], |row| row.get(0))
                .optional()
        })?;
        doc.map(|doc| serde_json::from_str(&doc).map_err(storage)).transpose()
    }

    async fn update(&self, record: &DeliveryRecord, expected: u64) -> Result<bool> {
        let doc = serde_json::to_string(record).map_err(storage)?;
        let key = &record.key;
        let updated = self.db.with(|connection| {
            connection
                .prepare_cached(
                    "UPDATE deliveries SET doc = ?4
                     WHERE instance_id = ?1 AND event_id = ?2 AND label = ?3
                       AND coalesce(json_extract(doc, '$.revision'), 0) = ?5",
                )?
                .execute(params![key.instance.as_str(), key.event_id, key.label, doc, expected as i64])
        })?;
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
            let page: Vec<String> = self.db.with(|connection| {
                connection
                    .prepare_cached(
                        "SELECT doc FROM deliveries WHERE instance_id = ?1 AND created_at >= ?2
                         ORDER BY created_at DESC, rowid DESC LIMIT 500 OFFSET ?3",
                    )?
                    .query_map(params![instance.as_str(), cutoff, offset], |row| row.get(0))?
                    .collect()
            })?;
            let exhausted = page.len() < 500;
            offset += page.len() as i64;
            found.extend(records(page)?.into_iter().filter(|r| filter.matches(r)));
            if found.len() >= limit || exhausted {
                found.truncate(limit);
                return Ok(found);
            }
        }
    }

    async fn of_event(&self, instance: &InstanceId, event_id: &str) -> Result<Vec<DeliveryRecord>> {
        let docs: Vec<String> = self.db.with(|connection| {
            connection
                .prepare_cached(
                    "SELECT doc FROM deliveries WHERE instance_id = ?1 AND event_id = ?2 ORDER BY label",
                )?
                .query_map(params![instance.as_str(), event_id], |row| row.get(0))?
                .collect()
        })?;
        records(docs)
    }

    async fn delete_instance(&self, instance: &InstanceId) -> Result<()> {
        self.db.with(|connection| {
            connection
                .execute("DELETE FROM deliveries WHERE instance_id = ?1", [instance.as_str()])
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, EventsDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = EventsDb::open(&dir.path().join("events.db")).unwrap();
        (dir, db)
    }

    fn grouped(group: &str) -> SendOptions {
        SendOptions { group: Some(group.into()), delay: Duration::ZERO }
    }

    #[tokio::test]
    async fn a_group_is_received_one_at_a_time_in_order() {
        let (_dir, db) = db();
        let queue = db.queue::<u32>("q");
        for n in 1..=3 {
            queue.send_with(&n, grouped("a")).await.unwrap();
        }
        queue.send_with(&10, grouped("b")).await.unwrap();
        let first = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(first.iter().map(|d| d.message).collect::<Vec<_>>(), vec![1, 10]);
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty(), "heads still in flight");
        queue.ack(&first[0].receipt).await.unwrap();
        let next = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(next.iter().map(|d| d.message).collect::<Vec<_>>(), vec![2]);
    }

    #[tokio::test]
    async fn unacknowledged_messages_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        {
            let db = EventsDb::open(&path).unwrap();
            let queue = db.queue::<u32>("q");
            queue.send(&1).await.unwrap();
            queue.send(&2).await.unwrap();
            let taken = queue.receive(1, Duration::ZERO).await.unwrap();
            assert_eq!(taken[0].message, 1);
            // Dropped without an ack, as by a process killed mid-delivery.
        }
        let queue = EventsDb::open(&path).unwrap().queue::<u32>("q");
        let again = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(again.iter().map(|d| d.message).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_second_opener_beside_the_first_leaves_messages_in_flight_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let owner = EventsDb::open(&path).unwrap();
        let queue = owner.queue::<u32>("q");
        queue.send(&1).await.unwrap();
        assert_eq!(queue.receive(1, Duration::ZERO).await.unwrap().len(), 1);
        let beside = EventsDb::open(&path).unwrap().queue::<u32>("q");
        assert!(beside.receive(1, Duration::ZERO).await.unwrap().is_empty(), "still in flight");
    }

    #[tokio::test]
    async fn a_delayed_message_waits_and_wakes_its_receiver() {
        let (_dir, db) = db();
        let queue = db.queue::<u32>("q");
        queue.send_with(&7, SendOptions { group: None, delay: Duration::from_millis(200) }).await.unwrap();
        assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
        let later = queue.receive(1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(later[0].message, 7);
    }

    #[tokio::test]
    async fn released_messages_come_back_and_queues_are_apart() {
        let (_dir, db) = db();
        let (a, b) = (db.queue::<u32>("a"), db.queue::<u32>("b"));
        a.send(&1).await.unwrap();
        assert!(b.receive(1, Duration::ZERO).await.unwrap().is_empty());
        let taken = a.receive(1, Duration::ZERO).await.unwrap();
        a.release(&taken[0].receipt).await.unwrap();
        let again = a.receive(1, Duration::ZERO).await.unwrap();
        a.ack(&again[0].receipt).await.unwrap();
        assert!(a.receive(1, Duration::ZERO).await.unwrap().is_empty());
    }
}
