//! Builders of the stanzas the fake server sends, and small readers of the ones it receives.
//!
//! Only shapes are known here; when to send what is [`super::connection`]'s business.

use std::time::{SystemTime, UNIX_EPOCH};

use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::{Node, NodeContent};

/// The server's own address, as the client expects it in `from` of server IQs.
pub(crate) const SERVER: &str = "s.whatsapp.net";

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A fresh stanza id. Only needs to be unique per connection; the client matches answers by id.
pub(crate) fn stanza_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

pub(crate) fn attr(node: &Node, name: &str) -> Option<String> {
    node.attrs.get(name).map(|v| v.as_str().into_owned())
}

pub(crate) fn child<'a>(node: &'a Node, tag: &str) -> Option<&'a Node> {
    node.get_optional_child(tag)
}

pub(crate) fn bytes_of(node: &Node) -> Option<&[u8]> {
    match &node.content {
        Some(NodeContent::Bytes(bytes)) => Some(bytes),
        Some(NodeContent::String(text)) => Some(text.as_bytes()),
        _ => None,
    }
}

/// `<iq type="result" id=.. from="s.whatsapp.net">` with optional children: the answer the client
/// waits for on every IQ it sends (it times out after 75 s otherwise).
pub(crate) fn iq_result(id: &str, children: Vec<Node>) -> Node {
    let builder = NodeBuilder::new("iq").attr("type", "result").attr("id", id).attr("from", SERVER);
    if children.is_empty() { builder.build() } else { builder.children(children).build() }
}

/// `<iq type="error">` with `<error code text>`.
pub(crate) fn iq_error(id: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attr("type", "error")
        .attr("id", id)
        .attr("from", SERVER)
        .children([NodeBuilder::new("error").attr("code", code.to_string()).attr("text", text).build()])
        .build()
}

/// The QR refs that make the client show codes; it shows one per ref, 60 s for the first and
/// 20 s for each later one, then gives up. The `from` must be the server or the client ignores it.
pub(crate) fn pair_device(refs: &[String]) -> Node {
    let refs = refs.iter().map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build());
    NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "set")
        .attr("id", stanza_id())
        .attr("xmlns", "md")
        .children([NodeBuilder::new("pair-device").children(refs).build()])
        .build()
}

/// Where a paired device lives: its phone-number JID and its LID, both with the device number.
pub(crate) struct DeviceAddress<'a> {
    pub(crate) phone: &'a str,
    pub(crate) lid: &'a str,
    pub(crate) device: u16,
}

impl DeviceAddress<'_> {
    pub(crate) fn jid(&self) -> String {
        format!("{}:{}@s.whatsapp.net", self.phone, self.device)
    }

    pub(crate) fn lid_jid(&self) -> String {
        format!("{}:{}@lid", self.lid, self.device)
    }
}

/// The phone's answer to a scanned QR or an accepted pairing code, relayed by the server: the
/// signed device identity plus the addresses the new device will log in as.
pub(crate) fn pair_success(
    id: &str,
    address: &DeviceAddress<'_>,
    device_identity: Vec<u8>,
    key_index: u32,
) -> Node {
    NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "set")
        .attr("id", id)
        .attr("xmlns", "md")
        .attr("t", unix_now().to_string())
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device-identity")
                    .attr("key-index", key_index.to_string())
                    .bytes(device_identity)
                    .build(),
                NodeBuilder::new("platform").attr("name", "android").build(),
                NodeBuilder::new("device").attr("jid", address.jid()).attr("lid", address.lid_jid()).build(),
            ])
            .build()])
        .build()
}

/// Stage 2 of pairing by code, sent when the user typed the code on the phone.
pub(crate) fn primary_hello(
    wrapped_primary_ephemeral: &[u8],
    primary_identity: &[u8],
    pairing_ref: &[u8],
) -> Node {
    NodeBuilder::new("notification")
        .attr("from", SERVER)
        .attr("type", "link_code_companion_reg")
        .attr("id", stanza_id())
        .attr("t", unix_now().to_string())
        .children([NodeBuilder::new("link_code_companion_reg")
            .attr("stage", "primary_hello")
            .children([
                NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                    .bytes(wrapped_primary_ephemeral.to_vec())
                    .build(),
                NodeBuilder::new("primary_identity_pub").bytes(primary_identity.to_vec()).build(),
                NodeBuilder::new("link_code_pairing_ref").bytes(pairing_ref.to_vec()).build(),
            ])
            .build()])
        .build()
}

/// The restart the server asks for after pairing; the client reconnects at once and logs in.
pub(crate) fn stream_restart() -> Node {
    NodeBuilder::new("stream:error").attr("code", "515").build()
}

/// Login accepted. `lid` is where the client learns its LID on a login.
pub(crate) fn success(address: &DeviceAddress<'_>) -> Node {
    NodeBuilder::new("success")
        .attr("t", unix_now().to_string())
        .attr("lid", address.lid_jid())
        .attr("props", "1")
        .attr("location", "local")
        .attr("creation", unix_now().to_string())
        .build()
}

/// End of the offline backlog: the client waits for it (up to 60 s) before `Connected`.
pub(crate) fn offline_drained() -> Node {
    NodeBuilder::new("ib").children([NodeBuilder::new("offline").attr("count", "0").build()]).build()
}

/// The account's push name, as the server tells a device about account changes.
pub(crate) fn account_push_name(phone: &str, push_name: &str) -> Node {
    NodeBuilder::new("notification")
        .attr("from", format!("{phone}@s.whatsapp.net"))
        .attr("type", "account_sync")
        .attr("id", stanza_id())
        .attr("t", unix_now().to_string())
        .attr("pushname", push_name)
        .build()
}

/// Login refused with a `<failure reason>`; `extra` adds e.g. a temporary ban's code and expiry.
pub(crate) fn failure(reason: u16, extra: &[(&'static str, String)]) -> Node {
    let mut builder =
        NodeBuilder::new("failure").attr("reason", reason.to_string()).attr("location", "local");
    for (name, value) in extra {
        builder = builder.attr(name, value.clone());
    }
    builder.build()
}

/// The device was unlinked from the phone.
pub(crate) fn device_removed() -> Node {
    NodeBuilder::new("stream:error")
        .attr("code", "401")
        .children([NodeBuilder::new("conflict").attr("type", "device_removed").build()])
        .build()
}

/// Another login of the same device took over.
pub(crate) fn replaced() -> Node {
    NodeBuilder::new("stream:error")
        .children([NodeBuilder::new("conflict").attr("type", "replaced").build()])
        .build()
}

/// An app-state sync answer carrying no patches for each requested collection: the account
/// has no app state yet, so there is nothing to decrypt and each collection counts as synced.
pub(crate) fn empty_app_state(id: &str, request: &Node) -> Node {
    let collections = request
        .get_optional_child("sync")
        .and_then(Node::children)
        .unwrap_or_default()
        .iter()
        .filter(|c| c.tag == "collection")
        .filter_map(|c| attr(c, "name"))
        .map(|name| NodeBuilder::new("collection").attr("name", name).build());
    iq_result(id, vec![NodeBuilder::new("sync").children(collections).build()])
}
