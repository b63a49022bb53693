//! A host's stop: the sessions hand over (or keep their leases for the next start), the host
//! keeps beating meanwhile, passes on what reached it too late, and leaves the fleet.
//!
//! A handed-over session's reconnect goes straight to a peer's channel, spread over the peers with
//! room: on the shared queue this host's own abandoned long poll could take it and hide it for a
//! visibility timeout once the process is gone. With no peer it goes to the shared queue, and the
//! process lingers until its abandoned poll has returned (and handed back) before it exits.
//!
//! Peers stopping at the same time must not lose what they send each other: the list of peers is
//! read again on every beat and leaves out draining hosts, and a host leaves the fleet (its record
//! removed), waits a beat period for every sender to have seen that, and only then empties its
//! channel (passing on what is there) and removes it.

use std::time::Duration;

use ryze_core::domain::SessionCommand;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{DRAIN_BUDGET, RECEIVE_WAIT, Running, SessionHost};
use crate::client::ClientFactory;

impl<F: ClientFactory> SessionHost<F> {
    pub(super) async fn drain(&mut self, running: &mut Running, sessions_stop: &CancellationToken) {
        if let Err(error) = running.membership.beat(self.sessions.len(), true).await {
            tracing::warn!(%error, "draining not announced");
        }
        let (mut peers, mut others) = self.peers(running).await;
        sessions_stop.cancel();
        let deadline = Instant::now() + DRAIN_BUDGET;
        let mut beats = tokio::time::interval(running.membership.timing().beat);
        let (mut handed, mut to_shared_queue) = (0usize, false);
        while !self.tasks.is_empty() {
            tokio::select! {
                done = self.tasks.join_next() => if let Some(Ok(finished)) = done {
                    self.sessions.remove(&finished.instance);
                    if finished.handed_over {
                        let command = SessionCommand::Reconnect { instance: finished.instance.clone() };
                        let peer = (!peers.is_empty()).then(|| peers[handed % peers.len()].clone());
                        handed += 1;
                        to_shared_queue |= !self.hand_to(peer.as_deref(), &command).await;
                    }
                    to_shared_queue |= !finished.leftovers.is_empty();
                    self.pass_on(finished.leftovers).await;
                },
                _ = beats.tick() => {
                    if let Err(error) = running.membership.beat(self.tasks.len(), true).await {
                        tracing::warn!(%error, "beat while draining failed");
                    }
                    (peers, others) = self.peers(running).await;
                }
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(left = self.tasks.len(), "sessions still stopping at the deadline; aborted");
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        self.gauge.set(0);
        self.protected.set(0);
        tracing::info!(handed, peers = peers.len(), "sessions handed over");
        if running.fenced.is_some() || !self.ctx.config.hand_over_on_stop {
            // Superseded: the record and the channel (named after the id) are another start's.
            // Kept: the leases stay with this host's name, for its next start to resume.
            return;
        }
        if let Err(error) = running.membership.leave().await {
            tracing::warn!(%error, "host record not removed; others will judge it dead");
        }
        // Alone in the fleet, nobody can be sending here.
        let wait =
            if others { running.membership.timing().beat + Duration::from_secs(1) } else { Duration::ZERO };
        tokio::time::sleep(wait).await;
        to_shared_queue |= self.pass_on_channel(running).await;
        // An abandoned long poll hands back what it took only if the process lives until it
        // returns: the process's runner waits for that (`SessionHost::linger`).
        let window = self.ctx.ports.commands.abandoned_receive_window();
        if to_shared_queue && !window.is_zero() {
            self.linger.set(window.min(RECEIVE_WAIT).saturating_sub(wait) + Duration::from_secs(1));
        }
        let address = running.membership.record().channel.clone();
        if let Err(error) = self.ctx.ports.channels.close(&address).await {
            tracing::warn!(%error, "channel not removed");
        }
    }

    /// The channels of the hosts that can take sessions now (live, not draining, with room), and
    /// whether there is any other host at all (one that could be sending here).
    async fn peers(&self, running: &Running) -> (Vec<String>, bool) {
        let me = running.membership.holder();
        match running.membership.leases().hosts().await {
            Ok(hosts) => {
                let others: Vec<_> = hosts.into_iter().filter(|host| host.holder() != me).collect();
                let any = !others.is_empty();
                let peers =
                    others.into_iter().filter(|h| h.has_room() && h.beat > 0).map(|h| h.channel).collect();
                (peers, any)
            }
            Err(error) => {
                tracing::warn!(%error, "peers unknown; handing over through the shared queue");
                (Vec::new(), true)
            }
        }
    }

    /// Sends a handed-over session's reconnect to `peer`, or to the shared queue; `true` when
    /// it went to the peer.
    async fn hand_to(&self, peer: Option<&str>, command: &SessionCommand) -> bool {
        if let Some(address) = peer {
            match self.send_to(address, command).await {
                Ok(()) => return true,
                Err(error) => {
                    tracing::warn!(%error, "peer unreachable; handing over through the shared queue")
                }
            }
        }
        if let Err(error) = self.ctx.ports.commands.send(command).await {
            tracing::error!(%error, instance = %command.instance(), "handover lost; a reconnect call resumes it");
        }
        false
    }

    /// Passes on what waits in this host's channel: commands for sessions it no longer runs.
    /// `true` when there was any (it went on through the shared queue or to owners).
    async fn pass_on_channel(&self, running: &Running) -> bool {
        let channel = running.channel.clone();
        let mut any = false;
        while let Ok(left) = channel.receive(10, Duration::ZERO).await {
            if left.is_empty() {
                break;
            }
            any = true;
            for delivery in left {
                self.pass_on(vec![self.unfinished.received(
                    delivery.message,
                    channel.clone(),
                    delivery.receipt,
                )])
                .await;
            }
        }
        any
    }
}
