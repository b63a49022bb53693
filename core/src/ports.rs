//! The storage roles the system is built on, as traits.
//!
//! Each port has an embedded adapter (one machine, [`crate::adapters::embedded`]) and an AWS adapter
//! (DynamoDB, SQS, S3). Conditions that keep data correct (create-if-absent, quotas) are part of each
//! port's contract, and every adapter enforces them, so rules never depend on which one is in use.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;
use crate::domain::{
    Account, AccountId, AccountLimits, ConnectOutcome, ConnectRequest, ConnectRequestId, DeliveryAttempt,
    DeliveryFilter, DeliveryKey, DeliveryRecord, Event, Holder, HostId, HostRecord, Instance, InstanceChange,
    InstanceId, InstanceName, Lease, SessionCommand,
};
use crate::secrets::TokenHash;

/// Whom a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TokenOwner {
    Account { account: AccountId },
    Instance { account: AccountId, instance: InstanceId },
}

/// Where accounts, instances, their token hashes and pending connect requests are kept.
#[async_trait]
pub trait InstanceRegistry: Send + Sync {
    /// Stores a new account and its token hash.
    async fn insert_account(&self, account: &Account) -> Result<()>;

    /// Replaces an account's limits (`Error::AccountNotFound` if there is no such account).
    async fn update_account_limits(&self, id: &AccountId, limits: AccountLimits) -> Result<Account>;

    async fn account(&self, id: &AccountId) -> Result<Option<Account>>;

    async fn token_owner(&self, hash: &TokenHash) -> Result<Option<TokenOwner>>;

    /// Stores `instance` and its token hash, all or nothing: `Error::InstanceExists` when the name is
    /// taken in the account, `Error::TokenInUse` when the token hash is, `Error::QuotaExceeded` when
    /// the account already holds `quota` instances.
    async fn insert_instance(&self, instance: &Instance, quota: u32) -> Result<()>;

    async fn instance(&self, id: &InstanceId) -> Result<Option<Arc<Instance>>>;

    async fn instance_by_name(
        &self,
        account: &AccountId,
        name: &InstanceName,
    ) -> Result<Option<Arc<Instance>>>;

    /// Every instance of the account, ordered by name.
    async fn instances(&self, account: &AccountId) -> Result<Vec<Arc<Instance>>>;

    /// Applies one change and returns the new record (`Error::InstanceNotFound` if it is gone).
    async fn update_instance(
        &self,
        id: &InstanceId,
        change: InstanceChange,
        at: DateTime<Utc>,
    ) -> Result<Arc<Instance>>;

    /// Removes the instance, its name and its token. Removing what is not there succeeds.
    async fn delete_instance(&self, id: &InstanceId) -> Result<()>;

    async fn put_connect_request(&self, request: &ConnectRequest) -> Result<()>;

    /// Reads a request as last written (a consistent read: the answer must not be missed).
    async fn connect_request(&self, id: &ConnectRequestId) -> Result<Option<ConnectRequest>>;

    /// Records the host's answer. A request that is gone (the caller gave up) is left gone.
    async fn answer_connect_request(&self, id: &ConnectRequestId, outcome: ConnectOutcome) -> Result<()>;

    async fn delete_connect_request(&self, id: &ConnectRequestId) -> Result<()>;
}

/// Session hosts' heartbeat records and instances' fenced leases, kept beside the registry so that
/// a fenced write checks the lease and writes the instance in one step.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Starts a host: its record with an epoch above any before it (1 for a new id), beat 0.
    async fn register_host(&self, id: &HostId, capacity: u32, channel: &str) -> Result<HostRecord>;

    /// One heartbeat: the record's beat bumped, its sessions and draining written. Returns the
    /// record as written; `Error::HostSuperseded` when a later start of the id took it over, and
    /// `Error::HostSuperseded` too when it was removed (a host judged gone must start again).
    async fn beat(&self, host: &HostRecord, sessions: u32, draining: bool) -> Result<HostRecord>;

    /// Every host record, as last written (a consistent read).
    async fn hosts(&self) -> Result<Vec<HostRecord>>;

    /// Removes a host's record if it is still that start's. Removing what is not there succeeds.
    async fn remove_host(&self, holder: &Holder) -> Result<()>;

    /// The instance's lease as last written ([`Lease::NEVER_TAKEN`] when it never had one).
    async fn lease(&self, instance: &InstanceId) -> Result<Lease>;

    /// Takes the lease for `holder` if its fence is still `expected`'s: the new lease, with the
    /// next fence, or `None` (nothing written) when somebody changed it since.
    async fn take(&self, instance: &InstanceId, holder: &Holder, expected: &Lease) -> Result<Option<Lease>>;

    /// [`Self::take`] for each of `orphans` (an instance and its lease as read), as a takeover does:
    /// one outcome per orphan, in order. A store with batched conditional writes (DynamoDB's
    /// transactions) takes a batch in one call, where a thousand single takes would queue behind
    /// each other and crowd out the heartbeats.
    async fn take_all(&self, orphans: &[(InstanceId, Lease)], holder: &Holder) -> Vec<Result<Option<Lease>>> {
        let mut taken = Vec::with_capacity(orphans.len());
        for (instance, expected) in orphans {
            taken.push(self.take(instance, holder, expected).await);
        }
        taken
    }

    /// Lets the lease go if its fence is still `held`'s: nobody holds it, under the next fence.
    /// `false` (nothing written) when it had moved on already.
    async fn release(&self, instance: &InstanceId, held: &Lease) -> Result<bool>;

    /// The instances whose lease names `host` (any epoch), with their leases: what a host that
    /// takes over from a dead one, or restarts, goes through. May lag the latest takes (an index).
    async fn held_by(&self, host: &HostId) -> Result<Vec<(InstanceId, Lease)>>;

    /// [`InstanceRegistry::update_instance`] by the lease's holder: applied only while the
    /// instance's lease still has `held`'s fence, else `Error::LeaseLost`.
    async fn update_instance_fenced(
        &self,
        id: &InstanceId,
        change: InstanceChange,
        at: DateTime<Utc>,
        held: &Lease,
    ) -> Result<Arc<Instance>>;

    /// [`Self::update_instance_fenced`] from `known`, the instance as this holder last read or
    /// wrote it: a store that conditions the write on the revision (DynamoDB) writes at once while
    /// nobody else wrote meanwhile, and reads again only when somebody did.
    async fn update_instance_fenced_from(
        &self,
        known: &Instance,
        change: InstanceChange,
        at: DateTime<Utc>,
        held: &Lease,
    ) -> Result<Arc<Instance>> {
        self.update_instance_fenced(&known.id, change, at, held).await
    }

    /// Forgets a deleted instance's lease. Forgetting what is not there succeeds.
    async fn forget(&self, instance: &InstanceId) -> Result<()>;
}

/// Fixed-window request counters, shared by every process of a deployment.
#[async_trait]
pub trait RateCounter: Send + Sync {
    /// Counts one request against `key` in the window starting at `window_start` (unix seconds) and
    /// returns the window's count including it.
    async fn hit(&self, key: &str, window_start: i64) -> Result<u32>;
}

/// A handle to a received message, used to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt(pub String);

#[derive(Debug)]
pub struct Delivery<M> {
    pub message: M,
    pub receipt: Receipt,
    /// How many times the queue has handed this message out, this time included. More than one
    /// means an earlier receiver may have stopped halfway through handling it.
    pub receives: u32,
    /// The group it was sent in: a batch's messages of one group are to be handled in order.
    pub group: Option<String>,
}

/// How a message is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Messages of one group are received in the order sent, and none while an earlier one is in
    /// flight. One receive may hand out several of a group (SQS FIFO does), in order: their
    /// receiver handles them one after another. Ungrouped messages have no order.
    pub group: Option<String>,
    /// Not received before this wait is over, up to the queue's [`Queue::max_delay`].
    pub delay: Duration,
}

/// An at-least-once message queue.
#[async_trait]
pub trait Queue<M: Send + Sync + 'static>: Send + Sync {
    async fn send(&self, message: &M) -> Result<()> {
        self.send_with(message, SendOptions::default()).await
    }

    async fn send_with(&self, message: &M, options: SendOptions) -> Result<()>;

    /// The longest delay one send can ask for; a longer wait is a chain of sends (SQS: 15 minutes).
    fn max_delay(&self) -> Duration {
        Duration::MAX
    }

    /// How long a receive its caller dropped may still take messages (handing them back when it
    /// returns): a process that exits sooner leaves those hidden until their visibility timeout.
    fn abandoned_receive_window(&self) -> Duration {
        Duration::ZERO
    }

    /// Waits up to `wait` for at most `max` messages. Cancel safe: a receive dropped while waiting
    /// takes nothing off the queue.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery<M>>>;

    /// Marks a message handled so it is not delivered again.
    async fn ack(&self, receipt: &Receipt) -> Result<()>;

    /// Gives a received message back unhandled, to be received again now.
    async fn release(&self, receipt: &Receipt) -> Result<()> {
        self.release_after(receipt, Duration::ZERO).await
    }

    /// Gives a received message back unhandled, to be received again once `after` has passed
    /// (whole seconds on SQS, at most its 12-hour visibility cap); on a grouped queue its group
    /// waits with it, so the order holds.
    async fn release_after(&self, receipt: &Receipt, after: Duration) -> Result<()>;

    /// Keeps a received message hidden for `hidden_for` from now, its receipt still good: for work
    /// that outlasts the visibility its receive gave it. A queue whose received messages never
    /// come back (the in-process one) has nothing to do.
    async fn keep_hidden(&self, receipt: &Receipt, hidden_for: Duration) -> Result<()>;
}

/// Commands for the session hosts (on AWS: SQS FIFO, group = instance).
pub type CommandQueue = dyn Queue<SessionCommand>;

/// Each session host's own command queue: how a command for a live session reaches the host that
/// holds it (DESIGN.md "Commands for a live session reach its owner"). Its address is in the
/// host's record; a host that takes over from a dead one drains the dead one's channel and closes it.
#[async_trait]
pub trait CommandChannels: Send + Sync {
    /// Opens `host`'s channel, creating it if needed, and returns its address.
    async fn open(&self, host: &HostId) -> Result<String>;

    /// The channel at `address`, as [`Self::open`] returned it.
    fn channel(&self, address: &str) -> Result<Arc<CommandQueue>>;

    /// Removes the channel at `address` with whatever it still holds. Removing what is not there
    /// succeeds.
    async fn close(&self, address: &str) -> Result<()>;
}

/// Events for the dispatcher (on AWS: SQS with a dead-letter queue).
pub type EventQueue = dyn Queue<Event>;

/// Webhook delivery attempts: first attempts grouped by webhook (so each webhook gets one instance's
/// events in order), retries ungrouped and delayed. Dead deliveries go to a second one, the
/// dead-letter queue an operator redrives.
pub type DeliveryQueue = dyn Queue<DeliveryAttempt>;

/// The delivery log: one record per event and webhook, kept seven days.
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Stores a new record; `false` (and nothing written) when one with its key exists already, as
    /// when an event is handled a second time after a crash.
    async fn insert(&self, record: &DeliveryRecord) -> Result<bool>;

    async fn get(&self, key: &DeliveryKey) -> Result<Option<DeliveryRecord>>;

    /// Replaces the record with the same key if its stored revision is still `expected`; `false`
    /// (nothing written) when another writer got there first.
    async fn update(&self, record: &DeliveryRecord, expected: u64) -> Result<bool>;

    /// The instance's records matching `filter`, newest first, at most `limit`.
    async fn list(
        &self,
        instance: &InstanceId,
        filter: &DeliveryFilter,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>>;

    /// Every record of an event (one per webhook), for a redelivery by event id.
    async fn of_event(&self, instance: &InstanceId, event_id: &str) -> Result<Vec<DeliveryRecord>>;

    /// Forgets a deleted instance's records. Forgetting what is not there succeeds.
    async fn delete_instance(&self, instance: &InstanceId) -> Result<()>;
}

/// A key in the blob store: `/`-separated segments of `A-Z a-z 0-9 - _ .`, never `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into();
        let valid = !key.is_empty()
            && key.split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            });
        valid.then_some(Self(key))
    }

    /// Where an instance's WhatsApp credential store is kept.
    pub fn session_store(instance: &InstanceId) -> Self {
        Self(format!("sessions/{instance}/store"))
    }

    /// Where a logout keeps the credential store it wiped, until a session host has used it to
    /// unlink the device (`service::logout`).
    pub fn unlink_copy(instance: &InstanceId) -> Self {
        Self(format!("sessions/{instance}/unlink"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which write of an object a reader saw (an ETag on S3): what a conditional write is checked against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobVersion(pub String);

/// An object with the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedBlob {
    pub bytes: Vec<u8>,
    pub version: BlobVersion,
}

/// Opaque objects: credential stores and media.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Writes the whole object, replacing any previous one atomically.
    async fn put(&self, key: &BlobKey, bytes: Vec<u8>) -> Result<()>;

    /// Writes the whole object only if the stored one is still `expected` (`None`: only if there is
    /// none), so that a writer that lost the object to another, or saw it deleted, cannot clobber
    /// it: `Error::BlobConflict` otherwise. Returns the new version.
    async fn put_if(
        &self,
        key: &BlobKey,
        bytes: Vec<u8>,
        expected: Option<&BlobVersion>,
    ) -> Result<BlobVersion>;

    async fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>> {
        Ok(self.get_versioned(key).await?.map(|blob| blob.bytes))
    }

    async fn get_versioned(&self, key: &BlobKey) -> Result<Option<VersionedBlob>>;
    /// Deleting what is not there succeeds.
    async fn delete(&self, key: &BlobKey) -> Result<()>;
    async fn exists(&self, key: &BlobKey) -> Result<bool>;
}

/// API Gateway's id of one WebSocket connection (`connectionId`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub String);

/// A client's WebSocket connection held by API Gateway's WebSocket API, which the dispatcher posts
/// each frame of its instance to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConnection {
    pub instance: InstanceId,
    pub id: ConnectionId,
    /// When API Gateway has closed it at the latest (its two-hour maximum): the record may go then.
    pub expires_at: DateTime<Utc>,
}

/// Where the WebSocket connections open on API Gateway are recorded, by instance. AWS only: `ryze
/// serve` holds its sockets in memory (`ryze_functions::live::LiveHub`), so nothing is stored there.
#[async_trait]
pub trait LiveConnections: Send + Sync {
    /// Records an accepted connection (`$connect`); recording one again replaces it.
    async fn put(&self, connection: &LiveConnection) -> Result<()>;

    /// The instance's connections not yet past their expiry, in no particular order.
    async fn of_instance(&self, instance: &InstanceId) -> Result<Vec<LiveConnection>>;

    /// Forgets a connection found by [`LiveConnections::of_instance`] (API Gateway answered Gone).
    /// Forgetting what is not there succeeds.
    async fn delete(&self, connection: &LiveConnection) -> Result<()>;

    /// Forgets a connection known by its id alone: `$disconnect` carries nothing else. Forgetting
    /// what is not there succeeds.
    async fn delete_by_id(&self, id: &ConnectionId) -> Result<()>;
}

/// One adapter for each port: what a deployment is wired from.
#[derive(Clone)]
pub struct Ports {
    pub registry: Arc<dyn InstanceRegistry>,
    /// Host records and instance leases, in the registry's store.
    pub leases: Arc<dyn Leases>,
    pub counters: Arc<dyn RateCounter>,
    pub commands: Arc<CommandQueue>,
    /// The hosts' own command queues.
    pub channels: Arc<dyn CommandChannels>,
    pub events: Arc<EventQueue>,
    pub deliveries: Arc<DeliveryQueue>,
    pub dead_deliveries: Arc<DeliveryQueue>,
    pub delivery_log: Arc<dyn DeliveryLog>,
    pub blobs: Arc<dyn BlobStore>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_keys_cannot_escape_their_root() {
        assert!(BlobKey::new("sessions/abc/store").is_some());
        for bad in ["", "/abs", "a//b", "../x", "a/../b", "a/./b", "a\\b", "a b", "a/"] {
            assert!(BlobKey::new(bad).is_none(), "{bad}");
        }
    }
}
