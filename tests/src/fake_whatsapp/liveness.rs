//! Which connection each device is logged in on, and the two controls built on that: overlapping
//! logins (counted, and answered with `conflict replaced` as WhatsApp does) and frozen
//! connections (open but silent).
//!
//! The fleet's promise is "never two clients for one instance": a host that lost an instance
//! must stop its client before the new owner's logs in. The server is where a broken promise
//! shows, so it counts, per account, every login of a device that overlapped a still logged-in
//! connection of the same device ([`FakeWhatsApp::overlapping_logins`]) and every `conflict
//! replaced` it sent because of one ([`FakeWhatsApp::replaced_conflicts`]). A login after the
//! older connection ended (the client closed it, or the server dropped it) is no overlap.
//!
//! A frozen connection ([`FakeWhatsApp::freeze`]) is what a session sees through a dead network
//! path or a hung peer: the TCP socket stays open, nothing comes back. The server sends no frame
//! at all (no IQ results, no pongs, no stanzas from the test, not even the close frame of a
//! stream error) and reads and discards whatever the client sends, so the client's writes never
//! block. How whatsapp-rust 0.7.0 notices is in the facts list of [`super`].
//!
//! It owns the bookkeeping only; the silent loop runs in the connection's own task
//! ([`stay_frozen`]).

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};
use whatsapp_rust::wacore_binary::Node;

use super::connection::{Command, ConnId, Ending, Step, forget};
use super::noise::NodeChannel;
use super::stanzas::attr;
use super::{FakeError, FakeWhatsApp, Shared};

/// The server's view of logged-in connections, and what it counted about them.
#[derive(Default)]
pub(super) struct Liveness {
    /// The connection each device (phone, device number) is logged in on: `<success>` sent,
    /// not yet ended. One at most, since a second login evicts the first.
    logged_in: HashMap<(String, u16), ConnId>,
    /// The frozen connections, with the phone they are logged in for.
    frozen: HashMap<ConnId, String>,
    counts: HashMap<String, Counts>,
}

/// What the server counted for one account, over the server's run.
#[derive(Clone, Copy, Default)]
struct Counts {
    overlapping_logins: usize,
    replaced_conflicts: usize,
    frozen_frames: usize,
    unanswered_pings: usize,
    answered_pings: usize,
}

impl Liveness {
    /// Records that `conn` logged in as `device` of `phone`; returns the older connection still
    /// logged in as the same device, if any, counting the overlap.
    pub(super) fn login(&mut self, phone: &str, device: u16, conn: ConnId) -> Option<ConnId> {
        let older = self.logged_in.insert((phone.to_owned(), device), conn).filter(|&older| older != conn);
        if older.is_some() {
            self.counts.entry(phone.to_owned()).or_default().overlapping_logins += 1;
        }
        older
    }

    /// The server handed an older connection of `phone` its `conflict replaced`.
    pub(super) fn replaced_conflict_sent(&mut self, phone: &str) {
        self.counts.entry(phone.to_owned()).or_default().replaced_conflicts += 1;
    }

    /// A logged-in connection of `phone` answered a keepalive ping (it was not frozen).
    pub(super) fn ping_answered(&mut self, phone: &str) {
        self.counts.entry(phone.to_owned()).or_default().answered_pings += 1;
    }

    /// `conn` ended, or the server stopped serving it: it is no longer logged in, nor frozen.
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.logged_in.retain(|_, logged_in| *logged_in != conn);
        self.frozen.remove(&conn);
    }

    fn connections_of(&self, phone: &str) -> Vec<ConnId> {
        self.logged_in.iter().filter(|((p, _), _)| p == phone).map(|(_, &conn)| conn).collect()
    }

    fn phone_of(&self, conn: ConnId) -> Option<String> {
        self.logged_in.iter().find(|(_, c)| **c == conn).map(|((phone, _), _)| phone.clone())
    }

    fn count(&self, phone: &str) -> Counts {
        self.counts.get(phone).copied().unwrap_or_default()
    }

    fn total(&self, of: impl Fn(&Counts) -> usize) -> usize {
        self.counts.values().map(of).sum()
    }
}

impl FakeWhatsApp {
    /// How many logins (`<success>`) of a device of `phone` came while another connection of the
    /// same device was still logged in (`<success>` sent, socket not yet closed). Each one made
    /// the server replace the older connection. A reconnect after the old socket ended is not
    /// one; nor is a login of another device of the account. Fleet tests assert 0.
    pub fn overlapping_logins(&self, phone: &str) -> usize {
        self.shared.lock().liveness.count(phone).overlapping_logins
    }

    /// How many `conflict replaced` the server sent `phone`'s older connections because of an
    /// overlapping login (one per overlap, unless the older socket closed first). Those asked
    /// for by [`Self::replace`] are not counted: a test that exercises the client's handling of
    /// a replaced stream does not break the fleet's invariant. One sent to a frozen connection
    /// counts (the server sent it; the dead path swallowed it).
    pub fn replaced_conflicts(&self, phone: &str) -> usize {
        self.shared.lock().liveness.count(phone).replaced_conflicts
    }

    /// [`Self::overlapping_logins`] summed over every account.
    pub fn total_overlapping_logins(&self) -> usize {
        self.shared.lock().liveness.total(|c| c.overlapping_logins)
    }

    /// [`Self::replaced_conflicts`] summed over every account.
    pub fn total_replaced_conflicts(&self) -> usize {
        self.shared.lock().liveness.total(|c| c.replaced_conflicts)
    }

    /// Freezes every logged-in connection of `phone`: the socket stays open but the server sends
    /// nothing more on it (no IQ results, no keepalive pongs, no stanza a test sends, which then
    /// fails with `ConnectionGone`), and reads and discards what the client sends. A stream error
    /// meant for it (logout, ban, a replacing login) is swallowed too, and the server then
    /// forgets the connection while keeping the socket open until the client closes it;
    /// [`Self::drop_socket`] still closes it. Later
    /// connections are not frozen, so a client that gives up on the socket logs in again.
    /// Resolves once each connection is silent; `NotConnected` if none is logged in.
    pub async fn freeze(&self, phone: &str) -> Result<(), FakeError> {
        self.tell_each(phone, |done| Command::Freeze { done }).await
    }

    /// Ends the freeze of `phone`'s frozen connections: they answer again from the next frame
    /// on (what was discarded stays unanswered). `NotConnected` if none is logged in.
    pub async fn thaw(&self, phone: &str) -> Result<(), FakeError> {
        self.tell_each(phone, |done| Command::Thaw { done }).await
    }

    /// Whether a connection of `phone` is frozen and still open (still logged in, or forgotten
    /// by the server but not yet closed by the client: see [`Self::freeze`]).
    pub fn frozen(&self, phone: &str) -> bool {
        self.shared.lock().liveness.frozen.values().any(|p| p == phone)
    }

    /// How many frames `phone`'s frozen connections read from the client and discarded.
    pub fn frozen_frames(&self, phone: &str) -> usize {
        self.shared.lock().liveness.count(phone).frozen_frames
    }

    /// How many of those were keepalive pings (`<iq xmlns="w:p" type="get">`), left unanswered.
    pub fn unanswered_pings(&self, phone: &str) -> usize {
        self.shared.lock().liveness.count(phone).unanswered_pings
    }

    /// How many keepalive pings `phone`'s logged-in connections answered. The client pings only
    /// when idle (nothing received for 15 s, no IQ of its own out), so a first answered ping
    /// says its post-login work is done.
    pub fn answered_pings(&self, phone: &str) -> usize {
        self.shared.lock().liveness.count(phone).answered_pings
    }

    /// Sends each logged-in connection of `phone` the command `make` builds and waits for each to
    /// act on it. A connection that closes meanwhile is skipped: it has nothing left to do.
    async fn tell_each(
        &self,
        phone: &str,
        make: impl Fn(oneshot::Sender<()>) -> Command,
    ) -> Result<(), FakeError> {
        let conns = self.shared.lock().liveness.connections_of(phone);
        if conns.is_empty() {
            return Err(FakeError::NotConnected(phone.to_owned()));
        }
        for conn in conns {
            let (done, acted) = oneshot::channel();
            if self.shared.command(conn, make(done)).await.is_ok() {
                let _ = acted.await;
            }
        }
        Ok(())
    }
}

/// Keeps connection `conn` silent until it is thawed (`Ok(None)`: serve again), the test drops
/// the socket (`Ok(Some(Ending::Drop))`) or the client closes it (`Err`, as any read failure).
/// Runs in the connection's task, so nothing else can write to the channel meanwhile. `done` is
/// the freeze's acknowledgement, sent once the silence started.
pub(super) async fn stay_frozen(
    shared: &Shared,
    conn: ConnId,
    channel: &mut NodeChannel,
    commands: &mut mpsc::Receiver<Command>,
    done: oneshot::Sender<()>,
) -> Step {
    let Some(phone) = ({
        let mut state = shared.lock();
        let phone = state.liveness.phone_of(conn);
        if let Some(phone) = &phone {
            state.liveness.frozen.insert(conn, phone.clone());
        }
        phone
    }) else {
        // Not logged in (any more): there is no device whose silence a test could observe.
        let _ = done.send(());
        return Ok(None);
    };
    shared.changed();
    let _ = done.send(());
    // Once the server forgot the connection (a stream error was swallowed) there is nothing to
    // thaw; the socket just stays open, as a half-dead TCP connection does.
    let mut forgotten = false;
    let mut inbox_open = true;
    loop {
        tokio::select! {
            node = channel.recv() => discard(shared, &phone, &node?),
            command = commands.recv(), if inbox_open => match command {
                Some(Command::Thaw { done }) if !forgotten => {
                    shared.lock().liveness.frozen.remove(&conn);
                    shared.changed();
                    let _ = done.send(());
                    return Ok(None);
                }
                Some(Command::Freeze { done } | Command::Thaw { done }) => {
                    let _ = done.send(());
                }
                Some(Command::End(_)) => {
                    forget(shared, conn);
                    // Still open and silent: `frozen` stays true until the client closes it.
                    shared.lock().liveness.frozen.insert(conn, phone.clone());
                    forgotten = true;
                }
                // What the test asked for: a TCP close is what the client does get.
                Some(Command::Drop) => {
                    forget(shared, conn);
                    return Ok(Some(Ending::Drop));
                }
                // Dropping the acknowledgements tells the test nothing reached the client.
                Some(Command::Send { .. } | Command::Pair { .. } | Command::CodeEntered { .. }) => {}
                None => inbox_open = false,
            },
        }
    }
}

/// Counts a frame a frozen connection read and will never answer.
fn discard(shared: &Shared, phone: &str, node: &Node) {
    let ping = node.tag.as_ref() == "iq"
        && attr(node, "xmlns").as_deref() == Some("w:p")
        && attr(node, "type").as_deref() == Some("get");
    let mut state = shared.lock();
    let counts = state.liveness.counts.entry(phone.to_owned()).or_default();
    counts.frozen_frames += 1;
    counts.unanswered_pings += usize::from(ping);
    drop(state);
    shared.changed();
}
