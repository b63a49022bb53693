//! Who runs an instance: session hosts, their heartbeats, and the fenced lease each instance is run
//! under (DESIGN.md "Ownership is a lease").
//!
//! - A host heartbeats one record of its own, not one per session, so a beat costs O(hosts).
//! - An instance's lease names the holder `{host, epoch}` and a fence that grows on every change of
//!   holder, taking and releasing alike. Every write a holder makes for the instance carries the
//!   fence and is refused once the fence has moved on: a host that was paused past its lease and
//!   then wakes up cannot overwrite what the new holder wrote.
//! - Whether a host is alive is judged by [`Liveness`] on the observer's own monotonic clock: the
//!   beat counter must move within the lease period as the observer sees it. No timestamp written
//!   by another machine is trusted (the Kinesis Client Library and the DynamoDB lock client judge
//!   liveness the same way).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A session host's identity; stable across its restarts when the deployment gives it one (an ECS
/// task id, a machine name), so that its epoch tells the restarts apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostId(String);

impl HostId {
    /// `None` unless 1 to 64 of `A-Z a-z 0-9 - _ .`: the id is part of storage keys.
    pub fn new(id: impl Into<String>) -> Option<Self> {
        let id = id.into();
        let valid = (1..=64).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        valid.then_some(Self(id))
    }

    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for HostId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host's heartbeat record, as it last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRecord {
    pub id: HostId,
    /// Grows on every start of the host: a lease taken before a restart is not the restarted
    /// host's to use.
    pub epoch: u64,
    /// Bumped on every beat; only its moving matters, never its value.
    pub beat: u64,
    /// How many sessions it may hold (`RYZE_MAX_SESSIONS`).
    pub capacity: u32,
    /// How many it held at its last beat.
    pub sessions: u32,
    /// Where commands for its sessions reach it (a queue URL on AWS).
    pub channel: String,
    /// Stopping: takes no new work and is handing its sessions over.
    pub draining: bool,
}

impl HostRecord {
    pub fn holder(&self) -> Holder {
        Holder { host: self.id.clone(), epoch: self.epoch }
    }

    /// Room for more sessions, and not stopping.
    pub fn has_room(&self) -> bool {
        !self.draining && self.sessions < self.capacity
    }
}

/// One start of one host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub host: HostId,
    pub epoch: u64,
}

/// An instance's lease: who runs it now (nobody, after a release) and its fence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub holder: Option<Holder>,
    /// 0 for an instance never leased; grows by one on every take and every release.
    pub fence: u64,
}

impl Lease {
    /// The lease of an instance never taken.
    pub const NEVER_TAKEN: Lease = Lease { holder: None, fence: 0 };

    pub fn is_held_by(&self, holder: &Holder) -> bool {
        self.holder.as_ref() == Some(holder)
    }
}

/// The lease period and heartbeat interval (DESIGN.md: start from 5 s beats and a 15 s lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub beat: Duration,
    pub lease: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self { beat: Duration::from_secs(5), lease: Duration::from_secs(15) }
    }
}

/// The longest a received command stays hidden (see [`LeaseTiming::command_visibility`]).
pub const MAX_COMMAND_VISIBILITY: Duration = Duration::from_secs(10);

impl LeaseTiming {
    /// How long a session command stays hidden from other receivers once a host received it. A
    /// host killed between receiving a batch and acknowledging it (it acknowledges each command
    /// once routed) leaves the rest hidden this long. A dead host can have received commands up to
    /// a beat after its last beat, and nobody judges it dead before a lease period after that
    /// beat: with the lease less a beat, whatever it held is visible again in its channel by the
    /// time a survivor empties that channel. At most 10 s (5 s / 15 s gives exactly that): longer only delays a redelivery.
    /// At least a second, SQS's granularity; a command routed slower than this may be routed
    /// twice, which every command tolerates (the lease decides who runs the session).
    pub fn command_visibility(&self) -> Duration {
        self.lease.saturating_sub(self.beat).clamp(Duration::from_secs(1), MAX_COMMAND_VISIBILITY)
    }
}

/// One observer's view of which hosts are alive, from successive reads of their records.
///
/// A host is dead when its beat counter, or its epoch, has not moved for the lease period on this
/// observer's clock, counted from when the observer first saw that value. A host seen for the first
/// time is given a whole lease period: a fresh observer never declares anybody dead at once.
#[derive(Debug, Default)]
pub struct Liveness {
    seen: HashMap<HostId, Sighting>,
}

#[derive(Debug)]
struct Sighting {
    epoch: u64,
    beat: u64,
    since: Instant,
}

impl Liveness {
    /// Takes in a fresh read of every host record (at `now` on this observer's clock) and returns
    /// those that are dead. Hosts whose record is gone are forgotten.
    pub fn observe(&mut self, hosts: &[HostRecord], now: Instant, lease: Duration) -> Vec<HostRecord> {
        self.seen.retain(|id, _| hosts.iter().any(|host| &host.id == id));
        let mut dead = Vec::new();
        for host in hosts {
            let sighting = self.seen.entry(host.id.clone()).or_insert(Sighting {
                epoch: host.epoch,
                beat: host.beat,
                since: now,
            });
            if (sighting.epoch, sighting.beat) != (host.epoch, host.beat) {
                *sighting = Sighting { epoch: host.epoch, beat: host.beat, since: now };
            } else if now.duration_since(sighting.since) >= lease {
                dead.push(host.clone());
            }
        }
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, epoch: u64, beat: u64) -> HostRecord {
        HostRecord {
            id: HostId::new(id).unwrap(),
            epoch,
            beat,
            capacity: 10,
            sessions: 0,
            channel: String::new(),
            draining: false,
        }
    }

    #[test]
    fn commands_come_back_before_a_dead_host_is_taken_over() {
        let timing =
            |beat, lease| LeaseTiming { beat: Duration::from_secs(beat), lease: Duration::from_secs(lease) };
        assert_eq!(timing(5, 15).command_visibility(), Duration::from_secs(10));
        assert_eq!(timing(2, 10).command_visibility(), Duration::from_secs(8));
        assert_eq!(timing(1, 3).command_visibility(), Duration::from_secs(2));
        assert_eq!(timing(10, 60).command_visibility(), MAX_COMMAND_VISIBILITY);
        assert_eq!(timing(1, 1).command_visibility(), Duration::from_secs(1));
    }

    #[test]
    fn host_ids_are_safe_in_keys() {
        assert!(HostId::new("task-1.a_B").is_some());
        for bad in ["", "a/b", "a#b", "a b", &"x".repeat(65)] {
            assert!(HostId::new(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_host_is_dead_once_its_beat_stands_still_for_the_lease_period_on_the_observers_clock() {
        let lease = Duration::from_secs(15);
        let start = Instant::now();
        let mut liveness = Liveness::default();
        // Seen for the first time: a whole period of grace, whatever its counter says.
        assert!(liveness.observe(&[host("a", 1, 7)], start, lease).is_empty());
        assert!(liveness.observe(&[host("a", 1, 7)], start + Duration::from_secs(14), lease).is_empty());
        // It moved: the period starts over from this sighting.
        assert!(liveness.observe(&[host("a", 1, 8)], start + Duration::from_secs(14), lease).is_empty());
        assert!(liveness.observe(&[host("a", 1, 8)], start + Duration::from_secs(28), lease).is_empty());
        let dead = liveness.observe(&[host("a", 1, 8)], start + Duration::from_secs(29), lease);
        assert_eq!(dead.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn a_restart_counts_as_life_and_removed_hosts_are_forgotten() {
        let lease = Duration::from_secs(15);
        let start = Instant::now();
        let mut liveness = Liveness::default();
        liveness.observe(&[host("a", 1, 5), host("b", 1, 5)], start, lease);
        // Same counter value after a restart (a new epoch): alive.
        let later = start + Duration::from_secs(20);
        let dead = liveness.observe(&[host("a", 2, 5), host("b", 1, 5)], later, lease);
        assert_eq!(dead.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["b"]);
        // b's record was removed (it drained): not dead, just gone; back later, it gets its grace.
        assert!(liveness.observe(&[host("a", 2, 6)], later, lease).is_empty());
        assert!(liveness.observe(&[host("a", 2, 7), host("b", 1, 5)], later + lease, lease).is_empty());
    }

    #[test]
    fn leases_know_their_holder() {
        let holder = Holder { host: HostId::new("a").unwrap(), epoch: 2 };
        let lease = Lease { holder: Some(holder.clone()), fence: 3 };
        assert!(lease.is_held_by(&holder));
        assert!(!lease.is_held_by(&Holder { epoch: 1, ..holder }));
        assert!(!Lease::NEVER_TAKEN.is_held_by(&lease.holder.unwrap()));
    }
}
