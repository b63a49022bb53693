//! The heartbeat: its own task, so that nothing the fleet's loop waits for (a takeover of a
//! thousand leases on a slow store, a burst of commands) can hold a beat up and get a live host
//! judged dead while its clients still run.
//!
//! Each beat is bounded by the beat period. What a beat learns goes to the loop as [`News`]. The
//! task also fences the host, on its own clock: once it is superseded, or has not beaten for the
//! lease period less one beat (before any other host can judge it dead, with a beat to spare), it
//! cancels the host's fence, which stops every session's client at once without a write; the
//! host then ends, and its process with it, for a fresh start with a new epoch.

use std::sync::Arc;

use ryze_core::domain::HostRecord;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::membership::Membership;

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
        fence: CancellationToken,
    ) -> Self {
        let (news_tx, news) = mpsc::channel(4);
        let (fenced_tx, fenced) = watch::channel(None);
        let task = tokio::spawn(beat(membership, sessions, news_tx, fenced_tx, fence));
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
    news: mpsc::Sender<News>,
    fenced: watch::Sender<Option<Fenced>>,
    fence: CancellationToken,
) {
    let timing = membership.timing();
    let silent_limit = timing.lease.saturating_sub(timing.beat);
    let mut ticks = tokio::time::interval(timing.beat);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_ok = Instant::now();
    loop {
        ticks.tick().await;
        let held = *sessions.borrow();
        let attempt = membership.beat(held, false);
        match tokio::time::timeout(timing.beat, attempt).await {
            Ok(Ok(dead)) => {
                let after_gap = last_ok.elapsed() > timing.beat * 2;
                last_ok = Instant::now();
                // A full mailbox only means the loop is busy; the dead stay dead for the next beat.
                let _ = news.try_send(News { dead, after_gap });
            }
            Ok(Err(ryze_core::Error::HostSuperseded)) => {
                tracing::error!("this host was judged dead and replaced; its sessions stop now");
                fenced.send_replace(Some(Fenced::Superseded));
                fence.cancel();
                return;
            }
            Ok(Err(error)) => tracing::error!(%error, "heartbeat failed"),
            Err(_) => tracing::error!(timeout = ?timing.beat, "heartbeat timed out"),
        }
        if last_ok.elapsed() >= silent_limit {
            tracing::error!(silent = ?last_ok.elapsed(), "no heartbeat for a lease period; sessions stop now");
            fenced.send_replace(Some(Fenced::Silent));
            fence.cancel();
            return;
        }
    }
}
