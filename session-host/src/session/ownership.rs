//! A session's side of the fleet's rules: it runs under a lease, resumes what a dead host or this
//! host's earlier start left, lets the lease go when it ends, hands it over (or keeps it for the
//! next start) when the host stops, and stops its client at once when another host took it.

use ryze_core::domain::{InstanceState, StateChange};

use super::store::StoreClaim;
use super::{Begin, Session};
use crate::client::ClientFactory;

impl<F: ClientFactory> Session<F> {
    /// The host is stopping. A linked session saves its store, stops its client and reads
    /// `connecting`: its lease goes back to the fleet (the host then sends its reconnect to a
    /// peer), or stays with this host's name for its next start. A pairing one ends: nobody will
    /// scan that QR.
    pub(super) async fn stop_for_shutdown(&mut self) {
        // A fenced host stops too, and its sessions may see the stop before the fence: neither
        // may write then, since another host may hold the lease already.
        if self.lost.is_cancelled() {
            self.on_lease_lost().await;
            return;
        }
        if self.phase.is_idle() {
            return;
        }
        if self.phase.link().is_none() {
            let change = StateChange::Disconnected { reason: "session host stopped".into() };
            self.end(InstanceState::Disconnected, change, false).await;
            return;
        }
        self.persist().await;
        self.release_client(false, "session host stopping").await;
        if !self.holds_lease {
            return;
        }
        self.transition(InstanceState::Connecting, StateChange::Connecting).await;
        self.let_go_linked().await;
    }

    /// A linked session on a stopping host, its client stopped and its state `connecting`: its
    /// lease goes back to the fleet (and the host sends its reconnect to a peer), or stays with
    /// this host's name for its next start.
    async fn let_go_linked(&mut self) {
        if self.ctx.config.hand_over_on_stop {
            self.release_lease().await;
            self.handed_over = true;
        }
        // Handed over, or kept: either way not this start's to release any more.
        self.holds_lease = false;
    }

    /// Waits for this session's turn to log in, in the host's connect pace. A takeover can queue
    /// a thousand starts, so the wait can be long, and it yields to what must not wait: a lost
    /// lease, and the host's stop, for which the session is let go as a linked one (its state
    /// reads `connecting` already or is written so). `false` then: the caller starts nothing.
    pub(super) async fn turn_to_log_in(&mut self) -> bool {
        tokio::select! {
            () = self.ctx.pacer.wait() => return true,
            () = self.lost.cancelled() => self.on_lease_lost().await,
            () = self.shutdown.cancelled() => {
                if self.holds_lease && !self.lost.is_cancelled() {
                    let recorded = self.load_instance().await.map(|i| i.connection.state);
                    if recorded != Some(InstanceState::Connecting) {
                        self.transition(InstanceState::Connecting, StateChange::Connecting).await;
                    }
                    self.let_go_linked().await;
                }
            }
        }
        false
    }

    /// Resumes a session this host took over: one that was linked (connected, or reconnecting)
    /// logs in again from its saved store; a pairing cut short ends `disconnected`; anything else
    /// (logged out, banned, disconnected, deleted) stays as it is.
    ///
    /// Only the `connecting` is written at once (a few sessions at a time: `RESUMES_AT_ONCE`): a
    /// dead host's `connected` is stale from the moment it was taken over. Reading the store
    /// (hundreds of kilobytes) and the rest wait for the start's turn, since a takeover of a
    /// thousand sessions that read every store at once slowed the store until the adopters'
    /// heartbeats no longer went through.
    pub(super) async fn resume(&mut self) {
        let ctx = self.ctx.clone();
        // Never closed, so the permit always comes; it is held only for the read and the write.
        let permit = ctx.resumes.acquire().await.ok();
        let Some(instance) = self.load_instance().await else { return };
        let state = instance.connection.state;
        if !matches!(state, InstanceState::Connected | InstanceState::Connecting) {
            return;
        }
        if state == InstanceState::Connected {
            // The state write carries the linked number and profile: they stay shown meanwhile.
            (self.number_jid, self.profile) =
                (instance.connection.number_jid.clone(), instance.profile.clone());
            self.transition(InstanceState::Connecting, StateChange::Connecting).await;
        }
        drop(permit);
        if !self.turn_to_log_in().await {
            return;
        }
        match self.ctx.ports.blobs.get_versioned(&self.store_key()).await {
            Ok(Some(store)) => {
                tracing::info!(?state, "resuming from the saved store");
                self.store = StoreClaim::At(store.version);
                self.start(Begin::LogIn(store.bytes), None, false).await;
            }
            Ok(None) => {
                let change = StateChange::Disconnected { reason: "session host stopped".into() };
                self.transition(InstanceState::Disconnected, change).await;
            }
            Err(error) => tracing::error!(%error, "credential store unreadable; resume abandoned"),
        }
    }

    /// Another host took the lease: stop the client now, without a save or a state write, since
    /// both belong to the new owner.
    pub(super) async fn on_lease_lost(&mut self) {
        tracing::warn!(fence = self.lease.fence, "lease lost; client stopped");
        self.holds_lease = false;
        self.store = StoreClaim::Lost;
        self.release_client(false, "the session moved to another host").await;
    }

    pub(super) async fn release_lease(&mut self) {
        self.holds_lease = false;
        match self.ctx.ports.leases.release(&self.instance, &self.lease).await {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "lease not released; it is taken over when this host is gone")
            }
        }
    }
}
