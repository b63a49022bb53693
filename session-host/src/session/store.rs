//! A session's credential store in the blob store: what the session knows of the stored version,
//! and the saves and wipes, each fenced twice over (DESIGN.md "Credential stores live in S3").
//!
//! - A save replaces exactly the version this session last read or wrote (`put_if`), so a store
//!   rewritten or wiped elsewhere is never clobbered.
//! - Before it saves, the session reads its lease: once another host took the instance, the store
//!   is the new owner's, and this session stops its client instead. Between that read and the
//!   write a takeover can still slip in; then the version check refuses whichever save comes
//!   second, and the worst case is a new owner that saves no more until its next start (its
//!   store stays a valid one).

use ryze_core::domain::InstanceState;
use ryze_core::ports::{BlobKey, BlobVersion};

use super::Session;
use crate::client::{ClientFactory, SessionClient};

/// The stored credential store as this session last saw it.
pub(super) enum StoreClaim {
    /// There was none: the next save creates it, unless someone else did meanwhile.
    Absent,
    /// The version this session read or wrote last: the next save replaces exactly that.
    At(BlobVersion),
    /// Wiped or rewritten by someone else: this session saves no more.
    Lost,
}

impl<F: ClientFactory> Session<F> {
    /// Saves the credential store, if the session has one worth saving.
    pub(super) async fn persist(&mut self) {
        self.phase.clear_persist();
        let Some(client) = self.phase.linked_client() else { return };
        if !self.holds_lease {
            return;
        }
        let bytes = match client.snapshot().await {
            Ok(bytes) => bytes,
            Err(error) => return tracing::error!(%error, "credential store not readable"),
        };
        // A logout through the API wipes the store before this session hears of it: saving now
        // would bring the credentials back. Checked as late as possible; the API also treats a
        // logged-out instance as having no session, whatever a late save left.
        if self.load_instance().await.is_none_or(|i| i.connection.state == InstanceState::LoggedOut) {
            return;
        }
        match self.ctx.ports.leases.lease(&self.instance).await {
            Ok(lease) if lease.fence == self.lease.fence => {}
            Ok(_) => return self.on_lease_lost().await,
            Err(error) => return tracing::error!(%error, "lease unreadable; store not saved"),
        }
        let expected = match &self.store {
            StoreClaim::Absent => None,
            StoreClaim::At(version) => Some(version),
            StoreClaim::Lost => return,
        };
        match self.ctx.ports.blobs.put_if(&self.store_key(), bytes, expected).await {
            Ok(version) => self.store = StoreClaim::At(version),
            // The client stays: a logout or delete that wiped the store is on its way and unlinks
            // it; a host that took the instance over stops this one at its next look.
            Err(ryze_core::Error::BlobConflict) => {
                tracing::warn!("credential store wiped or rewritten elsewhere; no more saves");
                self.store = StoreClaim::Lost;
            }
            Err(error) => tracing::error!(%error, "credential store not saved"),
        }
    }

    pub(super) async fn wipe_store(&self) {
        if let Err(error) = self.ctx.ports.blobs.delete(&self.store_key()).await {
            tracing::error!(%error, "credential store not deleted");
        }
    }

    pub(super) fn store_key(&self) -> BlobKey {
        BlobKey::session_store(&self.instance)
    }
}
