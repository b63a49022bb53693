//! The client seam on whatsapp-rust: one `Bot` per session, its SQLite store in a working file
//! that the session saves through the blob store as bytes.
//!
//! Facts of whatsapp-rust 0.7.0 this relies on: `Client::disconnect` is terminal (a restart builds a
//! new `Bot` on the same store); failed socket opens are only logged by the client, so our transport
//! factory reports them itself; events of the bus are delivered in order to a handler subscribed on
//! the client; `logout` unlinks the device but leaves the keys in the store, which the session wipes;
//! a socket that stays open but silent is noticed late and without a `Disconnected` event, so each
//! client gets our own watchdog (`liveness`), which drops it with `reconnect_immediately` (the
//! client's own dead-socket path: the run loop dials again at once, with no backoff).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Mutex, mpsc};
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::transport::{
    TokioWebSocketTransportFactory, Transport, TransportEvent, TransportFactory, default_tls_connector,
    from_websocket,
};
use whatsapp_rust::types::events::{ConnectFailureReason, Event, EventHandler};
use whatsapp_rust::wacore::iq::keepalive::KeepaliveSpec;
use whatsapp_rust::wacore::iq::spec::IqSpec;
use whatsapp_rust::wacore::store::DevicePropsOverride;
use whatsapp_rust::wacore::store::device::default_history_sync_config;
use whatsapp_rust::wacore::types::call::CallAction;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, Jid, TokioRuntime};

use crate::HostError;
use crate::client::{CallOffer, ClientEvent, ClientFactory, IncomingMessage, SessionClient, StartSpec};
use crate::config::{HostConfig, WhatsAppUrl};
use crate::liveness::{self, Line, Mark};
use crate::proxy::{ProxySpec, open_tunnel};

/// How long a pairing-code request waits for the socket to be up.
const SOCKET_WAIT: Duration = Duration::from_secs(30);

/// Starts whatsapp-rust clients.
pub struct WhatsAppFactory {
    url: WhatsAppUrl,
    web_version: (u32, u32, u32),
    work_dir: PathBuf,
    /// How long a socket may stay silent before the watchdog drops it; zero: no watchdog.
    dead_socket_after: Duration,
    /// TLS to HTTPS proxies: the web PKI's roots and the deployment's own.
    proxy_tls: Arc<rustls::ClientConfig>,
}

impl WhatsAppFactory {
    pub fn new(config: &HostConfig) -> Result<Self, HostError> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for certificate in &config.proxy_roots {
            roots.add(certificate.clone()).map_err(|e| HostError::Config(format!("proxy CA: {e}")))?;
        }
        let proxy_tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| HostError::Config(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Self {
            url: config.whatsapp_url.clone(),
            web_version: config.web_version,
            work_dir: config.work_dir.clone(),
            dead_socket_after: config.dead_socket_after,
            proxy_tls: Arc::new(proxy_tls),
        })
    }
}

/// A running whatsapp-rust client.
pub struct WhatsAppClient {
    client: Arc<Client>,
    handle: Mutex<Option<BotHandle>>,
    store_path: PathBuf,
    /// The dead-socket watchdog, ended with the client.
    watchdog: Option<tokio::task::AbortHandle>,
    /// Keeps our event handler subscribed for the client's life.
    _subscription: whatsapp_rust::wacore::types::events::Subscription,
}

impl Drop for WhatsAppClient {
    fn drop(&mut self) {
        if let Some(watchdog) = &self.watchdog {
            watchdog.abort();
        }
    }
}

impl ClientFactory for WhatsAppFactory {
    type Client = WhatsAppClient;

    async fn start(
        &self,
        spec: StartSpec,
    ) -> Result<(WhatsAppClient, mpsc::UnboundedReceiver<ClientEvent>), HostError> {
        tokio::fs::create_dir_all(&self.work_dir).await.map_err(client_error)?;
        let store_path = self.work_dir.join(format!("{}.db", spec.instance));
        remove_store_files(&store_path).await;
        if let Some(bytes) = &spec.store {
            tokio::fs::write(&store_path, bytes).await.map_err(client_error)?;
        }
        let path = store_path.to_str().ok_or_else(|| HostError::Client("work dir is not UTF-8".into()))?;
        let backend = SqliteStore::new(path).await.map_err(client_error)?;

        // Unbounded: the client's own event bus is, and a session drains it as it goes; a bound
        // here would have to drop state events when full.
        let (events, receiver) = mpsc::unbounded_channel();
        let transport = SocketFactory {
            url: self.url.clone(),
            proxy: spec.proxy.as_ref().map(|(proxy, password)| ProxySpec {
                protocol: proxy.protocol,
                host: proxy.host.clone(),
                port: proxy.port,
                username: proxy.username.clone(),
                password: password.clone(),
            }),
            proxy_tls: self.proxy_tls.clone(),
            failures: events.clone(),
        };
        let mut builder = Bot::builder()
            .with_backend(backend)
            .with_transport_factory(transport)
            .with_http_client(NoHttp)
            .with_runtime(TokioRuntime)
            .with_version(self.web_version);
        if let Some(days) = spec.history_days {
            let config = wa::device_props::HistorySyncConfig {
                full_sync_days_limit: Some(u32::from(days)),
                recent_sync_days_limit: Some(u32::from(days)),
                ..default_history_sync_config()
            };
            builder = builder.with_device_props(
                DevicePropsOverride::new().with_require_full_sync(true).with_history_sync_config(config),
            );
        } else if spec.skip_history {
            builder = builder.skip_history_sync();
        }
        let bot = builder.build().await.map_err(client_error)?;
        let client = bot.client();
        let watchdog = (!self.dead_socket_after.is_zero()).then(|| {
            let watch = liveness::watch(Arc::downgrade(&client), self.dead_socket_after, events.clone());
            tokio::spawn(watch).abort_handle()
        });
        let subscription =
            client.subscribe_handler(Arc::new(Forwarder { events, client: Arc::downgrade(&client) }));
        let handle = bot.spawn();
        Ok((
            WhatsAppClient {
                client,
                handle: Mutex::new(Some(handle)),
                store_path,
                watchdog,
                _subscription: subscription,
            },
            receiver,
        ))
    }
}

impl SessionClient for WhatsAppClient {
    async fn request_pairing_code(&self, phone: &str) -> Result<String, HostError> {
        self.client.wait_for_socket(SOCKET_WAIT).await.map_err(client_error)?;
        let options = PairCodeOptions { phone_number: phone.to_owned(), ..Default::default() };
        self.client.pair_with_code(options).await.map_err(client_error)
    }

    async fn set_presence(&self, available: bool) -> Result<(), HostError> {
        let presence = self.client.presence();
        let sent = if available { presence.set_available().await } else { presence.set_unavailable().await };
        sent.map_err(client_error)
    }

    async fn reject_call(&self, call: &CallOffer) -> Result<(), HostError> {
        let from: Jid = call.from.parse().map_err(client_error)?;
        let creator: Jid = call.creator.parse().map_err(client_error)?;
        self.client.voip().reject_call(&call.call_id, &from, &creator).await.map_err(client_error)
    }

    async fn send_text(&self, to: &str, text: &str) -> Result<(), HostError> {
        let to: Jid = to.parse().map_err(client_error)?;
        self.client.send_text(to, text).await.map(drop).map_err(client_error)
    }

    async fn mark_read(&self, message: &IncomingMessage) -> Result<(), HostError> {
        let chat: Jid = message.chat.parse().map_err(client_error)?;
        let sender: Option<Jid> =
            if message.is_group { Some(message.sender.parse().map_err(client_error)?) } else { None };
        self.client.mark_as_read(&chat, sender.as_ref(), &[message.id.as_str()]).await.map_err(client_error)
    }

    async fn snapshot(&self) -> Result<Vec<u8>, HostError> {
        // Settle what the client holds in memory, then copy the database consistently.
        self.client.flush_pending_signal_state().await.map_err(client_error)?;
        self.client.persistence_manager().flush().await.map_err(client_error)?;
        let source = self.store_path.clone();
        tokio::task::spawn_blocking(move || vacuum_into_bytes(&source)).await.map_err(client_error)?
    }

    async fn logout(&self) {
        self.client.logout().await;
        self.stop().await;
    }

    async fn stop(&self) {
        // First, so no reconnect of ours races the shutdown.
        if let Some(watchdog) = &self.watchdog {
            watchdog.abort();
        }
        if let Some(handle) = self.handle.lock().await.take() {
            handle.shutdown().await;
        }
        remove_store_files(&self.store_path).await;
    }
}

/// The watchdog's view of the client: its receive counters while logged in, its keepalive ping,
/// and the drop the client's own keepalive does on a dead socket.
impl Line for Client {
    fn heard(&self) -> Option<Mark> {
        if !(self.is_connected() && self.is_logged_in()) {
            return None;
        }
        // Frames count once processed; the receive time moves as soon as bytes arrive.
        let stats = self.stats();
        Some((stats.frames_received, stats.last_data_received_ms))
    }

    async fn ping(self: Arc<Self>, within: Duration) {
        if let Err(error) = self.send_iq(KeepaliveSpec::with_timeout(within).build_iq()).await {
            tracing::debug!(%error, "watchdog ping unanswered");
        }
    }

    async fn drop_socket(self: Arc<Self>) {
        self.reconnect_immediately().await;
    }
}

/// Copies a live SQLite database into bytes with `VACUUM INTO` (a consistent snapshot, WAL
/// included) through a separate connection.
fn vacuum_into_bytes(source: &Path) -> Result<Vec<u8>, HostError> {
    let target = source.with_extension(format!("snapshot-{}", unique_suffix()));
    let connection = rusqlite::Connection::open(source).map_err(client_error)?;
    connection.busy_timeout(Duration::from_secs(10)).map_err(client_error)?;
    let target_text = target.to_str().ok_or_else(|| HostError::Client("work dir is not UTF-8".into()))?;
    connection.execute("VACUUM INTO ?1", [target_text]).map_err(client_error)?;
    let bytes = std::fs::read(&target).map_err(client_error);
    let _ = std::fs::remove_file(&target);
    bytes
}

fn unique_suffix() -> String {
    format!("{:x}", Utc::now().timestamp_nanos_opt().unwrap_or_default())
}

async fn remove_store_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = tokio::fs::remove_file(PathBuf::from(file)).await;
    }
}

fn client_error(error: impl std::fmt::Display) -> HostError {
    HostError::Client(error.to_string())
}

/// Refuses every HTTP request: the web version is pinned and history is not downloaded, so nothing
/// of the session needs WhatsApp's HTTP hosts. Media download belongs to the message pipeline.
struct NoHttp;

#[whatsapp_rust::async_trait]
impl HttpClient for NoHttp {
    async fn execute(&self, request: HttpRequest) -> whatsapp_rust::anyhow::Result<HttpResponse> {
        whatsapp_rust::anyhow::bail!("HTTP is not available to sessions ({})", request.url)
    }
}

/// Opens the WhatsApp socket, directly or through the instance's proxy, and reports failures the
/// client would only log.
struct SocketFactory {
    url: WhatsAppUrl,
    proxy: Option<ProxySpec>,
    proxy_tls: Arc<rustls::ClientConfig>,
    failures: mpsc::UnboundedSender<ClientEvent>,
}

#[whatsapp_rust::async_trait]
impl TransportFactory for SocketFactory {
    async fn create_transport(
        &self,
    ) -> Result<
        (Arc<dyn Transport>, whatsapp_rust::async_channel::Receiver<TransportEvent>),
        whatsapp_rust::anyhow::Error,
    > {
        let opened = match &self.proxy {
            None => {
                TokioWebSocketTransportFactory::new().with_url(self.url.as_str()).create_transport().await
            }
            Some(proxy) => self.through_proxy(proxy).await,
        };
        if let Err(error) = &opened {
            tracing::warn!(%error, "whatsapp socket not opened");
            let _ = self.failures.send(ClientEvent::ConnectFailed { reason: error.to_string() });
        }
        opened
    }
}

impl SocketFactory {
    async fn through_proxy(
        &self,
        proxy: &ProxySpec,
    ) -> Result<
        (Arc<dyn Transport>, whatsapp_rust::async_channel::Receiver<TransportEvent>),
        whatsapp_rust::anyhow::Error,
    > {
        let uri: http::Uri = self.url.as_str().parse()?;
        let host =
            uri.host().ok_or_else(|| whatsapp_rust::anyhow::anyhow!("no host in {}", self.url.as_str()))?;
        let secure = uri.scheme_str() == Some("wss");
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let proxy_tls =
            tokio_websockets::Connector::Rustls(tokio_rustls::TlsConnector::from(self.proxy_tls.clone()));
        let tunnel = open_tunnel(proxy, host, port, &proxy_tls).await?;
        let tls = default_tls_connector();
        let upgrade = tokio_websockets::ClientBuilder::from_uri(uri.clone()).add_header(
            http::header::ORIGIN,
            http::HeaderValue::from_static(whatsapp_rust::wacore::net::WHATSAPP_WEB_ORIGIN),
        )?;
        if secure {
            let stream = tls.wrap(host, tunnel).await?;
            let (socket, _) = upgrade.connect_on(stream).await?;
            Ok(from_websocket(socket))
        } else {
            let (socket, _) = upgrade.connect_on(tunnel).await?;
            Ok(from_websocket(socket))
        }
    }
}

/// Translates the client's events into the session's, in order.
struct Forwarder {
    events: mpsc::UnboundedSender<ClientEvent>,
    client: Weak<Client>,
}

impl EventHandler for Forwarder {
    fn handle_event(&self, event: Arc<Event>) {
        for translated in self.translate(&event) {
            let _ = self.events.send(translated);
        }
    }
}

impl Forwarder {
    fn translate(&self, event: &Event) -> Vec<ClientEvent> {
        let one = match event {
            Event::PairingQrCode(qr) => ClientEvent::QrCode { code: qr.code.clone() },
            Event::PairingQrCodesExhausted(_) => ClientEvent::QrCodesExhausted,
            Event::PairingCode(code) => ClientEvent::PairingCode { code: code.code.clone() },
            Event::PairSuccess(pair) => ClientEvent::PairSuccess {
                jid: pair.id.to_string(),
                business_name: Some(pair.business_name.clone()).filter(|b| !b.is_empty()),
            },
            Event::Connected(_) => {
                let client = self.client.upgrade();
                ClientEvent::Connected {
                    jid: client.as_ref().and_then(|c| c.pn()).map(|jid| jid.to_string()),
                    push_name: client.map(|c| c.push_name()).filter(|name| !name.is_empty()),
                }
            }
            Event::Disconnected(dropped) => {
                ClientEvent::Disconnected { reason: format!("{:?}", dropped.reason) }
            }
            Event::LoggedOut(out) => match out.reason {
                ConnectFailureReason::AccountLocked => {
                    ClientEvent::AccountLocked { reason: "account locked by WhatsApp".into() }
                }
                reason => ClientEvent::LoggedOut { reason: format!("{reason:?}") },
            },
            Event::TemporaryBan(ban) => ClientEvent::TemporaryBan {
                reason: format!("{:?}", ban.code),
                expires_at: Some(Utc::now() + ban.expire),
            },
            Event::StreamReplaced(_) => ClientEvent::StreamReplaced,
            Event::ConnectFailure(failure) => {
                ClientEvent::Disconnected { reason: format!("connect failure {:?}", failure.reason) }
            }
            Event::IncomingCall(call) => match &call.action {
                CallAction::Offer { call_id, call_creator, .. } => ClientEvent::IncomingCall(CallOffer {
                    call_id: call_id.clone(),
                    from: call.from.to_string(),
                    creator: call_creator.to_string(),
                }),
                _ => return Vec::new(),
            },
            Event::Messages(batch) => {
                let mut translated: Vec<_> = batch
                    .messages
                    .iter()
                    .map(|inbound| {
                        let source = &inbound.info.source;
                        ClientEvent::Message(IncomingMessage {
                            id: inbound.info.id.to_string(),
                            chat: source.chat.to_string(),
                            sender: source.sender.to_string(),
                            is_group: source.is_group,
                            is_status: source.chat.to_string() == "status@broadcast",
                            from_me: source.is_from_me,
                        })
                    })
                    .collect();
                translated.push(ClientEvent::StoreChanged);
                return translated;
            }
            Event::SelfPushNameUpdated(update) => ClientEvent::PushName { name: update.new_name.clone() },
            Event::Receipt(_) | Event::PushNameUpdate(_) | Event::IdentityChange(_) => {
                ClientEvent::StoreChanged
            }
            _ => return Vec::new(),
        };
        vec![one]
    }
}
