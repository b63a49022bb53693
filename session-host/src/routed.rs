//! A command on its way to a session, holding the receipt of the queue it came from.
//!
//! A command is acknowledged only once it is done with: applied by its session, passed on durably
//! (to the owner's channel or back to the shared queue), or answered as refused. Until then it
//! stays on its queue, hidden for the command visibility, so a host killed with commands in its
//! sessions' mailboxes leaves them to come back for the next owner instead of losing them. Dropping
//! a `Routed` without [`Routed::done`] is how a command is left for that redelivery.

use std::sync::Arc;

use ryze_core::domain::{InstanceId, SessionCommand};
use ryze_core::ports::{CommandQueue, Receipt};

pub(crate) struct Routed {
    pub command: SessionCommand,
    ack: Option<(Arc<CommandQueue>, Receipt)>,
}

impl std::fmt::Debug for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routed").field("command", &self.command).field("queued", &self.ack.is_some()).finish()
    }
}

impl Routed {
    /// A command received from `queue`, to be acknowledged there once done with.
    pub(crate) fn received(command: SessionCommand, queue: Arc<CommandQueue>, receipt: Receipt) -> Self {
        Self { command, ack: Some((queue, receipt)) }
    }

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
pub(crate) struct Done(Option<(Arc<CommandQueue>, Receipt)>);

impl Done {
    pub(crate) async fn send(self) {
        let Some((queue, receipt)) = self.0 else { return };
        // A command applied after its visibility ran out was handed out again, and this receipt is
        // stale: the copy handed out later is acknowledged by whoever got it.
        if let Err(error) = queue.ack(&receipt).await {
            tracing::warn!(%error, "command not acknowledged; it will be delivered again");
        }
    }
}
