//! Several session hosts on one deployment (the embedded adapters shared in one process), with
//! scripted clients: leases, takeover of a dead host's sessions, commands routed to the owner, a
//! lost lease, capacity. A host "dies" by having its task aborted: its heartbeat stops and its
//! clients are dropped, as `kill -9` would; the process-level versions run against the fake
//! WhatsApp server in the end-to-end suites.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ryze_core::adapters::embedded;
use ryze_core::domain::{
    AccountId, ConnectOutcome, ConnectRequest, ConnectRequestId, Holder, HostId, HostRecord, Instance,
    InstanceChange, InstanceId, InstanceName, InstanceState, Lease, LeaseTiming, LoginMethod, SessionCommand,
    Settings,
};
use ryze_core::ports::{CommandChannels, CommandQueue, Delivery, Leases, Ports, Queue, Receipt, SendOptions};
use ryze_core::secrets::{Keyring, MasterKey};
use ryze_core::service::routing;
use ryze_session_host::client::ClientEvent;
use ryze_session_host::metrics::SessionsGauge;
use ryze_session_host::{HostConfig, HostError, SessionHost, WhatsAppUrl};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod scripted;
use scripted::{Call, ScriptedFactory, Started};

const WAIT: Duration = Duration::from_secs(5);
/// Short, so that a takeover is quick; the rules are the same at 5 s / 15 s.
const TIMING: LeaseTiming =
    LeaseTiming { beat: Duration::from_millis(50), lease: Duration::from_millis(300) };

struct Deployment {
    ports: Ports,
    keys: Arc<Keyring>,
    dir: tempfile::TempDir,
}

struct Host {
    id: HostId,
    /// Sessions held, and the ones scale-in protection is kept for.
    held: SessionsGauge,
    protected: SessionsGauge,
    started: mpsc::UnboundedReceiver<Started>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), HostError>>,
}

impl Deployment {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = embedded::open(dir.path()).unwrap();
        Self { ports, keys: Arc::new(Keyring::new(&MasterKey::generate())), dir }
    }

    async fn instance(&self, name: &str) -> InstanceId {
        let name = InstanceName::parse(name).unwrap();
        let token = format!("token-{name}");
        let instance = Instance::new(AccountId::generate(), name, &token, &self.keys, Utc::now());
        self.ports.registry.insert_instance(&instance, 10).await.unwrap();
        instance.id
    }

    fn host(&self, id: &str, max_sessions: usize) -> Host {
        self.host_with(id, max_sessions, |_| {})
    }

    fn host_with(&self, id: &str, max_sessions: usize, tweak: impl FnOnce(&mut HostConfig)) -> Host {
        let id = HostId::new(id).unwrap();
        let work = self.dir.path().join(id.as_str());
        let mut config = HostConfig::new(WhatsAppUrl::parse("ws://127.0.0.1:1/ws/chat").unwrap(), work);
        config.host_id = id.clone();
        config.lease = TIMING;
        config.max_sessions = max_sessions;
        config.persist_debounce = Duration::from_millis(20);
        tweak(&mut config);
        let (started_tx, started) = mpsc::unbounded_channel();
        let host = SessionHost::new(
            self.ports.clone(),
            self.keys.clone(),
            config,
            ScriptedFactory { started: started_tx },
        );
        let (held, protected) = (host.gauge(), host.protected_sessions());
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(host.run(token));
        Host { id, held, protected, started, shutdown, task }
    }

    /// Connects `instance` by QR through the API's routing and links it: the host that took it
    /// gets a client, which pairs and logs in.
    async fn link(&self, instance: &InstanceId, host: &mut Host) -> Started {
        let request = ConnectRequest {
            id: ConnectRequestId::generate(),
            instance: instance.clone(),
            created_at: Utc::now(),
            outcome: None,
        };
        self.ports.registry.put_connect_request(&request).await.unwrap();
        let command = SessionCommand::Connect {
            instance: instance.clone(),
            request: request.id.clone(),
            login: LoginMethod::QrCode,
            history_days: None,
        };
        routing::send_command(&self.ports, &command).await.unwrap();
        let client = host.next_start().await;
        client.events.send(ClientEvent::QrCode { code: "2@qr".into() }).unwrap();
        self.answered(&request.id).await;
        let jid = "5511999999999:7@s.whatsapp.net".to_owned();
        client.events.send(ClientEvent::PairSuccess { jid: jid.clone(), business_name: None }).unwrap();
        client.events.send(ClientEvent::Connected { jid: Some(jid), push_name: None }).unwrap();
        self.wait_state(instance, InstanceState::Connected).await;
        client
    }

    async fn answered(&self, request: &ConnectRequestId) -> ConnectOutcome {
        eventually("the connect answered", || async {
            self.ports.registry.connect_request(request).await.unwrap().and_then(|r| r.outcome)
        })
        .await
    }

    async fn wait_state(&self, instance: &InstanceId, state: InstanceState) {
        eventually(&format!("{state:?}"), || async {
            let now = self.ports.registry.instance(instance).await.unwrap()?.connection.state;
            (now == state).then_some(())
        })
        .await;
    }

    async fn lease(&self, instance: &InstanceId) -> Lease {
        self.ports.leases.lease(instance).await.unwrap()
    }
}

impl Host {
    async fn next_start(&mut self) -> Started {
        tokio::time::timeout(WAIT, self.started.recv()).await.expect("a client starts within 5 s").unwrap()
    }

    /// As `kill -9`: no drain, no release, no goodbye; its clients go with it.
    fn kill(self) {
        self.task.abort();
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task).await.unwrap().unwrap().unwrap();
    }
}

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut look: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = look().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_hosts_sessions_are_resumed_elsewhere_from_their_stores() {
    let deployment = Deployment::new();
    let instance = deployment.instance("sales").await;
    let mut a = deployment.host("a", 100);
    let _client = deployment.link(&instance, &mut a).await;
    let held = deployment.lease(&instance).await;
    assert_eq!(held.holder.as_ref().map(|h| h.host.as_str()), Some("a"));
    let mut b = deployment.host("b", 100);
    a.kill();

    let resumed = b.next_start().await;
    assert!(resumed.spec.store.is_some(), "logged in from the saved store: no QR");
    let taken = deployment.lease(&instance).await;
    assert_eq!(taken.holder.as_ref().map(|h| h.host.as_str()), Some("b"));
    assert!(taken.fence > held.fence);
    // Not a stale `connected` while it logs in again.
    deployment.wait_state(&instance, InstanceState::Connecting).await;
    resumed.events.send(ClientEvent::Connected { jid: None, push_name: None }).unwrap();
    deployment.wait_state(&instance, InstanceState::Connected).await;
    let hosts = eventually("the dead host removed", || async {
        let hosts = deployment.ports.leases.hosts().await.unwrap();
        (hosts.len() == 1).then_some(hosts)
    })
    .await;
    assert_eq!(hosts[0].id, b.id);
    b.stop().await;
}

/// Links `count` instances on a host of their own and kills it; returns them, and their dead
/// host's clients, kept to the end as a killed process's sockets would not say goodbye.
async fn orphaned(deployment: &Deployment, count: usize) -> (Vec<InstanceId>, Vec<Started>) {
    let mut a = deployment.host("a", 100);
    let mut instances = Vec::new();
    let mut clients = Vec::new();
    for n in 0..count {
        let instance = deployment.instance(&format!("orphan-{n}")).await;
        clients.push(deployment.link(&instance, &mut a).await);
        instances.push(instance);
    }
    a.kill();
    (instances, clients)
}

/// One start a second; and a lease long enough that a busy machine does not get the host fenced
/// while its starts wait for their turns.
fn paced(config: &mut HostConfig) {
    config.connects_per_second = 1;
    config.lease = PACED_TIMING;
}

const PACED_TIMING: LeaseTiming =
    LeaseTiming { beat: Duration::from_millis(200), lease: Duration::from_millis(1500) };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_says_connecting_at_once_and_logs_in_at_the_hosts_pace() {
    let deployment = Deployment::new();
    let (instances, _dead_clients) = orphaned(&deployment, 4).await;
    // One start a second: the fourth comes three seconds after the first.
    let mut b = deployment.host_with("b", 100, paced);
    for instance in &instances {
        deployment.wait_state(instance, InstanceState::Connecting).await;
        let shown = deployment.ports.registry.instance(instance).await.unwrap().unwrap();
        assert_eq!(
            shown.connection.number_jid.as_deref(),
            Some("5511999999999@s.whatsapp.net"),
            "the linked number stays shown while it logs in again"
        );
    }
    let mut started = std::iter::from_fn(|| b.started.try_recv().ok()).count();
    assert!(started < instances.len(), "every instance read connecting before its turn to log in came");
    let mut clients = Vec::new();
    while started < instances.len() {
        let resumed = b.next_start().await;
        assert!(resumed.spec.store.is_some(), "logged in from the saved store: no QR");
        clients.push(resumed);
        started += 1;
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_stopping_while_its_takeover_waits_for_its_pace_hands_every_session_on() {
    let deployment = Deployment::new();
    let (instances, _dead_clients) = orphaned(&deployment, 4).await;
    let mut b = deployment.host_with("b", 100, paced);
    let _first = b.next_start().await;
    for instance in &instances {
        deployment.wait_state(instance, InstanceState::Connecting).await;
        let lease = deployment.lease(instance).await;
        assert_eq!(lease.holder.map(|h| h.host), Some(b.id.clone()));
    }
    // Stopped with three starts still waiting their turn: those, too, are handed on.
    let mut c = deployment.host_with("c", 100, |config| config.lease = PACED_TIMING);
    b.stop().await;
    let mut clients = Vec::new();
    for _ in &instances {
        let resumed = c.next_start().await;
        assert!(resumed.spec.store.is_some(), "from the saved store");
        resumed.events.send(ClientEvent::Connected { jid: None, push_name: None }).unwrap();
        clients.push(resumed);
    }
    for instance in &instances {
        deployment.wait_state(instance, InstanceState::Connected).await;
        assert_eq!(deployment.lease(instance).await.holder.map(|h| h.host), Some(c.id.clone()));
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_for_a_live_session_reach_the_host_that_holds_it() {
    let deployment = Deployment::new();
    let instance = deployment.instance("sales").await;
    // Full with one session: `a` takes nothing more from the shared queue, so whatever lands
    // there for its session is read by `b`, which passes it on.
    let mut a = deployment.host("a", 1);
    let client = deployment.link(&instance, &mut a).await;
    let b = deployment.host("b", 100);
    eventually("both hosts up", || async {
        (deployment.ports.leases.hosts().await.unwrap().len() == 2).then_some(())
    })
    .await;

    // Through the API's routing: straight to the owner's channel.
    let settings = Settings { keep_online_status: true, ..Settings::default() };
    routing::send_command(
        &deployment.ports,
        &SessionCommand::ApplySettings { instance: instance.clone(), settings },
    )
    .await
    .unwrap();
    client.calls.wait_for(&[Call::Presence(false), Call::Presence(true)]).await;
    // Through the shared queue, as if the lease had moved while it was on its way: `b` forwards it.
    deployment.ports.commands.send(&SessionCommand::Logout { instance: instance.clone() }).await.unwrap();
    client.calls.wait_for(&[Call::Presence(false), Call::Presence(true), Call::Logout]).await;
    deployment.wait_state(&instance, InstanceState::LoggedOut).await;
    eventually("the lease let go", || async {
        deployment.lease(&instance).await.holder.is_none().then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_lease_was_taken_stops_its_client_and_writes_nothing() {
    let deployment = Deployment::new();
    let instance = deployment.instance("sales").await;
    let mut a = deployment.host("a", 100);
    let client = deployment.link(&instance, &mut a).await;
    let held = deployment.lease(&instance).await;
    // Another host took it over (a's beats were judged stopped, say).
    let usurper = Holder { host: HostId::new("z").unwrap(), epoch: 1 };
    let taken = deployment.ports.leases.take(&instance, &usurper, &held).await.unwrap().unwrap();
    eventually("the client stopped", || async { client.calls.contains(&Call::Stop).then_some(()) }).await;
    assert!(!client.calls.contains(&Call::Logout), "stopped, not unlinked: the device is the new owner's");
    // Its shutdown writes nothing either: the state is the new owner's to tell.
    a.stop().await;
    let state = deployment.ports.registry.instance(&instance).await.unwrap().unwrap().connection.state;
    assert_eq!(state, InstanceState::Connected);
    assert_eq!(deployment.lease(&instance).await, taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_instance_no_session_runs_forgets_its_lease() {
    let deployment = Deployment::new();
    let instance = deployment.instance("sales").await;
    // Held once and let go, as a logged-out instance's lease is.
    let earlier = Holder { host: HostId::new("z").unwrap(), epoch: 1 };
    let held = deployment.ports.leases.take(&instance, &earlier, &Lease::NEVER_TAKEN).await.unwrap().unwrap();
    assert!(deployment.ports.leases.release(&instance, &held).await.unwrap());
    let b = deployment.host("b", 100);

    // As the API's delete does: the command, then the record.
    routing::send_command(&deployment.ports, &SessionCommand::Delete { instance: instance.clone() })
        .await
        .unwrap();
    deployment.ports.registry.delete_instance(&instance).await.unwrap();
    eventually("the lease forgotten", || async {
        (deployment.lease(&instance).await == Lease::NEVER_TAKEN).then_some(())
    })
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_host_leaves_connects_to_a_host_with_room() {
    let deployment = Deployment::new();
    let (first, second) = (deployment.instance("first").await, deployment.instance("second").await);
    let mut a = deployment.host("a", 1);
    let _held = deployment.link(&first, &mut a).await;
    let mut b = deployment.host("b", 100);
    let _other = deployment.link(&second, &mut b).await;
    assert_eq!(deployment.lease(&second).await.holder.map(|h| h.host), Some(b.id.clone()));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_stopping_together_lose_none_of_the_sessions_they_hand_each_other() {
    let deployment = Deployment::new();
    let (first, second) = (deployment.instance("first").await, deployment.instance("second").await);
    let mut a = deployment.host("a", 1);
    let _on_a = deployment.link(&first, &mut a).await;
    let mut b = deployment.host("b", 1);
    let _on_b = deployment.link(&second, &mut b).await;
    // Both stop at once: each may hand its session to the other, which is leaving too.
    a.shutdown.cancel();
    b.shutdown.cancel();
    for host in [a, b] {
        tokio::time::timeout(Duration::from_secs(30), host.task).await.unwrap().unwrap().unwrap();
    }
    assert!(deployment.ports.leases.hosts().await.unwrap().is_empty(), "both left");
    for instance in [&first, &second] {
        assert_eq!(deployment.lease(instance).await.holder, None, "let go for the fleet");
        deployment.wait_state(instance, InstanceState::Connecting).await;
    }
    // The next host resumes both, from what the two left on the shared queue.
    let mut c = deployment.host("c", 100);
    // Kept until the end: a client whose events end has stopped.
    let mut clients = Vec::new();
    for _ in 0..2 {
        let resumed = c.next_start().await;
        assert!(resumed.spec.store.is_some(), "from the saved store");
        resumed.events.send(ClientEvent::Connected { jid: None, push_name: None }).unwrap();
        clients.push(resumed);
    }
    for instance in [&first, &second] {
        deployment.wait_state(instance, InstanceState::Connected).await;
        assert_eq!(deployment.lease(instance).await.holder.map(|h| h.host), Some(c.id.clone()));
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_beyond_what_the_sessions_need_lift_their_protection_least_loaded_first() {
    let deployment = Deployment::new();
    let mut instances = Vec::new();
    for name in ["one", "two", "three", "four", "five"] {
        instances.push(deployment.instance(name).await);
    }
    // Ten sessions a task: any number up to ten needs one host, so the other one is surplus.
    let scaled = |config: &mut HostConfig| {
        config.sessions_per_task_target = Some(10);
        config.surplus_lasts = Duration::from_millis(100);
    };
    // `a` fills up with two; `b`, started after, gets the rest.
    let mut a = deployment.host_with("a", 2, scaled);
    let _one = deployment.link(&instances[0], &mut a).await;
    let _two = deployment.link(&instances[1], &mut a).await;
    let mut b = deployment.host_with("b", 100, scaled);
    let _three = deployment.link(&instances[2], &mut b).await;
    // Two against one: `b` is the least loaded, so it goes unprotected, still serving.
    assert_eq!(settled(&a, &b).await, (2, 2, 1, 0));

    // `b` grows past `a`: now `a` is the one a scale-in may stop, and `b` is protected again.
    let _four = deployment.link(&instances[3], &mut b).await;
    let _five = deployment.link(&instances[4], &mut b).await;
    assert_eq!(settled(&a, &b).await, (2, 0, 3, 3));
    a.stop().await;
    b.stop().await;
}

/// Sessions held and protected by `a` and `b`, once they stay the same for a while.
async fn settled(a: &Host, b: &Host) -> (usize, usize, usize, usize) {
    let look = || (a.held.get(), a.protected.get(), b.held.get(), b.protected.get());
    eventually("the protection settled", || async {
        let now = look();
        // Longer than a surplus must last plus two beats: a change on its way shows.
        tokio::time::sleep(Duration::from_millis(500)).await;
        (now == look()).then_some(now)
    })
    .await
}

/// Leases with faults: beats that fail once `failing_beats` is set (the host cut off from the
/// store), and calls of takes that wait `take_delay` first (DynamoDB under load: a takeover then
/// holds the fleet's loop up for longer than a lease period).
struct FaultyLeases {
    inner: Arc<dyn Leases>,
    failing_beats: Arc<std::sync::atomic::AtomicBool>,
    take_delay: Duration,
}

impl FaultyLeases {
    fn wrap(deployment: &mut Deployment, take_delay: Duration) -> Arc<std::sync::atomic::AtomicBool> {
        let failing_beats = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let inner = deployment.ports.leases.clone();
        deployment.ports.leases = Arc::new(Self { inner, failing_beats: failing_beats.clone(), take_delay });
        failing_beats
    }
}

#[async_trait]
impl Leases for FaultyLeases {
    async fn register_host(
        &self,
        id: &HostId,
        capacity: u32,
        channel: &str,
    ) -> ryze_core::Result<HostRecord> {
        self.inner.register_host(id, capacity, channel).await
    }
    async fn beat(&self, host: &HostRecord, sessions: u32, draining: bool) -> ryze_core::Result<HostRecord> {
        if self.failing_beats.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ryze_core::Error::Storage("cut off".into()));
        }
        self.inner.beat(host, sessions, draining).await
    }
    async fn hosts(&self) -> ryze_core::Result<Vec<HostRecord>> {
        self.inner.hosts().await
    }
    async fn remove_host(&self, holder: &Holder) -> ryze_core::Result<()> {
        self.inner.remove_host(holder).await
    }
    async fn lease(&self, instance: &InstanceId) -> ryze_core::Result<Lease> {
        self.inner.lease(instance).await
    }
    async fn take(
        &self,
        instance: &InstanceId,
        holder: &Holder,
        expected: &Lease,
    ) -> ryze_core::Result<Option<Lease>> {
        tokio::time::sleep(self.take_delay).await;
        self.inner.take(instance, holder, expected).await
    }
    async fn take_all(
        &self,
        orphans: &[(InstanceId, Lease)],
        holder: &Holder,
    ) -> Vec<ryze_core::Result<Option<Lease>>> {
        tokio::time::sleep(self.take_delay).await;
        self.inner.take_all(orphans, holder).await
    }
    async fn release(&self, instance: &InstanceId, held: &Lease) -> ryze_core::Result<bool> {
        self.inner.release(instance, held).await
    }
    async fn held_by(&self, host: &HostId) -> ryze_core::Result<Vec<(InstanceId, Lease)>> {
        self.inner.held_by(host).await
    }
    async fn update_instance_fenced(
        &self,
        id: &InstanceId,
        change: InstanceChange,
        at: DateTime<Utc>,
        held: &Lease,
    ) -> ryze_core::Result<Arc<Instance>> {
        self.inner.update_instance_fenced(id, change, at, held).await
    }
    async fn forget(&self, instance: &InstanceId) -> ryze_core::Result<()> {
        self.inner.forget(instance).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_cannot_beat_stops_its_clients_without_a_write_and_ends() {
    let mut deployment = Deployment::new();
    let failing = FaultyLeases::wrap(&mut deployment, Duration::ZERO);
    let instance = deployment.instance("sales").await;
    let mut a = deployment.host("a", 100);
    let client = deployment.link(&instance, &mut a).await;

    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually("the client stopped", || async { client.calls.contains(&Call::Stop).then_some(()) }).await;
    let ended = tokio::time::timeout(Duration::from_secs(30), a.task).await.unwrap().unwrap();
    assert!(matches!(ended, Err(HostError::Fleet(_))), "the host ends for a fresh start: {ended:?}");
    // Stopped without a write: the state is whoever takes the lease next's to tell, and the
    // lease still names `a`, for the others to take once they judge it dead.
    let state = deployment.ports.registry.instance(&instance).await.unwrap().unwrap().connection.state;
    assert_eq!(state, InstanceState::Connected);
    assert_eq!(deployment.lease(&instance).await.holder.map(|h| h.host), Some(a.id.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_longer_than_the_lease_holds_no_heartbeat_up() {
    let mut deployment = Deployment::new();
    // A dead host's 64 leases; it never beats again.
    let dead =
        deployment.ports.leases.register_host(&HostId::new("z").unwrap(), 100, "z-channel").await.unwrap();
    for n in 0..64 {
        let instance = deployment.instance(&format!("orphan-{n}")).await;
        let lease = deployment.lease(&instance).await;
        deployment.ports.leases.take(&instance, &dead.holder(), &lease).await.unwrap().unwrap();
    }
    // 700 ms a call of takes: each survivor's share (one call) takes over twice the lease period.
    FaultyLeases::wrap(&mut deployment, Duration::from_millis(700));
    let (b, c) = (deployment.host("b", 100), deployment.host("c", 100));
    let started = eventually("both hosts up", || async {
        let hosts = deployment.ports.leases.hosts().await.unwrap();
        let live: Vec<HostRecord> = hosts.into_iter().filter(|h| h.id != dead.id).collect();
        (live.len() == 2).then_some(live)
    })
    .await;

    eventually("the dead host's leases taken and its record removed", || async {
        let left = deployment.ports.leases.held_by(&dead.id).await.unwrap();
        let hosts = deployment.ports.leases.hosts().await.unwrap();
        (left.is_empty() && hosts.iter().all(|h| h.id != dead.id)).then_some(())
    })
    .await;
    // Both beat all along: neither was judged dead by the other, nor fenced itself (a fenced or
    // superseded host's run ends with an error, which `stop` would report).
    let hosts = deployment.ports.leases.hosts().await.unwrap();
    let holders: Vec<Holder> = hosts.iter().map(HostRecord::holder).collect();
    assert_eq!(holders, started.iter().map(HostRecord::holder).collect::<Vec<_>>());
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_acknowledged_only_once_its_session_applied_it() {
    let mut deployment = Deployment::new();
    let acks = CountingChannels::wrap(&mut deployment);
    let instance = deployment.instance("sales").await;
    let mut a = deployment.host("a", 100);
    let client = deployment.link(&instance, &mut a).await;
    client.calls.wait_for(&[Call::Presence(false)]).await;
    let settings = |keep_online_status| SessionCommand::ApplySettings {
        instance: instance.clone(),
        settings: Settings { keep_online_status, ..Settings::default() },
    };
    let acked = || acks.load(std::sync::atomic::Ordering::SeqCst);

    // Through a's channel into its session, which is stuck applying it: not acknowledged yet.
    client.calls.hold();
    routing::send_command(&deployment.ports, &settings(true)).await.unwrap();
    client.calls.wait_for(&[Call::Presence(false), Call::Presence(true)]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(acked(), 0, "acknowledged before its session applied it");
    client.calls.release();
    eventually("the applied command acknowledged", || async { (acked() == 1).then_some(()) }).await;

    // Stuck again, and the host dies: the command stays on its channel, for the next owner.
    client.calls.hold();
    routing::send_command(&deployment.ports, &settings(false)).await.unwrap();
    client.calls.wait_for(&[Call::Presence(false), Call::Presence(true), Call::Presence(false)]).await;
    a.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(acked(), 1, "a command its session never finished was acknowledged");
}

/// Host channels that count the acknowledgements made on them.
struct CountingChannels {
    inner: Arc<dyn CommandChannels>,
    acks: Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingChannels {
    fn wrap(deployment: &mut Deployment) -> Arc<std::sync::atomic::AtomicUsize> {
        let acks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let inner = deployment.ports.channels.clone();
        deployment.ports.channels = Arc::new(Self { inner, acks: acks.clone() });
        acks
    }
}

#[async_trait]
impl CommandChannels for CountingChannels {
    async fn open(&self, host: &HostId) -> ryze_core::Result<String> {
        self.inner.open(host).await
    }
    fn channel(&self, address: &str) -> ryze_core::Result<Arc<CommandQueue>> {
        let inner = self.inner.channel(address)?;
        Ok(Arc::new(CountingQueue { inner, acks: self.acks.clone() }))
    }
    async fn close(&self, address: &str) -> ryze_core::Result<()> {
        self.inner.close(address).await
    }
}

struct CountingQueue {
    inner: Arc<CommandQueue>,
    acks: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait]
impl Queue<SessionCommand> for CountingQueue {
    async fn send_with(&self, message: &SessionCommand, options: SendOptions) -> ryze_core::Result<()> {
        self.inner.send_with(message, options).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> ryze_core::Result<Vec<Delivery<SessionCommand>>> {
        self.inner.receive(max, wait).await
    }
    async fn ack(&self, receipt: &Receipt) -> ryze_core::Result<()> {
        self.acks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.ack(receipt).await
    }
    async fn release_after(&self, receipt: &Receipt, after: Duration) -> ryze_core::Result<()> {
        self.inner.release_after(receipt, after).await
    }
    async fn keep_hidden(&self, receipt: &Receipt, hidden_for: Duration) -> ryze_core::Result<()> {
        self.inner.keep_hidden(receipt, hidden_for).await
    }
}
