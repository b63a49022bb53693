//! The heartbeat: its own task, so that nothing the fleet's loop waits for (a takeover of a
//! thousand leases on a slow store, a burst of commands) can hold a beat up and get a live host
//! judged dead while its clients still run.
//!
//! A beat is not cut off at the period: on a slow store a beat that takes longer than the period
//! still renews the lease, where a beat abandoned and started over would never go through. Only
//! the fence's deadline bounds it. What a beat learns goes to the loop as [`News`]. The
//! task also fences the host, on its own clock: once it is superseded, or when the lease period
//! less half a beat has passed since the start of its last beat that went through (no other host
//! can have seen that beat before it started, so none can judge this one dead before then), it
//! cancels the host's fence, which stops every session's client at once without a write; the
//! host then ends, and its process with it, for a fresh start with a new epoch. Each beat's
//! latency also sets the host's connect pace (`pacing.rs`): the sessions' own calls must not
//! crowd the beats out of a slow store.

use std::sync::Arc;

use ryze_core::domain::HostRecord;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::membership::Membership;
use crate::pacing::Pacer;

/// What a beat tells the fleet's loop.
#[derive(Debug)]
pub(super) struct News {
    /// The hosts judged dead at this look.
    pub dead: Vec<HostRecord>,
    /// The beat before this one went through more than two periods ago: the host was paused or
    /// cut off, and others may have taken sessions meanwhile.
    pub after_gap: bool,
}

/// Why the host was fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fenced {
    /// Another start of this host took its record, or it was judged dead and removed.
    Superseded,
    /// No beat went through for the lease period less one beat.
    Silent,
}

/// The running heartbeat; dropping it stops the task (as a `kill -9` of the host would). A drain
/// stops it and beats by itself, since it ends by removing the record this task beats.
pub(super) struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    pub news: mpsc::Receiver<News>,
    fenced: watch::Receiver<Option<Fenced>>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Heartbeat {
    /// Starts beating every period with the count of `sessions`; cancels `fence` when the host
    /// must stop its clients.
    pub(super) fn start(
        membership: Arc<Membership>,
        sessions: watch::Receiver<usize>,
        pacer: Arc<Pacer>,
        fence: CancellationToken,
    ) -> Self {
        let (news_tx, news) = mpsc::channel(4);
        let (fenced_tx, fenced) = watch::channel(None);
        let task = tokio::spawn(beat(membership, sessions, pacer, news_tx, fenced_tx, fence));
        Self { task, news, fenced }
    }

    /// Why the host was fenced, once it was.
    pub(super) fn fenced(&self) -> Option<Fenced> {
        *self.fenced.borrow()
    }
}

async fn beat(
    membership: Arc<Membership>,
    sessions: watch::Receiver<usize>,
    pacer: Arc<Pacer>,
    news: mpsc::Sender<News>,
    fenced: watch::Sender<Option<Fenced>>,
    fence: CancellationToken,
) {
    let timing = membership.timing();
    let fence_after = timing.lease.saturating_sub(timing.beat / 2);
    // A beat that takes a fifth of the period slows the connect pace; one under a tenth lets it
    // recover (1 s and 500 ms at the default 5 s). With a twentieth, a takeover of a thousand
    // sessions on moto kept the pace at one start every 2 s for a minute after its lease takes were done.
    let (slow, fast) = (timing.beat / 5, timing.beat / 10);
    let mut ticks = tokio::time::interval(timing.beat);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Joining the fleet was a write of the record, just before.
    let mut last_ok_started = Instant::now();
    let mut last_ok_done = last_ok_started;
    loop {
        // The fence falls at its time whatever the beat is doing, even mid-call.
        let deadline = last_ok_started + fence_after;
        let fell = tokio::select! {
            _ = ticks.tick() => false,
            () = tokio::time::sleep_until(deadline) => true,
        };
        let started = Instant::now();
        let outcome = if fell {
            None
        } else {
            let held = *sessions.borrow();
            tokio::select! {
                outcome = membership.beat(held, false) => Some(outcome),
                () = tokio::time::sleep_until(deadline) => None,
            }
        };
        pacer.observe_store(started.elapsed(), slow, fast);
        match outcome {
            Some(Ok(dead)) => {
                let after_gap = last_ok_done.elapsed() > timing.beat * 2;
                (last_ok_started, last_ok_done) = (started, Instant::now());
                // A full mailbox only means the loop is busy; the dead stay dead for the next beat.
                let _ = news.try_send(News { dead, after_gap });
            }
            Some(Err(ryze_core::Error::HostSuperseded)) => {
                tracing::error!("this host was judged dead and replaced; its sessions stop now");
                fenced.send_replace(Some(Fenced::Superseded));
                fence.cancel();
                return;
            }
            Some(Err(error)) => tracing::error!(%error, "heartbeat failed"),
            None => {
                let silent = last_ok_started.elapsed();
                tracing::error!(?silent, "no heartbeat went through for a lease period; sessions stop now");
                fenced.send_replace(Some(Fenced::Silent));
                fence.cancel();
                return;
            }
        }
    }
}
