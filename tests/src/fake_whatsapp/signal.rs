//! The Signal encryption a sender does for one message to a linked device: a fresh X3DH session
//! and its first `pkmsg` (the phone's key share, a contact's direct message, a sender-key
//! distribution), and a one-message sender-key chain for a group or status `skmsg`.
//!
//! # What whatsapp-rust 0.7.0 accepts (its `message::receive` and wacore-libsignal)
//!
//! - A device's registration payload carries its identity, registration id and signed pre-key
//!   (`e_ident`, `e_regid`, `e_skey_*`): enough for X3DH without any one-time pre-key, so the
//!   server never needs the pre-keys the device uploads.
//! - Every message here opens a new session (new base key), and the client takes that as the
//!   sender restarting its session. The sender's identity key must stay the same across messages
//!   (else the client clears the old one as an "untrusted identity" first), so callers keep it.
//! - A plaintext is the protobuf `Message` padded as `MessageUtils::encode_and_pad` does
//!   (`<enc v="2">`). The sender's own registration id travels inside the `pkmsg` and is not
//!   checked; any stable value does.
//! - A `skmsg` decrypts only with a sender key the device got beforehand in a
//!   `SenderKeyDistributionMessage` (libsignal's serialized form, inside a `Message`'s
//!   `sender_key_distribution_message`) from the same sender and chat. A fresh chain per message
//!   is fine: the client keeps several chains per (chat, sender) and picks one by its id.

use std::collections::HashMap;

use whatsapp_rust::wacore::libsignal::protocol::{
    Direction, IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyBundle,
    ProtocolAddress, PublicKey, SenderKeyName, SenderKeyRecord, SenderKeyStore, SessionRecord, SessionStore,
    SignalProtocolError, UsePQRatchet, create_sender_key_distribution_message, group_encrypt,
    message_encrypt, process_prekey_bundle,
};
use whatsapp_rust::wacore::messages::MessageUtils;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::waproto::whatsapp::client_payload::DevicePairingRegistrationData;

use super::FakeError;

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

/// The serialized `pkmsg` carrying `message` from the holder of `sender` (an identity key) to
/// device `device` of the account `recipient` (digits), over a session opened just for it.
pub(crate) async fn prekey_message(
    sender: &KeyPair,
    recipient: &str,
    device: u16,
    keys: &DeviceKeys,
    message: &wa::Message,
) -> Result<Vec<u8>, FakeError> {
    let crypto = |e: SignalProtocolError| FakeError::Crypto(format!("pkmsg: {e}"));
    let mut store = SenderStore::new(sender);
    let address = ProtocolAddress::new(recipient, u32::from(device).into());
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
    let plaintext = MessageUtils::encode_and_pad(message);
    let ciphertext =
        message_encrypt(&plaintext, &address, &mut store, &mut identities).await.map_err(crypto)?;
    Ok(ciphertext.serialize().to_vec())
}

/// A sender's key for one chat, used for one message: the distribution the recipient needs first
/// (libsignal-serialized) and the `skmsg` of `message`.
pub(crate) struct SenderKeyed {
    pub(crate) distribution: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
}

/// Encrypts `message` with a new sender-key chain of `sender` (a JID) in `chat` (a JID).
pub(crate) async fn sender_key_message(
    chat: &str,
    sender: &str,
    message: &wa::Message,
) -> Result<SenderKeyed, FakeError> {
    let crypto = |e: SignalProtocolError| FakeError::Crypto(format!("skmsg: {e}"));
    let name = SenderKeyName::new(chat.to_owned(), sender.to_owned());
    let mut store = SenderKeys::default();
    let mut rng = rand::make_rng::<rand::rngs::StdRng>();
    let distribution =
        create_sender_key_distribution_message(&name, &mut store, &mut rng).await.map_err(crypto)?;
    let plaintext = MessageUtils::encode_and_pad(message);
    let ciphertext = group_encrypt(&mut store, &name, &plaintext, &mut rng).await.map_err(crypto)?;
    Ok(SenderKeyed {
        distribution: distribution.serialized().to_vec(),
        ciphertext: ciphertext.serialized().to_vec(),
    })
}

/// The sender's Signal state for one message: its identity and the one session it opens. Split in
/// two because libsignal takes the session and identity stores as separate `&mut`.
struct SenderStore {
    sessions: HashMap<String, SessionRecord>,
    identity: IdentityKeyPair,
}

struct SenderIdentities {
    identity: IdentityKeyPair,
    known: HashMap<String, IdentityKey>,
}

impl SenderStore {
    fn new(sender: &KeyPair) -> Self {
        Self { sessions: HashMap::new(), identity: IdentityKeyPair::from(sender.clone()) }
    }

    fn identities(&self) -> SenderIdentities {
        SenderIdentities { identity: self.identity.clone(), known: HashMap::new() }
    }
}

type SignalResult<T> = Result<T, SignalProtocolError>;

#[async_trait::async_trait]
impl SessionStore for SenderStore {
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
impl IdentityKeyStore for SenderIdentities {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.identity.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        // Only travels inside the pkmsg; the recipient does not check it.
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

/// The sender-key chains of one message.
#[derive(Default)]
struct SenderKeys(HashMap<SenderKeyName, SenderKeyRecord>);

#[async_trait::async_trait]
impl SenderKeyStore for SenderKeys {
    async fn store_sender_key(&mut self, name: &SenderKeyName, record: SenderKeyRecord) -> SignalResult<()> {
        self.0.insert(name.clone(), record);
        Ok(())
    }

    async fn load_sender_key(&self, name: &SenderKeyName) -> SignalResult<Option<SenderKeyRecord>> {
        Ok(self.0.get(name).cloned())
    }
}
