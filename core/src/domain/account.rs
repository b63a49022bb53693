//! Accounts: the SaaS customers that own instances, with their quota and rate limits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AccountId;
use crate::secrets::TokenHash;

/// Per-account limits; instance tokens inherit their account's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountLimits {
    /// How many instances the account may hold.
    pub instance_quota: u32,
    /// Requests per minute per token, on every route but create.
    pub requests_per_minute: u32,
    /// Creates per minute per token.
    pub creates_per_minute: u32,
}

impl Default for AccountLimits {
    fn default() -> Self {
        Self { instance_quota: 100, requests_per_minute: 100, creates_per_minute: 20 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub token_hash: TokenHash,
    pub limits: AccountLimits,
    pub created_at: DateTime<Utc>,
}
