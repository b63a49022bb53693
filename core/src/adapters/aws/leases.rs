//! Host records and instance leases on the registry's DynamoDB table (layout in [`super::items`]).
//!
//! Every change of a lease is a conditional write on its fence, so two hosts racing for an
//! instance cannot both win; a fenced instance write is a transaction of a condition check on the
//! lease and the instance's own revision-conditioned put. Host records share one partition, read
//! with one consistent query; a beat is an atomic `ADD` on the record's counter, conditioned on the
//! epoch, so a host that another start of its id replaced learns it at its next beat.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::items::{self, Item, n, s};
use super::registry::{ATTEMPTS, Cancelled, DynamoRegistry, back_off, is_condition_failure};
use super::sdk_error;
use crate::domain::{Holder, HostId, HostRecord, Instance, InstanceChange, InstanceId, Lease};
use crate::ports::Leases;
use crate::{Error, Result};

const EPOCH: &str = "epoch";
const BEAT: &str = "beat";
const FENCE: &str = "fence";

/// A host record from its item: the document as registered, with the counter beside it.
fn host_record(item: &Item) -> Result<Option<HostRecord>> {
    if !item.contains_key(items::DOC) {
        return Ok(None); // removed; the item keeps only the epoch
    }
    let mut record: HostRecord = items::parse(item, items::DOC)?;
    record.beat = items::number(item, BEAT)?;
    Ok(Some(record))
}

/// The most writes one DynamoDB transaction takes.
const TRANSACTION_ITEMS: usize = 100;

/// A lease write: the item, its condition, and the condition's values (none for a first take).
type LeaseWrite = (Item, &'static str, Option<HashMap<String, AttributeValue>>);

/// The lease's item as `next`, indexed under its holder's host, on condition that it is still
/// `expected`.
fn lease_write(instance: &InstanceId, expected: &Lease, next: &Lease) -> Result<LeaseWrite> {
    let mut item =
        items::with(items::lease_key(instance), [(items::DOC, items::json(next)?), (FENCE, n(next.fence))]);
    if let Some(holder) = &next.holder {
        item.insert(items::GSI1_PK.into(), s(items::leases_held_by(&holder.host)));
        item.insert(items::GSI1_SK.into(), s(instance.as_str()));
    }
    Ok(if expected.fence == 0 {
        (item, "attribute_not_exists(pk)", None)
    } else {
        (item, "fence = :expected", Some([(":expected".to_owned(), n(expected.fence))].into()))
    })
}

impl DynamoRegistry {
    /// Writes `next` if the lease's fence is still `expected`'s; `false` when it moved on.
    async fn swap_lease(&self, instance: &InstanceId, expected: &Lease, next: &Lease) -> Result<bool> {
        let (item, condition, values) = lease_write(instance, expected, next)?;
        let put = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values);
        match put.send().await {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(sdk_error(error)),
        }
    }

    /// Takes up to a transaction's worth of leases: all in one transaction. The ones whose fence
    /// moved on are not taken and the others go again without them; nothing else is written
    /// while a transaction is refused, so an outcome is certain for each. (The SDK gives every
    /// transaction an idempotency token, so a retry after a lost answer does not take twice.)
    async fn take_some(
        &self,
        orphans: &[(InstanceId, Lease)],
        holder: &Holder,
    ) -> Vec<Result<Option<Lease>>> {
        let next = |expected: &Lease| Lease { holder: Some(holder.clone()), fence: expected.fence + 1 };
        let mut outcomes: Vec<Option<Result<Option<Lease>>>> = orphans.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..orphans.len()).collect();
        // DynamoDB names every failed condition at once, so a second round seldom fails again.
        for attempt in 0..ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let writes: Result<Vec<TransactWriteItem>> = pending
                .iter()
                .map(|&i| {
                    let (instance, expected) = &orphans[i];
                    let (item, condition, values) = lease_write(instance, expected, &next(expected))?;
                    let put = Put::builder()
                        .table_name(&*self.table)
                        .set_item(Some(item))
                        .condition_expression(condition)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(Error::storage)?;
                    Ok(TransactWriteItem::builder().put(put).build())
                })
                .collect();
            let cancelled = match writes {
                Ok(writes) => self.transact(writes).await,
                Err(error) => Err(error),
            };
            match cancelled {
                Ok(Ok(())) => {
                    for i in pending.drain(..) {
                        outcomes[i] = Some(Ok(Some(next(&orphans[i].1))));
                    }
                }
                Ok(Err(Cancelled::Conditions(failed))) => {
                    let mut rest = Vec::new();
                    for (i, failed) in pending.into_iter().zip(failed) {
                        if failed {
                            outcomes[i] = Some(Ok(None));
                        } else {
                            rest.push(i);
                        }
                    }
                    pending = rest;
                }
                Ok(Err(Cancelled::Conflict)) => back_off(attempt).await,
                Err(error) => {
                    for i in pending.drain(..) {
                        outcomes[i] = Some(Err(error.for_each_item()));
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| Err(Error::storage("lease takes kept conflicting"))))
            .collect()
    }
}

#[async_trait]
impl Leases for DynamoRegistry {
    async fn register_host(&self, id: &HostId, capacity: u32, channel: &str) -> Result<HostRecord> {
        for attempt in 0..ATTEMPTS {
            let last = self.get(items::host_key(id)).await?;
            let epoch = match &last {
                Some(item) => items::number(item, EPOCH)?,
                None => 0,
            };
            let record = HostRecord {
                id: id.clone(),
                epoch: epoch + 1,
                beat: 0,
                capacity,
                sessions: 0,
                channel: channel.to_owned(),
                draining: false,
            };
            let item = items::with(
                items::host_key(id),
                [(items::DOC, items::json(&record)?), (EPOCH, n(record.epoch)), (BEAT, n(0))],
            );
            let mut put = self.client.put_item().table_name(&*self.table).set_item(Some(item));
            put = match last {
                Some(_) => {
                    put.condition_expression("epoch = :last").expression_attribute_values(":last", n(epoch))
                }
                None => put.condition_expression("attribute_not_exists(pk)"),
            };
            match put.send().await {
                Ok(_) => return Ok(record),
                // Another start of the same id registered meanwhile: read again.
                Err(error) if is_condition_failure(&error) => back_off(attempt).await,
                Err(error) => return Err(sdk_error(error)),
            }
        }
        Err(Error::storage("host registration kept conflicting"))
    }

    async fn beat(&self, host: &HostRecord, sessions: u32, draining: bool) -> Result<HostRecord> {
        let next = HostRecord { sessions, draining, ..host.clone() };
        let output = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(items::host_key(&host.id)))
            .update_expression("SET doc = :doc ADD beat :one")
            .condition_expression("epoch = :epoch AND attribute_exists(doc)")
            .expression_attribute_values(":doc", items::json(&next)?)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":epoch", n(host.epoch))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match output {
            Ok(output) => {
                let item = output.attributes.unwrap_or_default();
                host_record(&item)?.ok_or(Error::HostSuperseded)
            }
            Err(error) if is_condition_failure(&error) => Err(Error::HostSuperseded),
            Err(error) => Err(sdk_error(error)),
        }
    }

    async fn hosts(&self) -> Result<Vec<HostRecord>> {
        let query = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("pk = :hosts")
            .expression_attribute_values(":hosts", s(items::HOSTS))
            .consistent_read(true);
        let mut hosts = Vec::new();
        for item in items::all(query).await? {
            hosts.extend(host_record(&item)?);
        }
        Ok(hosts)
    }

    async fn remove_host(&self, holder: &Holder) -> Result<()> {
        let removed = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(items::host_key(&holder.host)))
            // The epoch stays, so that the next start of this id still gets a later one.
            .update_expression("REMOVE doc")
            .condition_expression("epoch = :epoch")
            .expression_attribute_values(":epoch", n(holder.epoch))
            .send()
            .await;
        match removed {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => Ok(()),
            Err(error) => Err(sdk_error(error)),
        }
    }

    async fn lease(&self, instance: &InstanceId) -> Result<Lease> {
        match self.get(items::lease_key(instance)).await? {
            Some(item) => items::parse(&item, items::DOC),
            None => Ok(Lease::NEVER_TAKEN),
        }
    }

    async fn take(&self, instance: &InstanceId, holder: &Holder, expected: &Lease) -> Result<Option<Lease>> {
        let next = Lease { holder: Some(holder.clone()), fence: expected.fence + 1 };
        Ok(self.swap_lease(instance, expected, &next).await?.then_some(next))
    }

    async fn take_all(&self, orphans: &[(InstanceId, Lease)], holder: &Holder) -> Vec<Result<Option<Lease>>> {
        let mut taken = Vec::with_capacity(orphans.len());
        for batch in orphans.chunks(TRANSACTION_ITEMS) {
            taken.extend(self.take_some(batch, holder).await);
        }
        taken
    }

    async fn release(&self, instance: &InstanceId, held: &Lease) -> Result<bool> {
        self.swap_lease(instance, held, &Lease { holder: None, fence: held.fence + 1 }).await
    }

    async fn held_by(&self, host: &HostId) -> Result<Vec<(InstanceId, Lease)>> {
        let query = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(items::GSI1)
            .key_condition_expression("gsi1pk = :held")
            .expression_attribute_values(":held", s(items::leases_held_by(host)));
        items::all(query)
            .await?
            .iter()
            .map(|item| {
                let instance = InstanceId::from_stored(items::string(item, items::GSI1_SK)?);
                Ok((instance, items::parse(item, items::DOC)?))
            })
            .collect()
    }

    async fn update_instance_fenced(
        &self,
        id: &InstanceId,
        change: InstanceChange,
        at: DateTime<Utc>,
        held: &Lease,
    ) -> Result<Arc<Instance>> {
        self.write_instance(id, change, at, Some(held.fence)).await
    }

    async fn update_instance_fenced_from(
        &self,
        known: &Instance,
        change: InstanceChange,
        at: DateTime<Utc>,
        held: &Lease,
    ) -> Result<Arc<Instance>> {
        let mut instance = known.clone();
        instance.apply(change.clone(), at);
        if self.put_instance_fenced(&instance, known.revision, held.fence).await? {
            return Ok(Arc::new(instance));
        }
        // Written by somebody else since (or gone): read it and apply the change to that.
        self.write_instance(&known.id, change, at, Some(held.fence)).await
    }

    async fn forget(&self, instance: &InstanceId) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(items::lease_key(instance)))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}
