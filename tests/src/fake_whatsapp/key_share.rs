//! The phone's first end-to-end message to a newly linked device: the app-state sync key share.
//!
//! After a fresh pairing the client waits up to 10 s for this share before it syncs its critical
//! app-state collections; sending it makes `Connected` come in well under a second. The message is
//! a real Signal `pkmsg` (see `signal`) from the phone's identity, the same key that signed the
//! device identity. The client accepts a share only from its own account; it does not check the
//! protocol-message type.

use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::waproto::buffa::MessageField;
use whatsapp_rust::waproto::whatsapp::{self as wa, message};

use super::FakeError;
use super::signal::{DeviceKeys, prekey_message};
use super::stanzas::{stanza_id, unix_now};

/// The `<message>` carrying a fresh app-state sync key from the phone of `phone` (its device 0,
/// identity `account`) to its linked device `device`.
pub(crate) async fn key_share_message(
    account: &KeyPair,
    phone: &str,
    device: u16,
    keys: &DeviceKeys,
) -> Result<Node, FakeError> {
    let ciphertext = prekey_message(account, phone, device, keys, &share()).await?;
    Ok(NodeBuilder::new("message")
        .attr("from", format!("{phone}@s.whatsapp.net"))
        .attr("id", stanza_id())
        .attr("t", unix_now().to_string())
        .attr("type", "protocol")
        .children([NodeBuilder::new("enc").attr("v", "2").attr("type", "pkmsg").bytes(ciphertext).build()])
        .build())
}

/// A protocol message sharing one random app-state sync key.
fn share() -> wa::Message {
    let key = message::AppStateSyncKey {
        key_id: MessageField::some(message::AppStateSyncKeyId {
            key_id: Some(rand::random::<[u8; 6]>().to_vec()),
        }),
        key_data: MessageField::some(message::AppStateSyncKeyData {
            key_data: Some(rand::random::<[u8; 32]>().to_vec()),
            fingerprint: MessageField::some(message::AppStateSyncKeyFingerprint {
                raw_id: Some(rand::random()),
                current_index: Some(0),
                device_indexes: vec![0],
            }),
            timestamp: i64::try_from(unix_now() * 1000).ok(),
        }),
    };
    wa::Message {
        protocol_message: MessageField::some(message::ProtocolMessage {
            r#type: Some(message::protocol_message::Type::APP_STATE_SYNC_KEY_SHARE),
            app_state_sync_key_share: MessageField::some(message::AppStateSyncKeyShare { keys: vec![key] }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
