//! One task per client connection: the handshake, then either a new device's pairing (QR refs,
//! pairing code, `pair-success`, the 515 restart) or a paired device's login (`<success>`, answers
//! to its IQs, `<ib><offline>`, acks of its calls and receipts), plus the commands the test sends
//! through [`super::FakeWhatsApp`].
//!
//! A connection reads one node at a time and answers before reading the next, which keeps the
//! order of what the client sees identical to the order it asked in.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use whatsapp_rust::wacore::xml::DisplayableNode;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::waproto::buffa::{Enumeration as _, Message as _};
use whatsapp_rust::waproto::whatsapp::{ClientPayload, DeviceProps};

use super::calls;
use super::key_share::key_share_message;
use super::liveness;
use super::messages;
use super::noise::{LinkError, NodeChannel, public_bytes};
use super::phone::{self, CodeEntry};
use super::signal::DeviceKeys;
use super::stanzas::{self, DeviceAddress, attr, bytes_of, child, iq_result, stanza_id};
use super::{
    Account, CodeRequest, DEFAULT_PUSH_NAME, FakeError, LinkedDevice, LiveDevice, Registration, Shared,
};

pub(crate) type ConnId = u64;

/// How many QR refs a new device gets, as WhatsApp sends: about 2.5 minutes of codes.
const QR_REFS: usize = 6;

/// The pause between the client's unified session and the 515 restart: the client marks the
/// restart as expected only after sending it, and a 515 overtaking that breaks the next login.
const RESTART_AFTER_UNIFIED_SESSION: Duration = Duration::from_millis(200);

/// When the restart goes out anyway if no unified session arrives after `pair-device-sign`.
const RESTART_FALLBACK: Duration = Duration::from_secs(1);

/// What the test asks of one connection.
pub(crate) enum Command {
    /// The phone scanned this connection's QR code: send `pair-success`.
    Pair {
        phone: String,
        identity: [u8; 32],
        adv_secret: [u8; 32],
        done: oneshot::Sender<Result<(), FakeError>>,
    },
    /// The user typed the pairing code on the phone: send `primary_hello`, then pair once the
    /// companion's key bundle opens.
    CodeEntered {
        phone: String,
        pairing_ref: Vec<u8>,
        entry: CodeEntry,
        done: oneshot::Sender<Result<(), FakeError>>,
    },
    /// Send a stanza and carry on (e.g. a call offer); `sent` fires once it is on the socket and
    /// is dropped if the socket fails.
    Send { stanza: Node, sent: oneshot::Sender<()> },
    /// Send a stanza that ends the session, then close the socket.
    End(Node),
    /// Close the TCP connection without a word.
    Drop,
    /// Go silent until thawed (see [`super::FakeWhatsApp::freeze`]); `done` fires once silent.
    Freeze { done: oneshot::Sender<()> },
    /// End a freeze; `done` fires once the connection serves again (at once if not frozen).
    Thaw { done: oneshot::Sender<()> },
}

/// How long a client may take from TCP accept to a completed Noise handshake (the client's own
/// limit per handshake message is 20 s).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves one accepted TCP connection until either side ends it.
pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpStream) {
    let identity = shared.identity();
    let handshake = async {
        let (_, ws) = tokio_websockets::ServerBuilder::new().accept(tcp).await?;
        identity.accept(ws).await
    };
    let (channel, payload, pattern) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(error)) => {
            tracing::debug!(%error, "fake whatsapp: handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("fake whatsapp: handshake timed out");
            return;
        }
    };
    let (sender, commands) = mpsc::channel(8);
    let id = {
        let mut state = shared.lock();
        state.next_conn += 1;
        let id = state.next_conn;
        state.connections.insert(id, sender);
        state.handshakes.push(pattern);
        id
    };
    tracing::debug!(conn = id, %pattern, "fake whatsapp: handshake done");
    let mut connection = Connection {
        id,
        shared: shared.clone(),
        channel,
        commands,
        session: Session::Opening,
        restart_at: None,
    };
    let ending = connection.run(payload).await;
    forget(&shared, id);
    match ending {
        Ok(Ending::Close) => connection.channel.close().await,
        Ok(Ending::Drop) => {}
        Err(error) => tracing::debug!(conn = id, %error, "fake whatsapp: connection ended"),
    }
}

/// Drops everything the server knows about a connection: its command inbox, its QR refs and code
/// requests, and the login it carried. Done before a server-side close, so a test that sees the
/// client disconnect never sees the old login still live.
pub(super) fn forget(shared: &Shared, id: ConnId) {
    let mut state = shared.lock();
    state.connections.remove(&id);
    state.qr_refs.retain(|_, conn| *conn != id);
    state.code_requests.retain(|_, request| request.conn != id);
    state.liveness.forget(id);
    for account in state.accounts.values_mut() {
        if account.live.as_ref().is_some_and(|live| live.conn == id) {
            account.live = None;
        }
    }
    drop(state);
    shared.changed();
}

pub(super) enum Ending {
    /// Close with a WebSocket close frame, as after a stream error.
    Close,
    /// Drop the TCP connection.
    Drop,
}

enum Session {
    /// Handshake done, payload not yet acted on.
    Opening,
    /// A new device showing QR codes or waiting for its pairing code.
    Pairing(Box<Pairing>),
    /// A paired device, logged in.
    Device { phone: String, device: u16 },
}

struct Pairing {
    registration: Registration,
    keys: Option<DeviceKeys>,
    /// `pair-success` went out; the answer (`pair-device-sign`) carries this id.
    offer: Option<Offer>,
    code: Option<PendingCode>,
}

struct Offer {
    iq_id: String,
    phone: String,
    device: u16,
    identity: [u8; 32],
}

struct PendingCode {
    phone: String,
    entry: CodeEntry,
    done: oneshot::Sender<Result<(), FakeError>>,
}

struct Connection {
    id: ConnId,
    shared: Arc<Shared>,
    channel: NodeChannel,
    commands: mpsc::Receiver<Command>,
    session: Session,
    /// When the 515 restart goes out (set once the device signed its identity).
    restart_at: Option<Instant>,
}

/// What handling one node or command leaves to do: carry on (`None`) or end the connection.
pub(super) type Step = Result<Option<Ending>, LinkError>;

impl Connection {
    async fn run(&mut self, payload: ClientPayload) -> Result<Ending, LinkError> {
        let opened = if payload.device_pairing_data.as_option().is_some() {
            self.start_pairing(&payload).await?
        } else {
            self.login(&payload).await?
        };
        if let Some(ending) = opened {
            return Ok(ending);
        }
        loop {
            let restart_at = self.restart_at;
            let step = tokio::select! {
                node = self.channel.recv() => self.on_node(node?).await,
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => Ok(Some(Ending::Close)),
                },
                () = sleep_until(restart_at.unwrap_or_else(Instant::now)), if restart_at.is_some() => {
                    self.channel.send(&stanzas::stream_restart()).await?;
                    Ok(Some(Ending::Close))
                }
            };
            if let Some(ending) = step? {
                return Ok(ending);
            }
        }
    }

    async fn start_pairing(&mut self, payload: &ClientPayload) -> Step {
        let data = payload.device_pairing_data.as_option();
        let props = data
            .and_then(|d| d.device_props.as_deref())
            .and_then(|bytes| DeviceProps::decode_from_slice(bytes).ok())
            .unwrap_or_default();
        let history = props.history_sync_config.as_option();
        let registration = Registration {
            full_sync_days: history.and_then(|h| h.full_sync_days_limit),
            recent_sync_days: history.and_then(|h| h.recent_sync_days_limit),
            full_sync_size_mb: history.and_then(|h| h.full_sync_size_mb_limit),
            require_full_sync: props.require_full_sync.unwrap_or(false),
            os: props.os.clone(),
            platform_type: props.platform_type.map(|p| p.proto_name().to_owned()),
            push_name: payload.push_name.clone(),
        };
        let keys = data.and_then(DeviceKeys::from_registration);
        self.session = Session::Pairing(Box::new(Pairing { registration, keys, offer: None, code: None }));

        let refs: Vec<String> = (0..QR_REFS).map(|_| format!("2@{}", stanza_id())).collect();
        {
            let mut state = self.shared.lock();
            for pairing_ref in &refs {
                state.qr_refs.insert(pairing_ref.clone(), self.id);
            }
        }
        self.channel.send(&stanzas::pair_device(&refs)).await?;
        Ok(None)
    }

    async fn login(&mut self, payload: &ClientPayload) -> Step {
        let phone = payload.username.map(|u| u.to_string()).unwrap_or_default();
        let device = payload.device.and_then(|d| u16::try_from(d).ok()).unwrap_or(0);
        let (welcome, replaced) = {
            let mut guard = self.shared.lock();
            let state = &mut *guard;
            match state.accounts.get_mut(&phone) {
                Some(account) if account.devices.contains_key(&device) => match &account.refusal {
                    Some(refusal) => (Err(refusal.failure()), None),
                    None => {
                        account.live = Some(LiveDevice { conn: self.id, device, drained: false });
                        account.logins += 1;
                        let replaced = state.liveness.login(&phone, device, self.id);
                        (Ok(account.lid.clone()), replaced)
                    }
                },
                // An unknown or unlinked device: the server no longer knows its keys.
                _ => (Err(stanzas::failure(401, &[])), None),
            }
        };
        self.shared.changed();
        if let Some(old) = replaced {
            // A second login of the same device evicts the first, as WhatsApp does. An old socket
            // that closed meanwhile got nothing, so only a conflict that reached its inbox counts.
            if self.shared.command(old, Command::End(stanzas::replaced())).await.is_ok() {
                self.shared.lock().liveness.replaced_conflict_sent(&phone);
                self.shared.changed();
            }
        }
        match welcome {
            Ok(lid) => {
                let address = DeviceAddress { phone: &phone, lid: &lid, device };
                self.channel.send(&stanzas::success(&address)).await?;
                self.session = Session::Device { phone, device };
                Ok(None)
            }
            Err(failure) => {
                self.channel.send(&failure).await?;
                Ok(Some(Ending::Close))
            }
        }
    }

    async fn on_node(&mut self, node: Node) -> Step {
        tracing::trace!(conn = self.id, stanza = %DisplayableNode(&node), "fake whatsapp: received");
        match node.tag.as_ref() {
            "iq" => self.on_iq(node).await,
            "ib" if child(&node, "unified_session").is_some() => {
                if let Some(restart_at) = &mut self.restart_at {
                    *restart_at = (*restart_at).min(Instant::now() + RESTART_AFTER_UNIFIED_SESSION);
                }
                Ok(None)
            }
            "presence" => {
                self.record_presence(&node);
                Ok(None)
            }
            "call" | "receipt" => self.on_call_or_receipt(&node).await,
            _ => Ok(None),
        }
    }

    /// A logged-in device's `<call>` (say a `<reject>`) and read `<receipt>` are recorded, and
    /// every call and receipt gets the server's `<ack>`.
    async fn on_call_or_receipt(&mut self, node: &Node) -> Step {
        let Session::Device { phone, .. } = &self.session else { return Ok(None) };
        let ack = match node.tag.as_ref() {
            "call" => calls::on_device_call(&self.shared, phone, node),
            _ => messages::on_device_receipt(&self.shared, phone, node),
        };
        if let Some(ack) = ack {
            self.channel.send(&ack).await?;
        }
        Ok(None)
    }

    fn record_presence(&self, node: &Node) {
        let Session::Device { phone, .. } = &self.session else { return };
        // Presence with `to` is a subscription to someone else's, not our own state.
        let Some(kind) = attr(node, "type").filter(|k| k == "available" || k == "unavailable") else {
            return;
        };
        if attr(node, "to").is_some() {
            return;
        }
        if let Some(account) = self.shared.lock().accounts.get_mut(phone) {
            account.presences.push(kind);
        }
        self.shared.changed();
    }

    async fn on_iq(&mut self, node: Node) -> Step {
        let id = attr(&node, "id").unwrap_or_default();
        match attr(&node, "type").as_deref() {
            Some("result") | Some("error") => self.on_iq_answer(&node, &id).await,
            _ => self.on_iq_request(&node, &id).await,
        }
    }

    /// Answers to the server's own IQs; only `pair-success`'s matters.
    async fn on_iq_answer(&mut self, node: &Node, id: &str) -> Step {
        let Session::Pairing(pairing) = &mut self.session else { return Ok(None) };
        let Some(offer) = pairing.offer.take_if(|offer| offer.iq_id == id) else { return Ok(None) };
        let signed = child(node, "pair-device-sign")
            .and_then(|sign| child(sign, "device-identity"))
            .and_then(bytes_of);
        if !signed.is_some_and(|signed| phone::check_device_signature(signed, &offer.identity)) {
            tracing::debug!(conn = self.id, stanza = %DisplayableNode(node), "fake whatsapp: pairing refused");
            return Ok(Some(Ending::Close));
        }
        {
            let mut state = self.shared.lock();
            let account =
                state.accounts.entry(offer.phone.clone()).or_insert_with(|| Account::new(&offer.phone));
            account
                .devices
                .insert(offer.device, LinkedDevice { keys: pairing.keys.clone(), welcomed: false });
            if account.push_name.is_none() {
                account.push_name = pairing.registration.push_name.clone();
            }
            account.registration = Some(pairing.registration.clone());
            account.unlinked = false;
        }
        self.shared.changed();
        self.restart_at = Some(Instant::now() + RESTART_FALLBACK);
        Ok(None)
    }

    async fn on_iq_request(&mut self, node: &Node, id: &str) -> Step {
        let xmlns = attr(node, "xmlns").unwrap_or_default();
        let first = node.children().and_then(|c| c.first()).map(|c| c.tag.to_string()).unwrap_or_default();
        match (xmlns.as_str(), first.as_str()) {
            ("md", "link_code_companion_reg") => return self.on_pair_code_stage(node, id).await,
            ("md", "remove-companion-device") => self.unlink(),
            ("passive", "active") => {
                self.channel.send(&iq_result(id, Vec::new())).await?;
                self.channel.send(&stanzas::offline_drained()).await?;
                self.mark_drained();
                self.welcome_new_device().await?;
                return Ok(None);
            }
            ("w:sync:app:state", _) => {
                self.channel.send(&stanzas::empty_app_state(id, node)).await?;
                return Ok(None);
            }
            ("encrypt", "count") => {
                let count = NodeBuilder::new("count").attr("value", "50").build();
                self.channel.send(&iq_result(id, vec![count])).await?;
                return Ok(None);
            }
            ("w:p", _) => {
                if let Session::Device { phone, .. } = &self.session {
                    self.shared.lock().liveness.ping_answered(phone);
                    self.shared.changed();
                }
            }
            _ => {}
        }
        // Everything else (keepalive pings, pre-key uploads, props, privacy, usync, ...) gets an
        // empty result: the client only logs what it cannot parse, but stalls on silence.
        self.channel.send(&iq_result(id, Vec::new())).await?;
        Ok(None)
    }

    fn unlink(&self) {
        let Session::Device { phone, device } = &self.session else { return };
        if let Some(account) = self.shared.lock().accounts.get_mut(phone) {
            account.unlinked = true;
            account.devices.remove(device);
        }
        self.shared.changed();
    }

    fn mark_drained(&self) {
        let Session::Device { phone, .. } = &self.session else { return };
        if let Some(live) = self.shared.lock().accounts.get_mut(phone).and_then(|a| a.live.as_mut())
            && live.conn == self.id
        {
            live.drained = true;
        }
        self.shared.changed();
    }

    /// What the phone sends a device after its first login: the app-state key share (which ends
    /// the client's 10 s wait for it) and the account's push name (`account_sync`), without which
    /// the client would wait for the key again on every later login.
    async fn welcome_new_device(&mut self) -> Result<(), LinkError> {
        let Session::Device { phone, device } = &self.session else { return Ok(()) };
        let (phone, device) = (phone.clone(), *device);
        let welcome = {
            let mut state = self.shared.lock();
            let Some(account) = state.accounts.get_mut(&phone) else { return Ok(()) };
            let push_name = account.push_name.clone().unwrap_or_else(|| DEFAULT_PUSH_NAME.to_owned());
            let identity = account.identity.clone();
            match account.devices.get_mut(&device) {
                Some(linked) if !linked.welcomed => {
                    linked.welcomed = true;
                    Some((identity, push_name, linked.keys.clone()))
                }
                _ => None,
            }
        };
        let Some((identity, push_name, keys)) = welcome else { return Ok(()) };
        if let Some(keys) = keys {
            match key_share_message(&identity, &phone, device, &keys).await {
                Ok(message) => self.channel.send(&message).await?,
                Err(error) => tracing::warn!(%error, "fake whatsapp: no app-state key share"),
            }
        }
        self.channel.send(&stanzas::account_push_name(&phone, &push_name)).await
    }

    /// Pairing by code: `companion_hello` registers the request under the phone number and gets a
    /// ref; `companion_finish` carries the key bundle the phone opens to derive the adv secret.
    async fn on_pair_code_stage(&mut self, node: &Node, id: &str) -> Step {
        let Some(registration) = child(node, "link_code_companion_reg") else { return Ok(None) };
        let stage = attr(registration, "stage").unwrap_or_default();
        let Session::Pairing(pairing) = &mut self.session else {
            self.channel.send(&stanzas::iq_error(id, 400, "bad-request")).await?;
            return Ok(None);
        };
        match stage.as_str() {
            "companion_hello" => {
                let phone = attr(registration, "jid").and_then(|j| j.split('@').next().map(str::to_owned));
                let wrapped = child(registration, "link_code_pairing_wrapped_companion_ephemeral_pub")
                    .and_then(bytes_of);
                let (Some(phone), Some(wrapped)) = (phone, wrapped) else {
                    self.channel.send(&stanzas::iq_error(id, 400, "bad-request")).await?;
                    return Ok(None);
                };
                let pairing_ref = stanza_id().into_bytes();
                let request =
                    CodeRequest { conn: self.id, wrapped_companion_ephemeral: wrapped.to_vec(), pairing_ref };
                let answer = NodeBuilder::new("link_code_companion_reg")
                    .children([NodeBuilder::new("link_code_pairing_ref")
                        .bytes(request.pairing_ref.clone())
                        .build()])
                    .build();
                self.shared.lock().code_requests.insert(phone, request);
                self.channel.send(&iq_result(id, vec![answer])).await?;
            }
            "companion_finish" => {
                // The server accepts the bundle as a relay; whether the phone can open it is the
                // phone's business, reported to the test, never to the companion.
                self.channel.send(&iq_result(id, Vec::new())).await?;
                let bundle = child(registration, "link_code_pairing_wrapped_key_bundle").and_then(bytes_of);
                let (Some(pending), Some(bundle)) = (pairing.code.take(), bundle) else { return Ok(None) };
                let account_key = account_identity(&self.shared, &pending.phone);
                let outcome = match pending.entry.open_key_bundle(&account_key, bundle) {
                    Ok((identity, adv_secret)) => {
                        self.offer_pairing(&pending.phone, identity, adv_secret).await
                    }
                    Err(error) => Err(error),
                };
                let _ = pending.done.send(outcome);
            }
            _ => self.channel.send(&iq_result(id, Vec::new())).await?,
        }
        Ok(None)
    }

    async fn on_command(&mut self, command: Command) -> Step {
        match command {
            Command::Pair { phone, identity, adv_secret, done } => {
                let outcome = self.offer_pairing(&phone, identity, adv_secret).await;
                let _ = done.send(outcome);
                Ok(None)
            }
            Command::CodeEntered { phone, pairing_ref, entry, done } => {
                let Session::Pairing(pairing) = &mut self.session else {
                    let _ = done.send(Err(FakeError::NotPairing));
                    return Ok(None);
                };
                let account_key = account_identity(&self.shared, &phone);
                let hello = stanzas::primary_hello(
                    &entry.wrapped_ephemeral,
                    &public_bytes(&account_key),
                    &pairing_ref,
                );
                pairing.code = Some(PendingCode { phone, entry, done });
                self.channel.send(&hello).await?;
                Ok(None)
            }
            Command::Send { stanza, sent } => {
                self.channel.send(&stanza).await?;
                let _ = sent.send(());
                Ok(None)
            }
            Command::End(stanza) => {
                forget(&self.shared, self.id);
                self.channel.send(&stanza).await?;
                Ok(Some(Ending::Close))
            }
            Command::Drop => {
                forget(&self.shared, self.id);
                Ok(Some(Ending::Drop))
            }
            Command::Freeze { done } => {
                liveness::stay_frozen(&self.shared, self.id, &mut self.channel, &mut self.commands, done)
                    .await
            }
            Command::Thaw { done } => {
                let _ = done.send(());
                Ok(None)
            }
        }
    }

    /// Sends `pair-success` for a new device of `phone` whose identity key is `identity`.
    async fn offer_pairing(
        &mut self,
        phone: &str,
        identity: [u8; 32],
        adv_secret: [u8; 32],
    ) -> Result<(), FakeError> {
        let Session::Pairing(pairing) = &mut self.session else { return Err(FakeError::NotPairing) };
        if pairing.offer.is_some() {
            return Err(FakeError::NotPairing);
        }
        let (account_key, lid, device) = {
            let mut state = self.shared.lock();
            let account = state.accounts.entry(phone.to_owned()).or_insert_with(|| Account::new(phone));
            let device = account.next_device;
            account.next_device += 1;
            (account.identity.clone(), account.lid.clone(), device)
        };
        let key_index = u32::from(device);
        let signed_identity = phone::device_identity(&account_key, &identity, &adv_secret, key_index)?;
        let iq_id = stanza_id();
        let address = DeviceAddress { phone, lid: &lid, device };
        let stanza = stanzas::pair_success(&iq_id, &address, signed_identity, key_index);
        pairing.offer = Some(Offer { iq_id, phone: phone.to_owned(), device, identity });
        self.channel.send(&stanza).await.map_err(|_| FakeError::ConnectionGone)
    }
}

/// The phone's identity key for `phone`, creating the account on first use.
fn account_identity(shared: &Shared, phone: &str) -> whatsapp_rust::wacore::libsignal::protocol::KeyPair {
    shared.lock().accounts.entry(phone.to_owned()).or_insert_with(|| Account::new(phone)).identity.clone()
}
