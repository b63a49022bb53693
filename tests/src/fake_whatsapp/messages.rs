//! Incoming text messages: the server relays what a contact sends to a logged-in device (in a
//! one-to-one chat, a group or as a status update) and records the device's read receipts.
//!
//! Each contact has its own Signal identity, made on its first message and kept for the server's
//! run; every message opens a new session to the device (see `signal`).
//!
//! # What whatsapp-rust 0.7.0 needs (its `message::receive` and wacore's `parse_message_info`)
//!
//! - `<message from id t type="text" notify>` with `<enc v="2" type="pkmsg">` children. `from`
//!   and a non-empty `id` are required; `notify` becomes the info's `push_name`, `t` its
//!   timestamp. A direct message comes `from` the contact's JID, which is both `chat` and
//!   `sender`.
//! - A group message comes `from` `<digits>@g.us` with the author in `participant` (required):
//!   `chat` is the group, `sender` the author, `is_group` set. A status comes `from`
//!   `status@broadcast`, also with `participant`; it too is `is_group`, and one older than 24 h
//!   (by `t`) is dropped silently.
//! - Group and status text is a `skmsg` (sender key). The device can only decrypt it after the
//!   sender's key distribution, so the stanza carries two encs, in this order: a `pkmsg` whose
//!   `Message` holds nothing but `sender_key_distribution_message` (`group_id` = the chat's JID;
//!   the client stores it and emits no event for it) and the `skmsg` with the text. A `skmsg`
//!   first is logged as a protocol violation; text in the `pkmsg` too would be dispatched twice.
//! - The client emits `Event::Messages` (a batch of one, `origin` Live) and sends a delivery
//!   receipt, `<receipt to=chat id [participant]>`; for a status it first sends `<ack
//!   class="message" to="status@broadcast" participant type="text">`, then `<receipt
//!   context="status" to="status@broadcast" participant id>`. It waits for nothing from the
//!   server, which acks every receipt anyway (`<ack class="receipt">`). A message it cannot
//!   decrypt gets a `<receipt type="retry">` instead, acked the same way and otherwise left
//!   alone, so a retry never loops. Receiving sends no usync or pre-key fetch; the IQs around it
//!   (pre-key upload, `encrypt` digest) take the usual empty result.
//! - `mark_as_read(chat, sender, ids)` sends `<receipt to=chat type="read" id=<first id> t
//!   [participant=sender]>` with the other ids as `<list><item id/></list>`, or
//!   `type="read-self"` when the account's read receipts are off; a status read adds
//!   `context="status"`. It waits for no answer.

use tokio::sync::oneshot;
use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::waproto::buffa::MessageField;
use whatsapp_rust::waproto::whatsapp::{self as wa, message};

use super::calls;
use super::connection::Command;
use super::signal::{DeviceKeys, prekey_message, sender_key_message};
use super::stanzas::{attr, child, unix_now};
use super::{ConnId, FakeError, FakeWhatsApp, Shared, check_phone};

/// Where a contact's message is posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chat {
    /// The one-to-one chat with the contact (`<contact>@s.whatsapp.net`).
    Direct,
    /// A group, by the digits of its id (e.g. "120363000000000001" for
    /// `120363000000000001@g.us`); the contact is the author.
    Group(String),
    /// The contact's status (`status@broadcast`).
    Status,
}

impl Chat {
    /// The chat's JID for a message from `sender` (a JID).
    fn jid(&self, sender: &str) -> String {
        match self {
            Chat::Direct => sender.to_owned(),
            Chat::Group(id) => format!("{id}@g.us"),
            Chat::Status => "status@broadcast".to_owned(),
        }
    }
}

impl FakeWhatsApp {
    /// Plays a contact: `from` (digits, e.g. "5511888888888") sends the text `text` with message
    /// id `message_id` to `phone`'s logged-in device, in `chat`. The device emits
    /// `Event::Messages` with `info.source.sender` = `<from>@s.whatsapp.net`, `info.push_name` =
    /// `from` and the text in `message.conversation`. Resolves once the stanza is on the socket;
    /// `UnknownAccount`/`NotConnected` when there is no device to deliver to.
    pub async fn deliver_text(
        &self,
        phone: &str,
        from: &str,
        chat: Chat,
        message_id: &str,
        text: &str,
    ) -> Result<(), FakeError> {
        check_phone(from)?;
        if let Chat::Group(id) = &chat
            && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
        {
            return Err(FakeError::BadGroup(id.clone()));
        }
        let (conn, device, keys, contact) = self.recipient(phone, from)?;
        let text = wa::Message { conversation: Some(text.to_owned()), ..Default::default() };
        let envelope = Envelope { contact: &contact, from, chat: &chat, message_id };
        let stanza = envelope.seal(phone, device, &keys, &text).await?;
        let (sent, on_socket) = oneshot::channel();
        self.shared.command(conn, Command::Send { stanza, sent }).await?;
        on_socket.await.map_err(|_| FakeError::ConnectionGone)
    }

    /// The message ids of the `<receipt type="read">` (and `read-self`) stanzas `phone`'s
    /// devices sent, in order; a receipt listing several ids adds them all.
    pub fn read_receipts(&self, phone: &str) -> Vec<String> {
        self.shared.lock().accounts.get(phone).map(|a| a.read_receipts.clone()).unwrap_or_default()
    }

    /// The live device of `phone` (connection, device number, keys) and the identity of the
    /// contact `from`, made on its first message.
    fn recipient(&self, phone: &str, from: &str) -> Result<(ConnId, u16, DeviceKeys, KeyPair), FakeError> {
        let mut state = self.shared.lock();
        let account = state.accounts.get(phone).ok_or_else(|| FakeError::UnknownAccount(phone.to_owned()))?;
        let live = account.live.as_ref().ok_or_else(|| FakeError::NotConnected(phone.to_owned()))?;
        let keys = account.devices.get(&live.device).and_then(|d| d.keys.clone());
        let keys = keys.ok_or_else(|| FakeError::Crypto("the device registered without its keys".into()))?;
        let (conn, device) = (live.conn, live.device);
        let contact = state
            .contacts
            .entry(from.to_owned())
            .or_insert_with(whatsapp_rust::wacore::crypto::generate_curve_key_pair)
            .clone();
        Ok((conn, device, keys, contact))
    }
}

/// Who sends a message where, under which id.
struct Envelope<'a> {
    /// The sender's identity key.
    contact: &'a KeyPair,
    /// The sender's number.
    from: &'a str,
    chat: &'a Chat,
    message_id: &'a str,
}

impl Envelope<'_> {
    /// The `<message>` carrying `content` to device `device` of `phone`: a `pkmsg` for a direct
    /// chat; for a group or status the sender-key distribution (`pkmsg`), then the `skmsg`.
    async fn seal(
        &self,
        phone: &str,
        device: u16,
        keys: &DeviceKeys,
        content: &wa::Message,
    ) -> Result<Node, FakeError> {
        let sender = format!("{}@s.whatsapp.net", self.from);
        let chat = self.chat.jid(&sender);
        let encs = match self.chat {
            Chat::Direct => {
                vec![enc("pkmsg", prekey_message(self.contact, phone, device, keys, content).await?)]
            }
            Chat::Group(_) | Chat::Status => {
                let keyed = sender_key_message(&chat, &sender, content).await?;
                let distribution = wa::Message {
                    sender_key_distribution_message: MessageField::some(
                        message::SenderKeyDistributionMessage {
                            group_id: Some(chat.clone()),
                            axolotl_sender_key_distribution_message: Some(keyed.distribution),
                        },
                    ),
                    ..Default::default()
                };
                let distribution = prekey_message(self.contact, phone, device, keys, &distribution).await?;
                vec![enc("pkmsg", distribution), enc("skmsg", keyed.ciphertext)]
            }
        };
        let mut stanza = NodeBuilder::new("message")
            .attr("from", chat.as_str())
            .attr("type", "text")
            .attr("id", self.message_id)
            .attr("t", unix_now().to_string())
            .attr("notify", self.from);
        if *self.chat != Chat::Direct {
            stanza = stanza.attr("participant", sender);
        }
        Ok(stanza.children(encs).build())
    }
}

fn enc(kind: &str, ciphertext: Vec<u8>) -> Node {
    NodeBuilder::new("enc").attr("v", "2").attr("type", kind).bytes(ciphertext).build()
}

/// What the server does with a `<receipt>` a device of `phone` sent: records the ids of a read
/// receipt and acks it (see [`calls::on_device_receipt`]). `None` for one without an id.
pub(crate) fn on_device_receipt(shared: &Shared, phone: &str, receipt: &Node) -> Option<Node> {
    if matches!(attr(receipt, "type").as_deref(), Some("read" | "read-self")) {
        let listed = child(receipt, "list")
            .and_then(Node::children)
            .unwrap_or_default()
            .iter()
            .filter(|item| item.tag == "item")
            .filter_map(|item| attr(item, "id"));
        let ids: Vec<String> = attr(receipt, "id").into_iter().chain(listed).collect();
        if let Some(account) = shared.lock().accounts.get_mut(phone) {
            account.read_receipts.extend(ids);
        }
        shared.changed();
    }
    calls::on_device_receipt(receipt)
}
