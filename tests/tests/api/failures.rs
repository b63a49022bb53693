//! Infrastructure failures: a broken store or a panic answers 500 in the envelope, with a fixed
//! message that says nothing of the cause.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use ryze_core::domain::{
    Account, AccountId, AccountLimits, ConnectOutcome, ConnectRequest, ConnectRequestId, Instance,
    InstanceChange, InstanceId, InstanceName,
};
use ryze_core::ports::{InstanceRegistry, TokenOwner};
use ryze_core::secrets::TokenHash;
use ryze_core::{Error, Result};
use ryze_tests::TestApp;
use serde_json::json;

/// Delegates to a real registry, but fails every instance write and panics on listing.
struct BrokenRegistry(Arc<dyn InstanceRegistry>);

const CAUSE: &str = "disk on fire at /var/lib/secret-path";

#[async_trait]
impl InstanceRegistry for BrokenRegistry {
    async fn insert_account(&self, account: &Account) -> Result<()> {
        self.0.insert_account(account).await
    }
    async fn update_account_limits(&self, id: &AccountId, limits: AccountLimits) -> Result<Account> {
        self.0.update_account_limits(id, limits).await
    }
    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        self.0.account(id).await
    }
    async fn token_owner(&self, hash: &TokenHash) -> Result<Option<TokenOwner>> {
        self.0.token_owner(hash).await
    }
    async fn insert_instance(&self, _: &Instance, _: u32) -> Result<()> {
        Err(Error::storage(CAUSE))
    }
    async fn instance(&self, id: &InstanceId) -> Result<Option<Arc<Instance>>> {
        self.0.instance(id).await
    }
    async fn instance_by_name(
        &self,
        account: &AccountId,
        name: &InstanceName,
    ) -> Result<Option<Arc<Instance>>> {
        self.0.instance_by_name(account, name).await
    }
    async fn instances(&self, _: &AccountId) -> Result<Vec<Arc<Instance>>> {
        panic!("{CAUSE}")
    }
    async fn update_instance(
        &self,
        _: &InstanceId,
        _: InstanceChange,
        _: DateTime<Utc>,
    ) -> Result<Arc<Instance>> {
        Err(Error::storage(CAUSE))
    }
    async fn delete_instance(&self, id: &InstanceId) -> Result<()> {
        self.0.delete_instance(id).await
    }
    async fn put_connect_request(&self, _: &ConnectRequest) -> Result<()> {
        Err(Error::storage(CAUSE))
    }
    async fn connect_request(&self, id: &ConnectRequestId) -> Result<Option<ConnectRequest>> {
        self.0.connect_request(id).await
    }
    async fn answer_connect_request(&self, id: &ConnectRequestId, outcome: ConnectOutcome) -> Result<()> {
        self.0.answer_connect_request(id, outcome).await
    }
    async fn delete_connect_request(&self, id: &ConnectRequestId) -> Result<()> {
        self.0.delete_connect_request(id).await
    }
}

#[tokio::test]
async fn storage_failures_and_panics_answer_500_without_the_cause() {
    let app = TestApp::with_ports(crate::BACKEND, |mut ports| {
        ports.registry = Arc::new(BrokenRegistry(ports.registry));
        ports
    })
    .await;
    let account = app.account().await;
    let cases = [
        (app.post("/api/instance/new", &account.token, json!({"name": "a"})).await, "Internal server error"),
        (app.get("/api/instance/list", &account.token).await, "Internal server error"),
    ];
    for (response, message) in cases {
        assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", response.text);
        assert_eq!(response.error_message(), message);
        assert!(!response.text.contains("fire"), "the cause leaked: {}", response.text);
    }
}
