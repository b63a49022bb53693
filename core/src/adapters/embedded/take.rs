//! Taking messages off `events.db`'s table for a receive: which are due (groups' batches first,
//! then ungrouped messages), hiding them for their receiver, and giving them back when the receive
//! that took them was cancelled before it could hand them out.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use super::durable_queue::{GROUP_BATCH, VISIBILITY, VISIBILITY_PER_MESSAGE_AHEAD, message_id};
use super::group_commit::GroupCommit;

/// A message as taken off the table, before its body is read.
pub(super) struct Taken {
    pub(super) receipt: String,
    pub(super) body: String,
    pub(super) receives: u32,
    pub(super) group: Option<String>,
}

/// What one look at the table found: messages now hidden for their receiver, or, when there were
/// none, when the next one falls due by time alone.
pub(super) struct Look {
    pub(super) taken: Vec<Taken>,
    pub(super) next_due: Option<i64>,
    pub(super) hidden: Unclaimed,
}

/// Messages hidden for a receiver that has not taken them yet. Dropped unclaimed (a receive
/// cancelled while its look was on the database thread), it gives them back at once, so that a
/// cancelled receive takes nothing off the queue.
pub(super) struct Unclaimed {
    receipts: Vec<String>,
    thread: GroupCommit,
    /// The queue's wake-up: a receiver that found these hidden may be waiting for them.
    arrived: Arc<Notify>,
}

impl Unclaimed {
    pub(super) fn claim(mut self) {
        self.receipts.clear();
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if self.receipts.is_empty() {
            return;
        }
        let receipts = std::mem::take(&mut self.receipts);
        let arrived = self.arrived.clone();
        let given_back = self.thread.detach(move |connection| {
            for receipt in receipts {
                let undone = connection.execute(
                    "UPDATE messages SET visible_at = 0, receipt = NULL, receives = receives - 1
                     WHERE id = ?1 AND receipt = ?2",
                    params![message_id(&receipt), receipt],
                );
                if let Err(error) = undone {
                    tracing::warn!(%error, "a message of a cancelled receive stays hidden until its timeout");
                }
            }
            // A receive that looked while these were hidden sleeps until its deadline unless woken;
            // its next look is a later job, so it sees this job's commit.
            arrived.notify_waiters();
        });
        if !given_back {
            tracing::warn!("messages of a cancelled receive stay hidden until their timeout");
        }
    }
}

/// Takes up to `max` due messages of `queue` and hides them: whole groups' batches first, oldest
/// head first, then ungrouped messages by due time.
pub(super) fn take(
    connection: &Connection,
    thread: GroupCommit,
    arrived: Arc<Notify>,
    queue: &'static str,
    now: i64,
    max: usize,
) -> rusqlite::Result<Look> {
    let mut picked: Vec<(i64, String, u32, Option<String>, usize)> = Vec::new();
    let groups = connection
        .prepare_cached(
            "SELECT l.grp FROM lanes l JOIN messages m ON m.id = l.head
             WHERE l.queue = ?1 AND m.visible_at <= ?2 ORDER BY l.head LIMIT ?3",
        )?
        .query_map(params![queue, now, max as i64], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut of_group = connection.prepare_cached(
        "SELECT id, body, receives, visible_at FROM messages WHERE queue = ?1 AND grp = ?2 ORDER BY id LIMIT ?3",
    )?;
    for group in groups {
        let room = GROUP_BATCH.min(max.saturating_sub(picked.len()));
        if room == 0 {
            break;
        }
        let rows = of_group.query_map(params![queue, group, room as i64], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, u32>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })?;
        // The due run from the head: a message in flight or delayed holds back those behind it.
        for (position, row) in rows.enumerate() {
            let (id, body, receives, visible_at) = row?;
            if visible_at > now {
                break;
            }
            picked.push((id, body, receives, Some(group.clone()), position));
        }
    }
    let room = max.saturating_sub(picked.len());
    if room > 0 {
        let rows = connection
            .prepare_cached(
                "SELECT id, body, receives FROM messages
                 WHERE queue = ?1 AND grp IS NULL AND visible_at <= ?2 ORDER BY visible_at, id LIMIT ?3",
            )?
            .query_map(params![queue, now, room as i64], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, u32>(2)?, None, 0))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        picked.extend(rows);
    }
    if picked.is_empty() {
        let next_due = next_due(connection, queue, now)?;
        return Ok(Look {
            taken: Vec::new(),
            next_due,
            hidden: Unclaimed { receipts: Vec::new(), thread, arrived },
        });
    }
    let mut hide = connection.prepare_cached(
        "UPDATE messages SET visible_at = ?2, receipt = ?3, receives = receives + 1 WHERE id = ?1",
    )?;
    let mut taken = Vec::with_capacity(picked.len());
    let mut hidden = Unclaimed { receipts: Vec::with_capacity(picked.len()), thread, arrived };
    for (id, body, receives, group, position) in picked {
        let hidden_for = VISIBILITY + VISIBILITY_PER_MESSAGE_AHEAD * position as u32;
        let receipt = format!("{id}.{}", uuid::Uuid::new_v4().simple());
        hide.execute(params![id, now + hidden_for.as_millis() as i64, receipt])?;
        hidden.receipts.push(receipt.clone());
        taken.push(Taken { receipt, body, receives: receives + 1, group });
    }
    Ok(Look { taken, next_due: None, hidden })
}

/// When the next message that time alone makes takeable falls due: an ungrouped one, or a group's
/// head. (A message behind its group's head waits for an acknowledgement, which wakes receivers by
/// itself.)
fn next_due(connection: &Connection, queue: &'static str, now: i64) -> rusqlite::Result<Option<i64>> {
    connection
        .prepare_cached(
            "SELECT MIN(v) FROM (
                SELECT MIN(visible_at) AS v FROM messages WHERE queue = ?1 AND grp IS NULL AND visible_at > ?2
                UNION ALL
                SELECT MIN(m.visible_at) FROM lanes l JOIN messages m ON m.id = l.head
                WHERE l.queue = ?1 AND m.visible_at > ?2)",
        )?
        .query_row(params![queue, now], |row| row.get(0))
        .optional()
        .map(Option::flatten)
}
