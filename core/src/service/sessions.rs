//! The calls that involve a session host: connect, reconnect and logout.
//!
//! Connect follows DESIGN.md: write a pending request, send the command, and wait (consistent reads,
//! short interval) for the host to answer with a code or a failure, up to the configured budget.

use std::time::Duration;

use tokio::time::Instant;

use crate::domain::{
    ConnectOutcome, ConnectRequest, ConnectRequestId, InstanceState, LoginMethod, PhoneNumber, SessionCommand,
};
use crate::ports::BlobKey;
use crate::service::{Caller, InstanceService, logout, routing};
use crate::{Error, Result};

/// How long a connect call waits for its session host, and how often it looks.
#[derive(Debug, Clone, Copy)]
pub struct ConnectPolicy {
    pub wait: Duration,
    pub poll_interval: Duration,
}

impl Default for ConnectPolicy {
    /// About a minute, as the contract promises; the API Gateway deployment may set less.
    fn default() -> Self {
        Self { wait: Duration::from_secs(60), poll_interval: Duration::from_millis(50) }
    }
}

/// The query of a connect call, as received.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Digits only, 8 to 15 of them: pairing-code login instead of QR.
    pub number: Option<String>,
    /// Days of history to ask for on this first pairing (1 to 365).
    pub history_days: Option<i64>,
}

impl InstanceService {
    /// Starts a login and returns the first code the session host reports.
    #[tracing::instrument(skip_all, fields(account = %caller.account.id))]
    pub async fn connect(
        &self,
        caller: &Caller,
        name: &str,
        options: ConnectOptions,
    ) -> Result<ConnectOutcome> {
        let instance = self.target(caller, name).await?;
        let login = match options.number.as_deref() {
            Some(number) => LoginMethod::PairingCode { phone: PhoneNumber::parse(number)? },
            None => LoginMethod::QrCode,
        };
        let history_days = options
            .history_days
            .map(|days| u16::try_from(days).ok().filter(|d| (1..=365).contains(d)))
            .map(|days| {
                days.ok_or_else(|| Error::invalid_because("history", "a number of days from 1 to 365"))
            })
            .transpose()?;
        if instance.connection.state == InstanceState::Connected {
            return Err(Error::AlreadyConnected);
        }

        let request = ConnectRequest {
            id: ConnectRequestId::generate(),
            instance: instance.id.clone(),
            created_at: self.clock.now(),
            outcome: None,
        };
        self.ports.registry.put_connect_request(&request).await?;
        let command = SessionCommand::Connect {
            instance: instance.id.clone(),
            request: request.id.clone(),
            login,
            history_days,
        };
        let outcome = match routing::send_command(&self.ports, &command).await {
            Ok(()) => self.await_outcome(&request.id).await,
            Err(error) => Err(error),
        };
        // The request is single-use: whatever happened, nobody reads it again.
        if let Err(error) = self.ports.registry.delete_connect_request(&request.id).await {
            tracing::warn!(%error, request = %request.id, "connect request left behind");
        }
        match outcome {
            Ok(Some(ConnectOutcome::Failed { reason })) => {
                tracing::warn!(instance = %instance.id, %reason, "session host could not produce a code");
                Err(Error::ConnectFailed { reason })
            }
            Ok(Some(code)) => Ok(code),
            Ok(None) => {
                tracing::warn!(instance = %instance.id, wait = ?self.connect.wait, "no answer from a session host");
                Err(Error::ConnectFailed { reason: "no answer from a session host in time".into() })
            }
            Err(error) => {
                tracing::error!(instance = %instance.id, %error, "connect request could not be sent");
                Err(Error::ConnectFailed { reason: "command queue unavailable".into() })
            }
        }
    }

    /// Polls the request until it is answered or the budget runs out (`Ok(None)`).
    async fn await_outcome(&self, id: &ConnectRequestId) -> Result<Option<ConnectOutcome>> {
        let deadline = Instant::now() + self.connect.wait;
        loop {
            if let Some(outcome) = self.ports.registry.connect_request(id).await?.and_then(|r| r.outcome) {
                return Ok(Some(outcome));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(self.connect.poll_interval.min(deadline - now)).await;
        }
    }

    /// Asks a session host to restore the session from its saved credentials; returns at once.
    #[tracing::instrument(skip_all, fields(account = %caller.account.id))]
    pub async fn reconnect(&self, caller: &Caller, name: &str) -> Result<()> {
        let instance = self.target(caller, name).await?;
        if instance.connection.state == InstanceState::Connected {
            return Err(Error::AlreadyConnected);
        }
        // Logged out means the credentials are gone, whatever a session still saving may leave
        // behind for a moment (it is wiped when that session hears of the logout).
        if instance.connection.state == InstanceState::LoggedOut {
            return Err(Error::NoSavedSession);
        }
        let saved = self
            .ports
            .blobs
            .exists(&BlobKey::session_store(&instance.id))
            .await
            .map_err(|_| Error::ReconnectFailed { reason: "session store unavailable" })?;
        if !saved {
            return Err(Error::NoSavedSession);
        }
        routing::send_command(&self.ports, &SessionCommand::Reconnect { instance: instance.id.clone() })
            .await
            .map_err(|error| {
                tracing::error!(instance = %instance.id, %error, "reconnect command could not be sent");
                Error::ReconnectFailed { reason: "command queue unavailable" }
            })
    }

    /// Unlinks the device and wipes the saved credentials; the instance and its token stay.
    /// Idempotent: logging out a logged-out instance succeeds and changes nothing.
    ///
    /// The state and the credentials are wiped here, so a logout holds even with no host running;
    /// the `Logout` command has a host unlink the device: the live session with its client, or,
    /// with none running, a host logging in from the copy kept for that (`logout.rs`).
    #[tracing::instrument(skip_all, fields(account = %caller.account.id))]
    pub async fn logout(&self, caller: &Caller, name: &str) -> Result<()> {
        let instance = self.target(caller, name).await?;
        let wiped = async {
            let at = self.clock.now();
            if instance.connection.state != InstanceState::LoggedOut {
                logout::keep_for_unlink(&self.ports, &instance.id).await?;
            }
            logout::record_logout(&self.ports, &instance.id, logout::REQUESTED_THROUGH_API, None, at).await?;
            routing::send_command(&self.ports, &SessionCommand::Logout { instance: instance.id.clone() })
                .await
        };
        wiped.await.map_err(|error| {
            tracing::error!(instance = %instance.id, %error, "logout failed");
            Error::LogoutFailed(Box::new(error))
        })
    }
}
