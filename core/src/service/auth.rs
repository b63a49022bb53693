//! Authentication: from a presented token to a [`Caller`], and what a caller may touch.

use std::sync::Arc;

use crate::domain::{Account, Instance, InstanceId};
use crate::ports::{InstanceRegistry, TokenOwner};
use crate::secrets::{Keyring, TokenHash};
use crate::{Error, Result};

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A TokenAccount: everything on every instance of the account.
    Account,
    /// A TokenInstance: everything but delete, on this instance only.
    Instance(InstanceId),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: Account,
    pub scope: Scope,
    /// What rate limits are counted by.
    pub token_hash: TokenHash,
}

impl Caller {
    /// Create and delete need a TokenAccount.
    pub fn require_account_scope(&self) -> Result<()> {
        match self.scope {
            Scope::Account => Ok(()),
            Scope::Instance(_) => Err(Error::AccountTokenRequired),
        }
    }

    /// Whether this caller may act on `instance`.
    pub fn may_access(&self, instance: &Instance) -> bool {
        instance.account_id == self.account.id
            && match &self.scope {
                Scope::Account => true,
                Scope::Instance(id) => *id == instance.id,
            }
    }
}

pub struct Auth {
    registry: Arc<dyn InstanceRegistry>,
    keys: Arc<Keyring>,
}

impl Auth {
    pub fn new(registry: Arc<dyn InstanceRegistry>, keys: Arc<Keyring>) -> Self {
        Self { registry, keys }
    }

    /// Resolves a presented token. `None` (or an empty token) is `MissingToken`; an unknown one, or
    /// one whose account or instance is gone, is `InvalidToken`.
    pub async fn resolve(&self, token: Option<&str>) -> Result<Caller> {
        let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or(Error::MissingToken)?;
        let token_hash = self.keys.hash_token(token);
        let owner = self.registry.token_owner(&token_hash).await?.ok_or(Error::InvalidToken)?;
        let (account_id, scope) = match owner {
            TokenOwner::Account { account } => (account, Scope::Account),
            TokenOwner::Instance { account, instance } => (account, Scope::Instance(instance)),
        };
        let account = self.registry.account(&account_id).await?.ok_or(Error::InvalidToken)?;
        Ok(Caller { account, scope, token_hash })
    }
}
