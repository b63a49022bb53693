//! Accounts, created and adjusted by the operator (the CLI), never over the public API.

use std::sync::Arc;

use crate::Result;
use crate::clock::Clock;
use crate::domain::{Account, AccountId, AccountLimits};
use crate::ports::InstanceRegistry;
use crate::secrets::{Keyring, generate_token};

/// What the operator asks for.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: String,
    pub limits: AccountLimits,
}

pub struct AccountService {
    registry: Arc<dyn InstanceRegistry>,
    keys: Arc<Keyring>,
    clock: Arc<dyn Clock>,
}

impl AccountService {
    pub fn new(registry: Arc<dyn InstanceRegistry>, keys: Arc<Keyring>, clock: Arc<dyn Clock>) -> Self {
        Self { registry, keys, clock }
    }

    /// Creates an account and returns it with its TokenAccount, which is not kept in clear anywhere.
    pub async fn create(&self, new: NewAccount) -> Result<(Account, String)> {
        let name = new.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(crate::Error::invalid_because("name", "1 to 200 characters"));
        }
        let token = generate_token();
        let account = Account {
            id: AccountId::generate(),
            name: name.to_owned(),
            token_hash: self.keys.hash_token(&token),
            limits: new.limits,
            created_at: self.clock.now(),
        };
        self.registry.insert_account(&account).await?;
        Ok((account, token))
    }

    pub async fn update_limits(&self, id: &AccountId, limits: AccountLimits) -> Result<Account> {
        self.registry.update_account_limits(id, limits).await
    }

    pub async fn get(&self, id: &AccountId) -> Result<Option<Account>> {
        self.registry.account(id).await
    }
}
