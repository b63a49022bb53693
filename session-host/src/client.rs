//! The seam between a session and its WhatsApp client.
//!
//! The session actor speaks only these types. `whatsapp.rs` implements them on whatsapp-rust; the
//! actor's tests implement them with a scripted client. Used generically (never as a trait object),
//! so the traits use native `async fn` with `Send` futures spelled out.

use std::future::Future;

use chrono::{DateTime, Utc};
use ryze_core::domain::{InstanceId, ProxyConfig};

use crate::HostError;

/// Everything a client needs to start one instance's session.
#[derive(Debug, Clone)]
pub struct StartSpec {
    pub instance: InstanceId,
    /// The saved credential store to log in with; `None` pairs a new device.
    pub store: Option<Vec<u8>>,
    /// The proxy for the WhatsApp socket, with its password opened.
    pub proxy: Option<(ProxyConfig, Option<String>)>,
    /// Days of history to ask for on pairing; overrides `skip_history`.
    pub history_days: Option<u16>,
    /// Do not download the history WhatsApp sends after pairing.
    pub skip_history: bool,
}

/// An incoming call offer, as much as rejecting it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOffer {
    pub call_id: String,
    /// The caller's chat JID, for the reject message.
    pub from: String,
    pub creator: String,
}

/// An incoming message, as much as the settings act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    pub id: String,
    pub chat: String,
    pub sender: String,
    pub is_group: bool,
    pub is_status: bool,
    pub from_me: bool,
}

/// What a client reports, already classified for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A QR code to show; a new one replaces the last (WhatsApp rotates them).
    QrCode {
        code: String,
    },
    /// No QR code left to show; the client has stopped.
    QrCodesExhausted,
    /// The 8-character code to type on the phone.
    PairingCode {
        code: String,
    },
    /// The phone accepted the device; the login follows.
    PairSuccess {
        jid: String,
        business_name: Option<String>,
    },
    /// Logged in and ready.
    Connected {
        jid: Option<String>,
        push_name: Option<String>,
    },
    /// The account's own display name became known or changed.
    PushName {
        name: String,
    },
    /// The socket dropped; the client is retrying.
    Disconnected {
        reason: String,
    },
    /// The device was unlinked (logged out on the phone, removed, or 401/516).
    LoggedOut {
        reason: String,
    },
    /// The account is locked (403).
    AccountLocked {
        reason: String,
    },
    /// The account is banned for a while (402).
    TemporaryBan {
        reason: String,
        expires_at: Option<DateTime<Utc>>,
    },
    /// Another connection of this device took over.
    StreamReplaced,
    IncomingCall(CallOffer),
    Message(IncomingMessage),
    /// The credential store changed and should be saved soon.
    StoreChanged,
    /// The socket could not be opened (proxy refused, server unreachable); the client retries.
    ConnectFailed {
        reason: String,
    },
    /// The client's run loop ended.
    Stopped,
}

/// Starts clients.
pub trait ClientFactory: Send + Sync + 'static {
    type Client: SessionClient;

    /// Starts a client; its events arrive on the returned receiver until it stops.
    fn start(
        &self,
        spec: StartSpec,
    ) -> impl Future<
        Output = Result<(Self::Client, tokio::sync::mpsc::UnboundedReceiver<ClientEvent>), HostError>,
    > + Send;
}

/// A running client.
pub trait SessionClient: Send + Sync + 'static {
    /// Asks WhatsApp for a pairing code for `phone` (digits only).
    fn request_pairing_code(&self, phone: &str) -> impl Future<Output = Result<String, HostError>> + Send;
    fn set_presence(&self, available: bool) -> impl Future<Output = Result<(), HostError>> + Send;
    fn reject_call(&self, call: &CallOffer) -> impl Future<Output = Result<(), HostError>> + Send;
    fn send_text(&self, to: &str, text: &str) -> impl Future<Output = Result<(), HostError>> + Send;
    fn mark_read(&self, message: &IncomingMessage) -> impl Future<Output = Result<(), HostError>> + Send;
    /// The credential store as bytes, consistent as of the call.
    fn snapshot(&self) -> impl Future<Output = Result<Vec<u8>, HostError>> + Send;
    /// Unlinks the device from the account and stops.
    fn logout(&self) -> impl Future<Output = ()> + Send;
    /// Stops, keeping the device linked.
    fn stop(&self) -> impl Future<Output = ()> + Send;
}
