//! The fake WhatsApp server against a real whatsapp-rust 0.7.0 client: pairing by QR and by code,
//! login and reconnect, the failure stanzas, overlapping logins and frozen connections, incoming
//! calls and messages, and what the server records of the client.
//!
//! Each test runs a `Bot` on a SQLite store in a temporary directory, reads its events through a
//! channel and awaits each one under a deadline, so a failure names the event that did not come.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ryze_tests::fake_whatsapp::{
    CLIENT_VERSION, Chat, DEFAULT_PUSH_NAME, FakeError, FakeWhatsApp, NoisePattern, RefuseHttp,
};
use tempfile::TempDir;
use tokio::sync::mpsc;
use whatsapp_rust::bot::{Bot, BotBuilder, BotHandle, Provided};
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::types::call::CallAction;
use whatsapp_rust::types::events::{ConnectFailureReason, Event, EventHandler, TempBanReason};
use whatsapp_rust::types::message::MessageInfo;
use whatsapp_rust::wacore::iq::keepalive::KeepaliveSpec;
use whatsapp_rust::wacore::store::device::{DevicePropsOverride, default_history_sync_config};
use whatsapp_rust::waproto::whatsapp::device_props::HistorySyncConfig;
use whatsapp_rust::{IqError, TokioRuntime};

const PHONE: &str = "5511999999999";
const CONTACT: &str = "5511888888888";

/// Generous for two loaded cores: the slowest step, pairing by code, runs PBKDF2 (2^17 rounds,
/// unoptimised) four times; everything else takes well under a second.
const DEADLINE: Duration = Duration::from_secs(30);

/// Forwards every client event, in dispatch order, to the test.
struct Forward(mpsc::UnboundedSender<Arc<Event>>);

impl EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        let _ = self.0.send(event);
    }
}

/// A running client and the events it emitted.
struct Client {
    handle: Option<BotHandle>,
    events: mpsc::UnboundedReceiver<Arc<Event>>,
    /// Events an earlier `expect` passed over, oldest first: the order of unrelated events (say
    /// `Connected` and `SelfPushNameUpdated`) is not the test's business.
    skipped: Vec<Arc<Event>>,
}

type Builder = BotBuilder<Provided, Provided, Provided, Provided>;

impl Client {
    async fn start(server: &FakeWhatsApp, store: &Path) -> Self {
        Self::start_with(server, store, |builder| builder).await
    }

    /// A client on `store` aimed at `server`, with whatever `configure` adds to the builder.
    async fn start_with(
        server: &FakeWhatsApp,
        store: &Path,
        configure: impl FnOnce(Builder) -> Builder,
    ) -> Self {
        let backend = SqliteStore::new(&store.to_string_lossy()).await.expect("sqlite store opens");
        let (sender, events) = mpsc::unbounded_channel();
        let builder = Bot::builder()
            .with_backend(backend)
            .with_transport_factory(server.transport())
            .with_http_client(RefuseHttp)
            .with_runtime(TokioRuntime)
            .with_version(CLIENT_VERSION)
            .with_event_handler(Forward(sender));
        let bot = configure(builder).build().await.expect("bot builds");
        Self { handle: Some(bot.spawn()), events, skipped: Vec::new() }
    }

    fn client(&self) -> Arc<whatsapp_rust::Client> {
        self.handle.as_ref().expect("client running").client()
    }

    /// Takes the first not yet taken event `pick` accepts, waiting for it if needed; panics
    /// naming `what` after `within`.
    async fn expect<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        for (index, event) in self.skipped.iter().enumerate() {
            if let Some(found) = pick(event) {
                self.skipped.remove(index);
                return found;
            }
        }
        let wanted = async {
            while let Some(event) = self.events.recv().await {
                match pick(&event) {
                    Some(found) => return found,
                    None => self.skipped.push(event),
                }
            }
            panic!("the client stopped before {what}");
        };
        tokio::time::timeout(within, wanted).await.unwrap_or_else(|_| panic!("no {what} within {within:?}"))
    }

    async fn qr(&mut self) -> String {
        self.expect("QR code", DEADLINE, |e| match e {
            Event::PairingQrCode(qr) => Some(qr.code.clone()),
            _ => None,
        })
        .await
    }

    async fn connected(&mut self) {
        self.expect("Connected", DEADLINE, |e| matches!(e, Event::Connected(_)).then_some(())).await;
    }

    /// The next `LoggedOut`, as (reason, on_connect).
    async fn logged_out(&mut self) -> (ConnectFailureReason, bool) {
        self.expect("LoggedOut", DEADLINE, |e| match e {
            Event::LoggedOut(out) => Some((out.reason, out.on_connect)),
            _ => None,
        })
        .await
    }

    /// The message `id` once the client emits it, as its info and its text.
    async fn text_message(&mut self, id: &str) -> (Arc<MessageInfo>, Option<String>) {
        self.expect(&format!("message {id}"), DEADLINE, |e| match e {
            Event::Messages(batch) => batch
                .iter()
                .find(|m| m.info.id == id)
                .map(|m| (m.info.clone(), m.message.conversation.clone())),
            _ => None,
        })
        .await
    }

    /// Forgets every event so far, so that the next `expect` sees only what comes after.
    fn forget_events(&mut self) {
        self.skipped.clear();
        while self.events.try_recv().is_ok() {}
    }

    /// The keepalive ping the client sends by itself, under a deadline of `within`.
    async fn ping(&self, within: Duration) -> Result<(), IqError> {
        self.client().execute(KeepaliveSpec::with_timeout(within)).await
    }

    async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }
}

fn store_in(dir: &TempDir) -> PathBuf {
    dir.path().join("whatsapp.db")
}

/// Copies a stopped client's SQLite store (with its journal files, if any) to `to`: a second
/// client on the copy is the same device, as a second host restoring the same saved store is.
fn copy_store(from: &Path, to: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let source = PathBuf::from(format!("{}{suffix}", from.display()));
        if source.exists() {
            std::fs::copy(&source, format!("{}{suffix}", to.display())).expect("store copied");
        }
    }
}

/// Pairs a new client by QR as `phone` and waits until it is connected.
async fn paired_client(server: &FakeWhatsApp, store: &Path, phone: &str) -> Client {
    let mut client = Client::start(server, store).await;
    let qr = client.qr().await;
    server.scan_qr(&qr, phone).await.expect("the phone scans the QR");
    client.connected().await;
    server.wait_logged_in(phone, DEADLINE).await.expect("logged in on the server");
    client
}

#[tokio::test]
async fn a_new_client_shows_a_real_qr_code() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = Client::start(&server, &store_in(&dir)).await;

    let qr = client.qr().await;

    let fields: Vec<&str> = qr.split(',').collect();
    assert_eq!(fields.len(), 5, "ref, noise key, identity key, adv secret, client type: {qr}");
    assert!(fields[0].starts_with("2@"), "the ref the server sent: {qr}");
    client.stop().await;
}

#[tokio::test]
async fn the_phone_only_scans_qr_codes_of_waiting_clients() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = Client::start(&server, &store_in(&dir)).await;
    let qr = client.qr().await;

    assert!(matches!(server.scan_qr("not a qr", PHONE).await, Err(FakeError::BadQr(_))));
    assert!(matches!(server.scan_qr(&qr, "+55 11").await, Err(FakeError::BadPhone(_))));
    client.stop().await;
    server.wait_for("the socket closed", DEADLINE, || server.open_connections() == 0).await.expect("closed");
    assert!(matches!(server.scan_qr(&qr, PHONE).await, Err(FakeError::UnknownQr(_))));
    assert!(matches!(server.drop_socket(PHONE).await, Err(FakeError::UnknownAccount(_))));
}

#[tokio::test]
async fn scanning_the_qr_pairs_and_connects() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = Client::start(&server, &store_in(&dir)).await;
    let qr = client.qr().await;

    server.scan_qr(&qr, PHONE).await.expect("the phone scans the QR");

    let paired = client
        .expect("PairSuccess", DEADLINE, |e| match e {
            Event::PairSuccess(success) => Some(success.id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(paired.user, PHONE);
    // The phone's app-state key share ends the client's 10 s wait for it.
    let connected_in = Duration::from_secs(5);
    client
        .expect("a quick Connected", connected_in, |e| matches!(e, Event::Connected(_)).then_some(()))
        .await;
    server.wait_logged_in(PHONE, DEADLINE).await.expect("logged in on the server");
    assert_eq!(server.logins(PHONE), 1);
    assert!(client.client().is_logged_in());
    client.stop().await;
}

#[tokio::test]
async fn a_paired_client_reconnects_without_a_qr() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_in(&dir);
    paired_client(&server, &store, PHONE).await.stop().await;

    let mut again = Client::start(&server, &store).await;
    again
        .expect("Connected", DEADLINE, |e| match e {
            Event::PairingQrCode(_) => panic!("a paired client must not show a QR code"),
            Event::Connected(_) => Some(()),
            _ => None,
        })
        .await;

    server.wait_logged_in(PHONE, DEADLINE).await.expect("logged in again");
    assert_eq!(server.logins(PHONE), 2);
    assert_eq!(server.handshakes().last(), Some(&NoisePattern::Ik), "a reconnect resumes with Noise IK");
    again.stop().await;
}

#[tokio::test]
async fn a_client_falls_back_to_xx_when_the_server_key_rotated() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_in(&dir);
    paired_client(&server, &store, PHONE).await.stop().await;

    server.rotate_noise_key();
    let mut again = Client::start(&server, &store).await;
    again.connected().await;

    assert_eq!(server.handshakes().last(), Some(&NoisePattern::XxFallback));
    assert_eq!(server.logins(PHONE), 2);
    again.stop().await;
}

#[tokio::test]
async fn logout_from_the_phone_logs_the_client_out() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_in(&dir);
    let mut client = paired_client(&server, &store, PHONE).await;

    server.logout(PHONE).await.expect("logout");

    assert_eq!(client.logged_out().await, (ConnectFailureReason::LoggedOut, false));
    client.stop().await;
    // The device is gone from the account: logging in again is refused.
    let mut again = Client::start(&server, &store).await;
    assert_eq!(again.logged_out().await, (ConnectFailureReason::LoggedOut, true));
    again.stop().await;
}

#[tokio::test]
async fn a_ban_locks_the_account_now_and_at_the_next_login() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_in(&dir);
    let mut client = paired_client(&server, &store, PHONE).await;

    server.ban(PHONE).await.expect("ban");

    assert_eq!(client.logged_out().await, (ConnectFailureReason::AccountLocked, true));
    client.stop().await;
    let mut again = Client::start(&server, &store).await;
    assert_eq!(again.logged_out().await, (ConnectFailureReason::AccountLocked, true));
    assert_eq!(server.logins(PHONE), 1, "a locked account gets no <success>");
    again.stop().await;
}

#[tokio::test]
async fn a_temporary_ban_reports_its_code_and_expiry() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_in(&dir);
    let mut client = paired_client(&server, &store, PHONE).await;

    server.temp_ban(PHONE, 101, 3600).await.expect("temporary ban");

    let (code, expire) = client
        .expect("TemporaryBan", DEADLINE, |e| match e {
            Event::TemporaryBan(ban) => Some((ban.code.clone(), ban.expire.num_seconds())),
            _ => None,
        })
        .await;
    assert_eq!(code, TempBanReason::SentToTooManyPeople);
    assert_eq!(expire, 3600);
    client.stop().await;

    server.unban(PHONE);
    let mut again = Client::start(&server, &store).await;
    again.connected().await;
    again.stop().await;
}

#[tokio::test]
async fn refused_connections_make_the_retries_fail_until_lifted() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = paired_client(&server, &store_in(&dir), PHONE).await;

    server.refuse_connections(true);
    server.drop_socket(PHONE).await.expect("drop socket");
    client.expect("Disconnected", DEADLINE, |e| matches!(e, Event::Disconnected(_)).then_some(())).await;
    server
        .wait_for("two refused retries", DEADLINE, || server.refused_connections() >= 2)
        .await
        .expect("retries");
    assert!(!server.logged_in(PHONE));

    server.refuse_connections(false);
    client.connected().await;
    assert_eq!(server.logins(PHONE), 2);
    client.stop().await;
}

#[tokio::test]
async fn pairing_by_code_connects() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = Client::start(&server, &store_in(&dir)).await;
    client.client().wait_for_socket(DEADLINE).await.expect("socket up");

    let options = PairCodeOptions { phone_number: PHONE.to_owned(), ..Default::default() };
    let code = client.client().pair_with_code(options).await.expect("pairing code");
    assert_eq!(code.len(), 8);
    server.enter_pairing_code(PHONE, &code).await.expect("the phone accepts the code");

    let paired = client
        .expect("PairSuccess", DEADLINE, |e| match e {
            Event::PairSuccess(success) => Some(success.id.user.clone()),
            _ => None,
        })
        .await;
    assert_eq!(paired, PHONE);
    client.connected().await;
    server.wait_logged_in(PHONE, DEADLINE).await.expect("logged in on the server");
    client.stop().await;
}

#[tokio::test]
async fn a_wrong_pairing_code_does_not_pair() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = Client::start(&server, &store_in(&dir)).await;
    client.client().wait_for_socket(DEADLINE).await.expect("socket up");
    let options = PairCodeOptions { phone_number: PHONE.to_owned(), ..Default::default() };
    let code = client.client().pair_with_code(options).await.expect("pairing code");
    let wrong = if code.starts_with('A') { code.replacen('A', "B", 1) } else { format!("A{}", &code[1..]) };

    let entered = server.enter_pairing_code(PHONE, &wrong).await;

    assert!(matches!(entered, Err(FakeError::WrongCode)), "{entered:?}");
    assert_eq!(server.logins(PHONE), 0);
    client.stop().await;
}

#[tokio::test]
async fn the_server_records_registration_presence_and_unlink() {
    let server = FakeWhatsApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let history = HistorySyncConfig { full_sync_days_limit: Some(30), ..default_history_sync_config() };
    let props = DevicePropsOverride::new().with_require_full_sync(true).with_history_sync_config(history);
    let mut client = Client::start_with(&server, &store_in(&dir), |b| b.with_device_props(props)).await;
    let qr = client.qr().await;
    server.scan_qr(&qr, PHONE).await.expect("the phone scans the QR");
    client.connected().await;

    let registration = server.registration(PHONE).expect("a registration");
    assert_eq!(registration.full_sync_days, Some(30));
    assert!(registration.require_full_sync);

    // The push name the phone sends after the first login makes the client announce itself.
    let pushed = client
        .expect("SelfPushNameUpdated", DEADLINE, |e| match e {
            Event::SelfPushNameUpdated(update) => Some(update.new_name.clone()),
            _ => None,
        })
        .await;
    assert_eq!(pushed, DEFAULT_PUSH_NAME);
    server
        .wait_for("presence available", DEADLINE, || !server.presences(PHONE).is_empty())
        .await
        .expect("presence");
    client.client().presence().set_unavailable().await.expect("presence unavailable");
    server
        .wait_for("presence unavailable", DEADLINE, || server.presences(PHONE).len() >= 2)
        .await
        .expect("presence");
    assert_eq!(server.presences(PHONE).last().map(String::as_str), Some("unavailable"));
    assert_eq!(server.presences(PHONE).first().map(String::as_str), Some("available"));

    assert!(!server.unlinked(PHONE));
    client.client().logout().await;
    server.wait_for("remove-companion-device", DEADLINE, || server.unlinked(PHONE)).await.expect("unlinked");
    client.stop().await;
}

mod liveness;
mod traffic;
