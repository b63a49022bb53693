//! Linking a device: connect calls, the codes they are answered with, and a pairing code asked
//! for on a session already showing a QR.

use ryze_core::domain::{ConnectOutcome, ConnectRequestId, InstanceState, LoginMethod, StateChange};

use super::phase::Link;
use super::store::StoreClaim;
use super::{Begin, Session, failed};
use crate::client::{ClientFactory, SessionClient};

impl<F: ClientFactory> Session<F> {
    pub(super) async fn connect(
        &mut self,
        request: ConnectRequestId,
        login: LoginMethod,
        history_days: Option<u16>,
    ) {
        if let Some(pairing) = self.phase.pairing() {
            match (&login, &pairing.code) {
                // A second pairing-code login on a QR session: same socket, ask for a code.
                (LoginMethod::PairingCode { phone }, Some(ConnectOutcome::QrCode { .. })) => {
                    let phone = phone.as_str().to_owned();
                    self.waiting.push(request);
                    self.request_pairing_code(&phone).await;
                }
                (_, Some(code)) => {
                    let code = code.clone();
                    self.answer(&request, code).await;
                }
                (_, None) => self.waiting.push(request),
            }
            return;
        }
        let resume_due = self.phase.link().is_none() && self.resume_pending().await;
        match self.phase.link() {
            Some(Link::Connected { .. }) => self.answer(&request, failed("already connected")).await,
            Some(Link::LoggingIn { .. } | Link::Reconnecting { .. }) => {
                self.answer(&request, failed("session is logging in with saved credentials")).await;
            }
            None if resume_due => {
                // Its last host went down while it was linked, and a takeover is due to log it in
                // from the saved store: a connect meanwhile must not trade that link for a QR.
                self.answer(&request, failed("session is logging in with saved credentials")).await;
                self.reconnect().await;
            }
            None => {
                self.waiting.push(request);
                // A connect links a new device: credentials of an old link are discarded.
                if let Err(error) = self.ctx.ports.blobs.delete(&self.store_key()).await {
                    tracing::warn!(%error, "stale credential store not removed");
                }
                self.store = StoreClaim::Absent;
                // A QR someone is waiting for takes its turn like any start, without yielding:
                // the connect call is answered either way.
                self.ctx.pacer.wait().await;
                self.start(Begin::Pair(login), history_days, true).await;
            }
        }
    }

    /// Whether the instance reads `connecting` with a saved store and no session: a linked one
    /// whose host stopped or died before it was resumed. (A pairing cut short leaves no store: it
    /// is wiped when the pairing starts.)
    async fn resume_pending(&mut self) -> bool {
        let Some(instance) = self.load_instance().await else { return false };
        instance.connection.state == InstanceState::Connecting
            && matches!(self.ctx.ports.blobs.exists(&self.store_key()).await, Ok(true))
    }

    pub(super) async fn request_pairing_code(&mut self, phone: &str) {
        let Some(client) = self.phase.client() else { return };
        match client.request_pairing_code(phone).await {
            Ok(code) => self.on_code(ConnectOutcome::PairingCode { code }).await,
            Err(error) => {
                tracing::warn!(%error, "no pairing code");
                self.fail_waiting("pairing code refused").await;
            }
        }
    }

    /// A code to show: the answer to waiting connect calls, and an event when it is new.
    pub(super) async fn on_code(&mut self, code: ConnectOutcome) {
        let change = match &code {
            ConnectOutcome::QrCode { code } => StateChange::QrReady { qr_code: code.clone() },
            ConnectOutcome::PairingCode { code } => {
                StateChange::PairingCodeReady { pairing_code: code.clone() }
            }
            ConnectOutcome::Failed { .. } => return,
        };
        let Some(pairing) = self.phase.pairing_mut() else { return };
        // whatsapp-rust reports a pairing code twice (the call's result and an event): the same code
        // again is no new code, and gets no second event.
        let repeated = pairing.code.as_ref() == Some(&code);
        pairing.code = Some(code.clone());
        for request in std::mem::take(&mut self.waiting) {
            self.answer(&request, code.clone()).await;
        }
        if !repeated {
            self.publish(&change).await;
        }
    }
}
