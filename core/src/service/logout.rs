//! The logout rules, written once for every side that logs an instance out: the API (a caller
//! asked), and the session host (that request reaching the live session, or WhatsApp saying the
//! phone unlinked the device).
//!
//! In this order: `loggedout` is recorded first, with no number and no profile (a session that sees
//! it saves no credentials any more); then the credential store is wiped; then one `instance.state`
//! event is published, only by the call that made the transition. Unlinking the device on WhatsApp
//! is the live session's part, after the wipe: once WhatsApp sees it, no credentials remain.
//!
//! A logout made while no session runs the instance (its host died, or stopped, or it was
//! reconnecting) would leave the device linked on the phone with nobody able to unlink it, since
//! the wipe took the credentials. So the API keeps them first under [`BlobKey::unlink_copy`], out
//! of every session's way, and the `Logout` command makes some host log in with that copy just to
//! unlink, and then delete it. A live session unlinks with its own client and deletes the copy.

use chrono::{DateTime, Utc};

use crate::domain::{
    Connection, Event, InstanceChange, InstanceId, InstanceState, Lease, Profile, StateChange,
};
use crate::ports::{BlobKey, Ports};
use crate::{Error, Result};

/// The reason an API logout gives, in the state and the event.
pub const REQUESTED_THROUGH_API: &str = "logout requested through the API";

/// Keeps the credential store a logout is about to wipe, for the host that unlinks the device
/// (see the module's doc). Nothing to keep for an instance never linked or logged out already.
pub async fn keep_for_unlink(ports: &Ports, instance: &InstanceId) -> Result<()> {
    if let Some(store) = ports.blobs.get(&BlobKey::session_store(instance)).await? {
        ports.blobs.put(&BlobKey::unlink_copy(instance), store).await?;
    }
    Ok(())
}

/// Records `instance`'s logout. `lease` fences the state write when a session host makes it
/// (`Error::LeaseLost` once another host took the instance). Returns whether this call made the
/// transition; `false` when it was logged out already (nothing published, the store wiped anyway).
pub async fn record_logout(
    ports: &Ports,
    instance: &InstanceId,
    reason: &str,
    lease: Option<&Lease>,
    at: DateTime<Utc>,
) -> Result<bool> {
    let current = ports.registry.instance(instance).await?.ok_or(Error::InstanceNotFound)?;
    let newly = current.connection.state != InstanceState::LoggedOut;
    if newly {
        let connection = Connection { state: InstanceState::LoggedOut, ..Connection::default() };
        let change = InstanceChange::Session { connection, profile: Profile::default() };
        match lease {
            Some(lease) => ports.leases.update_instance_fenced(instance, change, at, lease).await?,
            None => ports.registry.update_instance(instance, change, at).await?,
        };
    }
    ports.blobs.delete(&BlobKey::session_store(instance)).await?;
    if newly {
        let change = StateChange::LoggedOut { reason: reason.to_owned() };
        ports.events.send(&Event::state(instance.clone(), &change, at)).await?;
    }
    Ok(newly)
}
