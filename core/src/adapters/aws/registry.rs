//! The instance registry on one DynamoDB table (layout in [`super::items`]).
//!
//! Every rule the port promises is a DynamoDB condition, so it holds across any number of API
//! functions and hosts: a create is one transaction that claims the name, the token and a unit of
//! the account's quota, or nothing; an update is a read and a write conditioned on the revision read.
//! Reads of single records are consistent. Listing reads the name-sorted index, which trails writes
//! by a moment (DynamoDB indexes are eventually consistent). Token owners and accounts are cached
//! for a second ([`super::cache`]): every authenticated request reads both.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use super::cache::{NAME_TTL, ReadCache};
use super::items::{self, Item, n, s};
use super::sdk_error;
use crate::domain::{
    Account, AccountId, AccountLimits, ConnectOutcome, ConnectRequest, ConnectRequestId, Instance,
    InstanceChange, InstanceId, InstanceName,
};
use crate::ports::{InstanceRegistry, TokenOwner};
use crate::secrets::TokenHash;
use crate::{Error, Result};

/// How long an unanswered or finished connect request stays before TTL may remove it.
const CONNECT_REQUEST_TTL_SECS: i64 = 3600;
/// Attempts of a write that lost a race (a transaction conflict, a revision that moved on).
pub(super) const ATTEMPTS: u32 = 8;

#[derive(Clone)]
pub struct DynamoRegistry {
    pub(super) client: Client,
    pub(super) table: Arc<str>,
    owners: Arc<ReadCache<TokenHash, TokenOwner>>,
    accounts: Arc<ReadCache<AccountId, Account>>,
    names: Arc<ReadCache<(AccountId, InstanceName), InstanceId>>,
}

impl std::fmt::Debug for DynamoRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoRegistry").field("table", &self.table).finish_non_exhaustive()
    }
}

/// Why a transaction was cancelled, item by item (`None` where the item was not the cause).
pub(super) enum Cancelled {
    Conditions(Vec<bool>),
    Conflict,
}

impl DynamoRegistry {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.into(),
            owners: Arc::default(),
            accounts: Arc::default(),
            names: Arc::new(ReadCache::trusted_for(NAME_TTL)),
        }
    }

    /// The account as stored, past the cache.
    async fn stored_account(&self, id: &AccountId) -> Result<Option<Account>> {
        self.get(items::account_key(id)).await?.map(|item| items::parse(&item, items::DOC)).transpose()
    }

    pub(super) async fn get(&self, key: Item) -> Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(output.item)
    }

    pub(super) fn put(&self, item: Item, condition: &str) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .build()
            .map_err(Error::storage)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete(&self, key: Item) -> Result<TransactWriteItem> {
        let delete =
            Delete::builder().table_name(&*self.table).set_key(Some(key)).build().map_err(Error::storage)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Runs a transaction; `Err(Ok(cancelled))` tells why DynamoDB refused it.
    pub(super) async fn transact(&self, writes: Vec<TransactWriteItem>) -> Result<Result<(), Cancelled>> {
        let count = writes.len();
        match self.client.transact_write_items().set_transact_items(Some(writes)).send().await {
            Ok(_) => Ok(Ok(())),
            Err(error) => match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let codes: Vec<&str> =
                        cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
                    if codes.contains(&"TransactionConflict") {
                        Ok(Err(Cancelled::Conflict))
                    } else if codes.len() == count
                        && codes.iter().all(|c| matches!(*c, "None" | "ConditionalCheckFailed"))
                    {
                        Ok(Err(Cancelled::Conditions(
                            codes.iter().map(|c| *c == "ConditionalCheckFailed").collect(),
                        )))
                    } else {
                        Err(sdk_error(error))
                    }
                }
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                    Ok(Err(Cancelled::Conflict))
                }
                _ => Err(sdk_error(error)),
            },
        }
    }

    /// Reads the instance, applies `change` and writes it back if its revision did not move on
    /// meanwhile (else reads again). With `fence`, the write also requires the instance's lease to
    /// still have that fence, in one transaction: `Error::LeaseLost` when it moved on.
    pub(super) async fn write_instance(
        &self,
        id: &InstanceId,
        change: InstanceChange,
        at: DateTime<Utc>,
        fence: Option<u64>,
    ) -> Result<Arc<Instance>> {
        for attempt in 0..ATTEMPTS {
            let mut instance = Arc::unwrap_or_clone(self.instance(id).await?.ok_or(Error::InstanceNotFound)?);
            let read_revision = instance.revision;
            instance.apply(change.clone(), at);
            let written = match fence {
                None => self.put_instance_if_unchanged(&instance, read_revision).await?,
                Some(fence) => self.put_instance_fenced(&instance, read_revision, fence).await?,
            };
            if written {
                return Ok(Arc::new(instance));
            }
            // The revision moved on (or the instance went): read again and re-apply.
            back_off(attempt).await;
        }
        Err(Error::storage("instance update kept conflicting with concurrent writes"))
    }

    /// One conditional put: `false` when the stored revision is no longer `read_revision`.
    async fn put_instance_if_unchanged(&self, instance: &Instance, read_revision: u64) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(Self::instance_item(instance)?))
            .condition_expression("rev = :read")
            .expression_attribute_values(":read", n(read_revision))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(sdk_error(error)),
        }
    }

    /// The put and a check of the lease's fence in one transaction: `Error::LeaseLost` when the
    /// fence moved on, `false` when only the revision did.
    pub(super) async fn put_instance_fenced(
        &self,
        instance: &Instance,
        read_revision: u64,
        fence: u64,
    ) -> Result<bool> {
        let fenced = ConditionCheck::builder()
            .table_name(&*self.table)
            .set_key(Some(items::lease_key(&instance.id)))
            .condition_expression("fence = :fence")
            .expression_attribute_values(":fence", n(fence))
            .build()
            .map_err(Error::storage)?;
        let put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(Self::instance_item(instance)?))
            .condition_expression("rev = :read")
            .expression_attribute_values(":read", n(read_revision))
            .build()
            .map_err(Error::storage)?;
        let writes = vec![
            TransactWriteItem::builder().condition_check(fenced).build(),
            TransactWriteItem::builder().put(put).build(),
        ];
        match self.transact(writes).await? {
            Ok(()) => Ok(true),
            Err(Cancelled::Conditions(failed)) if failed.first() == Some(&true) => Err(Error::LeaseLost),
            Err(Cancelled::Conditions(_) | Cancelled::Conflict) => Ok(false),
        }
    }

    pub(super) fn instance_item(instance: &Instance) -> Result<Item> {
        Ok(items::with(
            items::instance_key(&instance.id),
            [
                (items::DOC, items::json(instance)?),
                ("rev", n(instance.revision)),
                (items::GSI1_PK, s(items::instances_of(&instance.account_id))),
                (items::GSI1_SK, s(instance.name.to_string())),
            ],
        ))
    }
}

/// A short pause before retrying a write that lost a race, growing with the attempt.
pub(super) async fn back_off(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
}

pub(super) fn is_condition_failure<E, R>(error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

#[async_trait]
impl InstanceRegistry for DynamoRegistry {
    async fn insert_account(&self, account: &Account) -> Result<()> {
        let owner = TokenOwner::Account { account: account.id.clone() };
        let writes = vec![
            self.put(
                items::with(
                    items::account_key(&account.id),
                    [(items::DOC, items::json(account)?), ("instances", n(0))],
                ),
                "attribute_not_exists(pk)",
            )?,
            self.put(
                items::with(items::token_key(&account.token_hash), [("owner", items::json(&owner)?)]),
                "attribute_not_exists(pk)",
            )?,
        ];
        match self.transact(writes).await? {
            Ok(()) => Ok(()),
            Err(Cancelled::Conditions(failed)) if failed.get(1) == Some(&true) => Err(Error::TokenInUse),
            Err(_) => Err(Error::storage("the account could not be stored")),
        }
    }

    async fn update_account_limits(&self, id: &AccountId, limits: AccountLimits) -> Result<Account> {
        self.accounts.forget(id);
        let mut account = self.stored_account(id).await?.ok_or(Error::AccountNotFound)?;
        account.limits = limits;
        let result = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(items::account_key(id)))
            .update_expression("SET doc = :doc")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":doc", items::json(&account)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(account),
            Err(error) if is_condition_failure(&error) => Err(Error::AccountNotFound),
            Err(error) => Err(sdk_error(error)),
        }
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        if let Some(account) = self.accounts.get(id) {
            return Ok(Some(account));
        }
        let account = self.stored_account(id).await?;
        if let Some(account) = &account {
            self.accounts.put(id.clone(), account.clone());
        }
        Ok(account)
    }

    async fn token_owner(&self, hash: &TokenHash) -> Result<Option<TokenOwner>> {
        if let Some(owner) = self.owners.get(hash) {
            return Ok(Some(owner));
        }
        let owner: Option<TokenOwner> =
            self.get(items::token_key(hash)).await?.map(|item| items::parse(&item, "owner")).transpose()?;
        if let Some(owner) = &owner {
            self.owners.put(hash.clone(), owner.clone());
        }
        Ok(owner)
    }

    async fn insert_instance(&self, instance: &Instance, quota: u32) -> Result<()> {
        let owner =
            TokenOwner::Instance { account: instance.account_id.clone(), instance: instance.id.clone() };
        for attempt in 0..ATTEMPTS {
            let quota_claim = Update::builder()
                .table_name(&*self.table)
                .set_key(Some(items::account_key(&instance.account_id)))
                .update_expression("SET instances = if_not_exists(instances, :zero) + :one")
                .condition_expression(
                    "attribute_exists(pk) AND (attribute_not_exists(instances) OR instances < :quota)",
                )
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":quota", n(quota))
                .build()
                .map_err(Error::storage)?;
            let writes = vec![
                self.put(Self::instance_item(instance)?, "attribute_not_exists(pk)")?,
                self.put(
                    items::with(
                        items::name_key(&instance.account_id, &instance.name),
                        [("instance", s(instance.id.to_string()))],
                    ),
                    "attribute_not_exists(pk)",
                )?,
                self.put(
                    items::with(items::token_key(&instance.token_hash), [("owner", items::json(&owner)?)]),
                    "attribute_not_exists(pk)",
                )?,
                TransactWriteItem::builder().update(quota_claim).build(),
            ];
            return match self.transact(writes).await? {
                Ok(()) => Ok(()),
                Err(Cancelled::Conflict) => {
                    back_off(attempt).await;
                    continue;
                }
                Err(Cancelled::Conditions(failed)) => Err(match failed.as_slice() {
                    [_, true, ..] => Error::InstanceExists(instance.name.clone()),
                    [_, _, true, _] => Error::TokenInUse,
                    [_, _, _, true] => Error::QuotaExceeded,
                    _ => Error::storage("an instance id was generated twice"),
                }),
            };
        }
        Err(Error::storage("instance create kept conflicting with concurrent writes"))
    }

    async fn instance(&self, id: &InstanceId) -> Result<Option<Arc<Instance>>> {
        let item = self.get(items::instance_key(id)).await?;
        item.map(|item| items::parse(&item, items::DOC).map(Arc::new)).transpose()
    }

    async fn instance_by_name(
        &self,
        account: &AccountId,
        name: &InstanceName,
    ) -> Result<Option<Arc<Instance>>> {
        let key = (account.clone(), name.clone());
        if let Some(id) = self.names.get(&key) {
            match self.instance(&id).await? {
                Some(instance) if instance.account_id == *account && instance.name == *name => {
                    return Ok(Some(instance));
                }
                _ => self.names.forget(&key),
            }
        }
        let Some(item) = self.get(items::name_key(account, name)).await? else { return Ok(None) };
        let id = InstanceId::from_stored(items::string(&item, "instance")?);
        let instance = self.instance(&id).await?;
        if instance.is_some() {
            self.names.put(key, id);
        }
        Ok(instance)
    }

    async fn instances(&self, account: &AccountId) -> Result<Vec<Arc<Instance>>> {
        let query = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(items::GSI1)
            .key_condition_expression("gsi1pk = :account")
            .expression_attribute_values(":account", s(items::instances_of(account)));
        let pages = items::all(query).await?;
        pages.iter().map(|item| items::parse(item, items::DOC).map(Arc::new)).collect()
    }

    async fn update_instance(
        &self,
        id: &InstanceId,
        change: InstanceChange,
        at: DateTime<Utc>,
    ) -> Result<Arc<Instance>> {
        self.write_instance(id, change, at, None).await
    }

    async fn delete_instance(&self, id: &InstanceId) -> Result<()> {
        for attempt in 0..ATTEMPTS {
            let Some(instance) = self.instance(id).await? else { return Ok(()) };
            self.owners.forget(&instance.token_hash);
            let quota_release = Update::builder()
                .table_name(&*self.table)
                .set_key(Some(items::account_key(&instance.account_id)))
                .update_expression("SET instances = instances - :one")
                .condition_expression("attribute_exists(pk) AND instances > :zero")
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .build()
                .map_err(Error::storage)?;
            let remove_instance = Delete::builder()
                .table_name(&*self.table)
                .set_key(Some(items::instance_key(id)))
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(Error::storage)?;
            let writes = vec![
                TransactWriteItem::builder().delete(remove_instance).build(),
                self.delete(items::name_key(&instance.account_id, &instance.name))?,
                self.delete(items::token_key(&instance.token_hash))?,
                TransactWriteItem::builder().update(quota_release).build(),
            ];
            match self.transact(writes).await? {
                Ok(()) => return Ok(()),
                // Removed by a concurrent delete: the loop's read finds it gone.
                Err(Cancelled::Conflict | Cancelled::Conditions(_)) => back_off(attempt).await,
            }
        }
        Err(Error::storage("instance delete kept conflicting with concurrent writes"))
    }

    async fn put_connect_request(&self, request: &ConnectRequest) -> Result<()> {
        let expires_at = request.created_at.timestamp() + CONNECT_REQUEST_TTL_SECS;
        let mut attributes = vec![(items::DOC, items::json(request)?), (items::EXPIRES_AT, n(expires_at))];
        if let Some(outcome) = &request.outcome {
            attributes.push(("outcome", items::json(outcome)?));
        }
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(items::with(items::connect_key(&request.id), attributes)))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn connect_request(&self, id: &ConnectRequestId) -> Result<Option<ConnectRequest>> {
        let Some(item) = self.get(items::connect_key(id)).await? else { return Ok(None) };
        let mut request: ConnectRequest = items::parse(&item, items::DOC)?;
        if item.contains_key("outcome") {
            request.outcome = Some(items::parse(&item, "outcome")?);
        }
        Ok(Some(request))
    }

    async fn answer_connect_request(&self, id: &ConnectRequestId, outcome: ConnectOutcome) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(items::connect_key(id)))
            .update_expression("SET outcome = :outcome")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":outcome", items::json(&outcome)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => Ok(()),
            Err(error) => Err(sdk_error(error)),
        }
    }

    async fn delete_connect_request(&self, id: &ConnectRequestId) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(items::connect_key(id)))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}
