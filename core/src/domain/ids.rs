//! Identifiers: ids are opaque UUIDs; instance names are validated on construction.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn generate() -> Self {
                Self(Uuid::new_v4().to_string())
            }

            /// Wraps an id read back from a store.
            pub fn from_stored(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

uuid_id!(
    /// An instance's id: stable for its life, unlike nothing else about it.
    InstanceId
);
uuid_id!(
    /// An account (a SaaS customer).
    AccountId
);
uuid_id!(
    /// One connect call's pending request, answered by the session host.
    ConnectRequestId
);

/// An instance's name: unique within its account, 1 to 64 of `A-Z a-z 0-9 - _ .`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceName(String);

impl InstanceName {
    pub const MAX_LEN: usize = 64;
    /// What [`InstanceName::parse`] accepts, for the OpenAPI document.
    pub const PATTERN: &'static str = "^[A-Za-z0-9._-]{1,64}$";

    /// A name exactly as given: one with spaces around it is invalid, not trimmed.
    pub fn parse(name: &str) -> Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if valid { Ok(Self(name.to_owned())) } else { Err(Error::InvalidName) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceName {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<InstanceName> for String {
    fn from(name: InstanceName) -> Self {
        name.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        for ok in ["a", "sales-1", "Support_2.0", &"x".repeat(64)] {
            assert!(InstanceName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "a b", " abc", "abc\t", "ação", "a/b", "a?b", &"x".repeat(65)] {
            assert!(matches!(InstanceName::parse(bad), Err(Error::InvalidName)), "{bad}");
        }
    }
}
