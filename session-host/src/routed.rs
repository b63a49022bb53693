//! A command on its way to a session, holding the receipt of the queue it came from.
//!
//! A command is acknowledged only once it is done with: applied by its session, passed on durably
//! (to the owner's channel or back to the shared queue), or answered as refused. Until then it
//! stays on its queue, hidden, so a host killed with commands in its sessions' mailboxes leaves
//! them to come back for the next owner instead of losing them. Dropping a `Routed` without
//! [`Routed::done`] is how a command is left for that redelivery.
//!
//! A command can wait in a mailbox for longer than the visibility its receive gave it: a session
//! waits its turn in the host's connect pace before it reads its mailbox again, up to a minute in
//! a large takeover. [`Unfinished`] knows every command not yet done with, and keeps each hidden
//! while this host lives, so that it is neither handed out again meanwhile (to be applied twice,
//! and on SQS to spend its receives toward the dead-letter queue) nor left hidden once the host
//! is gone: the renewals stop with the host, and a visibility later the command is back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ryze_core::domain::{InstanceId, SessionCommand};
use ryze_core::ports::{CommandQueue, Receipt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) struct Routed {
    pub command: SessionCommand,
    ack: Option<Held>,
}

impl std::fmt::Debug for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routed").field("command", &self.command).field("queued", &self.ack.is_some()).finish()
    }
}

impl Routed {
    pub(crate) fn instance(&self) -> &InstanceId {
        self.command.instance()
    }

    /// Splits off the acknowledgement, for a session that applies the command first.
    pub(crate) fn into_parts(self) -> (SessionCommand, Done) {
        (self.command, Done(self.ack))
    }

    /// Acknowledges the command: it is not delivered again.
    pub(crate) async fn done(self) {
        Done(self.ack).send().await;
    }
}

/// The acknowledgement of a command whose work is under way.
pub(crate) struct Done(Option<Held>);

impl Done {
    pub(crate) async fn send(self) {
        let Some(held) = self.0 else { return };
        held.book.forget(held.key);
        // A command applied after its visibility ran out was handed out again, and this receipt is
        // stale: the copy handed out later is acknowledged by whoever got it.
        if let Err(error) = held.queue.ack(&held.receipt).await {
            tracing::warn!(%error, "command not acknowledged; it will be delivered again");
        }
    }
}

/// A received command's place on its queue; it leaves [`Unfinished`] when dropped.
struct Held {
    key: u64,
    book: Unfinished,
    queue: Arc<CommandQueue>,
    receipt: Receipt,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.book.forget(self.key);
    }
}

/// The commands this host received and is not done with yet, kept hidden on their queues.
#[derive(Clone, Default)]
pub(crate) struct Unfinished(Arc<Mutex<Book>>);

#[derive(Default)]
struct Book {
    next: u64,
    held: HashMap<u64, (Arc<CommandQueue>, Receipt, Instant)>,
}

impl Unfinished {
    /// A command received from `queue`, to be acknowledged there once done with.
    pub(crate) fn received(
        &self,
        command: SessionCommand,
        queue: Arc<CommandQueue>,
        receipt: Receipt,
    ) -> Routed {
        let key = {
            let mut book = self.book();
            let key = book.next;
            book.next += 1;
            book.held.insert(key, (queue.clone(), receipt.clone(), Instant::now()));
            key
        };
        Routed { command, ack: Some(Held { key, book: self.clone(), queue, receipt }) }
    }

    /// How many commands are received and not done with.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.book().held.len()
    }

    /// Until `stop`: a few times per `visibility`, every command held for longer than that few is
    /// hidden for another `visibility`, so none comes back while this host works on it.
    pub(crate) async fn keep_hidden(self, visibility: Duration, stop: CancellationToken) {
        let every = (visibility / 3).max(Duration::from_millis(100));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            let due: Vec<_> = self
                .book()
                .held
                .values()
                .filter(|(_, _, since)| since.elapsed() >= every)
                .map(|(queue, receipt, _)| (queue.clone(), receipt.clone()))
                .collect();
            let renewals = due.iter().map(|(queue, receipt)| queue.keep_hidden(receipt, visibility));
            for result in futures::future::join_all(renewals).await {
                // Done with meanwhile (acknowledged), or handed out again after a stall: either
                // way nothing is left to keep hidden.
                if let Err(error) = result {
                    tracing::debug!(%error, "command's visibility not renewed");
                }
            }
        }
    }

    fn forget(&self, key: u64) {
        self.book().held.remove(&key);
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use ryze_core::ports::{Delivery, Queue, SendOptions};

    use super::*;

    /// A queue that counts what is done with its receipts.
    #[derive(Default)]
    struct Counting {
        acks: AtomicUsize,
        renewals: AtomicUsize,
    }

    #[async_trait]
    impl Queue<SessionCommand> for Counting {
        async fn send_with(&self, _: &SessionCommand, _: SendOptions) -> ryze_core::Result<()> {
            Ok(())
        }
        async fn receive(&self, _: usize, _: Duration) -> ryze_core::Result<Vec<Delivery<SessionCommand>>> {
            Ok(Vec::new())
        }
        async fn ack(&self, _: &Receipt) -> ryze_core::Result<()> {
            self.acks.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn release_after(&self, _: &Receipt, _: Duration) -> ryze_core::Result<()> {
            Ok(())
        }
        async fn keep_hidden(&self, _: &Receipt, _: Duration) -> ryze_core::Result<()> {
            self.renewals.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn command() -> SessionCommand {
        SessionCommand::Reconnect { instance: InstanceId::generate() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_is_kept_hidden_until_done_with_and_then_acknowledged_once() {
        let queue = Arc::new(Counting::default());
        let unfinished = Unfinished::default();
        let stop = CancellationToken::new();
        let keeper = tokio::spawn(unfinished.clone().keep_hidden(Duration::from_secs(3), stop.clone()));
        let routed = unfinished.received(command(), queue.clone(), Receipt("r".into()));
        assert_eq!(unfinished.len(), 1);

        // Held for ten visibilities: renewed about three times per visibility, never acknowledged.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let renewed = queue.renewals.load(Ordering::SeqCst);
        assert!((27..=31).contains(&renewed), "renewed {renewed} times in 30 s");
        assert_eq!(queue.acks.load(Ordering::SeqCst), 0);

        routed.done().await;
        assert_eq!((queue.acks.load(Ordering::SeqCst), unfinished.len()), (1, 0));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(queue.renewals.load(Ordering::SeqCst), renewed, "no renewal once done with");
        stop.cancel();
        keeper.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_dropped_unfinished_is_neither_acknowledged_nor_kept_hidden() {
        let queue = Arc::new(Counting::default());
        let unfinished = Unfinished::default();
        let stop = CancellationToken::new();
        let keeper = tokio::spawn(unfinished.clone().keep_hidden(Duration::from_secs(3), stop.clone()));
        let (_command, done) =
            unfinished.received(command(), queue.clone(), Receipt("r".into())).into_parts();
        drop(done);
        assert_eq!(unfinished.len(), 0);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!((queue.acks.load(Ordering::SeqCst), queue.renewals.load(Ordering::SeqCst)), (0, 0));
        stop.cancel();
        keeper.await.unwrap();
    }
}
