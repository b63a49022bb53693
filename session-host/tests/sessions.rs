//! The session host against a scripted client behind the seam: commands in through the command
//! queue, states, events, connect answers and credential stores out through the ports.

// The scripted client and the harness are test code: a failed step should panic right there.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ryze_core::adapters::embedded;
use ryze_core::domain::{
    AccountId, ConnectOutcome, ConnectRequest, ConnectRequestId, Connection, Event, HostId, Instance,
    InstanceId, InstanceName, InstanceState, LoginMethod, PhoneNumber, SessionCommand, Settings,
};
use ryze_core::ports::{BlobKey, Ports};
use ryze_core::secrets::{Keyring, MasterKey};
use ryze_session_host::client::{CallOffer, ClientEvent, IncomingMessage};
use ryze_session_host::{HostConfig, SessionHost, WhatsAppUrl};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod scripted;
use scripted::{Call, ScriptedFactory, Started};

struct Harness {
    ports: Ports,
    keys: Arc<Keyring>,
    instance: InstanceId,
    started: mpsc::UnboundedReceiver<Started>,
    shutdown: CancellationToken,
    host: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

const WAIT: Duration = Duration::from_secs(5);

impl Harness {
    async fn new(adjust: impl FnOnce(&mut HostConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = embedded::open(dir.path()).unwrap();
        let keys = Arc::new(Keyring::new(&MasterKey::generate()));
        let name = InstanceName::parse("sales").unwrap();
        let instance = Instance::new(AccountId::generate(), name, "token", &keys, Utc::now());
        ports.registry.insert_instance(&instance, 10).await.unwrap();
        Self::on(ports, keys, instance.id, dir, adjust)
    }

    /// A host on existing state (a restart).
    fn on(
        ports: Ports,
        keys: Arc<Keyring>,
        instance: InstanceId,
        dir: tempfile::TempDir,
        adjust: impl FnOnce(&mut HostConfig),
    ) -> Self {
        let mut config =
            HostConfig::new(WhatsAppUrl::parse("ws://127.0.0.1:1/ws/chat").unwrap(), dir.path().join("work"));
        adjust(&mut config);
        let (started_tx, started) = mpsc::unbounded_channel();
        let host =
            SessionHost::new(ports.clone(), keys.clone(), config, ScriptedFactory { started: started_tx });
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let host = tokio::spawn(async move { host.run(token).await.unwrap() });
        Self { ports, keys, instance, started, shutdown, host, _dir: dir }
    }

    async fn send(&self, command: SessionCommand) {
        self.ports.commands.send(&command).await.unwrap();
    }

    /// Sends a connect and returns its pending request's id.
    async fn connect(&self, login: LoginMethod) -> ConnectRequestId {
        let request = ConnectRequest {
            id: ConnectRequestId::generate(),
            instance: self.instance.clone(),
            created_at: Utc::now(),
            outcome: None,
        };
        self.ports.registry.put_connect_request(&request).await.unwrap();
        self.send(SessionCommand::Connect {
            instance: self.instance.clone(),
            request: request.id.clone(),
            login,
            history_days: None,
        })
        .await;
        request.id
    }

    async fn next_start(&mut self) -> Started {
        tokio::time::timeout(WAIT, self.started.recv()).await.expect("a client starts within 5 s").unwrap()
    }

    /// Reads the request until answered, as the API's connect call does (the answer is a registry
    /// write, with no event to await).
    async fn answer(&self, request: &ConnectRequestId) -> ConnectOutcome {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let current = self.ports.registry.connect_request(request).await.unwrap().unwrap();
            if let Some(outcome) = current.outcome {
                return outcome;
            }
            assert!(tokio::time::Instant::now() < deadline, "connect request not answered within 5 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for the next `instance.state` event and returns its `data.state`.
    async fn next_state_event(&self) -> Event {
        let deliveries = self.ports.events.receive(1, WAIT).await.unwrap();
        deliveries.into_iter().next().expect("an event within 5 s").message
    }

    async fn expect_states(&self, states: &[&str]) -> Vec<Event> {
        let mut events = Vec::new();
        for state in states {
            let event = self.next_state_event().await;
            assert_eq!(event.data["state"], *state, "{:?}", event.data);
            events.push(event);
        }
        events
    }

    async fn connection(&self) -> Connection {
        self.ports.registry.instance(&self.instance).await.unwrap().unwrap().connection.clone()
    }

    async fn store(&self) -> Option<Vec<u8>> {
        self.ports.blobs.get(&BlobKey::session_store(&self.instance)).await.unwrap()
    }

    /// Stops the host; the data directory lives on in what is returned.
    async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.host).await.expect("the host stops within 5 s").unwrap();
        self._dir
    }
}

async fn pair(harness: &mut Harness) -> Started {
    let request = harness.connect(LoginMethod::QrCode).await;
    let client = harness.next_start().await;
    client.events.send(ClientEvent::QrCode { code: "2@ref,noise,identity,adv".into() }).unwrap();
    assert_eq!(
        harness.answer(&request).await,
        ConnectOutcome::QrCode { code: "2@ref,noise,identity,adv".into() }
    );
    client
        .events
        .send(ClientEvent::PairSuccess { jid: "5511999999999:7@s.whatsapp.net".into(), business_name: None })
        .unwrap();
    client
        .events
        .send(ClientEvent::Connected {
            jid: Some("5511999999999:7@s.whatsapp.net".into()),
            push_name: Some("Ana".into()),
        })
        .unwrap();
    harness.expect_states(&["connecting", "qr_ready", "connected"]).await;
    client
}

#[tokio::test]
async fn a_qr_login_answers_the_connect_call_and_ends_connected() {
    let mut harness = Harness::new(|_| {}).await;
    let client = pair(&mut harness).await;
    assert!(client.spec.store.is_none(), "a connect pairs a new device");
    assert!(client.spec.skip_history, "disableHistorySync is on by default");
    let connection = harness.connection().await;
    assert_eq!(connection.state, InstanceState::Connected);
    assert_eq!(connection.number_jid.as_deref(), Some("5511999999999@s.whatsapp.net"));
    let profile = harness.ports.registry.instance(&harness.instance).await.unwrap().unwrap().profile.clone();
    assert_eq!(profile.name.as_deref(), Some("Ana"));
    let saved = harness.store().await.expect("saved right after pairing");
    assert!(saved.starts_with(b"credential store #"), "the client's store: {saved:?}");
    harness.stop().await;
}

#[tokio::test]
async fn a_second_connect_while_pairing_gets_the_current_code_and_no_second_client() {
    let mut harness = Harness::new(|_| {}).await;
    let first = harness.connect(LoginMethod::QrCode).await;
    let client = harness.next_start().await;
    let second = harness.connect(LoginMethod::QrCode).await;
    client.events.send(ClientEvent::QrCode { code: "2@one".into() }).unwrap();
    assert_eq!(harness.answer(&first).await, ConnectOutcome::QrCode { code: "2@one".into() });
    assert_eq!(harness.answer(&second).await, ConnectOutcome::QrCode { code: "2@one".into() });
    // WhatsApp rotates the QR: each rotation is published, and later callers get the newest.
    client.events.send(ClientEvent::QrCode { code: "2@two".into() }).unwrap();
    harness.expect_states(&["connecting", "qr_ready", "qr_ready"]).await;
    let third = harness.connect(LoginMethod::QrCode).await;
    assert_eq!(harness.answer(&third).await, ConnectOutcome::QrCode { code: "2@two".into() });
    assert!(harness.started.try_recv().is_err(), "a second client was started");
    harness.stop().await;
}

#[tokio::test]
async fn a_pairing_code_login_asks_the_client_for_a_code() {
    let mut harness = Harness::new(|_| {}).await;
    let phone = PhoneNumber::parse("5511999999999").unwrap();
    let request = harness.connect(LoginMethod::PairingCode { phone }).await;
    let client = harness.next_start().await;
    assert_eq!(harness.answer(&request).await, ConnectOutcome::PairingCode { code: "ABCD1234".into() });
    assert_eq!(client.calls.snapshot(), [Call::PairingCode("5511999999999".into())]);
    // The client also reports the code as an event; it is the same code, and no second event.
    client.events.send(ClientEvent::PairingCode { code: "ABCD1234".into() }).unwrap();
    client
        .events
        .send(ClientEvent::PairSuccess { jid: "5511999999999:3@s.whatsapp.net".into(), business_name: None })
        .unwrap();
    client.events.send(ClientEvent::Connected { jid: None, push_name: None }).unwrap();
    harness.expect_states(&["connecting", "pairing_code_ready", "connected"]).await;
    harness.stop().await;
}

#[tokio::test]
async fn an_unscanned_qr_ends_disconnected_and_fails_the_waiting_call() {
    let mut harness = Harness::new(|config| config.qr_budget = Duration::from_millis(200)).await;
    let request = harness.connect(LoginMethod::QrCode).await;
    let client = harness.next_start().await;
    assert!(matches!(harness.answer(&request).await, ConnectOutcome::Failed { .. }));
    harness.expect_states(&["connecting", "disconnected"]).await;
    assert_eq!(harness.connection().await.state, InstanceState::Disconnected);
    assert!(client.calls.contains(&Call::Stop));
    harness.stop().await;
}

#[tokio::test]
async fn a_proxy_failure_fails_the_waiting_call_at_once() {
    let mut harness = Harness::new(|_| {}).await;
    let request = harness.connect(LoginMethod::QrCode).await;
    let client = harness.next_start().await;
    client
        .events
        .send(ClientEvent::ConnectFailed { reason: "proxy authentication failed (407)".into() })
        .unwrap();
    assert!(matches!(harness.answer(&request).await, ConnectOutcome::Failed { .. }));
    let events = harness.expect_states(&["connecting", "disconnected"]).await;
    assert_eq!(events[1].data["reason"], "proxy authentication failed (407)");
    harness.stop().await;
}

#[tokio::test]
async fn a_dropped_socket_is_connecting_while_retrying_and_disconnected_when_it_gives_up() {
    let mut harness = Harness::new(|config| config.reconnect_budget = Duration::from_millis(300)).await;
    let client = pair(&mut harness).await;
    client.events.send(ClientEvent::Disconnected { reason: "read error".into() }).unwrap();
    harness.expect_states(&["connecting"]).await;
    assert_eq!(harness.connection().await.state, InstanceState::Connecting);
    client.events.send(ClientEvent::Connected { jid: None, push_name: None }).unwrap();
    harness.expect_states(&["connected"]).await;
    client.events.send(ClientEvent::Disconnected { reason: "read error".into() }).unwrap();
    harness.expect_states(&["connecting", "disconnected"]).await;
    assert_eq!(harness.connection().await.state, InstanceState::Disconnected);
    assert!(harness.store().await.is_some(), "a dropped session keeps its credentials");
    harness.stop().await;
}

#[tokio::test]
async fn failure_stanzas_give_their_states() {
    let cases: [(ClientEvent, InstanceState, &str, bool); 5] = [
        (
            ClientEvent::LoggedOut { reason: "device removed".into() },
            InstanceState::LoggedOut,
            "logged_out",
            false,
        ),
        (ClientEvent::AccountLocked { reason: "403".into() }, InstanceState::Banned, "banned", false),
        (
            ClientEvent::TemporaryBan { reason: "SentToTooManyPeople".into(), expires_at: Some(Utc::now()) },
            InstanceState::Banned,
            "temp_banned",
            true,
        ),
        (ClientEvent::StreamReplaced, InstanceState::Disconnected, "disconnected", true),
        (ClientEvent::Stopped, InstanceState::Disconnected, "disconnected", true),
    ];
    for (event, state, name, keeps_store) in cases {
        let mut harness = Harness::new(|_| {}).await;
        let client = pair(&mut harness).await;
        client.events.send(event.clone()).unwrap();
        let events = harness.expect_states(&[name]).await;
        assert_eq!(harness.connection().await.state, state, "{event:?}");
        assert_eq!(harness.store().await.is_some(), keeps_store, "{event:?}");
        if name == "temp_banned" {
            assert_eq!(events[0].data["reason"], "SentToTooManyPeople");
            assert!(events[0].data["expiresAt"].is_string());
        }
        if state == InstanceState::LoggedOut {
            assert_eq!(harness.connection().await.number_jid, None);
        }
        harness.stop().await;
    }
}

#[tokio::test]
async fn settings_apply_to_a_live_session() {
    let mut harness = Harness::new(|_| {}).await;
    let client = pair(&mut harness).await;
    let settings = Settings {
        keep_online_status: true,
        auto_reject_calls: true,
        call_reject_message: "Busy, text me".into(),
        auto_read_messages: true,
        ignore_group_messages: true,
        ..Settings::default()
    };
    harness.send(SessionCommand::ApplySettings { instance: harness.instance.clone(), settings }).await;
    let call = CallOffer {
        call_id: "C1".into(),
        from: "5511888888888@s.whatsapp.net".into(),
        creator: "5511888888888@s.whatsapp.net".into(),
    };
    let direct = IncomingMessage {
        id: "M1".into(),
        chat: "5511888888888@s.whatsapp.net".into(),
        sender: "5511888888888@s.whatsapp.net".into(),
        is_group: false,
        is_status: false,
        from_me: false,
    };
    let group =
        IncomingMessage { id: "M2".into(), chat: "123@g.us".into(), is_group: true, ..direct.clone() };
    // The settings command travels the queue: once the session sends the presence they ask for,
    // it holds them, and the events below meet the new settings.
    client.calls.wait_for(&[Call::Presence(false), Call::Presence(true)]).await;
    client.events.send(ClientEvent::IncomingCall(call)).unwrap();
    client.events.send(ClientEvent::Message(group)).unwrap();
    client.events.send(ClientEvent::Message(direct)).unwrap();
    let expected = [
        // Connected with keepOnlineStatus off: the session says so.
        Call::Presence(false),
        Call::Presence(true),
        Call::Reject("C1".into()),
        Call::SendText("5511888888888@s.whatsapp.net".into(), "Busy, text me".into()),
        Call::MarkRead("M1".into()),
    ];
    client.calls.wait_for(&expected).await;
    harness.stop().await;
}

#[tokio::test]
async fn logout_unlinks_wipes_and_records_one_transition() {
    let mut harness = Harness::new(|_| {}).await;
    let client = pair(&mut harness).await;
    harness.send(SessionCommand::Logout { instance: harness.instance.clone() }).await;
    harness.expect_states(&["logged_out"]).await;
    assert_eq!(harness.connection().await.state, InstanceState::LoggedOut);
    assert!(harness.store().await.is_none());
    assert!(client.calls.contains(&Call::Logout));
    assert!(harness.ports.events.receive(1, Duration::from_millis(100)).await.unwrap().is_empty());
    harness.stop().await;
}

#[tokio::test]
async fn a_proxy_change_redials_a_live_session_from_its_store_with_no_qr() {
    let mut harness = Harness::new(|_| {}).await;
    let first = pair(&mut harness).await;
    let saved = harness.store().await.expect("saved after pairing");
    harness.send(SessionCommand::Redial { instance: harness.instance.clone() }).await;
    let second = harness.next_start().await;
    assert!(first.calls.contains(&Call::Stop), "the old socket closed, the device not unlinked");
    assert!(!first.calls.contains(&Call::Logout));
    let restored = second.spec.store.as_deref().expect("logged in from the store");
    assert_ne!(restored, &saved[..], "saved again before closing, and that is what it logs in with");
    harness.expect_states(&["connecting"]).await;
    second.events.send(ClientEvent::Connected { jid: None, push_name: None }).unwrap();
    harness.expect_states(&["connected"]).await;
    harness.stop().await;
}

#[tokio::test]
async fn reconnect_logs_in_with_the_saved_store() {
    let mut harness = Harness::new(|_| {}).await;
    let first = pair(&mut harness).await;
    harness.stop_session(first).await;
    harness.send(SessionCommand::Reconnect { instance: harness.instance.clone() }).await;
    let second = harness.next_start().await;
    let restored = second.spec.store.as_deref().expect("started from the saved store");
    assert!(restored.starts_with(b"credential store #"), "{restored:?}");
    harness.expect_states(&["connecting"]).await;
    second.events.send(ClientEvent::Connected { jid: None, push_name: None }).unwrap();
    harness.expect_states(&["connected"]).await;
    assert_eq!(harness.connection().await.number_jid.as_deref(), Some("5511999999999@s.whatsapp.net"));
    harness.stop().await;
}

impl Harness {
    /// Ends a session as a replaced stream would, keeping its store.
    async fn stop_session(&self, client: Started) {
        client.events.send(ClientEvent::StreamReplaced).unwrap();
        self.expect_states(&["disconnected"]).await;
    }
}

#[tokio::test]
async fn a_host_stopping_saves_every_session_and_hands_it_to_the_fleet() {
    let mut harness = Harness::new(|_| {}).await;
    let client = pair(&mut harness).await;
    let before = harness.store().await.expect("saved after pairing");
    let (ports, instance) = (harness.ports.clone(), harness.instance.clone());
    assert!(ports.leases.lease(&instance).await.unwrap().holder.is_some(), "run under a lease");
    let _dir = harness.stop().await;
    let state = ports.registry.instance(&instance).await.unwrap().unwrap().connection.state;
    assert_eq!(state, InstanceState::Connecting, "reconnecting elsewhere, not a stale connected");
    assert!(client.calls.contains(&Call::Stop));
    let after = ports.blobs.get(&BlobKey::session_store(&instance)).await.unwrap().expect("a store");
    assert_ne!(after, before, "saved again on the way down");
    assert_eq!(ports.leases.lease(&instance).await.unwrap().holder, None, "the lease was let go");
    let queued = ports.commands.receive(10, Duration::from_secs(1)).await.unwrap();
    let commands: Vec<_> = queued.into_iter().map(|d| d.message).collect();
    assert_eq!(commands, [SessionCommand::Reconnect { instance }], "a host with room resumes it");
    assert!(ports.leases.hosts().await.unwrap().is_empty(), "the host left the fleet");
}

#[tokio::test]
async fn a_connect_before_a_linked_instance_is_resumed_logs_it_in_and_keeps_its_link() {
    let mut harness = Harness::new(|_| {}).await;
    let _client = pair(&mut harness).await;
    let (ports, keys, instance) = (harness.ports.clone(), harness.keys.clone(), harness.instance.clone());
    let dir = harness.stop().await;
    let saved = ports.blobs.get(&BlobKey::session_store(&instance)).await.unwrap().expect("a store");
    // The resume its host queued on the way down has not been handled yet when a connect comes.
    let queued = ports.commands.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(queued.len(), 1, "the handover's reconnect");

    let mut next = Harness::on(ports, keys, instance, dir, |_| {});
    let request = next.connect(LoginMethod::QrCode).await;
    let resumed = next.next_start().await;
    assert_eq!(resumed.spec.store.as_deref(), Some(saved.as_slice()), "logged in from the saved store");
    assert!(
        matches!(next.answer(&request).await, ConnectOutcome::Failed { .. }),
        "no QR for a linked instance"
    );
    assert_eq!(next.store().await.as_deref(), Some(saved.as_slice()), "the link was kept");
    resumed.events.send(ClientEvent::Connected { jid: None, push_name: None }).unwrap();
    // The stop said `connecting`; the resume adds only `connected`.
    next.expect_states(&["connecting", "connected"]).await;
    next.stop().await;
}

#[tokio::test]
async fn a_host_without_a_fleet_keeps_its_sessions_for_its_next_start() {
    let mut harness = Harness::new(keep_leases).await;
    // Kept alive: a client whose events end has stopped, and its session with it.
    let _client = pair(&mut harness).await;
    let (ports, keys, instance) = (harness.ports.clone(), harness.keys.clone(), harness.instance.clone());
    let dir = harness.stop().await;
    let lease = ports.leases.lease(&instance).await.unwrap();
    assert!(lease.holder.is_some(), "kept for the next start");

    // The next start of the same host resumes it from the saved store, with no command at all.
    let mut restarted = Harness::on(ports, keys, instance, dir, keep_leases);
    let resumed = restarted.next_start().await;
    assert!(resumed.spec.store.as_deref().is_some_and(|s| s.starts_with(b"credential store #")));
    resumed.events.send(ClientEvent::Connected { jid: None, push_name: None }).unwrap();
    // The stop said `connecting` already; the resume says `connected` when it is.
    restarted.expect_states(&["connecting", "connected"]).await;
    let taken = restarted.ports.leases.lease(&restarted.instance).await.unwrap();
    assert!(taken.fence > lease.fence, "the new start took the lease under a new fence");
    restarted.stop().await;
}

fn keep_leases(config: &mut HostConfig) {
    config.host_id = HostId::new("local").unwrap();
    config.hand_over_on_stop = false;
}

#[tokio::test]
async fn a_session_never_overwrites_a_store_rewritten_elsewhere() {
    let mut harness = Harness::new(|_| {}).await;
    let client = pair(&mut harness).await;
    harness.store().await.expect("saved after pairing");
    // Another host took the instance over and saved its own store.
    let key = BlobKey::session_store(&harness.instance);
    harness.ports.blobs.put(&key, b"another host's store".to_vec()).await.unwrap();
    let ports = harness.ports.clone();
    let _dir = harness.stop().await;
    assert!(client.calls.contains(&Call::Stop));
    let kept = ports.blobs.get(&key).await.unwrap();
    assert_eq!(kept.as_deref(), Some(&b"another host's store"[..]), "the stop's save did not clobber it");
}

#[tokio::test]
async fn the_presence_is_set_again_after_the_client_learns_the_name() {
    let mut harness = Harness::new(|_| {}).await;
    let client = pair(&mut harness).await;
    // whatsapp-rust announces `available` by itself when the name arrives; the session corrects it.
    client.events.send(ClientEvent::PushName { name: "Ana Maria".into() }).unwrap();
    client.calls.wait_for(&[Call::Presence(false), Call::Presence(false)]).await;
    // Stopping the host awaits the session's last write.
    let (ports, instance) = (harness.ports.clone(), harness.instance.clone());
    let _dir = harness.stop().await;
    let profile = ports.registry.instance(&instance).await.unwrap().unwrap().profile.clone();
    assert_eq!(profile.name.as_deref(), Some("Ana Maria"));
}
