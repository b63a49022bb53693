//! Durable queues in one SQLite file, `events.db` (beside the delivery log, `delivery_log.rs`): what
//! makes events survive a `kill -9` of `ryze serve`.
//!
//! A message stays in `messages` until it is acknowledged. Receiving hides it for a visibility
//! timeout and gives it a fresh receipt; a consumer that dies leaves it to come back once that timeout
//! is over. The first process to open the file holds `events.lock` for its lifetime and, since
//! nothing can be in flight before it, makes every hidden message visible at once; a process that
//! opens the file beside it (an operator command while `ryze serve` runs) changes nothing at open.
//! Delays are a `visible_at` in the future, of any length.
//!
//! Groups follow SQS FIFO's rule: a group's messages are handed out in the order sent, and only while
//! its oldest message still in the table (its head) is due, so none while an earlier one is in
//! flight. One receive hands out up to [`GROUP_BATCH`] of a group, in order, for their receiver to
//! handle one after another. `lanes` holds each group's head, kept by triggers, so that finding the
//! takeable groups reads one row per group rather than every message queued.
//!
//! The file runs in WAL mode with `synchronous = NORMAL`: every commit is in the file before the
//! call returns, so a crash of the process loses nothing; only a crash of the machine itself can
//! lose the last commits, a trade that keeps a commit at tens of microseconds instead of an fsync.
//! Every statement runs on the file's [`GroupCommit`] thread, which commits concurrent callers'
//! work together and answers each only after its commit.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::time::{Instant, timeout_at};

use super::group_commit::GroupCommit;
use super::take::{Taken, take};
use crate::ports::{Delivery, Queue, Receipt, SendOptions};
use crate::{Error, Result};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, grp TEXT, body TEXT NOT NULL,
        visible_at INTEGER NOT NULL, receipt TEXT, receives INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX IF NOT EXISTS messages_ungrouped ON messages (queue, visible_at, id) WHERE grp IS NULL;
    CREATE INDEX IF NOT EXISTS messages_groups ON messages (queue, grp, id);
    -- A receipt starts with its message's id, which finds the row: an index of receipts would be
    -- one more write on every receive.
    DROP INDEX IF EXISTS messages_receipts;
    CREATE TABLE IF NOT EXISTS lanes (
        queue TEXT NOT NULL, grp TEXT NOT NULL, head INTEGER,
        PRIMARY KEY (queue, grp)) WITHOUT ROWID;
    -- Ids only grow (AUTOINCREMENT), so a message sent into a group with a head is never its head.
    CREATE TRIGGER IF NOT EXISTS lanes_on_send AFTER INSERT ON messages WHEN NEW.grp IS NOT NULL
    BEGIN
        INSERT OR IGNORE INTO lanes (queue, grp, head) VALUES (NEW.queue, NEW.grp, NEW.id);
    END;
    CREATE TRIGGER IF NOT EXISTS lanes_on_remove AFTER DELETE ON messages WHEN OLD.grp IS NOT NULL
    BEGIN
        UPDATE lanes SET head = (SELECT MIN(id) FROM messages WHERE queue = OLD.queue AND grp = OLD.grp)
         WHERE queue = OLD.queue AND grp = OLD.grp AND head = OLD.id;
        DELETE FROM lanes WHERE queue = OLD.queue AND grp = OLD.grp AND head IS NULL;
    END;
    -- A file written before `lanes` existed gets its groups' heads once.
    INSERT OR IGNORE INTO lanes (queue, grp, head)
        SELECT queue, grp, MIN(id) FROM messages WHERE grp IS NOT NULL GROUP BY queue, grp;
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

/// The most messages of one group one receive hands out (SQS FIFO's most per receive).
pub const GROUP_BATCH: usize = 10;

/// How much longer each message of a group's batch stays hidden than the one before it: its
/// receiver handles them one after another, each within a webhook attempt's 15 s bound, so the
/// last of ten must not come back while the first nine are still being handled.
pub(super) const VISIBILITY_PER_MESSAGE_AHEAD: Duration = Duration::from_secs(20);

/// Delivery records older than this are forgotten (API.md: kept 7 days).
pub(super) const RETENTION: chrono::Duration = chrono::Duration::days(7);

fn storage(error: impl Into<crate::error::BoxError>) -> Error {
    Error::storage(error)
}

/// The open `events.db`, shared by its queues and the delivery log.
#[derive(Clone)]
pub struct EventsDb {
    thread: GroupCommit,
    /// One per queue name, woken on every send, acknowledgement and release of that queue, so that
    /// a waiting receive looks again.
    arrivals: Arc<Mutex<HashMap<&'static str, Arc<Notify>>>>,
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
            thread: GroupCommit::start(connection, "events-db")?,
            arrivals: Arc::default(),
            _owner: owner,
        })
    }

    /// A queue named `name` in this file.
    pub fn queue<M>(&self, name: &'static str) -> DurableQueue<M> {
        let arrived = {
            let mut arrivals = self.arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            arrivals.entry(name).or_default().clone()
        };
        DurableQueue { db: self.clone(), name, arrived, _messages: PhantomData }
    }

    pub(super) fn thread(&self) -> &GroupCommit {
        &self.thread
    }
}

/// The message a receipt (`<id>.<random>`) was given for; none for a receipt not made here.
pub(super) fn message_id(receipt: &str) -> Option<i64> {
    receipt.split_once('.').and_then(|(id, _)| id.parse().ok())
}

pub(super) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn now_millis() -> i64 {
    millis(Utc::now())
}

/// One named queue of `events.db`.
pub struct DurableQueue<M> {
    db: EventsDb,
    name: &'static str,
    arrived: Arc<Notify>,
    _messages: PhantomData<fn(M) -> M>,
}

impl<M> std::fmt::Debug for DurableQueue<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableQueue").field("name", &self.name).finish()
    }
}

impl<M: DeserializeOwned> DurableQueue<M> {
    /// Takes up to `max` due messages, hiding each; or, with none due, says when one will be.
    async fn look(&self, max: usize) -> Result<(Vec<Delivery<M>>, Option<i64>)> {
        let (queue, now) = (self.name, now_millis());
        let (thread, arrived) = (self.db.thread.clone(), self.arrived.clone());
        let look = self.db.thread.call(move |c| take(c, thread, arrived, queue, now, max)).await?;
        look.hidden.claim();
        let mut deliveries = Vec::with_capacity(look.taken.len());
        for Taken { receipt, body, receives, group } in look.taken {
            match serde_json::from_str(&body) {
                Ok(message) => {
                    deliveries.push(Delivery { message, receipt: Receipt(receipt), receives, group })
                }
                // No version of this code can read it: drop it rather than see it come back forever.
                Err(error) => {
                    tracing::error!(queue = self.name, %error, "unreadable queued message dropped");
                    self.remove(Receipt(receipt)).await?;
                }
            }
        }
        Ok((deliveries, look.next_due))
    }

    async fn remove(&self, receipt: Receipt) -> Result<()> {
        self.db
            .thread
            .call(move |c| {
                c.prepare_cached("DELETE FROM messages WHERE id = ?1 AND receipt = ?2")?
                    .execute(params![message_id(&receipt.0), receipt.0])
                    .map(drop)
            })
            .await
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
        let (queue, group) = (self.name, options.group);
        self.db
            .thread
            .call(move |c| {
                c.prepare_cached(
                    "INSERT INTO messages (queue, grp, body, visible_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![queue, group, body, visible_at])
                .map(drop)
            })
            .await?;
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery<M>>> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let (batch, next_due) = self.look(max.max(1)).await?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            // Sleep until a send, the deadline, or the next delayed message falls due.
            let mut wake = deadline;
            if let Some(due) = next_due {
                let until_due = Duration::from_millis(due.saturating_sub(now_millis()).max(1) as u64);
                wake = wake.min(Instant::now() + until_due);
            }
            if timeout_at(wake, arrived).await.is_err() && Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        self.remove(receipt.clone()).await?;
        // An acknowledged head frees the next message of its group.
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn release_after(&self, receipt: &Receipt, after: Duration) -> Result<()> {
        let receipt = receipt.0.clone();
        let visible_at = if after.is_zero() { 0 } else { now_millis() + after.as_millis() as i64 };
        self.db
            .thread
            .call(move |c| {
                c.prepare_cached(
                    "UPDATE messages SET visible_at = ?3, receipt = NULL WHERE id = ?1 AND receipt = ?2",
                )?
                .execute(params![message_id(&receipt), receipt, visible_at])
                .map(drop)
            })
            .await?;
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn keep_hidden(&self, receipt: &Receipt, hidden_for: Duration) -> Result<()> {
        let receipt = receipt.0.clone();
        let visible_at = now_millis() + hidden_for.as_millis() as i64;
        let kept = self
            .db
            .thread
            .call(move |c| {
                c.prepare_cached("UPDATE messages SET visible_at = ?3 WHERE id = ?1 AND receipt = ?2")?
                    .execute(params![message_id(&receipt), receipt, visible_at])
            })
            .await?;
        if kept == 0 {
            return Err(Error::storage("message no longer held under this receipt"));
        }
        Ok(())
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

    fn messages(batch: &[Delivery<u32>]) -> Vec<u32> {
        batch.iter().map(|d| d.message).collect()
    }

    #[tokio::test]
    async fn a_group_is_received_in_order_and_not_while_an_earlier_one_is_in_flight() {
        let (_dir, db) = db();
        let queue = db.queue::<u32>("q");
        for n in 1..=3 {
            queue.send_with(&n, grouped("a")).await.unwrap();
        }
        queue.send_with(&10, grouped("b")).await.unwrap();
        let first = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(messages(&first), vec![1, 2, 3, 10]);
        assert_eq!(first[0].group.as_deref(), Some("a"));
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty(), "all in flight");
        queue.ack(&first[0].receipt).await.unwrap();
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty(), "2 and 3 still in flight");
        // Given back, the rest comes again in order; a later one alone waits behind the earlier.
        queue.release(&first[2].receipt).await.unwrap();
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty(), "3 waits behind 2");
        queue.release(&first[1].receipt).await.unwrap();
        let again = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(messages(&again), vec![2, 3]);
        assert_eq!(again.iter().map(|d| d.receives).collect::<Vec<_>>(), vec![2, 2]);
    }

    #[tokio::test]
    async fn a_receive_takes_at_most_a_batch_of_a_group_and_leaves_room_for_others() {
        let (_dir, db) = db();
        let queue = db.queue::<u32>("q");
        for n in 0..25 {
            queue.send_with(&n, grouped("a")).await.unwrap();
        }
        queue.send_with(&100, grouped("b")).await.unwrap();
        queue.send(&200).await.unwrap();
        let first = queue.receive(100, Duration::ZERO).await.unwrap();
        let mut want: Vec<u32> = (0..GROUP_BATCH as u32).collect();
        want.extend([100, 200]);
        assert_eq!(messages(&first), want);
        for delivery in &first {
            queue.ack(&delivery.receipt).await.unwrap();
        }
        let next = queue.receive(3, Duration::ZERO).await.unwrap();
        assert_eq!(messages(&next), vec![10, 11, 12]);
    }

    #[tokio::test]
    async fn a_message_kept_hidden_stays_so_for_that_long_from_now_under_the_same_receipt() {
        let (_dir, db) = db();
        let queue = db.queue::<u32>("q");
        queue.send(&1).await.unwrap();
        queue.send(&2).await.unwrap();
        let first = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(messages(&first), vec![1, 2]);

        // Kept hidden: the receipt still acknowledges it, and it never comes back.
        queue.keep_hidden(&first[0].receipt, Duration::from_secs(60)).await.unwrap();
        queue.ack(&first[0].receipt).await.unwrap();

        // Kept hidden for less than the receive's own visibility: back once that much passed.
        queue.keep_hidden(&first[1].receipt, Duration::from_millis(100)).await.unwrap();
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
        let again = queue.receive(10, Duration::from_secs(2)).await.unwrap();
        assert_eq!((messages(&again), again[0].receives), (vec![2], 2));
        assert!(
            queue.keep_hidden(&first[1].receipt, Duration::from_secs(60)).await.is_err(),
            "a stale receipt"
        );
        queue.ack(&again[0].receipt).await.unwrap();
        assert!(queue.receive(10, Duration::from_millis(200)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_file_from_before_lanes_gets_its_groups_heads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        {
            let connection = Connection::open(&path).unwrap();
            connection
                .execute_batch(
                    "CREATE TABLE messages (
                        id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, grp TEXT, body TEXT NOT NULL,
                        visible_at INTEGER NOT NULL, receipt TEXT, receives INTEGER NOT NULL DEFAULT 0);
                     INSERT INTO messages (queue, grp, body, visible_at) VALUES ('q', 'a', '1', 0), ('q', 'a', '2', 0);",
                )
                .unwrap();
        }
        let queue = EventsDb::open(&path).unwrap().queue::<u32>("q");
        let first = queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(messages(&first), vec![1]);
        queue.ack(&first[0].receipt).await.unwrap();
        assert_eq!(messages(&queue.receive(10, Duration::ZERO).await.unwrap()), vec![2]);
    }

    #[tokio::test]
    async fn a_cancelled_receive_takes_nothing() {
        let (_dir, db) = db();
        let queue = Arc::new(db.queue::<u32>("q"));
        // Receives cut off at every point of their way, while messages arrive.
        let mut seen = Vec::new();
        for n in 0..200u32 {
            queue.send_with(&n, grouped("a")).await.unwrap();
            let receiving = queue.receive(10, Duration::from_secs(1));
            let cut_off = Duration::from_micros(u64::from(n % 50) * 20);
            if let Ok(finished) = tokio::time::timeout(cut_off, receiving).await {
                for delivery in finished.unwrap() {
                    queue.ack(&delivery.receipt).await.unwrap();
                    seen.push(delivery.message);
                }
            }
        }
        while seen.len() < 200 {
            let batch = queue.receive(100, Duration::from_secs(5)).await.unwrap();
            assert!(!batch.is_empty(), "a cancelled receive hid messages: got {}", seen.len());
            for delivery in batch {
                queue.ack(&delivery.receipt).await.unwrap();
                seen.push(delivery.message);
            }
        }
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
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
