//! Tokens and secrets: generation, the keyed hash tokens are looked up by, and sealing at rest.
//!
//! One 32-byte master key per deployment (a generated file in embedded mode, a secret in AWS) derives
//! two independent keys: one for HMAC-SHA256 token hashes, one for AES-256-GCM sealing. A store never
//! holds a token or a secret in clear: tokens are found by their hash, and values that must be shown or
//! used again (an instance token in `list`, a proxy password on connect) are sealed. Each sealed value
//! is bound to its purpose through the AEAD's associated data, so a sealed proxy password cannot be
//! replayed as, say, a webhook authorization.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A value that must never be printed: `Debug` shows `<redacted>`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret<String> {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// What a sealed value is for; bound into the ciphertext as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    InstanceToken,
    ProxyPassword,
    S3SecretKey,
    ChatwootApiToken,
    WebhookAuthorization,
    /// A webhook's Standard Webhooks signing secret (`whsec_...`).
    WebhookSigningSecret,
    /// The `user:password` that a webhook URL carried.
    WebhookUrlCredentials,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::InstanceToken => b"ryze/instance-token",
            Self::ProxyPassword => b"ryze/proxy-password",
            Self::S3SecretKey => b"ryze/s3-secret-key",
            Self::ChatwootApiToken => b"ryze/chatwoot-api-token",
            Self::WebhookAuthorization => b"ryze/webhook-authorization",
            Self::WebhookSigningSecret => b"ryze/webhook-signing-secret",
            Self::WebhookUrlCredentials => b"ryze/webhook-url-credentials",
        }
    }
}

/// A sealed secret as stored: `v1.` and the base64url of nonce, ciphertext and tag.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed(..)")
    }
}

impl Sealed {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The keyed hash of a token: what the store indexes tokens by.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }
}

impl fmt::Debug for TokenHash {
    // A prefix is enough to tell hashes apart in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}..)", &self.0[..self.0.len().min(8)])
    }
}

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const SEALED_PREFIX: &str = "v1.";

/// The deployment's master key.
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        Self(random_bytes())
    }

    /// The variable a deployment passes its key in (read through
    /// `adapters::aws::MasterKeyArgs`, which never shows its value).
    pub const VARIABLE: &str = "RYZE_MASTER_KEY";

    /// Reads the key a deployment configures: 32 bytes in base64 (what `ryze aws provision` and the
    /// key file hold), or any secret text of at least 32 characters (what a secrets manager
    /// generates), from which the key is derived with SHA-256.
    pub fn from_config(text: &str) -> Result<Self> {
        let text = text.trim();
        if let Ok(key) = Self::from_base64(text) {
            return Ok(key);
        }
        if text.chars().count() < 32 {
            return Err(Error::invalid_because(
                Self::VARIABLE,
                "32 bytes in base64, or at least 32 characters",
            ));
        }
        let mut digest = Sha256::new();
        digest.update(b"ryze master key v1\0");
        digest.update(text.as_bytes());
        Ok(Self(digest.finalize().into()))
    }

    /// Reads the key from its base64 text form (what the key file holds).
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes =
            STANDARD.decode(text.trim()).map_err(|_| Error::invalid_because("sealKey", "not base64"))?;
        let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice())
            .map_err(|_| Error::invalid_because("sealKey", "must be 32 bytes"))?;
        Ok(Self(key))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    fn derive(&self, label: &[u8]) -> [u8; KEY_LEN] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Seals and opens secrets, and hashes tokens, with keys derived from one [`MasterKey`].
#[derive(Clone)]
pub struct Keyring {
    cipher: Aes256Gcm,
    token_mac: HmacSha256,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keyring(<redacted>)")
    }
}

impl Keyring {
    pub fn new(master: &MasterKey) -> Self {
        let seal_key = master.derive(b"ryze/seal/v1");
        let hash_key = master.derive(b"ryze/token-hash/v1");
        Self {
            cipher: Aes256Gcm::new(&seal_key.into()),
            token_mac: <HmacSha256 as Mac>::new_from_slice(&hash_key).expect("HMAC takes keys of any length"),
        }
    }

    pub fn seal(&self, purpose: Purpose, plaintext: &str) -> Sealed {
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload { msg: plaintext.as_bytes(), aad: purpose.label() },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Sealed(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    pub fn open(&self, purpose: Purpose, sealed: &Sealed) -> Result<String> {
        let body = sealed.0.strip_prefix(SEALED_PREFIX).ok_or(Error::Unseal)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| Error::Unseal)?;
        if raw.len() < NONCE_LEN {
            return Err(Error::Unseal);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: purpose.label() })
            .map_err(|_| Error::Unseal)?;
        String::from_utf8(plain).map_err(|_| Error::Unseal)
    }

    pub fn hash_token(&self, token: &str) -> TokenHash {
        let mut mac = self.token_mac.clone();
        mac.update(token.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(digest.len() * 2);
        for byte in digest {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        TokenHash(hex)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A new Standard Webhooks signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn generate_signing_secret() -> String {
    format!("whsec_{}", STANDARD.encode(random_bytes::<32>()))
}

/// A new random token: 32 bytes from the OS, base64url (43 characters).
pub fn generate_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_key_is_base64_or_long_secret_text() {
        let key = MasterKey::generate();
        assert_eq!(MasterKey::from_config(&key.to_base64()).unwrap().0, key.0);
        let generated = "Zx8pQ2vN7rT4kL9mW3bY6cF1hJ5dS0gA8eR2tU7iO4pK1lM9nB3vC6xZ5qW2eR8t";
        let derived = MasterKey::from_config(generated).unwrap();
        assert_eq!(derived.0, MasterKey::from_config(generated).unwrap().0, "derivation is stable");
        assert_ne!(derived.0, MasterKey::from_config(&generated[1..]).unwrap().0);
        assert!(MasterKey::from_config("short").is_err());
    }

    fn keyring() -> Keyring {
        Keyring::new(&MasterKey::generate())
    }

    #[test]
    fn sealed_values_open_to_the_original() {
        let keys = keyring();
        let sealed = keys.seal(Purpose::ProxyPassword, "hunter2");
        assert!(!sealed.as_str().contains("hunter2"));
        assert_eq!(keys.open(Purpose::ProxyPassword, &sealed).unwrap(), "hunter2");
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let keys = keyring();
        assert_ne!(keys.seal(Purpose::S3SecretKey, "x"), keys.seal(Purpose::S3SecretKey, "x"));
    }

    #[test]
    fn a_sealed_value_does_not_open_for_another_purpose_or_key() {
        let keys = keyring();
        let sealed = keys.seal(Purpose::ProxyPassword, "secret");
        assert!(matches!(keys.open(Purpose::WebhookAuthorization, &sealed), Err(Error::Unseal)));
        assert!(matches!(keyring().open(Purpose::ProxyPassword, &sealed), Err(Error::Unseal)));
    }

    #[test]
    fn tampered_or_truncated_values_do_not_open() {
        let keys = keyring();
        let sealed = keys.seal(Purpose::InstanceToken, "token");
        let mut tampered = sealed.0.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = Sealed(String::from_utf8(tampered).unwrap());
        assert!(keys.open(Purpose::InstanceToken, &tampered).is_err());
        assert!(keys.open(Purpose::InstanceToken, &Sealed("v1.AAAA".into())).is_err());
        assert!(keys.open(Purpose::InstanceToken, &Sealed("plain".into())).is_err());
    }

    #[test]
    fn token_hashes_are_keyed_and_stable() {
        let master = MasterKey::generate();
        let a = Keyring::new(&master);
        let b = Keyring::new(&MasterKey::from_base64(&master.to_base64()).unwrap());
        assert_eq!(a.hash_token("t"), b.hash_token("t"));
        assert_ne!(a.hash_token("t"), a.hash_token("u"));
        assert_ne!(a.hash_token("t"), keyring().hash_token("t"));
        assert_eq!(a.hash_token("t").as_str().len(), 64);
    }

    #[test]
    fn generated_tokens_are_long_and_distinct() {
        let (a, b) = (generate_token(), generate_token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("pw")), "<redacted>");
        assert!(!format!("{:?}", MasterKey::generate()).contains('='));
    }
}
