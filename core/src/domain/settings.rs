//! Behaviour settings of an instance's session, with the contract's defaults.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Error, Result};

/// How the session behaves; applied live by the session host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// Reject incoming calls.
    pub auto_reject_calls: bool,
    /// Message sent to a caller whose call was rejected; empty sends nothing.
    pub call_reject_message: String,
    pub ignore_group_messages: bool,
    /// Keep presence `available` while connected.
    pub keep_online_status: bool,
    pub auto_read_messages: bool,
    /// Skip the history sync on pairing (a connect with `history=N` overrides it).
    pub disable_history_sync: bool,
    /// Ignore status (stories) updates.
    pub ignore_status: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            auto_reject_calls: false,
            call_reject_message: String::new(),
            ignore_group_messages: false,
            keep_online_status: false,
            auto_read_messages: false,
            disable_history_sync: true,
            ignore_status: false,
        }
    }
}

/// A partial update of [`Settings`]: only the named fields change. A field named is given a value:
/// `null` is refused, so that `{"keepOnlineStatus": null}` is not taken for an update that changes
/// nothing (the document says at least one property, of its type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub auto_reject_calls: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, max_length = 4096)]
    pub call_reject_message: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub ignore_group_messages: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub keep_online_status: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub auto_read_messages: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub disable_history_sync: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub ignore_status: Option<bool>,
}

/// A field that, when named, must hold a `T` (`null` included in what it refuses).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> std::result::Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// Longer than any sensible auto-reply; keeps a stored record small.
pub const MAX_CALL_REJECT_MESSAGE: usize = 4096;

impl SettingsPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Applies the patch to `settings`, validating each named field.
    pub fn apply(&self, mut settings: Settings) -> Result<Settings> {
        if self.is_empty() {
            return Err(Error::EmptyUpdate);
        }
        if let Some(message) = &self.call_reject_message {
            if message.chars().count() > MAX_CALL_REJECT_MESSAGE {
                return Err(Error::invalid_because("callRejectMessage", "longer than 4096 characters"));
            }
            settings.call_reject_message.clone_from(message);
        }
        let flags = [
            (self.auto_reject_calls, &mut settings.auto_reject_calls),
            (self.ignore_group_messages, &mut settings.ignore_group_messages),
            (self.keep_online_status, &mut settings.keep_online_status),
            (self.auto_read_messages, &mut settings.auto_read_messages),
            (self.disable_history_sync, &mut settings.disable_history_sync),
            (self.ignore_status, &mut settings.ignore_status),
        ];
        for (new, slot) in flags {
            if let Some(value) = new {
                *slot = value;
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let json = serde_json::to_value(Settings::default()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"autoRejectCalls": false, "callRejectMessage": "", "ignoreGroupMessages": false,
                "keepOnlineStatus": false, "autoReadMessages": false, "disableHistorySync": true,
                "ignoreStatus": false})
        );
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let patch = SettingsPatch { keep_online_status: Some(true), ..Default::default() };
        let updated = patch.apply(Settings::default()).unwrap();
        assert!(updated.keep_online_status);
        assert!(updated.disable_history_sync);
        assert!(matches!(SettingsPatch::default().apply(Settings::default()), Err(Error::EmptyUpdate)));
    }

    #[test]
    fn a_patch_names_values_not_nulls() {
        let patch: SettingsPatch = serde_json::from_str(r#"{"ignoreStatus": true}"#).unwrap();
        assert_eq!(patch.ignore_status, Some(true));
        assert!(serde_json::from_str::<SettingsPatch>(r#"{"ignoreStatus": null}"#).is_err());
        assert!(serde_json::from_str::<SettingsPatch>("{}").unwrap().is_empty());
    }
}
