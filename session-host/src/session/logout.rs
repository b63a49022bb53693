//! A logout on the session's side: the rules of core (`service::logout`) fenced by the lease, and
//! the unlink of the device on WhatsApp, by this session's client when it is logged in, or else by
//! a client started just for that from the copy of the credentials the API kept.

use chrono::Utc;
use ryze_core::domain::{InstanceState, Profile, SessionCommand};
use ryze_core::ports::BlobKey;
use ryze_core::service::{logout, routing};
use tokio::time::{Instant, sleep_until};

use super::Session;
use super::store::StoreClaim;
use crate::client::{ClientEvent, ClientFactory, SessionClient, StartSpec};

/// How an unlink from the kept credentials ended.
#[derive(Debug, PartialEq, Eq)]
enum Unlink {
    /// Logged in and unlinked.
    Done,
    /// Nothing to unlink: the phone unlinked the device already, or the account is gone.
    NotLinked,
    /// WhatsApp did not let the client in within the reconnect budget.
    GaveUp,
    /// Another host took the instance, or this one stops: the `Logout` goes back to the fleet.
    Interrupted,
}

impl<F: ClientFactory> Session<F> {
    pub(super) async fn logout(&mut self) {
        if !self.record_logout(logout::REQUESTED_THROUGH_API).await {
            return;
        }
        if self.phase.is_connected() {
            self.release_client(true, "logged out").await;
            self.forget_unlink_copy().await;
        } else {
            // Pairing, logging in, reconnecting, or no client at all: none can unlink now.
            self.release_client(false, "logged out").await;
            self.unlink_from_copy().await;
        }
    }

    /// The logout rules of core (state, wipe, one event), fenced by this session's lease;
    /// `false` when the lease was lost, and then the client is already stopped.
    pub(super) async fn record_logout(&mut self, reason: &str) -> bool {
        if !self.holds_lease {
            return false;
        }
        let recorded =
            logout::record_logout(&self.ctx.ports, &self.instance, reason, Some(&self.lease), Utc::now())
                .await;
        match recorded {
            Ok(_) | Err(ryze_core::Error::InstanceNotFound) => {}
            Err(ryze_core::Error::LeaseLost) => {
                self.on_lease_lost().await;
                return false;
            }
            Err(error) => tracing::error!(%error, "logout not fully recorded"),
        }
        self.store = StoreClaim::Lost;
        self.number_jid = None;
        self.profile = Profile::default();
        self.ctx.states.record(&self.instance, InstanceState::LoggedOut);
        true
    }

    /// Unlinks the device with the credentials the API kept on logout, if it kept any: a client
    /// of its own logs in (at the host's pace), unlinks and stops, writing no state, publishing no
    /// event and saving nothing, since the instance reads `loggedout` already. The copy is deleted
    /// afterwards, unless the work goes back to the fleet.
    async fn unlink_from_copy(&mut self) {
        let key = BlobKey::unlink_copy(&self.instance);
        let store = match self.ctx.ports.blobs.get(&key).await {
            Ok(Some(store)) => store,
            Ok(None) => return,
            Err(error) => return tracing::error!(%error, "kept credentials unreadable; device left linked"),
        };
        let outcome = self.unlink_with(store).await;
        tracing::info!(?outcome, "unlink after a logout with no session logged in");
        if outcome == Unlink::Interrupted {
            let command = SessionCommand::Logout { instance: self.instance.clone() };
            if let Err(error) = routing::send_command(&self.ctx.ports, &command).await {
                tracing::error!(%error, "logout not passed on; device left linked");
            }
            return;
        }
        self.forget_unlink_copy().await;
    }

    async fn unlink_with(&mut self, store: Vec<u8>) -> Unlink {
        tokio::select! {
            () = self.ctx.pacer.wait() => {}
            () = self.lost.cancelled() => return Unlink::Interrupted,
            () = self.shutdown.cancelled() => return Unlink::Interrupted,
        }
        let Some(instance) = self.load_instance().await else { return Unlink::NotLinked };
        let Ok(proxy) = self.open_proxy(&instance) else { return Unlink::GaveUp };
        let spec = StartSpec {
            instance: self.instance.clone(),
            store: Some(store),
            proxy,
            history_days: None,
            skip_history: true,
        };
        let (client, mut events) = match self.ctx.factory.start(spec).await {
            Ok(started) => started,
            Err(error) => {
                tracing::warn!(%error, "client for the unlink did not start");
                return Unlink::GaveUp;
            }
        };
        let give_up_at = Instant::now() + self.ctx.config.reconnect_budget;
        let outcome = loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(ClientEvent::Connected { .. }) => {
                        client.logout().await;
                        return Unlink::Done;
                    }
                    Some(
                        ClientEvent::LoggedOut { .. }
                        | ClientEvent::AccountLocked { .. }
                        | ClientEvent::TemporaryBan { .. },
                    ) => break Unlink::NotLinked,
                    Some(ClientEvent::Stopped) | None => break Unlink::GaveUp,
                    Some(_) => {}
                },
                () = sleep_until(give_up_at) => break Unlink::GaveUp,
                () = self.lost.cancelled() => break Unlink::Interrupted,
                () = self.shutdown.cancelled() => break Unlink::Interrupted,
            }
        };
        client.stop().await;
        outcome
    }

    async fn forget_unlink_copy(&self) {
        if let Err(error) = self.ctx.ports.blobs.delete(&BlobKey::unlink_copy(&self.instance)).await {
            tracing::error!(%error, "kept credentials not deleted");
        }
    }
}
