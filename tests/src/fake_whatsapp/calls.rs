//! Voice calls: the server relays a caller's `<offer>` to a logged-in device and records how the
//! device answers it. Only signaling; no relay, no media, no call key.
//!
//! # What whatsapp-rust 0.7.0 needs (its `CallHandler` and wacore's `parse_call_stanza`)
//!
//! - The offer is `<call from=caller id t><offer call-id call-creator>[<audio enc rate/>…]</offer>
//!   </call>`. `from` and `t` are required on `<call>`, `call-id` and `call-creator` on the
//!   action; anything missing drops the stanza with only a warning in the client's log. The client
//!   parses the attributes it knows and ignores the rest.
//! - No `offline` attribute: with it the offer counts as an offline-queue replay and surfaces as
//!   `MissedCall` instead of `IncomingCall`. Nor a `<group_info>` child, which makes a group call.
//! - Without the client's `voip` features no `<enc>` (call key) or `<relay>` is needed: the event
//!   carries the signaling fields only, and `Voip::reject_call` works without them.
//! - The device answers an offer with two stanzas and waits on neither: the offer receipt
//!   `<receipt to=caller id=<the <call>'s id> from=<own pn with device>><offer call-id
//!   call-creator/></receipt>`, which the server acks, then the transport `<ack class="call"
//!   id to=caller>` (any `<call>`, `<receipt>` or `<notification>` with `id` and `from` gets one).
//! - `reject_call(call_id, peer, creator)` sends `<call to=peer id=<request id>><reject call-id
//!   call-creator count="0"/></call>`, fire-and-forget. The server acks a client's `<call>` with
//!   `<ack class="call" type=<action tag> id>`; the client awaits that ack only for the actions
//!   that expect an answer in it (e.g. `link_create`) and quietly drops the others.

use tokio::sync::oneshot;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;

use super::connection::Command;
use super::stanzas::{attr, stanza_id, unix_now};
use super::{FakeError, FakeWhatsApp, Shared, check_phone};

/// The codecs a phone offers for a voice call: Opus, narrow and wide band.
const OFFER_AUDIO_RATES: [&str; 2] = ["8000", "16000"];

impl FakeWhatsApp {
    /// Plays a caller: `from` (digits, e.g. "5511888888888") rings `phone`'s logged-in device with
    /// a voice call `call_id` it created. The device reports `Event::IncomingCall` with
    /// `CallAction::Offer`, `from` and `call_creator` both `<from>@s.whatsapp.net`. Resolves once
    /// the offer is on the socket; `UnknownAccount`/`NotConnected` when there is no device to ring.
    pub async fn offer_call(&self, phone: &str, from: &str, call_id: &str) -> Result<(), FakeError> {
        check_phone(from)?;
        let conn = self.shared.live_conn(phone)?;
        let caller = format!("{from}@s.whatsapp.net");
        let (sent, on_socket) = oneshot::channel();
        self.shared.command(conn, Command::Send { stanza: offer(&caller, call_id), sent }).await?;
        on_socket.await.map_err(|_| FakeError::ConnectionGone)
    }

    /// The call ids of the `<reject>`s `phone`'s devices sent, in order.
    pub fn call_rejections(&self, phone: &str) -> Vec<String> {
        self.shared.lock().accounts.get(phone).map(|a| a.call_rejections.clone()).unwrap_or_default()
    }
}

/// `<call from=caller id t><offer call-id call-creator><audio enc="opus" rate/>…</offer></call>`:
/// a one-to-one voice call the caller placed, live (no `offline`).
fn offer(caller: &str, call_id: &str) -> Node {
    let audio = OFFER_AUDIO_RATES
        .map(|rate| NodeBuilder::new("audio").attr("enc", "opus").attr("rate", rate).build());
    NodeBuilder::new("call")
        .attr("from", caller)
        .attr("id", stanza_id())
        .attr("t", unix_now().to_string())
        .children([NodeBuilder::new("offer")
            .attr("call-id", call_id)
            .attr("call-creator", caller)
            .children(audio)
            .build()])
        .build()
}

/// What the server does with a `<call>` a device of `phone` sent: records a `<reject>` and acks
/// the stanza (`<ack class="call" type=<action>>`). `None` for a stanza without an id.
pub(crate) fn on_device_call(shared: &Shared, phone: &str, call: &Node) -> Option<Node> {
    let action = call.children().and_then(|c| c.first())?;
    if action.tag == "reject"
        && let Some(call_id) = attr(action, "call-id")
    {
        if let Some(account) = shared.lock().accounts.get_mut(phone) {
            account.call_rejections.push(call_id);
        }
        shared.changed();
    }
    server_ack(call, "call", Some(action.tag.as_ref()))
}

/// The server's ack of a `<receipt>` a device sent (e.g. `<receipt><offer/>` for an offer): the
/// receipt's id, `class="receipt"`, `from` its recipient, and its `type` if it had one.
pub(crate) fn on_device_receipt(receipt: &Node) -> Option<Node> {
    server_ack(receipt, "receipt", attr(receipt, "type").as_deref())
}

/// `<ack id class from=<stanza's to> [type]>`, as the server confirms what a client sent.
fn server_ack(stanza: &Node, class: &str, kind: Option<&str>) -> Option<Node> {
    let id = attr(stanza, "id")?;
    let mut ack = NodeBuilder::new("ack").attr("id", id).attr("class", class);
    if let Some(to) = attr(stanza, "to") {
        ack = ack.attr("from", to);
    }
    if let Some(kind) = kind {
        ack = ack.attr("type", kind);
    }
    Some(ack.build())
}
