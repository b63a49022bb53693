//! The primary phone's side of linking a companion device: reading a QR code, answering a pairing
//! code, and signing the new device's identity.
//!
//! The companion (whatsapp-rust) checks three things in `pair-success` (`PairUtils::do_pair_crypto`):
//! an HMAC-SHA256 over the signed identity keyed by the 32-byte "adv secret" only it and the phone
//! know (from the QR string, or derived from the pairing-code key exchange); the phone's account
//! signature (XEdDSA) over `[6, 0] ‖ details ‖ companion identity key`; and a `key_index` in the
//! details. It answers with its own device signature over `[6, 1] ‖ details ‖ its identity key ‖
//! account key`, which [`check_device_signature`] verifies.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use whatsapp_rust::wacore::crypto::hkdf_sha256_into;
use whatsapp_rust::wacore::libsignal::crypto::{aes_256_gcm_decrypt, hmac_sha256};
use whatsapp_rust::wacore::libsignal::protocol::{KeyPair, PublicKey};
use whatsapp_rust::wacore::pair_code::PairCodeUtils;
use whatsapp_rust::waproto::buffa::Message as _;
use whatsapp_rust::waproto::whatsapp::{
    ADVDeviceIdentity, ADVEncryptionType, ADVSignedDeviceIdentity, ADVSignedDeviceIdentityHMAC,
};

use super::FakeError;
use super::noise::public_bytes;
use super::stanzas::unix_now;

const ACCOUNT_SIGNATURE_PREFIX: [u8; 2] = [6, 0];
const DEVICE_SIGNATURE_PREFIX: [u8; 2] = [6, 1];

/// What the phone's camera reads from a companion's QR code:
/// `ref,noise key,identity key,adv secret[,client type]`, each key in base64.
pub(crate) struct ScannedQr {
    pub(crate) pairing_ref: String,
    pub(crate) identity: [u8; 32],
    pub(crate) adv_secret: [u8; 32],
}

impl ScannedQr {
    pub(crate) fn parse(qr: &str) -> Result<Self, FakeError> {
        let fields: Vec<&str> = qr.split(',').collect();
        let [pairing_ref, _noise, identity, adv_secret, ..] = fields[..] else {
            return Err(FakeError::BadQr("fewer than 4 comma-separated fields".into()));
        };
        let key = |field: &str, name: &str| -> Result<[u8; 32], FakeError> {
            BASE64
                .decode(field)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| FakeError::BadQr(format!("{name} is not 32 bytes of base64")))
        };
        Ok(Self {
            pairing_ref: pairing_ref.to_owned(),
            identity: key(identity, "identity key")?,
            adv_secret: key(adv_secret, "adv secret")?,
        })
    }
}

/// The `<device-identity>` bytes of `pair-success` for a companion whose identity key is
/// `companion_identity`, signed by the account's (the phone's) identity key.
pub(crate) fn device_identity(
    account: &KeyPair,
    companion_identity: &[u8; 32],
    adv_secret: &[u8; 32],
    key_index: u32,
) -> Result<Vec<u8>, FakeError> {
    let details = ADVDeviceIdentity {
        raw_id: Some(rand::random()),
        timestamp: Some(unix_now()),
        key_index: Some(key_index),
        account_type: Some(ADVEncryptionType::E2EE),
        device_type: Some(ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    let signed_message = [&ACCOUNT_SIGNATURE_PREFIX[..], &details, companion_identity].concat();
    let account_signature = account
        .private_key
        .calculate_signature(&signed_message, &mut rand::make_rng::<rand::rngs::StdRng>())
        .map_err(|e| FakeError::Crypto(format!("account signature: {e}")))?;
    let signed = ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(public_bytes(account).to_vec()),
        account_signature: Some(account_signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let hmac = hmac_sha256(adv_secret, &signed);
    Ok(ADVSignedDeviceIdentityHMAC {
        details: Some(signed),
        hmac: Some(hmac.to_vec()),
        account_type: Some(ADVEncryptionType::E2EE),
    }
    .encode_to_vec())
}

/// Checks the companion's `<pair-device-sign>`: its device signature over the identity the phone
/// signed, made with the identity key it registered.
pub(crate) fn check_device_signature(signed_identity: &[u8], companion_identity: &[u8; 32]) -> bool {
    let Ok(signed) = ADVSignedDeviceIdentity::decode_from_slice(signed_identity) else {
        return false;
    };
    let (Some(details), Some(account_key), Some(signature)) =
        (signed.details, signed.account_signature_key, signed.device_signature)
    else {
        return false;
    };
    let Ok(companion) = PublicKey::from_djb_public_key_bytes(companion_identity) else {
        return false;
    };
    let message = [&DEVICE_SIGNATURE_PREFIX[..], &details, companion_identity, &account_key].concat();
    companion.verify_signature(&message, &signature)
}

/// The phone's half of pairing by code, from the moment the user typed the code until the
/// companion's key bundle arrives.
pub(crate) struct CodeEntry {
    ephemeral: KeyPair,
    companion_ephemeral: [u8; 32],
    /// The phone's ephemeral key wrapped with the code, for `primary_hello`.
    pub(crate) wrapped_ephemeral: Vec<u8>,
}

impl CodeEntry {
    /// Unwraps the companion's ephemeral key with the typed code and wraps ours with it. A wrong
    /// code is not detectable here (AES-CTR): it shows up as a key bundle that does not open.
    /// Runs PBKDF2 with 2^17 rounds twice, so callers keep it off the async workers.
    pub(crate) fn new(code: &str, wrapped_companion_ephemeral: &[u8]) -> Result<Self, FakeError> {
        let code = code.to_ascii_uppercase();
        let companion_ephemeral =
            PairCodeUtils::decrypt_primary_ephemeral_pub(wrapped_companion_ephemeral, &code)
                .map_err(|e| FakeError::Crypto(format!("companion ephemeral key: {e}")))?;
        let ephemeral = whatsapp_rust::wacore::crypto::generate_curve_key_pair();
        let wrapped_ephemeral =
            PairCodeUtils::encrypt_ephemeral_pub(&public_bytes(&ephemeral), &code).to_vec();
        Ok(Self { ephemeral, companion_ephemeral, wrapped_ephemeral })
    }

    /// Opens the companion's `companion_finish` key bundle (`salt ‖ iv ‖ AES-GCM(companion identity ‖
    /// primary identity ‖ random)`) and derives the adv secret both sides now share.
    pub(crate) fn open_key_bundle(
        &self,
        account: &KeyPair,
        wrapped_bundle: &[u8],
    ) -> Result<([u8; 32], [u8; 32]), FakeError> {
        let agreement = |key: &KeyPair, theirs: &[u8; 32]| {
            PublicKey::from_djb_public_key_bytes(theirs)
                .and_then(|public| key.private_key.calculate_agreement(&public))
                .map_err(|e| FakeError::Crypto(format!("key agreement: {e}")))
        };
        let ephemeral_shared = agreement(&self.ephemeral, &self.companion_ephemeral)?;
        if wrapped_bundle.len() < 32 + 12 + 16 {
            return Err(FakeError::Crypto("key bundle too short".into()));
        }
        let (salt, rest) = wrapped_bundle.split_at(32);
        let (iv, sealed) = rest.split_at(12);
        let mut key = [0u8; 32];
        hkdf_sha256_into(
            &ephemeral_shared,
            Some(salt),
            b"link_code_pairing_key_bundle_encryption_key",
            &mut key,
        )
        .map_err(|e| FakeError::Crypto(format!("bundle key: {e}")))?;
        let iv: [u8; 12] = iv.try_into().map_err(|_| FakeError::Crypto("bundle iv".into()))?;
        let mut bundle = Vec::new();
        aes_256_gcm_decrypt(&key, &iv, b"", sealed, &mut bundle).map_err(|_| FakeError::WrongCode)?;
        if bundle.len() != 96 || bundle[32..64] != public_bytes(account) {
            return Err(FakeError::Crypto("key bundle names another primary".into()));
        }
        let mut companion_identity = [0u8; 32];
        companion_identity.copy_from_slice(&bundle[..32]);
        let identity_shared = agreement(account, &companion_identity)?;
        let secret_material = [&ephemeral_shared[..], &identity_shared, &bundle[64..]].concat();
        let mut adv_secret = [0u8; 32];
        hkdf_sha256_into(&secret_material, None, b"adv_secret", &mut adv_secret)
            .map_err(|e| FakeError::Crypto(format!("adv secret: {e}")))?;
        Ok((companion_identity, adv_secret))
    }
}
