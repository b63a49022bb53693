//! The all-in-one system for end-to-end tests: the API router and a session host on the same
//! adapters (embedded, or AWS on moto), as `ryze serve` wires them, with the session host's WhatsApp
//! socket pointed at a fake WhatsApp server. It can be restarted on the same state.

use std::sync::Arc;
use std::time::Duration;

use ryze_session_host::whatsapp::WhatsAppFactory;
use ryze_session_host::{HostConfig, SessionHost, WhatsAppUrl};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::fake_whatsapp::FakeWhatsApp;
use crate::{Backend, Storage, TestApp};

/// How long connect calls wait for the session host in end-to-end tests.
pub const E2E_CONNECT_WAIT: Duration = Duration::from_secs(15);

pub struct TestSystem {
    pub app: TestApp,
    stop: CancellationToken,
    host: JoinHandle<()>,
}

impl TestSystem {
    /// A system on new state, its WhatsApp socket on `fake`.
    pub async fn start(backend: Backend, fake: &FakeWhatsApp, adjust: impl FnOnce(&mut HostConfig)) -> Self {
        Self::on(Storage::new(backend).await, fake, adjust)
    }

    fn on(storage: Arc<Storage>, fake: &FakeWhatsApp, adjust: impl FnOnce(&mut HostConfig)) -> Self {
        let app = TestApp::with_connect_wait(storage.clone(), E2E_CONNECT_WAIT);
        let url = WhatsAppUrl::parse(&fake.url()).expect("the fake server is on loopback");
        let mut config = HostConfig::new(url, storage.dir.path().join("sessions"));
        config.persist_debounce = Duration::from_millis(200);
        if storage.backend() == Backend::Embedded {
            // As `ryze serve` runs it: one host name, leases kept across a restart.
            config.host_id = ryze_core::domain::HostId::new("local").expect("a valid host id");
            config.hand_over_on_stop = false;
        }
        adjust(&mut config);
        let factory = WhatsAppFactory::new(&config).expect("the host configuration is valid");
        let host = SessionHost::new(app.ports.clone(), app.keys.clone(), config, factory);
        let stop = CancellationToken::new();
        let host = tokio::spawn({
            let stop = stop.clone();
            async move { host.run(stop).await.expect("the session host runs") }
        });
        Self { app, stop, host }
    }

    /// Stops the host as a SIGTERM would (sessions save their stores) and starts a new process on
    /// the same state.
    pub async fn restart(self, fake: &FakeWhatsApp, adjust: impl FnOnce(&mut HostConfig)) -> Self {
        let storage = self.app.storage.clone();
        self.stop().await;
        Self::on(storage, fake, adjust)
    }

    /// Stops the host as `restart` does and keeps the API up with no host at all, for what
    /// happens while none runs; [`Hostless::start_host`] starts one on the same state.
    pub async fn without_host(self) -> Hostless {
        let storage = self.app.storage.clone();
        self.stop().await;
        Hostless { app: TestApp::with_connect_wait(storage, E2E_CONNECT_WAIT) }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.host)
            .await
            .expect("the host stops")
            .expect("no panic");
    }
}

/// The API with no session host running (see [`TestSystem::without_host`]).
pub struct Hostless {
    pub app: TestApp,
}

impl Hostless {
    pub fn start_host(self, fake: &FakeWhatsApp, adjust: impl FnOnce(&mut HostConfig)) -> TestSystem {
        TestSystem::on(self.app.storage.clone(), fake, adjust)
    }
}
