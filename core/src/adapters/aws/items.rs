//! The single table's item layout, in one place.
//!
//! | item            | pk                   | sk           | other attributes                          |
//! |-----------------|----------------------|--------------|-------------------------------------------|
//! | account         | `ACCOUNT#{id}`       | `ACCOUNT`    | `doc`, `instances` (count, for the quota) |
//! | instance name   | `ACCOUNT#{id}`       | `NAME#{name}`| `instance`                                |
//! | instance        | `INSTANCE#{id}`      | `INSTANCE`   | `doc`, `rev`, `gsi1pk`/`gsi1sk` (listing)  |
//! | token           | `TOKEN#{hash}`       | `TOKEN`      | `owner`                                   |
//! | connect request | `CONNECT#{id}`       | `CONNECT`    | `doc`, `outcome`, `expiresAt`             |
//! | rate counter    | `RATE#{key}#{window}`| `RATE`       | `hits`, `expiresAt`                       |
//! | delivery        | `DELIVERY#{instance}#{event}` | `DELIVERY#{label}` | `doc`, `rev`, `gsi1pk`/`gsi1sk` (log), `expiresAt` |
//! | live connection | `LIVE#{instance}`     | `CONNECTION#{id}` | `connection`, `expiresAt`, `gsi1pk`/`gsi1sk` (by id) |
//! | host            | `HOSTS`              | `HOST#{id}`  | `epoch`, `beat`, `doc` (absent once removed) |
//! | lease           | `LEASE#{instance}`   | `LEASE`      | `doc`, `fence`, `gsi1pk`/`gsi1sk` (by holder, while held) |
//!
//! Records are stored as JSON in `doc`: the domain types own their shape, and every read of a
//! record wants all of it. Key attributes sit beside it for conditions and queries.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::sdk_error;
use crate::domain::{AccountId, ConnectRequestId, DeliveryKey, HostId, InstanceId, InstanceName};
use crate::secrets::TokenHash;
use crate::{Error, Result};

pub type Item = HashMap<String, AttributeValue>;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";
pub const DOC: &str = "doc";
pub const EXPIRES_AT: &str = "expiresAt";

pub fn account_key(id: &AccountId) -> Item {
    key(format!("ACCOUNT#{id}"), "ACCOUNT".into())
}

pub fn name_key(account: &AccountId, name: &InstanceName) -> Item {
    key(format!("ACCOUNT#{account}"), format!("NAME#{name}"))
}

pub fn instance_key(id: &InstanceId) -> Item {
    key(format!("INSTANCE#{id}"), "INSTANCE".into())
}

/// The listing index's partition for an account's instances, sorted by name.
pub fn instances_of(account: &AccountId) -> String {
    format!("ACCOUNT#{account}")
}

pub fn token_key(hash: &TokenHash) -> Item {
    key(format!("TOKEN#{}", hash.as_str()), "TOKEN".into())
}

pub fn connect_key(id: &ConnectRequestId) -> Item {
    key(format!("CONNECT#{id}"), "CONNECT".into())
}

pub fn rate_key(counter: &str, window_start: i64) -> Item {
    key(format!("RATE#{counter}#{window_start}"), "RATE".into())
}

pub fn delivery_key(key: &DeliveryKey) -> Item {
    self::key(format!("DELIVERY#{}#{}", key.instance, key.event_id), format!("DELIVERY#{}", key.label))
}

/// The listing index's partition for an instance's deliveries, sorted by creation.
pub fn deliveries_of(instance: &InstanceId) -> String {
    format!("DELIVERIES#{instance}")
}

/// A WebSocket connection on API Gateway, under its instance: the dispatcher reads the partition
/// (a consistent query) for every event.
pub fn live_connection_key(instance: &InstanceId, connection: &str) -> Item {
    key(live_connections_of(instance), format!("CONNECTION#{connection}"))
}

pub fn live_connections_of(instance: &InstanceId) -> String {
    format!("LIVE#{instance}")
}

/// The index partition that finds a connection by its id alone, as `$disconnect` must.
pub fn live_connection_by_id(connection: &str) -> String {
    format!("CONNECTION#{connection}")
}

/// Every host record in one partition: a consistent query reads them all, and a beat is one
/// update of one item, so heartbeats cost O(hosts).
pub const HOSTS: &str = "HOSTS";

pub fn host_key(id: &HostId) -> Item {
    key(HOSTS.into(), format!("HOST#{id}"))
}

pub fn lease_key(instance: &InstanceId) -> Item {
    key(format!("LEASE#{instance}"), "LEASE".into())
}

/// The index partition of the leases a host holds.
pub fn leases_held_by(host: &HostId) -> String {
    format!("HELD#{host}")
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([(PK.into(), AttributeValue::S(pk)), (SK.into(), AttributeValue::S(sk))])
}

/// `key` plus more attributes.
pub fn with(mut item: Item, attributes: impl IntoIterator<Item = (&'static str, AttributeValue)>) -> Item {
    item.extend(attributes.into_iter().map(|(name, value)| (name.to_owned(), value)));
    item
}

pub fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

pub fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

pub fn json(value: &impl Serialize) -> Result<AttributeValue> {
    Ok(AttributeValue::S(serde_json::to_string(value).map_err(Error::storage)?))
}

/// Every item `query` finds, over all its pages.
pub async fn all(query: QueryFluentBuilder) -> Result<Vec<Item>> {
    query
        .into_paginator()
        .items()
        .send()
        .collect::<std::result::Result<Vec<Item>, _>>()
        .await
        .map_err(sdk_error)
}

pub fn string<'a>(item: &'a Item, name: &str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(text)) => Ok(text),
        _ => Err(Error::storage(format!("item attribute {name} is missing or not a string"))),
    }
}

pub fn number(item: &Item, name: &str) -> Result<u64> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => text.parse().map_err(Error::storage),
        _ => Err(Error::storage(format!("item attribute {name} is missing or not a number"))),
    }
}

pub fn parse<T: DeserializeOwned>(item: &Item, name: &str) -> Result<T> {
    serde_json::from_str(string(item, name)?).map_err(Error::storage)
}
