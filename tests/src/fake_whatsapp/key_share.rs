//! The phone's first end-to-end message to a newly linked device: the app-state sync key share.
//!
//! After a fresh pairing the client waits up to 10 s for this share before it syncs its critical
//! app-state collections; sending it makes `Connected` come in well under a second. The message is
//! a real Signal `pkmsg`, built with wacore-libsignal's X3DH and double ratchet from the keys the
//! device registered with (identity, signed pre-key; no one-time pre-key needed), from the phone's
//! identity (the same key that signed the device identity). The client accepts a share only from
//! its own account; it does not check the protocol-message type.

use std::collections::HashMap;

use whatsapp_rust::wacore::libsignal::protocol::{
    Direction, IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyBundle,
    ProtocolAddress, PublicKey, SessionRecord, SessionStore, SignalProtocolError, UsePQRatchet,
    message_encrypt, process_prekey_bundle,
};
use whatsapp_rust::wacore::messages::MessageUtils;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::waproto::buffa::MessageField;
use whatsapp_rust::waproto::whatsapp::client_payload::DevicePairingRegistrationData;
use whatsapp_rust::waproto::whatsapp::{self as wa, message};

use super::FakeError;
use super::stanzas::{stanza_id, unix_now};

/// A companion's Signal identity and signed pre-key, from its registration payload
/// (`e_regid`, `e_ident`, `e_skey_*`): enough for an X3DH session without a one-time pre-key.
#[derive(Clone, Debug)]
pub(crate) struct DeviceKeys {
    identity: [u8; 32],
    registration_id: u32,
    signed_pre_key_id: u32,
    signed_pre_key: [u8; 32],
    signed_pre_key_signature: Vec<u8>,
}

impl DeviceKeys {
    pub(crate) fn from_registration(data: &DevicePairingRegistrationData) -> Option<Self> {
        Some(Self {
            identity: data.e_ident.as_deref()?.try_into().ok()?,
            registration_id: be_uint(data.e_regid.as_deref()?)?,
            signed_pre_key_id: be_uint(data.e_skey_id.as_deref()?)?,
            signed_pre_key: data.e_skey_val.as_deref()?.try_into().ok()?,
            signed_pre_key_signature: data.e_skey_sig.clone()?,
        })
    }
}

/// A big-endian unsigned integer of up to 4 bytes (the registration id is 4, the key id 3).
fn be_uint(bytes: &[u8]) -> Option<u32> {
    (bytes.len() <= 4).then(|| bytes.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)))
}

/// The `<message>` carrying a fresh app-state sync key from the phone of `phone` (its device 0,
/// identity `account`) to its linked device `device`.
pub(crate) async fn key_share_message(
    account: &KeyPair,
    phone: &str,
    device: u16,
    keys: &DeviceKeys,
) -> Result<Node, FakeError> {
    let crypto = |e: SignalProtocolError| FakeError::Crypto(format!("key share: {e}"));
    let mut store = PhoneStore::new(account);
    let address = ProtocolAddress::new(phone, u32::from(device).into());
    let signed_pre_key = PublicKey::from_djb_public_key_bytes(&keys.signed_pre_key)
        .map_err(|e| FakeError::Crypto(format!("signed pre-key: {e}")))?;
    let identity = PublicKey::from_djb_public_key_bytes(&keys.identity)
        .map_err(|e| FakeError::Crypto(format!("device identity: {e}")))?;
    let bundle = PreKeyBundle::new(
        keys.registration_id,
        u32::from(device).into(),
        None,
        keys.signed_pre_key_id.into(),
        signed_pre_key,
        keys.signed_pre_key_signature.clone(),
        IdentityKey::new(identity),
    )
    .map_err(crypto)?;
    let mut rng = rand::make_rng::<rand::rngs::StdRng>();
    let mut identities = store.identities();
    process_prekey_bundle(&address, &mut store, &mut identities, &bundle, &mut rng, UsePQRatchet::No)
        .await
        .map_err(crypto)?;
    let plaintext = MessageUtils::encode_and_pad(&share());
    let ciphertext =
        message_encrypt(&plaintext, &address, &mut store, &mut identities).await.map_err(crypto)?;
    Ok(NodeBuilder::new("message")
        .attr("from", format!("{phone}@s.whatsapp.net"))
        .attr("id", stanza_id())
        .attr("t", unix_now().to_string())
        .attr("type", "protocol")
        .children([NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", "pkmsg")
            .bytes(ciphertext.serialize().to_vec())
            .build()])
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

/// The phone's Signal state for one message: its identity and the one session it opens. Split in
/// two because libsignal takes the session and identity stores as separate `&mut`.
struct PhoneStore {
    sessions: HashMap<String, SessionRecord>,
    identity: IdentityKeyPair,
}

struct PhoneIdentities {
    identity: IdentityKeyPair,
    known: HashMap<String, IdentityKey>,
}

impl PhoneStore {
    fn new(account: &KeyPair) -> Self {
        Self { sessions: HashMap::new(), identity: IdentityKeyPair::from(account.clone()) }
    }

    fn identities(&self) -> PhoneIdentities {
        PhoneIdentities { identity: self.identity.clone(), known: HashMap::new() }
    }
}

type SignalResult<T> = Result<T, SignalProtocolError>;

#[async_trait::async_trait]
impl SessionStore for PhoneStore {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.sessions.get(&address.to_string()).cloned())
    }

    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.sessions.contains_key(&address.to_string()))
    }

    async fn store_session(&mut self, address: &ProtocolAddress, record: SessionRecord) -> SignalResult<()> {
        self.sessions.insert(address.to_string(), record);
        Ok(())
    }
}

#[async_trait::async_trait]
impl IdentityKeyStore for PhoneIdentities {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.identity.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        // The phone's own registration id only travels inside the pkmsg; any stable value works.
        Ok(1)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let previous = self.known.insert(address.to_string(), *identity);
        Ok(IdentityChange::from_changed(previous.is_some_and(|p| p != *identity)))
    }

    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(true)
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.known.get(&address.to_string()).copied())
    }
}
