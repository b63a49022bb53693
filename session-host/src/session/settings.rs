//! The settings a live session acts on: presence, incoming calls, incoming messages.

use ryze_core::domain::{InstanceState, PresenceStatus, Settings};

use super::Session;
use crate::client::{CallOffer, ClientFactory, IncomingMessage, SessionClient};

impl<F: ClientFactory> Session<F> {
    pub(super) async fn apply_settings(&mut self, settings: Settings) {
        let presence_changed = settings.keep_online_status != self.settings.keep_online_status;
        self.settings = settings;
        if self.phase.is_connected() && presence_changed {
            let presence = self.apply_presence().await;
            self.write_state(InstanceState::Connected, presence).await;
        }
    }

    /// Sends the presence the settings ask for: `available` with keepOnlineStatus, `unavailable`
    /// otherwise (a device that stays available keeps the phone from notifying its owner).
    pub(super) async fn apply_presence(&self) -> PresenceStatus {
        let available = self.settings.keep_online_status;
        let Some(client) = self.phase.client() else { return PresenceStatus::Unavailable };
        match client.set_presence(available).await {
            Ok(()) if available => PresenceStatus::Available,
            Ok(()) => PresenceStatus::Unavailable,
            Err(error) => {
                // WhatsApp takes no presence before the account's name is known; it is sent again
                // when the name arrives.
                tracing::debug!(%error, available, "presence not sent yet");
                PresenceStatus::Unavailable
            }
        }
    }

    pub(super) async fn on_call(&self, call: CallOffer) {
        let Some(client) = self.phase.client() else { return };
        if !self.settings.auto_reject_calls {
            return;
        }
        if let Err(error) = client.reject_call(&call).await {
            tracing::warn!(%error, "call not rejected");
            return;
        }
        if !self.settings.call_reject_message.is_empty()
            && let Err(error) = client.send_text(&call.from, &self.settings.call_reject_message).await
        {
            tracing::warn!(%error, "call reject message not sent");
        }
    }

    pub(super) async fn on_message(&self, message: IncomingMessage) {
        let Some(client) = self.phase.client() else { return };
        let ignored = message.from_me
            || (message.is_group && self.settings.ignore_group_messages)
            || (message.is_status && self.settings.ignore_status);
        if ignored || !self.settings.auto_read_messages {
            return;
        }
        if let Err(error) = client.mark_read(&message).await {
            tracing::warn!(%error, "message not marked read");
        }
    }
}
