//! Host records and instance leases in the registry's SQLite file, so that a fenced write checks
//! the lease and writes the instance in one transaction.
//!
//! One machine has one host, but the rules are the fleet's: a restart is a new epoch, and leases
//! taken by an earlier start are the new start's to take over, which is how sessions resume.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::registry::{FileRegistry, apply_change, from_json, storage, to_json};
use crate::domain::{Holder, HostId, HostRecord, Instance, InstanceChange, InstanceId, Lease};
use crate::ports::Leases;
use crate::{Error, Result};

fn read_lease(connection: &Connection, instance: &InstanceId) -> Result<Lease> {
    let doc: Option<String> = connection
        .query_row("SELECT doc FROM leases WHERE instance_id = ?1", [instance.as_str()], |row| row.get(0))
        .optional()
        .map_err(storage)?;
    doc.map_or(Ok(Lease::NEVER_TAKEN), |doc| from_json(&doc))
}

/// Writes `next` if the stored fence is still `expected`'s; `false` when it moved on.
fn swap_lease(
    connection: &mut Connection,
    instance: &InstanceId,
    expected: &Lease,
    next: &Lease,
) -> Result<bool> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
    let swapped = swap_lease_in(&tx, instance, expected, next)?;
    tx.commit().map_err(storage)?;
    Ok(swapped)
}

/// [`swap_lease`] inside the caller's transaction.
fn swap_lease_in(
    tx: &Transaction<'_>,
    instance: &InstanceId,
    expected: &Lease,
    next: &Lease,
) -> Result<bool> {
    if read_lease(tx, instance)?.fence != expected.fence {
        return Ok(false);
    }
    let host = next.holder.as_ref().map(|h| h.host.as_str());
    tx.execute(
        "INSERT INTO leases (instance_id, host, fence, doc) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (instance_id) DO UPDATE SET host = ?2, fence = ?3, doc = ?4",
        params![instance.as_str(), host, next.fence as i64, to_json(next)?],
    )
    .map_err(storage)?;
    Ok(true)
}

#[async_trait]
impl Leases for FileRegistry {
    async fn register_host(&self, id: &HostId, capacity: u32, channel: &str) -> Result<HostRecord> {
        let (id, channel) = (id.clone(), channel.to_owned());
        self.write(move |connection, _| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            let last: Option<i64> = tx
                .query_row("SELECT epoch FROM hosts WHERE id = ?1", [id.as_str()], |row| row.get(0))
                .optional()
                .map_err(storage)?;
            let record = HostRecord {
                id: id.clone(),
                epoch: last.unwrap_or(0) as u64 + 1,
                beat: 0,
                capacity,
                sessions: 0,
                channel,
                draining: false,
            };
            tx.execute(
                "INSERT INTO hosts (id, epoch, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET epoch = ?2, doc = ?3",
                params![id.as_str(), record.epoch as i64, to_json(&record)?],
            )
            .map_err(storage)?;
            tx.commit().map_err(storage)?;
            Ok(record)
        })
        .await
    }

    async fn beat(&self, host: &HostRecord, sessions: u32, draining: bool) -> Result<HostRecord> {
        let mut next = HostRecord { beat: host.beat + 1, sessions, draining, ..host.clone() };
        self.write(move |connection, _| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            let stored: Option<Option<String>> = tx
                .query_row(
                    "SELECT doc FROM hosts WHERE id = ?1 AND epoch = ?2",
                    params![next.id.as_str(), next.epoch as i64],
                    |row| row.get(0),
                )
                .optional()
                .map_err(storage)?;
            let Some(Some(stored)) = stored else { return Err(Error::HostSuperseded) };
            // The counter only has to move: continue from what is stored, whatever the caller held.
            next.beat = from_json::<HostRecord>(&stored)?.beat + 1;
            tx.execute("UPDATE hosts SET doc = ?2 WHERE id = ?1", params![next.id.as_str(), to_json(&next)?])
                .map_err(storage)?;
            tx.commit().map_err(storage)?;
            Ok(next)
        })
        .await
    }

    async fn hosts(&self) -> Result<Vec<HostRecord>> {
        self.inner.with_connection(|connection| {
            let mut statement = connection
                .prepare_cached("SELECT doc FROM hosts WHERE doc IS NOT NULL ORDER BY id")
                .map_err(storage)?;
            let docs = statement.query_map([], |row| row.get::<_, String>(0)).map_err(storage)?;
            docs.map(|doc| from_json(&doc.map_err(storage)?)).collect()
        })
    }

    async fn remove_host(&self, holder: &Holder) -> Result<()> {
        let holder = holder.clone();
        self.write(move |connection, _| {
            // The epoch stays, so that the next start of this id still gets a later one.
            connection
                .execute(
                    "UPDATE hosts SET doc = NULL WHERE id = ?1 AND epoch = ?2",
                    params![holder.host.as_str(), holder.epoch as i64],
                )
                .map_err(storage)?;
            Ok(())
        })
        .await
    }

    async fn lease(&self, instance: &InstanceId) -> Result<Lease> {
        self.inner.with_connection(|connection| read_lease(connection, instance))
    }

    async fn take(&self, instance: &InstanceId, holder: &Holder, expected: &Lease) -> Result<Option<Lease>> {
        let next = Lease { holder: Some(holder.clone()), fence: expected.fence + 1 };
        let (instance, expected) = (instance.clone(), expected.clone());
        self.write(move |connection, _| {
            Ok(swap_lease(connection, &instance, &expected, &next)?.then_some(next))
        })
        .await
    }

    async fn take_all(&self, orphans: &[(InstanceId, Lease)], holder: &Holder) -> Vec<Result<Option<Lease>>> {
        let (orphans, holder) = (orphans.to_vec(), holder.clone());
        let count = orphans.len();
        // One transaction for the lot: one commit instead of one per lease.
        let taken = self
            .write(move |connection, _| {
                let tx =
                    connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
                let mut taken = Vec::with_capacity(orphans.len());
                for (instance, expected) in &orphans {
                    let next = Lease { holder: Some(holder.clone()), fence: expected.fence + 1 };
                    taken.push(swap_lease_in(&tx, instance, expected, &next)?.then_some(next));
                }
                tx.commit().map_err(storage)?;
                Ok(taken)
            })
            .await;
        match taken {
            Ok(taken) => taken.into_iter().map(Ok).collect(),
            // Nothing was written: every take failed alike.
            Err(error) => (0..count).map(|_| Err(error.for_each_item())).collect(),
        }
    }

    async fn release(&self, instance: &InstanceId, held: &Lease) -> Result<bool> {
        let next = Lease { holder: None, fence: held.fence + 1 };
        let (instance, held) = (instance.clone(), held.clone());
        self.write(move |connection, _| swap_lease(connection, &instance, &held, &next)).await
    }

    async fn held_by(&self, host: &HostId) -> Result<Vec<(InstanceId, Lease)>> {
        self.inner.with_connection(|connection| {
            let mut statement = connection
                .prepare_cached("SELECT instance_id, doc FROM leases WHERE host = ?1 ORDER BY instance_id")
                .map_err(storage)?;
            let rows = statement
                .query_map([host.as_str()], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                .map_err(storage)?;
            rows.map(|row| {
                let (instance, doc) = row.map_err(storage)?;
                Ok((InstanceId::from_stored(&instance), from_json(&doc)?))
            })
            .collect()
        })
    }

    async fn update_instance_fenced(
        &self,
        id: &InstanceId,
        change: InstanceChange,
        at: DateTime<Utc>,
        held: &Lease,
    ) -> Result<Arc<Instance>> {
        let (id, fence) = (id.clone(), held.fence);
        self.write(move |connection, inner| {
            // The writer lock is held: the lease cannot move between this read and the write.
            if read_lease(connection, &id)?.fence != fence {
                return Err(Error::LeaseLost);
            }
            apply_change(connection, inner, &id, change, at)
        })
        .await
    }

    async fn forget(&self, instance: &InstanceId) -> Result<()> {
        let instance = instance.clone();
        self.write(move |connection, _| {
            connection
                .execute("DELETE FROM leases WHERE instance_id = ?1", [instance.as_str()])
                .map_err(storage)?;
            Ok(())
        })
        .await
    }
}
