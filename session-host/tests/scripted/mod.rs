//! A scripted WhatsApp client behind the host's seam, shared by the host's test binaries: each
//! start is handed to the test, which plays the client's events and reads what it was asked.

// Test code: a failed step should panic right there.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ryze_session_host::HostError;
use ryze_session_host::client::{
    CallOffer, ClientEvent, ClientFactory, IncomingMessage, SessionClient, StartSpec,
};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

/// What the scripted client was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    PairingCode(String),
    Presence(bool),
    Reject(String),
    SendText(String, String),
    MarkRead(String),
    Logout,
    Stop,
}

/// What a scripted client was asked, in order; tests await what they expect in it.
#[derive(Default)]
pub struct CallLog {
    calls: Mutex<Vec<Call>>,
    changed: tokio::sync::Notify,
    /// Snapshots taken so far, so that each store the client hands out differs.
    snapshots: std::sync::atomic::AtomicUsize,
    /// While set, a presence call is logged and then waits: a session stuck in a command.
    held: tokio::sync::watch::Sender<bool>,
}

impl CallLog {
    fn push(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
        self.changed.notify_waiters();
    }

    /// Presence calls from now on wait, once logged, until [`CallLog::release`].
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }

    pub fn snapshot(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn contains(&self, call: &Call) -> bool {
        self.calls.lock().unwrap().contains(call)
    }

    /// Waits until the log is exactly `expected`.
    pub async fn wait_for(&self, expected: &[Call]) {
        let reached = async {
            loop {
                // Registered before looking, so a push between the look and the wait still wakes us.
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.snapshot() == expected {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(WAIT, reached)
            .await
            .unwrap_or_else(|_| panic!("calls {:?}, not {expected:?}, within 5 s", self.snapshot()));
    }
}

/// One started client: the spec it got, the sender that plays its events, and its call log.
pub struct Started {
    pub spec: StartSpec,
    pub events: mpsc::UnboundedSender<ClientEvent>,
    pub calls: Arc<CallLog>,
}

pub struct ScriptedFactory {
    pub started: mpsc::UnboundedSender<Started>,
}

pub struct ScriptedClient {
    calls: Arc<CallLog>,
}

impl ScriptedClient {
    fn log(&self, call: Call) {
        self.calls.push(call);
    }
}

impl ClientFactory for ScriptedFactory {
    type Client = ScriptedClient;

    async fn start(
        &self,
        spec: StartSpec,
    ) -> Result<(ScriptedClient, mpsc::UnboundedReceiver<ClientEvent>), HostError> {
        let (events, receiver) = mpsc::unbounded_channel();
        let calls = Arc::new(CallLog::default());
        self.started.send(Started { spec, events, calls: calls.clone() }).unwrap();
        Ok((ScriptedClient { calls }, receiver))
    }
}

impl SessionClient for ScriptedClient {
    async fn request_pairing_code(&self, phone: &str) -> Result<String, HostError> {
        self.log(Call::PairingCode(phone.to_owned()));
        Ok("ABCD1234".into())
    }
    async fn set_presence(&self, available: bool) -> Result<(), HostError> {
        self.log(Call::Presence(available));
        let _ = self.calls.held.subscribe().wait_for(|held| !*held).await;
        Ok(())
    }
    async fn reject_call(&self, call: &CallOffer) -> Result<(), HostError> {
        self.log(Call::Reject(call.call_id.clone()));
        Ok(())
    }
    async fn send_text(&self, to: &str, text: &str) -> Result<(), HostError> {
        self.log(Call::SendText(to.to_owned(), text.to_owned()));
        Ok(())
    }
    async fn mark_read(&self, message: &IncomingMessage) -> Result<(), HostError> {
        self.log(Call::MarkRead(message.id.clone()));
        Ok(())
    }
    /// A store whose bytes tell one snapshot from the next (`credential store #N`).
    async fn snapshot(&self) -> Result<Vec<u8>, HostError> {
        let n = self.calls.snapshots.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(format!("credential store #{n}").into_bytes())
    }
    async fn logout(&self) {
        self.log(Call::Logout);
    }
    async fn stop(&self) {
        self.log(Call::Stop);
    }
}
