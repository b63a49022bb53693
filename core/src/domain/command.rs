//! Commands from the control plane to the session hosts, and the answers a connect call waits for.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ConnectRequestId, InstanceId, Settings};
use crate::{Error, Result};

/// A phone number in international form, digits only (8 to 15 of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(text: &str) -> Result<Self> {
        let valid = (8..=15).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
        if valid { Ok(Self(text.to_owned())) } else { Err(Error::InvalidPhoneNumber) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "camelCase")]
pub enum LoginMethod {
    QrCode,
    PairingCode { phone: PhoneNumber },
}

/// What a session host is asked to do for one instance. A host handles one instance's commands in
/// order (on SQS FIFO the instance id is the message group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SessionCommand {
    /// Start a session and answer `request` with the first QR or pairing code. A session that is
    /// already connecting answers with its current code instead of starting another.
    #[serde(rename_all = "camelCase")]
    Connect { instance: InstanceId, request: ConnectRequestId, login: LoginMethod, history_days: Option<u16> },
    /// Restore a session from its saved credential store, without a code.
    Reconnect { instance: InstanceId },
    /// Unlink the device and wipe the credential store; the instance stays.
    Logout { instance: InstanceId },
    /// Close the session (logging out when linked); the instance is being removed.
    Delete { instance: InstanceId },
    /// Apply new settings to a live session.
    ApplySettings { instance: InstanceId, settings: Settings },
    /// The proxy changed: a live session saves its store, closes its socket and logs in again
    /// through the new one (no QR). Nothing to do for an instance with no live session.
    Redial { instance: InstanceId },
}

impl SessionCommand {
    pub fn instance(&self) -> &InstanceId {
        match self {
            Self::Connect { instance, .. }
            | Self::Reconnect { instance }
            | Self::Logout { instance }
            | Self::Delete { instance }
            | Self::ApplySettings { instance, .. }
            | Self::Redial { instance } => instance,
        }
    }
}

/// The session host's answer to a connect request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ConnectOutcome {
    QrCode {
        code: String,
    },
    PairingCode {
        code: String,
    },
    /// No code could be had; `reason` is for the log, never for the client.
    Failed {
        reason: String,
    },
}

/// A connect call waiting for its answer: written by the control plane, answered by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectRequest {
    pub id: ConnectRequestId,
    pub instance: InstanceId,
    pub created_at: DateTime<Utc>,
    pub outcome: Option<ConnectOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_8_to_15_digits() {
        assert!(PhoneNumber::parse("5511999999999").is_ok());
        assert!(PhoneNumber::parse("12345678").is_ok());
        assert!(PhoneNumber::parse("123456789012345").is_ok());
        for bad in ["", "1234567", "1234567890123456", "+5511999999999", "55 11 9999", "55119999x999"] {
            assert!(matches!(PhoneNumber::parse(bad), Err(Error::InvalidPhoneNumber)), "{bad}");
        }
    }

    #[test]
    fn commands_round_trip_through_json() {
        let command = SessionCommand::Connect {
            instance: InstanceId::generate(),
            request: ConnectRequestId::generate(),
            login: LoginMethod::PairingCode { phone: PhoneNumber::parse("5511999999999").unwrap() },
            history_days: Some(7),
        };
        let json = serde_json::to_string(&command).unwrap();
        assert_eq!(serde_json::from_str::<SessionCommand>(&json).unwrap(), command);
    }
}
