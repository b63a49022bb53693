//! The fleet supervisor: this host's membership loop and the map of its live sessions.
//!
//! - It joins the fleet (a host record with a new epoch and its own command channel), beats every
//!   [`LeaseTiming::beat`], and takes over the leases of hosts it judged dead, and of its own
//!   earlier start, resuming each session from its saved store.
//! - Connects and reconnects come off the shared command queue, taken only while the host has
//!   room; commands for its sessions come through its channel. A session starts only under a
//!   lease this host holds; a command for an instance a live host holds goes on to that host.
//! - It alone owns the map of live sessions. An actor that ends hands back the commands that
//!   reached it too late, and they are routed again, so none is lost between an actor's end and
//!   its removal. A command is acknowledged on its queue only once it is done with (`routed.rs`),
//!   so one in a session's mailbox when the host dies comes back for the next owner.
//! - On stop it keeps beating while the sessions hand over (or, with no fleet to hand over to,
//!   keep their leases for the next start), then leaves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ryze_core::domain::{ConnectOutcome, Holder, HostRecord, InstanceId, Lease, SessionCommand};
use ryze_core::ports::{CommandQueue, Delivery, Ports};
use ryze_core::secrets::Keyring;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::consolidation::Consolidation;
use self::heartbeat::{Fenced, Heartbeat, News};
use crate::HostError;
use crate::client::ClientFactory;
use crate::config::HostConfig;
use crate::membership::{Claim, Membership};
use crate::metrics::{SessionStates, SessionsGauge};
use crate::pacing::Pacer;
use crate::routed::{Routed, Unfinished};
use crate::session::{Finished, MAILBOX, Session, Start};

mod consolidation;
mod drain;
mod heartbeat;
mod takeover;

/// What every session of a host shares.
pub struct HostContext<F> {
    pub ports: Ports,
    pub keys: Arc<Keyring>,
    pub config: HostConfig,
    pub factory: F,
    /// Spaces the host's client starts, so that a takeover of a thousand sessions does not dial
    /// them all at once.
    pub(crate) pacer: Arc<Pacer>,
    /// Each session's last recorded state, for the per-state metric.
    pub(crate) states: SessionStates,
    /// Bounds the taken-over sessions writing their `connecting` at once (`session/ownership.rs`).
    pub(crate) resumes: tokio::sync::Semaphore,
}

/// Taken-over sessions that read their instance and write their `connecting` at once. A takeover
/// spawns hundreds of sessions in one go; unbounded, they were hundreds of requests (and new
/// connections) on the store in the same instant, which an emulator refused and DynamoDB would
/// throttle. At a store round trip of 10 to 20 ms, 16 still write several hundred a second.
const RESUMES_AT_ONCE: usize = 16;

/// How long one receive waits on the command queue (a long poll on SQS).
const RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// Every how many beats a host looks at all its leases even without a gap (a minute at 5 s).
const LEASE_CHECK_BEATS: u64 = 12;
/// How long the sessions get to save their stores and stop when the host stops.
const DRAIN_BUDGET: Duration = Duration::from_secs(25);

/// A session host: runs until its shutdown token is cancelled.
pub struct SessionHost<F: ClientFactory> {
    ctx: Arc<HostContext<F>>,
    sessions: HashMap<InstanceId, LiveSession>,
    gauge: SessionsGauge,
    /// The sessions scale-in protection is kept for: all of them, or none once this host is
    /// surplus (`consolidation.rs`).
    protected: SessionsGauge,
    /// Cancelled by the heartbeat when this host must stop every client at once (superseded, or
    /// silent for too long); every session's `lost` is its child.
    fence: CancellationToken,
    tasks: JoinSet<Finished>,
    next_generation: u64,
    linger: Linger,
    /// The commands received and not yet done with, kept hidden on their queues meanwhile.
    unfinished: Unfinished,
}

/// How long the process should stay up after the host stopped, so that a long poll it abandoned
/// can still hand back what it took (set by the drain; zero when nothing is at stake).
#[derive(Debug, Clone, Default)]
pub(crate) struct Linger(Arc<std::sync::Mutex<Duration>>);

impl Linger {
    pub fn get(&self) -> Duration {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, linger: Duration) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = linger;
    }

    /// Waits out the linger: what a process does after the host's `run` returned, before exiting.
    pub async fn wait(&self) {
        let linger = self.get();
        if !linger.is_zero() {
            tracing::info!(?linger, "waiting for abandoned polls to hand back what they took");
            tokio::time::sleep(linger).await;
        }
    }
}

struct LiveSession {
    generation: u64,
    mailbox: mpsc::Sender<Routed>,
    /// Cancelled when the host learns the lease moved on: the session stops its client at once.
    lost: CancellationToken,
}

/// The host's view while it runs: its membership and its channel.
struct Running {
    membership: Arc<Membership>,
    channel: Arc<CommandQueue>,
    /// Fenced by the heartbeat: superseded (another start of this host's id took its record, or
    /// it was judged dead and removed), or silent past what others wait before judging it dead.
    /// Either way its record and its channel (named after the id) are, or are about to be, its
    /// successors' to handle, so its drain leaves both alone.
    fenced: Option<Fenced>,
    /// Beats so far, for the periodic look at every lease.
    beats: u64,
    consolidation: Consolidation,
    /// Surplus for long enough: the task may go unprotected.
    surplus: bool,
}

impl<F: ClientFactory> SessionHost<F> {
    pub fn new(ports: Ports, keys: Arc<Keyring>, config: HostConfig, factory: F) -> Self {
        let pacer = Arc::new(Pacer::new(config.connects_per_second));
        Self {
            ctx: Arc::new(HostContext {
                ports,
                keys,
                config,
                factory,
                pacer,
                states: SessionStates::default(),
                resumes: tokio::sync::Semaphore::new(RESUMES_AT_ONCE),
            }),
            sessions: HashMap::new(),
            gauge: SessionsGauge::default(),
            protected: SessionsGauge::default(),
            fence: CancellationToken::new(),
            tasks: JoinSet::new(),
            next_generation: 0,
            linger: Linger::default(),
            unfinished: Unfinished::default(),
        }
    }

    pub fn gauge(&self) -> SessionsGauge {
        self.gauge.clone()
    }

    /// The sessions the task's scale-in protection is kept for: those held, or none while this
    /// host is more than the fleet needs.
    pub fn protected_sessions(&self) -> SessionsGauge {
        self.protected.clone()
    }

    /// How long the process should stay up once `run` returned (see [`Linger`]).
    fn linger(&self) -> Linger {
        self.linger.clone()
    }

    /// The sessions' states as last recorded, for the per-state metric.
    pub fn states(&self) -> SessionStates {
        self.ctx.states.clone()
    }

    fn has_room(&self) -> bool {
        self.sessions.len() < self.ctx.config.max_sessions
    }

    /// What a process runs: [`Self::run`] in a task of its own that also cancels `stop` when the
    /// host ends by itself (superseded), so that whatever shares `stop` (the API, the dispatcher)
    /// stops with it; the task ends once the linger is waited out, when the process may exit.
    pub fn run_in_task(self, stop: CancellationToken) -> tokio::task::JoinHandle<Result<(), HostError>>
    where
        F: 'static,
    {
        let linger = self.linger();
        tokio::spawn(async move {
            let stopped = self.run(stop.clone()).await;
            stop.cancel();
            linger.wait().await;
            stopped
        })
    }

    /// Serves commands until `shutdown` is cancelled, then hands every session over (each saves
    /// its credential store first) before returning. Returns an error at once when this start was
    /// superseded (judged dead and replaced): a process should then exit.
    #[tracing::instrument(name = "session_host", skip_all, fields(host = %self.ctx.config.host_id))]
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), HostError> {
        let config = &self.ctx.config;
        let ports = &self.ctx.ports;
        let fail = |what: &str, error: ryze_core::Error| HostError::Fleet(format!("{what}: {error}"));
        let address =
            ports.channels.open(&config.host_id).await.map_err(|e| fail("opening the channel", e))?;
        let channel = ports.channels.channel(&address).map_err(|e| fail("opening the channel", e))?;
        let membership = Arc::new(
            Membership::join(
                ports.leases.clone(),
                &config.host_id,
                config.max_sessions,
                &address,
                config.lease,
            )
            .await
            .map_err(|e| fail("joining the fleet", e))?,
        );
        tracing::info!(max_sessions = config.max_sessions, "session host started");
        let mut running = Running {
            membership,
            channel,
            fenced: None,
            beats: 0,
            consolidation: Consolidation::new(config.sessions_per_task_target, config.surplus_lasts),
            surplus: false,
        };
        let sessions_stop = shutdown.child_token();
        let keeping = CancellationToken::new();
        let keeper = tokio::spawn(
            self.unfinished.clone().keep_hidden(config.lease.command_visibility(), keeping.clone()),
        );
        if let Some(earlier) = running.membership.earlier_starts() {
            self.take_over(&mut running, &earlier, None, &[], &sessions_stop).await;
        }

        // One receive per queue stays in flight across loop turns. Dropping one is safe (the port
        // promises that), but on SQS a dropped long poll runs on until it returns and hands its
        // messages back, so restarting it whenever a session ends would only delay commands.
        let mut shared = Box::pin(receive(self.ctx.ports.commands.clone()));
        let mut own = Box::pin(receive(running.channel.clone()));
        let mut heartbeat = Heartbeat::start(
            running.membership.clone(),
            self.gauge.subscribe(),
            self.ctx.pacer.clone(),
            self.fence.clone(),
        );
        loop {
            let room = self.has_room();
            tokio::select! {
                received = &mut shared, if room => {
                    shared.set(receive(self.ctx.ports.commands.clone()));
                    self.handle(&running, self.ctx.ports.commands.clone(), received, &sessions_stop).await;
                }
                received = &mut own => {
                    own.set(receive(running.channel.clone()));
                    self.handle(&running, running.channel.clone(), received, &sessions_stop).await;
                }
                Some(news) = heartbeat.news.recv() => self.on_beat(&mut running, news, &sessions_stop).await,
                () = self.fence.cancelled() => {
                    running.fenced = heartbeat.fenced();
                    break;
                }
                Some(done) = self.tasks.join_next() => self.on_finished(&running, done, &sessions_stop).await,
                () = shutdown.cancelled() => break,
            }
            self.gauge.set(self.sessions.len());
            self.protected.set(if running.surplus { 0 } else { self.sessions.len() });
        }
        drop((shared, own, heartbeat));
        self.drain(&mut running, &sessions_stop).await;
        // What is still unfinished now (nothing, after a clean drain) comes back for another host.
        keeping.cancel();
        let _ = keeper.await;
        tracing::info!("session host stopped");
        // Its sessions are elsewhere, or soon will be. The process ends, so that its runner (ECS,
        // systemd) starts a fresh host with a new epoch.
        match running.fenced {
            None => Ok(()),
            Some(Fenced::Superseded) => Err(HostError::Fleet(
                "this start of the host was superseded; its sessions are elsewhere".into(),
            )),
            Some(Fenced::Silent) => Err(HostError::Fleet(
                "no heartbeat went through for a lease period; the sessions were stopped for other hosts to take"
                    .into(),
            )),
        }
    }

    /// What follows from a beat: a look at every lease after a gap and once a minute (not on
    /// every beat, which would read O(sessions) items each period), whether this host is surplus,
    /// and the takeover of the hosts judged dead.
    async fn on_beat(&mut self, running: &mut Running, news: News, stop: &CancellationToken) {
        running.beats += 1;
        if news.after_gap || running.beats.is_multiple_of(LEASE_CHECK_BEATS) {
            self.check_leases(running).await;
        }
        let (hosts, judged_dead) = running.membership.last_look();
        let me = running.membership.holder();
        running.surplus = running.consolidation.observe(&hosts, &judged_dead, &me, Instant::now());
        // A beat queued while a takeover ran may name a host that takeover already removed.
        let dead: Vec<&HostRecord> =
            news.dead.iter().filter(|host| !running.membership.buried(&host.holder())).collect();
        let gone: Vec<Holder> = dead.iter().map(|host| host.holder()).collect();
        for host in dead {
            tracing::warn!(dead = %host.id, epoch = host.epoch, "host judged dead; taking over");
            self.take_over(running, &host.holder(), Some(host), &gone, stop).await;
        }
    }

    /// Stops the sessions whose lease moved on while this host was not looking (paused, cut off).
    async fn check_leases(&mut self, running: &Running) {
        if self.sessions.is_empty() {
            return;
        }
        let me = running.membership.holder();
        let held = match running.membership.leases().held_by(&me.host).await {
            Ok(held) => held,
            Err(error) => return tracing::warn!(%error, "leases unreadable"),
        };
        let mine: std::collections::HashSet<&InstanceId> =
            held.iter().filter(|(_, lease)| lease.is_held_by(&me)).map(|(instance, _)| instance).collect();
        for (instance, live) in &self.sessions {
            if mine.contains(instance) {
                continue;
            }
            // The index may lag a take of this host's own: only a consistent read decides.
            match running.membership.leases().lease(instance).await {
                Ok(lease) if !lease.is_held_by(&me) => {
                    tracing::warn!(%instance, "lease taken by another host; session stops");
                    live.lost.cancel();
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, %instance, "lease unreadable"),
            }
        }
    }

    async fn handle(
        &mut self,
        running: &Running,
        queue: Arc<CommandQueue>,
        received: ryze_core::Result<Vec<Delivery<SessionCommand>>>,
        stop: &CancellationToken,
    ) {
        match received {
            Ok(batch) => {
                for delivery in batch {
                    let routed = self.unfinished.received(delivery.message, queue.clone(), delivery.receipt);
                    self.route(running, routed, stop).await;
                }
            }
            Err(error) => {
                tracing::error!(%error, "command queue unavailable");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Takes a command where it is applied: this host's session, a new session under a lease
    /// this host takes, or the owner's channel. Acknowledged once passed on or refused; left
    /// unacknowledged, for a redelivery, when it could not be passed on.
    async fn route(&mut self, running: &Running, routed: Routed, stop: &CancellationToken) {
        let instance = routed.instance().clone();
        let routed = match self.sessions.get(&instance) {
            // The session acknowledges it once applied.
            Some(live) => match live.mailbox.send(routed).await {
                Ok(()) => return,
                // The actor ended after its last look at the mailbox: start over.
                Err(mpsc::error::SendError(routed)) => {
                    self.sessions.remove(&instance);
                    routed
                }
            },
            None => routed,
        };
        let command = &routed.command;
        let starts = matches!(command, SessionCommand::Connect { .. } | SessionCommand::Reconnect { .. });
        if starts && !self.has_room() {
            // Another host with room takes it; this one stops taking from the shared queue.
            tracing::info!(%instance, "at capacity; command left to the fleet");
            if let Err(error) = self.ctx.ports.commands.send(command).await {
                tracing::error!(%error, "command not passed on at capacity");
                self.refuse(command, "session host at capacity").await;
            }
            return routed.done().await;
        }
        // A logout with no live session here may still have a device to unlink: it needs a session
        // under the lease as much as a start does (`session/logout.rs`).
        let claims = starts || matches!(command, SessionCommand::Logout { .. });
        let claim = if claims { running.membership.claim(&instance).await.map(Some) } else { Ok(None) };
        match claim {
            Ok(Some(Claim::Mine(lease))) => self.spawn(instance, lease, Start::Command(routed), stop),
            Ok(Some(Claim::Elsewhere(owner))) => {
                match self.send_to(&owner.channel, command).await {
                    Ok(()) => {}
                    Err(error) => {
                        tracing::warn!(%error, owner = %owner.id, "command not passed on to its owner");
                        self.refuse(command, "the host running the session is unreachable").await;
                    }
                }
                routed.done().await;
            }
            // Delete and settings need a live session; without one here, the owner (if any) gets
            // it, and without an owner the control plane's own work is all there is.
            Ok(None) => match ryze_core::service::routing::owner_channel(&self.ctx.ports, &instance).await {
                Ok(Some(address)) if address != running.membership.record().channel => {
                    match self.send_to(&address, command).await {
                        Ok(()) => routed.done().await,
                        // Left on its queue: it comes back once the owner is reachable or gone.
                        Err(error) => tracing::warn!(%error, %instance, "command not passed on to its owner"),
                    }
                }
                Ok(_) => {
                    // Nobody runs it, so nobody else forgets a deleted instance's lease (a running
                    // session forgets its own). A takeover racing this cannot resume it: its take,
                    // or else its first fenced write, finds no lease.
                    if let SessionCommand::Delete { .. } = command
                        && let Err(error) = self.ctx.ports.leases.forget(&instance).await
                    {
                        return tracing::warn!(%error, %instance, "deleted instance's lease kept; left for a redelivery");
                    }
                    routed.done().await
                }
                Err(error) => {
                    tracing::warn!(%error, %instance, "owner unknown; command left for a redelivery")
                }
            },
            Err(error) => {
                tracing::error!(%error, %instance, "lease unavailable");
                self.refuse(command, "instance lease unavailable").await;
                routed.done().await;
            }
        }
    }

    async fn send_to(&self, address: &str, command: &SessionCommand) -> ryze_core::Result<()> {
        self.ctx.ports.channels.channel(address)?.send(command).await
    }

    /// Answers a connect that cannot be served now, so that its caller learns at once.
    async fn refuse(&self, command: &SessionCommand, reason: &str) {
        if let SessionCommand::Connect { request, .. } = command {
            let outcome = ConnectOutcome::Failed { reason: reason.into() };
            if let Err(error) = self.ctx.ports.registry.answer_connect_request(request, outcome).await {
                tracing::error!(%error, "connect request not answered");
            }
        }
    }

    /// Commands a session got too late, after this host stopped serving: for the next owner.
    async fn pass_on(&self, commands: Vec<Routed>) {
        for routed in commands {
            match ryze_core::service::routing::send_command(&self.ctx.ports, &routed.command).await {
                Ok(()) => routed.done().await,
                Err(error) => tracing::error!(%error, "command not passed on while stopping"),
            }
        }
    }

    fn spawn(&mut self, instance: InstanceId, lease: Lease, start: Start, stop: &CancellationToken) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let (mailbox, commands) = mpsc::channel(MAILBOX);
        let lost = self.fence.child_token();
        let session = Session::new(
            instance.clone(),
            generation,
            lease,
            self.ctx.clone(),
            commands,
            stop.clone(),
            lost.clone(),
        );
        self.tasks.spawn(session.run(start));
        self.sessions.insert(instance, LiveSession { generation, mailbox, lost });
    }

    async fn on_finished(
        &mut self,
        running: &Running,
        done: Result<Finished, tokio::task::JoinError>,
        stop: &CancellationToken,
    ) {
        match done {
            Ok(finished) => {
                if self.sessions.get(&finished.instance).is_some_and(|s| s.generation == finished.generation)
                {
                    self.sessions.remove(&finished.instance);
                }
                for routed in finished.leftovers {
                    self.route(running, routed, stop).await;
                }
            }
            Err(error) => {
                // A panicking actor loses its session; its mailbox is closed, so the next command
                // for the instance starts a new one.
                tracing::error!(%error, "session actor failed");
                self.sessions.retain(|_, live| !live.mailbox.is_closed());
            }
        }
    }
}

async fn receive(commands: Arc<CommandQueue>) -> ryze_core::Result<Vec<Delivery<SessionCommand>>> {
    commands.receive(10, RECEIVE_WAIT).await
}
