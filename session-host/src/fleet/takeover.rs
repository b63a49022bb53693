//! Taking over the leases a dead host (or this host's own earlier start) left, and resuming each
//! session from its saved store.
//!
//! The live hosts with room split the orphans evenly. Each one takes its part from its own place in
//! the list, given by its rank among them, so that they take side by side instead of racing for the
//! same leases. A pass takes in batches, one store call each (one DynamoDB transaction for up to a
//! hundred), because a thousand single conditional writes queue up on the store and hold the
//! heartbeats up with them.

use std::time::Duration;

use ryze_core::domain::{Holder, HostId, HostRecord, InstanceId, Lease};
use tokio_util::sync::CancellationToken;

use super::{Running, SessionHost};
use crate::client::ClientFactory;
use crate::session::Start;

/// Lease takes a takeover hands the store at once: one DynamoDB transaction's worth.
const TAKE_BATCH: usize = 100;

impl<F: ClientFactory> SessionHost<F> {
    /// Takes over the leases `gone` left, as many as this host's share of the room allows, and
    /// resumes each session; with `record` (another host, dead) re-routes what waited in its
    /// channel and removes it once nothing is left under its name. `dead` are the hosts judged
    /// dead on this beat: they share in nothing.
    pub(super) async fn take_over(
        &mut self,
        running: &mut Running,
        gone: &Holder,
        record: Option<&HostRecord>,
        dead: &[Holder],
        stop: &CancellationToken,
    ) {
        // Pass after pass until nothing is left or a pass takes nothing: hosts racing for one dead
        // host's leases each take a share per pass, and what a race left them goes in the next
        // pass rather than on the next beat.
        let cleared = loop {
            let orphans = match running.membership.orphans_of(gone).await {
                Ok(orphans) => orphans,
                Err(error) => return tracing::error!(%error, "orphaned leases unreadable"),
            };
            if orphans.is_empty() {
                break true;
            }
            if self.take_share(running, gone, &orphans, dead, stop).await == 0 {
                break false;
            }
        };
        let Some(record) = record else { return };
        // What waited in the dead host's channel (its unapplied commands are visible again by now:
        // `LeaseTiming::command_visibility`) moves to this host's own channel, durably and in
        // order, before that channel is closed; from there it is routed as any command.
        if let Ok(channel) = self.ctx.ports.channels.channel(&record.channel) {
            while let Ok(batch) = channel.receive(10, Duration::ZERO).await {
                if batch.is_empty() {
                    break;
                }
                for delivery in batch {
                    match running.channel.send(&delivery.message).await {
                        Ok(()) => {
                            self.unfinished
                                .received(delivery.message, channel.clone(), delivery.receipt)
                                .done()
                                .await
                        }
                        Err(error) => {
                            tracing::warn!(%error, "dead host's command not moved; it comes back there")
                        }
                    }
                }
            }
        }
        // A last pass that took nothing may have lost the rest to other hosts meanwhile: look again.
        let cleared =
            cleared || matches!(running.membership.orphans_of(gone).await, Ok(left) if left.is_empty());
        // Else the rest is for hosts with more room, or for this one's next beat.
        if cleared {
            if let Err(error) = self.ctx.ports.channels.close(&record.channel).await {
                tracing::warn!(%error, "dead host's channel not removed");
            }
            if let Err(error) = running.membership.bury(record).await {
                tracing::warn!(%error, "dead host not removed");
            }
        }
    }

    /// One pass of a takeover: takes this host's part of `orphans`, as its room allows, and
    /// resumes each; returns how many it took.
    async fn take_share(
        &mut self,
        running: &Running,
        gone: &Holder,
        orphans: &[(InstanceId, Lease)],
        dead: &[Holder],
        stop: &CancellationToken,
    ) -> usize {
        let part = Part::of(running, dead);
        let share = part.share(orphans.len());
        let mut candidates: Vec<(InstanceId, Lease)> =
            orphans.iter().filter(|(instance, _)| !self.sessions.contains_key(instance)).cloned().collect();
        let start = part.start(candidates.len());
        candidates.rotate_left(start);
        let mut taken = 0;
        for batch in candidates.chunks(TAKE_BATCH) {
            let want = share
                .saturating_sub(taken)
                .min(self.ctx.config.max_sessions.saturating_sub(self.sessions.len()));
            if want == 0 {
                break;
            }
            let batch = &batch[..batch.len().min(want)];
            for ((instance, _), took) in batch.iter().zip(running.membership.adopt(batch).await) {
                match took {
                    Ok(Some(lease)) => {
                        self.spawn(instance.clone(), lease, Start::Resume, stop);
                        taken += 1;
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, %instance, "lease not taken over"),
                }
            }
        }
        if taken > 0 {
            tracing::info!(taken, of = orphans.len(), from = %gone.host, "sessions taken over");
        }
        taken
    }
}

/// This host's part of a takeover pass: its rank among the hosts that take part (the live ones
/// with room, this one included), ordered by id so that every host works out the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    rank: usize,
    hosts: usize,
}

impl Part {
    /// `dead` are the hosts judged dead on this beat: they take part in nothing.
    fn of(running: &Running, dead: &[Holder]) -> Self {
        let (hosts, _) = running.membership.last_look();
        let me = running.membership.holder();
        let others = hosts
            .iter()
            .filter(|h| h.holder() != me && !dead.contains(&h.holder()) && h.has_room() && h.beat > 0)
            .map(|h| &h.id);
        Self::among(&me.host, others)
    }

    fn among<'a>(me: &'a HostId, others: impl Iterator<Item = &'a HostId>) -> Self {
        let mut takers: Vec<&HostId> = others.chain([me]).collect();
        takers.sort();
        takers.dedup();
        let rank = takers.iter().position(|host| *host == me).unwrap_or(0);
        Self { rank, hosts: takers.len() }
    }

    /// How many of `orphans` this host takes in one pass: an even share, so that a dead host's
    /// sessions spread over the fleet instead of filling the first host that noticed. What the
    /// others do not take is left for the next pass.
    fn share(self, orphans: usize) -> usize {
        orphans.div_ceil(self.hosts).max(1)
    }

    /// Where in a list of `len` orphans this host starts taking: the start of its share, so that
    /// hosts looking at the same list take disjoint parts of it.
    fn start(self, len: usize) -> usize {
        if len == 0 { 0 } else { self.rank * len / self.hosts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str) -> HostId {
        HostId::new(id).unwrap()
    }

    #[test]
    fn hosts_that_see_the_same_orphans_take_disjoint_parts_that_cover_them_all() {
        let ids = [host("b"), host("c"), host("a")];
        for len in [1, 2, 3, 10, 999, 1000] {
            let mut covered = vec![0; len];
            for me in &ids {
                let part = Part::among(me, ids.iter().filter(|id| *id != me));
                let start = part.start(len);
                for n in 0..part.share(len).min(len) {
                    covered[(start + n) % len] += 1;
                }
            }
            // Shares round up, so a neighbour's first few may be asked for twice; none is missed.
            assert!(covered.iter().all(|&c| c >= 1), "{len}: {covered:?}");
            assert!(covered.iter().filter(|&&c| c > 1).count() < ids.len(), "{len}: {covered:?}");
        }
    }

    #[test]
    fn names_alike_start_far_apart() {
        // Hash-spread starts put hosts named `b` and `c` one orphan apart, racing lease by lease.
        let (b, c) = (host("b"), host("c"));
        let starts =
            [Part::among(&b, [&c].into_iter()).start(1000), Part::among(&c, [&b].into_iter()).start(1000)];
        assert_eq!(starts, [0, 500]);
    }

    #[test]
    fn a_host_alone_takes_everything_from_the_top() {
        let me = host("only");
        let part = Part::among(&me, std::iter::empty());
        assert_eq!((part.share(7), part.start(7)), (7, 0));
    }
}
