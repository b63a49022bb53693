//! A fake WhatsApp server for offline tests: a WebSocket server on 127.0.0.1 that a real
//! whatsapp-rust 0.7.0 client connects to, pairs with (by QR or by code), logs in through and is
//! then driven by the test (logout, bans, replaced streams, dropped sockets, incoming calls and
//! messages).
//!
//! It owns the server side of the protocol only: Noise responder and framing (`noise`), one task
//! per connection (`connection`), the phone's pairing crypto (`phone`), stanza shapes
//! (`stanzas`), the Signal encryption of what a sender sends a device (`signal`), the app-state
//! key the phone shares after pairing (`key_share`), voice-call signaling (`calls`: offers to a
//! device, its rejections), contacts' text messages (`messages`: direct, group and status, and
//! the device's read receipts) and which connection each device is logged in on (`liveness`:
//! overlapping logins counted and replaced, frozen connections). It knows nothing of Ryze. The client
//! must be built with whatsapp-rust's `danger-skip-cert-chain-verify` (through session-host's
//! `insecure-test-whatsapp`): the certificate chain here is self-made.
//!
//! # Protocol facts this server had to respect (whatsapp-rust 0.7.0)
//!
//! Found by running the real client against it; the surprising ones first.
//!
//! - While its push name is empty the client takes the pairing bootstrap path on *every* login,
//!   not just the first: it waits up to 10 s for the phone's app-state key share, then syncs the
//!   critical collections, and only then emits `Connected`. So the phone here does two things after
//!   a device's first login: it sends the key share (a real Signal `pkmsg`, see `key_share`),
//!   which cuts the first `Connected` from 10 s to well under one, and an `account_sync`
//!   notification with the push name, which puts later logins on the fast path and is also what
//!   makes the client send its first `<presence type="available">`.
//! - The key share needs no pre-key upload: the registration payload already carries the device's
//!   identity and signed pre-key, enough for X3DH. The client accepts a share from any device of
//!   its own account (here the phone number's device 0) and does not look at the message type.
//! - After `pair-success` the client sends `<pair-device-sign>` (an IQ result), then
//!   `<ib><unified_session>`, and only then marks the 515 restart as expected. A 515 that
//!   overtakes that makes it ignore the next `<success>`, so the restart waits for the unified
//!   session plus 200 ms (or one second after the signature, whichever is first).
//! - After its first login the client caches the server's static key and reconnects with Noise
//!   IK, so one static key per server run. The IK answer's payload is only decrypted to
//!   authenticate the transcript (any ciphertext would do; the chain is sent). An IK hello for a
//!   key that is not ours gets an XX-shaped answer, which the client takes as XXfallback, keeping
//!   its ephemeral ([`FakeWhatsApp::rotate_noise_key`]).
//! - `<failure reason=…>` is handled whenever it arrives, not only instead of `<success>`: 403
//!   gives `LoggedOut` with `AccountLocked` (`on_connect: true` either way), 402 with `code` and
//!   `expire` gives `TemporaryBan`. `<stream:error>` with any `<conflict>` but `replaced` is a
//!   logout; `replaced` is `StreamReplaced`.
//! - Every IQ needs an answer (the client gives up after 75 s and some steps stall behind it). An
//!   empty `result` is enough for nearly all, because the client only logs what it cannot parse;
//!   app-state syncs get empty collections, which count as synced.
//! - The client finishes its login only after `<ib><offline count=…/>`, which it expects after its
//!   `passive`/`active` IQ.
//! - One QR event per ref: 60 s for the first, 20 s for each later one; when they run out the
//!   client disconnects for good. Pairing by code runs PBKDF2 with 2^17 rounds on each side,
//!   which takes about a second per run in an unoptimised build.
//! - An incoming call is a `<call from t id><offer call-id call-creator/></call>`; without the
//!   client's `voip` features it needs no call key or relay to raise `IncomingCall`. The device
//!   acks it and sends an offer receipt; its `reject_call` is a `<call><reject/></call>` that
//!   expects nothing back (see `calls`).
//! - A contact's message needs no pre-key either, and no usync or group metadata: a direct one is
//!   a single `pkmsg`; a group or status one is a `pkmsg` with only the sender-key distribution,
//!   then the `skmsg`, with the author in `participant` (see `messages`). The device answers with a
//!   delivery `<receipt>` (a status also gets an `<ack class="message">`) and expects nothing back.
//! - A socket that stays open but silent (`liveness`'s freeze) is noticed by the keepalive alone
//!   (`keepalive.rs`, wacore `protocol::keepalive`). Every 15 to 30 s (drawn per tick) it skips the
//!   tick if anything arrived in the last 15 s; else, with no IQ of its own out, it pings with
//!   `<iq xmlns="w:p" type="get" to="s.whatsapp.net" id>` and waits 20 s for the result. Then, on
//!   that tick (also when an outstanding IQ held the ping back), it calls the socket dead if its
//!   first write since the last receive is over 20 s old, and reconnects at once: a WebSocket
//!   close, the socket dropped, a new dial with no backoff. That teardown counts as expected, so
//!   there is *no* `Disconnected` event (a failed ping is only logged); the next event is the new
//!   login's `Connected`. So: 35 to 65 s after the last frame received when idle (measured
//!   36 to 48 s after a freeze right after a pong), 20 to 50 s after the first unanswered write
//!   when busy (measured 23 to 46 s for a freeze right after `Connected`, whose app-state sync
//!   and pre-key upload were still out), then about 0.2 s to the next `Connected`. A host that
//!   must act within 60 s, or report the dead socket, needs a watchdog of its own.
//! - The first client write is `WA\x06\x03` (after an optional `ED` edge-routing pre-intro) plus a
//!   framed `HandshakeMessage`; later frames are a 3-byte length and ciphertext.

mod calls;
mod client_side;
mod connection;
mod key_share;
mod liveness;
mod messages;
mod noise;
mod phone;
mod signal;
mod stanzas;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore_binary::Node;

pub use client_side::{CLIENT_VERSION, RefuseHttp};
use connection::{Command, ConnId};
pub use messages::Chat;
pub use noise::NoisePattern;
use noise::ServerIdentity;
use phone::{CodeEntry, ScannedQr};
use signal::DeviceKeys;

/// The push name of an account until [`FakeWhatsApp::set_push_name`], unless its first device
/// registered with one (a client's `with_push_name`), which the account then adopts.
pub const DEFAULT_PUSH_NAME: &str = "Fake Phone";

/// What went wrong when a test drove the fake server.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("malformed QR string: {0}")]
    BadQr(String),
    #[error("a phone number is digits only, with country code: {0:?}")]
    BadPhone(String),
    #[error("a group id is digits (and dashes) only: {0:?}")]
    BadGroup(String),
    #[error("no connected client is showing QR ref {0:?}")]
    UnknownQr(String),
    #[error("no connected client asked for a pairing code for {0}")]
    NoCodeRequest(String),
    #[error("the pairing code does not open the companion's key bundle")]
    WrongCode,
    #[error("the client's connection is not waiting to pair")]
    NotPairing,
    #[error("no account {0}")]
    UnknownAccount(String),
    #[error("no device of {0} is connected")]
    NotConnected(String),
    #[error("no {what} within {within:?}")]
    Timeout { what: String, within: Duration },
    #[error("the client's connection ended")]
    ConnectionGone,
    #[error("{0}")]
    Crypto(String),
}

/// What a device asked for when it registered (paired), read from its registration payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Registration {
    /// `DeviceProps.history_sync_config.full_sync_days_limit`.
    pub full_sync_days: Option<u32>,
    /// `DeviceProps.history_sync_config.recent_sync_days_limit`.
    pub recent_sync_days: Option<u32>,
    /// `DeviceProps.history_sync_config.full_sync_size_mb_limit`.
    pub full_sync_size_mb: Option<u32>,
    /// `DeviceProps.require_full_sync`.
    pub require_full_sync: bool,
    /// `DeviceProps.os`.
    pub os: Option<String>,
    /// `DeviceProps.platform_type`, as its protobuf name (e.g. "CHROME").
    pub platform_type: Option<String>,
    /// The push name the client sent with its registration, if it had one.
    pub push_name: Option<String>,
}

/// A fake WhatsApp server on 127.0.0.1. Dropping it stops the server and closes every socket.
pub struct FakeWhatsApp {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept_loop: JoinHandle<()>,
}

impl FakeWhatsApp {
    /// Binds 127.0.0.1:0 and serves in the background. One Noise static key per server run.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener address");
        let shared = Arc::new(Shared::new());
        let accept_loop = tokio::spawn(accept_loop(listener, shared.clone()));
        Self { shared, addr, accept_loop }
    }

    /// `ws://127.0.0.1:<port>/ws/chat`
    pub fn url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    /// Plays the phone: scans the QR string a client emitted, as the account of `phone` (digits
    /// only, e.g. "5511999999999"); resolves once `pair-success` was sent (Err if no client waits
    /// for that QR). The client then signs, gets the 515 restart and logs in by itself.
    pub async fn scan_qr(&self, qr: &str, phone: &str) -> Result<(), FakeError> {
        check_phone(phone)?;
        let scanned = ScannedQr::parse(qr)?;
        let conn = self.shared.lock().qr_refs.get(&scanned.pairing_ref).copied();
        let conn = conn.ok_or_else(|| FakeError::UnknownQr(scanned.pairing_ref.clone()))?;
        let (done, answer) = oneshot::channel();
        let command = Command::Pair {
            phone: phone.to_owned(),
            identity: scanned.identity,
            adv_secret: scanned.adv_secret,
            done,
        };
        self.shared.command(conn, command).await?;
        answer.await.map_err(|_| FakeError::ConnectionGone)?
    }

    /// Plays the phone for pairing by code: the user typed `code` on the phone of `phone`.
    /// Resolves once `pair-success` was sent; `WrongCode` when the code does not match, `Timeout`
    /// when the client never answers `primary_hello` with its key bundle.
    pub async fn enter_pairing_code(&self, phone: &str, code: &str) -> Result<(), FakeError> {
        check_phone(phone)?;
        let request = self.shared.lock().code_requests.get(phone).cloned();
        let request = request.ok_or_else(|| FakeError::NoCodeRequest(phone.to_owned()))?;
        let code = code.to_owned();
        let wrapped = request.wrapped_companion_ephemeral.clone();
        let entry = tokio::task::spawn_blocking(move || CodeEntry::new(&code, &wrapped))
            .await
            .map_err(|e| FakeError::Crypto(format!("pairing code task: {e}")))??;
        let (done, answer) = oneshot::channel();
        let command =
            Command::CodeEntered { phone: phone.to_owned(), pairing_ref: request.pairing_ref, entry, done };
        self.shared.command(request.conn, command).await?;
        // The client runs PBKDF2 (2^17 rounds) before it answers; unoptimised that is seconds.
        let within = Duration::from_secs(30);
        match tokio::time::timeout(within, answer).await {
            Ok(outcome) => outcome.map_err(|_| FakeError::ConnectionGone)?,
            Err(_) => Err(FakeError::Timeout { what: "companion_finish".to_owned(), within }),
        }
    }

    /// Waits until a device of `phone` is logged in (`<success>` sent and offline drained).
    pub async fn wait_logged_in(&self, phone: &str, within: Duration) -> Result<(), FakeError> {
        self.wait_for(&format!("a login of {phone}"), within, || self.logged_in(phone)).await
    }

    /// Whether a device of `phone` is logged in right now (`<success>` sent, offline drained).
    pub fn logged_in(&self, phone: &str) -> bool {
        self.shared.lock().accounts.get(phone).is_some_and(|a| a.live.as_ref().is_some_and(|l| l.drained))
    }

    /// Waits until `condition` holds, re-checking it after every change the server records
    /// (logins, presences, unlinks, refused connections, ...). `what` names it in the error.
    pub async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        condition: impl Fn() -> bool,
    ) -> Result<(), FakeError> {
        let mut changes = self.shared.changes.subscribe();
        let holds = async {
            while !condition() {
                // The sender lives in `self.shared`, so this cannot fail while we wait.
                let _ = changes.changed().await;
            }
        };
        tokio::time::timeout(within, holds)
            .await
            .map_err(|_| FakeError::Timeout { what: what.to_owned(), within })
    }

    /// How many client connections are open (handshake done, not yet closed).
    pub fn open_connections(&self) -> usize {
        self.shared.lock().connections.len()
    }

    /// The Noise pattern of every handshake completed so far, in order.
    pub fn handshakes(&self) -> Vec<NoisePattern> {
        self.shared.lock().handshakes.clone()
    }

    /// Replaces the server's Noise static key, as a WhatsApp key rotation does: clients that
    /// cached the old one try IK, fail to reach us with it, and fall back to XXfallback.
    pub fn rotate_noise_key(&self) {
        *self.shared.identity.lock().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(ServerIdentity::generate());
    }

    /// How many logins (`<success>`) the account of `phone` has had (a reconnect adds one).
    pub fn logins(&self, phone: &str) -> usize {
        self.shared.lock().accounts.get(phone).map_or(0, |a| a.logins)
    }

    /// Unlinks `phone`'s device from the phone. The logged-in one gets `<stream:error code="401">
    /// <conflict type="device_removed"/>` on its socket, which is then closed; with none logged
    /// in, every linked device is unlinked silently. Either way an unlinked device's next login
    /// gets `<failure reason="401">`.
    pub async fn logout(&self, phone: &str) -> Result<(), FakeError> {
        let conn = {
            let mut state = self.shared.lock();
            let account =
                state.accounts.get_mut(phone).ok_or_else(|| FakeError::UnknownAccount(phone.to_owned()))?;
            match account.live.as_ref().map(|live| (live.conn, live.device)) {
                Some((conn, device)) => {
                    account.devices.remove(&device);
                    Some(conn)
                }
                None => {
                    account.devices.clear();
                    None
                }
            }
        };
        match conn {
            // A socket closing meanwhile is still logged out: its device is gone.
            Some(conn) => self.shared.command(conn, Command::End(stanzas::device_removed())).await.or(Ok(())),
            None => Ok(()),
        }
    }

    /// Locks the account (a permanent ban). Its live socket, if any, gets `<failure reason="403">`
    /// and is closed, and every later login gets the same answer instead of `<success>`. The
    /// client handles `<failure>` whenever it arrives, reporting `LoggedOut` with `AccountLocked`.
    pub async fn ban(&self, phone: &str) -> Result<(), FakeError> {
        self.refuse_account(phone, Refusal::Locked).await
    }

    /// Bans the account for `expire_secs` with ban `code` (e.g. 101): `<failure reason="402"
    /// code expire>` on the live socket and at every later login, until [`Self::unban`]. The
    /// client reports `TemporaryBan`.
    pub async fn temp_ban(&self, phone: &str, code: i32, expire_secs: u64) -> Result<(), FakeError> {
        self.refuse_account(phone, Refusal::TempBanned { code, expire_secs }).await
    }

    /// The name the account's user goes by, which its devices learn after their first login
    /// (an `account_sync` notification). Creates the account if needed.
    pub fn set_push_name(&self, phone: &str, name: &str) {
        let mut state = self.shared.lock();
        let account = state.accounts.entry(phone.to_owned()).or_insert_with(|| Account::new(phone));
        account.push_name = Some(name.to_owned());
    }

    /// Lifts a ban; the next login succeeds again.
    pub fn unban(&self, phone: &str) {
        if let Some(account) = self.shared.lock().accounts.get_mut(phone) {
            account.refusal = None;
        }
    }

    /// `<stream:error><conflict type="replaced"/>` on the live socket, then closes it; what the old
    /// socket gets when the same device logs in elsewhere. The server also does that by itself on
    /// an overlapping login, and counts those ([`Self::replaced_conflicts`]); this one is not.
    pub async fn replace(&self, phone: &str) -> Result<(), FakeError> {
        let conn = self.shared.live_conn(phone)?;
        self.shared.command(conn, Command::End(stanzas::replaced())).await
    }

    /// Closes the TCP connection of `phone`'s device without a stanza.
    pub async fn drop_socket(&self, phone: &str) -> Result<(), FakeError> {
        let conn = self.shared.live_conn(phone)?;
        self.shared.command(conn, Command::Drop).await
    }

    /// While true, new connections are closed as soon as they are accepted, so client retries fail.
    pub fn refuse_connections(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    /// How many connections were refused while [`Self::refuse_connections`] was on.
    pub fn refused_connections(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// What the device said at registration (pairing): its history sync request and the like.
    pub fn registration(&self, phone: &str) -> Option<Registration> {
        self.shared.lock().accounts.get(phone).and_then(|a| a.registration.clone())
    }

    /// Presence stanzas received from `phone`'s devices, in order ("available"/"unavailable").
    pub fn presences(&self, phone: &str) -> Vec<String> {
        self.shared.lock().accounts.get(phone).map(|a| a.presences.clone()).unwrap_or_default()
    }

    /// Whether a device of `phone` sent `remove-companion-device` (logout from the client side).
    pub fn unlinked(&self, phone: &str) -> bool {
        self.shared.lock().accounts.get(phone).is_some_and(|a| a.unlinked)
    }

    async fn refuse_account(&self, phone: &str, refusal: Refusal) -> Result<(), FakeError> {
        let (conn, failure) = {
            let mut state = self.shared.lock();
            let account =
                state.accounts.get_mut(phone).ok_or_else(|| FakeError::UnknownAccount(phone.to_owned()))?;
            account.refusal = Some(refusal.clone());
            (account.live.as_ref().map(|l| l.conn), refusal.failure())
        };
        match conn {
            // The socket may be closing on its own meanwhile; the refusal still holds at login.
            Some(conn) => self.shared.command(conn, Command::End(failure)).await.or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for FakeWhatsApp {
    fn drop(&mut self) {
        // The accept loop owns the connection tasks (a JoinSet), so aborting it ends them all.
        self.accept_loop.abort();
    }
}

/// Devices log in with the number as an integer (`ClientPayload.username`), so anything else
/// could pair but never log in.
fn check_phone(phone: &str) -> Result<(), FakeError> {
    let digits = !phone.is_empty() && phone.bytes().all(|b| b.is_ascii_digit()) && !phone.starts_with('0');
    if digits { Ok(()) } else { Err(FakeError::BadPhone(phone.to_owned())) }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((tcp, _)) = listener.accept().await else { continue };
        if shared.refuse.load(Ordering::SeqCst) {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            drop(tcp);
            shared.changed();
            continue;
        }
        connections.spawn(connection::serve(shared.clone(), tcp));
    }
}

/// Why the server refuses an account's logins.
#[derive(Clone, Debug)]
enum Refusal {
    Locked,
    TempBanned { code: i32, expire_secs: u64 },
}

impl Refusal {
    fn failure(&self) -> Node {
        match self {
            Refusal::Locked => stanzas::failure(403, &[]),
            Refusal::TempBanned { code, expire_secs } => {
                stanzas::failure(402, &[("code", code.to_string()), ("expire", expire_secs.to_string())])
            }
        }
    }
}

/// A WhatsApp account: the phone's identity and the companion devices linked to it.
struct Account {
    /// The account's LID user part; devices learn it from `pair-success` and `<success>`.
    lid: String,
    /// The phone's identity key: signs device identities and the app-state key share.
    identity: KeyPair,
    next_device: u16,
    /// Linked companions by device number.
    devices: HashMap<u16, LinkedDevice>,
    /// The name the phone's user goes by; a new device learns it after its first login.
    /// `None` until set or adopted from a registration (see [`DEFAULT_PUSH_NAME`]).
    push_name: Option<String>,
    logins: usize,
    presences: Vec<String>,
    unlinked: bool,
    /// Call ids of the `<reject>`s its devices sent, in order.
    call_rejections: Vec<String>,
    /// Message ids of the read receipts its devices sent, in order.
    read_receipts: Vec<String>,
    registration: Option<Registration>,
    refusal: Option<Refusal>,
    live: Option<LiveDevice>,
}

impl Account {
    fn new(phone: &str) -> Self {
        Self {
            lid: format!("1{phone}"),
            identity: whatsapp_rust::wacore::crypto::generate_curve_key_pair(),
            next_device: 1,
            devices: HashMap::new(),
            push_name: None,
            logins: 0,
            presences: Vec::new(),
            unlinked: false,
            call_rejections: Vec::new(),
            read_receipts: Vec::new(),
            registration: None,
            refusal: None,
            live: None,
        }
    }
}

/// A companion device linked to an account.
struct LinkedDevice {
    /// What the phone needs to message it (absent if its registration lacked the keys).
    keys: Option<DeviceKeys>,
    /// Whether the phone already welcomed it (app-state key share, push name).
    welcomed: bool,
}

/// The connection a device of the account is logged in on.
struct LiveDevice {
    conn: ConnId,
    device: u16,
    /// `<ib><offline>` was sent: the login is complete from the server's side.
    drained: bool,
}

/// A pairing-code request (`companion_hello`) waiting for the user to type the code.
#[derive(Clone)]
struct CodeRequest {
    conn: ConnId,
    wrapped_companion_ephemeral: Vec<u8>,
    pairing_ref: Vec<u8>,
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, Account>,
    /// The identity key of each contact (by number) that sent a message, kept for the run.
    contacts: HashMap<String, KeyPair>,
    qr_refs: HashMap<String, ConnId>,
    code_requests: HashMap<String, CodeRequest>,
    connections: HashMap<ConnId, mpsc::Sender<Command>>,
    liveness: liveness::Liveness,
    next_conn: ConnId,
    handshakes: Vec<NoisePattern>,
}

/// What the accept loop, the connections and the control surface share. The lock is a std mutex:
/// it is never held across an await.
struct Shared {
    /// Swapped only by [`FakeWhatsApp::rotate_noise_key`]; a handshake uses the key of its start.
    identity: Mutex<Arc<ServerIdentity>>,
    refuse: AtomicBool,
    refused: AtomicUsize,
    state: Mutex<State>,
    /// Bumped on every change a waiter may be looking for.
    changes: watch::Sender<()>,
}

impl Shared {
    fn new() -> Self {
        Self {
            identity: Mutex::new(Arc::new(ServerIdentity::generate())),
            refuse: AtomicBool::new(false),
            refused: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            changes: watch::Sender::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking connection task cannot leave the maps half-written in a way that matters
        // to a test more than the panic itself.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn identity(&self) -> Arc<ServerIdentity> {
        self.identity.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn changed(&self) {
        self.changes.send_replace(());
    }

    fn live_conn(&self, phone: &str) -> Result<ConnId, FakeError> {
        let state = self.lock();
        let account = state.accounts.get(phone).ok_or_else(|| FakeError::UnknownAccount(phone.to_owned()))?;
        account.live.as_ref().map(|l| l.conn).ok_or_else(|| FakeError::NotConnected(phone.to_owned()))
    }

    async fn command(&self, conn: ConnId, command: Command) -> Result<(), FakeError> {
        let sender = self.lock().connections.get(&conn).cloned().ok_or(FakeError::ConnectionGone)?;
        sender.send(command).await.map_err(|_| FakeError::ConnectionGone)
    }
}
