//! Event envelopes: what hosts publish and the dispatcher delivers to webhooks and WebSockets.
//!
//! The queued form carries the instance id, not its token: `instanceData` (with the token) is built at
//! delivery, so no queue ever holds a secret.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{InstanceId, Profile};

/// The event catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventKind {
    #[serde(rename = "instance.state")]
    InstanceState,
    #[serde(rename = "message.exchange")]
    MessageExchange,
    #[serde(rename = "message.status")]
    MessageStatus,
    #[serde(rename = "call.update")]
    CallUpdate,
    #[serde(rename = "group.flow")]
    GroupFlow,
    #[serde(rename = "label.update")]
    LabelUpdate,
}

impl EventKind {
    pub const ALL: [Self; 6] = [
        Self::InstanceState,
        Self::MessageExchange,
        Self::MessageStatus,
        Self::CallUpdate,
        Self::GroupFlow,
        Self::LabelUpdate,
    ];

    /// The catalogue name, as in envelopes and `byEvents` paths.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InstanceState => "instance.state",
            Self::MessageExchange => "message.exchange",
            Self::MessageStatus => "message.status",
            Self::CallUpdate => "call.update",
            Self::GroupFlow => "group.flow",
            Self::LabelUpdate => "label.update",
        }
    }
}

/// `data` of an `instance.state` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StateChange {
    Connecting,
    #[serde(rename_all = "camelCase")]
    QrReady {
        qr_code: String,
    },
    #[serde(rename_all = "camelCase")]
    PairingCodeReady {
        pairing_code: String,
    },
    #[serde(rename_all = "camelCase")]
    Connected {
        number_jid: String,
        profile: Profile,
    },
    Disconnected {
        reason: String,
    },
    LoggedOut {
        reason: String,
    },
    #[serde(rename_all = "camelCase")]
    TempBanned {
        reason: String,
        expires_at: Option<DateTime<Utc>>,
    },
    Banned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    pub event: EventKind,
    pub timestamp: DateTime<Utc>,
    pub instance: InstanceId,
    pub data: serde_json::Value,
}

impl Event {
    pub fn state(instance: InstanceId, change: &StateChange, at: DateTime<Utc>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            event: EventKind::InstanceState,
            timestamp: at,
            instance,
            data: serde_json::to_value(change).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_changes_use_the_contract_names() {
        let data = serde_json::to_value(StateChange::QrReady { qr_code: "2@x".into() }).unwrap();
        assert_eq!(data, serde_json::json!({"state": "qr_ready", "qrCode": "2@x"}));
        let data = serde_json::to_value(StateChange::LoggedOut { reason: "api".into() }).unwrap();
        assert_eq!(data["state"], "logged_out");
        for kind in EventKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
