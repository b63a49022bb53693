//! One instance's session: an actor that owns its WhatsApp client and every bit of its state.
//!
//! Others hold a [`SessionHandle`] (a bounded sender); the fleet alone creates and reaps actors. The
//! actor turns client events into the contract's states and `instance.state` events, answers
//! connect requests with the current code, applies settings live (`settings.rs`), and saves the
//! credential store right after pairing, after changes (debounced) and when it stops.

mod logout;
mod ownership;
mod pairing;
mod phase;
mod settings;
mod store;

use std::sync::Arc;

use chrono::Utc;
use ryze_core::domain::{
    ConnectOutcome, ConnectRequestId, Connection, Event, InstanceChange, InstanceId, InstanceState, Lease,
    LoginMethod, PresenceStatus, Profile, SessionCommand, Settings, StateChange,
};
use ryze_core::secrets::Purpose;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use self::phase::{Link, Pairing, Phase, Running, Stage, next_event};
use self::store::StoreClaim;
use crate::client::{ClientEvent, ClientFactory, SessionClient, StartSpec};
use crate::fleet::HostContext;
use crate::retry;
use crate::routed::Routed;

/// A proxy as a client dials it: the configuration and its opened password.
type OpenProxy = (ryze_core::domain::ProxyConfig, Option<String>);

/// How long after the client learns the account's name its own `available` has surely gone out.
const PRESENCE_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Commands waiting for one actor; a full mailbox makes the fleet wait, never grow.
pub(crate) const MAILBOX: usize = 32;

/// How an actor begins.
#[derive(Debug)]
pub(crate) enum Start {
    /// With a command from the API.
    Command(Routed),
    /// Taken over from a dead host or from this host's earlier start: resume what was running.
    Resume,
}

/// What an actor hands back when it ends: commands that reached it too late, for the fleet to
/// route again (still unacknowledged).
#[derive(Debug)]
pub(crate) struct Finished {
    pub instance: InstanceId,
    pub generation: u64,
    pub leftovers: Vec<Routed>,
    /// Let go on the host's stop for another host to resume: the fleet sends its reconnect.
    pub handed_over: bool,
}

/// How a client starts.
enum Begin {
    /// Linking a new device.
    Pair(LoginMethod),
    /// Logging in with a saved credential store.
    LogIn(Vec<u8>),
}

pub(crate) struct Session<F: ClientFactory> {
    instance: InstanceId,
    generation: u64,
    ctx: Arc<HostContext<F>>,
    commands: mpsc::Receiver<Routed>,
    shutdown: CancellationToken,
    /// The lease this session runs under; every state write and store save is fenced by it.
    lease: Lease,
    /// Whether the lease is this session's to let go when it ends: not once it was lost, kept for
    /// the host's next start, or handed over.
    holds_lease: bool,
    /// Cancelled by the fleet when it learns another host took the lease.
    lost: CancellationToken,
    /// Let go for another host on the host's stop.
    handed_over: bool,
    phase: Phase<F::Client>,
    /// Connect calls waiting for the first code.
    waiting: Vec<ConnectRequestId>,
    settings: Settings,
    number_jid: Option<String>,
    profile: Profile,
    /// What this session knows of its stored credential store; every save is conditioned on it.
    store: StoreClaim,
    /// The instance as this session last read or wrote it: its state writes start from it, and
    /// read the record again only when somebody else wrote it meanwhile.
    known: Option<Arc<ryze_core::domain::Instance>>,
}

impl<F: ClientFactory> Session<F> {
    pub(crate) fn new(
        instance: InstanceId,
        generation: u64,
        lease: Lease,
        ctx: Arc<HostContext<F>>,
        commands: mpsc::Receiver<Routed>,
        shutdown: CancellationToken,
        lost: CancellationToken,
    ) -> Self {
        Self {
            instance,
            generation,
            ctx,
            commands,
            shutdown,
            lease,
            holds_lease: true,
            lost,
            handed_over: false,
            phase: Phase::Idle,
            waiting: Vec::new(),
            settings: Settings::default(),
            number_jid: None,
            profile: Profile::default(),
            store: StoreClaim::Absent,
            known: None,
        }
    }

    #[tracing::instrument(name = "session", skip_all, fields(instance = %self.instance))]
    pub(crate) async fn run(mut self, start: Start) -> Finished {
        match start {
            Start::Command(command) => self.apply(command).await,
            Start::Resume => self.resume().await,
        }
        while self.holds_lease && !(self.phase.is_idle() && self.waiting.is_empty()) {
            let wake_at = self.phase.wake_at();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.apply(command).await,
                    None => break,
                },
                event = next_event(&mut self.phase) => self.on_client_event(event).await,
                () = sleep_until_some(wake_at) => self.on_timer().await,
                () = self.lost.cancelled() => self.on_lease_lost().await,
                () = self.shutdown.cancelled() => {
                    self.stop_for_shutdown().await;
                    break;
                }
            }
        }
        if self.holds_lease {
            self.release_lease().await;
        }
        self.ctx.states.forget(&self.instance);
        // Whatever reached the mailbox after the last command goes back to the fleet.
        self.commands.close();
        let mut leftovers = Vec::new();
        while let Ok(command) = self.commands.try_recv() {
            leftovers.push(command);
        }
        Finished {
            instance: self.instance,
            generation: self.generation,
            leftovers,
            handed_over: self.handed_over,
        }
    }

    /// Applies a command, then acknowledges it: one that was in the mailbox when the host died
    /// comes back to the next owner.
    async fn apply(&mut self, routed: Routed) {
        let (command, done) = routed.into_parts();
        self.apply_command(command).await;
        done.send().await;
    }

    async fn apply_command(&mut self, command: SessionCommand) {
        match command {
            SessionCommand::Connect { request, login, history_days, .. } => {
                self.connect(request, login, history_days).await;
            }
            SessionCommand::Reconnect { .. } => self.reconnect().await,
            SessionCommand::Logout { .. } => self.logout().await,
            SessionCommand::Delete { .. } => self.delete().await,
            SessionCommand::ApplySettings { settings, .. } => self.apply_settings(settings).await,
            SessionCommand::Redial { .. } => self.redial().await,
        }
    }

    /// Logs in again from the saved store, through the instance's proxy as it is now. A session
    /// still pairing keeps its socket: the QR on screen stays valid, the next connect uses the proxy.
    async fn redial(&mut self) {
        if self.phase.link().is_none() {
            return;
        }
        self.persist().await;
        self.release_client(false, "proxy changed").await;
        self.reconnect().await;
    }

    async fn reconnect(&mut self) {
        if !self.phase.is_idle() || !self.turn_to_log_in().await {
            return;
        }
        match self.ctx.ports.blobs.get_versioned(&self.store_key()).await {
            Ok(Some(store)) => {
                self.store = StoreClaim::At(store.version);
                // A handover queued this with the state at `connecting` already: said once.
                let recorded = self.load_instance().await.map(|i| i.connection.state);
                let announce = recorded != Some(InstanceState::Connecting);
                self.start(Begin::LogIn(store.bytes), None, announce).await;
            }
            Ok(None) => tracing::info!("reconnect without a saved session ignored"),
            Err(error) => tracing::error!(%error, "credential store unreadable; reconnect abandoned"),
        }
    }

    /// Starts a client, once the caller had its turn in the host's pace. `announce` records
    /// `connecting` with its event; a resume of an instance that reads `connecting` already (its
    /// last host said so on the way down) does not say it twice.
    async fn start(&mut self, begin: Begin, history_days: Option<u16>, announce: bool) {
        let Some(instance) = self.load_instance().await else {
            self.fail_waiting("instance not found").await;
            return;
        };
        let pairing = matches!(begin, Begin::Pair(_));
        self.settings = instance.settings.clone();
        // A login resumes the linked number and profile; a pairing may link another number.
        (self.number_jid, self.profile) = if pairing {
            (None, Profile::default())
        } else {
            (instance.connection.number_jid.clone(), instance.profile.clone())
        };
        let Ok(proxy) = self.open_proxy(&instance) else {
            self.fail_waiting("proxy password unreadable").await;
            return;
        };
        let (store, login) = match begin {
            Begin::Pair(login) => (None, Some(login)),
            Begin::LogIn(store) => (Some(store), None),
        };
        let spec = StartSpec {
            instance: self.instance.clone(),
            store,
            proxy,
            history_days,
            skip_history: instance.settings.disable_history_sync && history_days.is_none(),
        };
        match self.ctx.factory.start(spec).await {
            Ok((client, events)) => {
                let now = Instant::now();
                let stage = match &login {
                    Some(login) => Stage::Pairing(Pairing {
                        login: login.clone(),
                        code: None,
                        give_up_at: now + self.ctx.config.qr_budget,
                    }),
                    None => Stage::Linked {
                        link: Link::LoggingIn { give_up_at: now + self.ctx.config.reconnect_budget },
                        persist_at: None,
                    },
                };
                self.phase = Phase::Running(Running { client, events, stage });
                if announce {
                    self.transition(InstanceState::Connecting, StateChange::Connecting).await;
                }
                if let Some(LoginMethod::PairingCode { phone }) = login {
                    self.request_pairing_code(phone.as_str()).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "client did not start");
                self.fail_waiting(&error.to_string()).await;
                self.transition(
                    InstanceState::Disconnected,
                    StateChange::Disconnected { reason: error.to_string() },
                )
                .await;
            }
        }
    }

    async fn on_client_event(&mut self, event: ClientEvent) {
        match event {
            // Codes matter only while pairing; one arriving after the phone accepted is stale.
            ClientEvent::QrCode { .. } | ClientEvent::PairingCode { .. }
                if self.phase.pairing().is_none() => {}
            ClientEvent::QrCode { code } => {
                // A pairing-code login shows no QR: the code it was given stays the answer.
                if !matches!(
                    self.phase.pairing(),
                    Some(Pairing { login: LoginMethod::PairingCode { .. }, .. })
                ) {
                    self.on_code(ConnectOutcome::QrCode { code }).await;
                }
            }
            ClientEvent::PairingCode { code } => self.on_code(ConnectOutcome::PairingCode { code }).await,
            ClientEvent::QrCodesExhausted => self.give_up("QR code not scanned in time").await,
            ClientEvent::PairSuccess { jid, business_name } => {
                let give_up_at = Instant::now() + self.ctx.config.reconnect_budget;
                self.phase.relink(Link::LoggingIn { give_up_at });
                self.number_jid = Some(user_jid(&jid));
                self.profile.business_name = business_name.filter(|b| !b.is_empty());
                self.profile.is_business = self.profile.business_name.is_some();
                self.persist().await;
            }
            ClientEvent::Connected { jid, push_name } => self.on_connected(jid, push_name).await,
            ClientEvent::Disconnected { reason } => {
                if self.phase.is_connected() {
                    tracing::info!(%reason, "socket dropped; the client retries");
                    let give_up_at = Instant::now() + self.ctx.config.reconnect_budget;
                    self.phase.relink(Link::Reconnecting { give_up_at });
                    self.transition(InstanceState::Connecting, StateChange::Connecting).await;
                }
            }
            ClientEvent::LoggedOut { reason } => {
                // The phone unlinked the device: nothing to unlink, the rest as any logout.
                self.release_client(false, "logged out").await;
                self.record_logout(&reason).await;
            }
            ClientEvent::AccountLocked { reason } => {
                tracing::warn!(%reason, "account locked");
                self.end(InstanceState::Banned, StateChange::Banned, true).await;
            }
            ClientEvent::TemporaryBan { reason, expires_at } => {
                self.end(InstanceState::Banned, StateChange::TempBanned { reason, expires_at }, false).await;
            }
            ClientEvent::StreamReplaced => {
                // Another connection of this device took over; fighting it would evict both forever.
                let reason = "replaced by another connection of this device".to_owned();
                self.end(InstanceState::Disconnected, StateChange::Disconnected { reason }, false).await;
            }
            ClientEvent::Stopped => {
                if !self.phase.is_idle() {
                    let reason = "session ended".to_owned();
                    self.end(InstanceState::Disconnected, StateChange::Disconnected { reason }, false).await;
                }
            }
            ClientEvent::ConnectFailed { reason } => {
                // A caller waiting for a first code learns now rather than at the QR budget's end:
                // the client would retry a refused proxy forever.
                if self.phase.pairing().is_some_and(|pairing| pairing.code.is_none()) {
                    tracing::warn!(%reason, "whatsapp socket not opened; giving up the login");
                    self.end(InstanceState::Disconnected, StateChange::Disconnected { reason }, false).await;
                }
            }
            ClientEvent::PushName { name } => {
                self.profile.name = Some(name).filter(|n| !n.is_empty());
                // whatsapp-rust announces `available` by itself once it learns the name, from a task
                // it spawns after this event: set the presence the settings ask for a moment later.
                self.phase.schedule_presence(Instant::now() + PRESENCE_SETTLE);
            }
            ClientEvent::StoreChanged => {
                self.phase.schedule_persist(Instant::now() + self.ctx.config.persist_debounce);
            }
            ClientEvent::IncomingCall(call) => self.on_call(call).await,
            ClientEvent::Message(message) => self.on_message(message).await,
        }
    }

    async fn on_connected(&mut self, jid: Option<String>, push_name: Option<String>) {
        self.phase.relink(Link::Connected { presence_at: None });
        self.fail_waiting("already connected").await;
        if let Some(jid) = jid {
            self.number_jid = Some(user_jid(&jid));
        }
        if push_name.is_some() {
            self.profile.name = push_name;
        }
        let presence = self.apply_presence().await;
        let change = StateChange::Connected {
            number_jid: self.number_jid.clone().unwrap_or_default(),
            profile: self.profile.clone(),
        };
        if self.write_state(InstanceState::Connected, presence).await {
            self.publish(&change).await;
            self.persist().await;
        }
    }

    async fn on_timer(&mut self) {
        let due = self.phase.take_due(Instant::now());
        if due.presence {
            let presence = self.apply_presence().await;
            self.write_state(InstanceState::Connected, presence).await;
        }
        if due.persist {
            self.persist().await;
        }
        // A step above may have ended the session; a give-up is for the phase it was due in.
        if let Some(reason) = due.give_up
            && !self.phase.is_idle()
        {
            self.give_up(reason).await;
        }
    }

    async fn give_up(&mut self, reason: &str) {
        tracing::info!(reason, phase = self.phase.name(), "session gave up");
        let change = StateChange::Disconnected { reason: reason.to_owned() };
        self.end(InstanceState::Disconnected, change, false).await;
    }

    /// Ends the session in `state`: stops the client, answers waiting connect calls, wipes the
    /// credential store when `wipe` (the device is no longer linked) or saves it otherwise.
    async fn end(&mut self, state: InstanceState, change: StateChange, wipe: bool) {
        if !wipe {
            self.persist().await;
        }
        self.release_client(false, &format!("session ended: {}", state_name(state))).await;
        if wipe {
            self.wipe_store().await;
            self.number_jid = None;
            self.profile = Profile::default();
        }
        self.transition(state, change).await;
    }

    async fn delete(&mut self) {
        self.wipe_store().await;
        self.release_client(true, "instance deleted").await;
        if let Err(error) = self.ctx.ports.leases.forget(&self.instance).await {
            tracing::warn!(%error, "lease of a deleted instance left behind");
        }
        self.holds_lease = false;
    }

    /// Stops the client, unlinking the device first when `unlink`, fails waiting connect calls
    /// with `reason`, and forgets everything the session held for that client.
    async fn release_client(&mut self, unlink: bool, reason: &str) {
        if let Phase::Running(running) = std::mem::replace(&mut self.phase, Phase::Idle) {
            if unlink {
                running.client.logout().await;
            } else {
                running.client.stop().await;
            }
        }
        self.fail_waiting(reason).await;
    }

    /// The instance's proxy with its password opened; `Err` (logged) when it cannot be opened.
    fn open_proxy(&self, instance: &ryze_core::domain::Instance) -> Result<Option<OpenProxy>, ()> {
        let Some(proxy) = &instance.proxy else { return Ok(None) };
        let password = proxy.password.as_ref().map(|p| self.ctx.keys.open(Purpose::ProxyPassword, p));
        match password.transpose() {
            Ok(password) => Ok(Some((proxy.clone(), password))),
            Err(error) => {
                tracing::error!(%error, "proxy password unreadable");
                Err(())
            }
        }
    }

    async fn load_instance(&mut self) -> Option<Arc<ryze_core::domain::Instance>> {
        match self.ctx.ports.registry.instance(&self.instance).await {
            Ok(instance) => {
                self.known.clone_from(&instance);
                instance
            }
            Err(error) => {
                tracing::error!(%error, "instance unreadable");
                None
            }
        }
    }

    async fn answer(&self, request: &ConnectRequestId, outcome: ConnectOutcome) {
        if let Err(error) = self.ctx.ports.registry.answer_connect_request(request, outcome).await {
            tracing::error!(%error, "connect request not answered");
        }
    }

    async fn fail_waiting(&mut self, reason: &str) {
        for request in std::mem::take(&mut self.waiting) {
            self.answer(&request, failed(reason)).await;
        }
    }

    /// Records a new state and publishes its event: one transition, one event (none when the
    /// lease was lost: the state is the new owner's to tell).
    async fn transition(&mut self, state: InstanceState, change: StateChange) {
        if self.write_state(state, PresenceStatus::Unavailable).await {
            self.publish(&change).await;
        }
    }

    /// Writes the state under the lease; `false` when it was refused because the lease moved on,
    /// in which case the client is already stopped.
    async fn write_state(&mut self, state: InstanceState, presence_status: PresenceStatus) -> bool {
        if !self.holds_lease {
            return false;
        }
        let connection = Connection {
            state,
            number_jid: self.number_jid.clone().filter(|_| state != InstanceState::LoggedOut),
            presence_status,
            display_status: None,
        };
        let change = InstanceChange::Session { connection, profile: self.profile.clone() };
        let (leases, known, lease) = (&self.ctx.ports.leases, &self.known, &self.lease);
        let (instance, change) = (&self.instance, &change);
        let written = retry::while_unavailable("state write", move || async move {
            match known {
                Some(known) => {
                    leases.update_instance_fenced_from(known, change.clone(), Utc::now(), lease).await
                }
                None => leases.update_instance_fenced(instance, change.clone(), Utc::now(), lease).await,
            }
        })
        .await;
        match written {
            Ok(instance) => {
                self.known = Some(instance);
                self.ctx.states.record(&self.instance, state);
                true
            }
            Err(ryze_core::Error::InstanceNotFound) => true,
            Err(ryze_core::Error::LeaseLost) => {
                self.on_lease_lost().await;
                false
            }
            Err(error) => {
                tracing::error!(%error, ?state, "state not recorded");
                true
            }
        }
    }

    async fn publish(&self, change: &StateChange) {
        // Made once: a retry sends the same event, with the same id, for subscribers to dedupe.
        let event = Event::state(self.instance.clone(), change, Utc::now());
        let events = &self.ctx.ports.events;
        if let Err(error) = retry::while_unavailable("event", || events.send(&event)).await {
            tracing::error!(%error, "event not published");
        }
    }
}

fn failed(reason: &str) -> ConnectOutcome {
    ConnectOutcome::Failed { reason: reason.to_owned() }
}

fn state_name(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Disconnected => "disconnected",
        InstanceState::Connecting => "connecting",
        InstanceState::Connected => "connected",
        InstanceState::LoggedOut => "loggedout",
        InstanceState::Banned => "banned",
    }
}

/// `5511999999999:12@s.whatsapp.net` (a device) → `5511999999999@s.whatsapp.net` (the number).
pub(crate) fn user_jid(jid: &str) -> String {
    match jid.split_once('@') {
        Some((user, server)) => {
            let user = user.split(':').next().unwrap_or(user);
            format!("{user}@{server}")
        }
        None => jid.to_owned(),
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_jids_become_number_jids() {
        assert_eq!(user_jid("5511999999999:12@s.whatsapp.net"), "5511999999999@s.whatsapp.net");
        assert_eq!(user_jid("5511999999999@s.whatsapp.net"), "5511999999999@s.whatsapp.net");
        assert_eq!(user_jid("odd"), "odd");
    }
}
