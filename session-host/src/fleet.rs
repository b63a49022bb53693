//! The fleet supervisor: takes commands off the command queue and routes each to its instance's
//! session actor, creating actors for connects and reconnects, within the host's capacity.
//!
//! It alone owns the map of live sessions. An actor that ends hands back the commands that reached
//! it too late, and they are routed again, so none is lost between an actor's end and its removal.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ryze_core::domain::{ConnectOutcome, InstanceId, SessionCommand};
use ryze_core::ports::{CommandQueue, Delivery, Ports};
use ryze_core::secrets::Keyring;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::HostError;
use crate::client::ClientFactory;
use crate::config::HostConfig;
use crate::session::{Finished, MAILBOX, Session};

/// What every session of a host shares.
pub struct HostContext<F> {
    pub ports: Ports,
    pub keys: Arc<Keyring>,
    pub config: HostConfig,
    pub factory: F,
}

/// How long one receive waits on the command queue (a long poll on SQS).
const RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// How long the sessions get to save their stores and stop when the host stops.
const DRAIN_BUDGET: Duration = Duration::from_secs(25);

/// How many sessions a host holds, readable while it runs (health checks, scaling metrics).
#[derive(Debug, Clone, Default)]
pub struct SessionsGauge(Arc<AtomicUsize>);

impl SessionsGauge {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// A session host: runs until its shutdown token is cancelled.
pub struct SessionHost<F: ClientFactory> {
    ctx: Arc<HostContext<F>>,
    sessions: HashMap<InstanceId, LiveSession>,
    gauge: SessionsGauge,
    tasks: JoinSet<Finished>,
    next_generation: u64,
}

struct LiveSession {
    generation: u64,
    mailbox: mpsc::Sender<SessionCommand>,
}

impl<F: ClientFactory> SessionHost<F> {
    pub fn new(ports: Ports, keys: Arc<Keyring>, config: HostConfig, factory: F) -> Self {
        Self {
            ctx: Arc::new(HostContext { ports, keys, config, factory }),
            sessions: HashMap::new(),
            gauge: SessionsGauge::default(),
            tasks: JoinSet::new(),
            next_generation: 0,
        }
    }

    pub fn gauge(&self) -> SessionsGauge {
        self.gauge.clone()
    }

    /// Serves commands until `shutdown` is cancelled, then stops every session (each saves its
    /// credential store and records `disconnected`) before returning.
    #[tracing::instrument(name = "session_host", skip_all)]
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), HostError> {
        tracing::info!(max_sessions = self.ctx.config.max_sessions, "session host started");
        let sessions_stop = shutdown.child_token();
        // One receive stays in flight across loop turns. Dropping it is safe (the port promises
        // that), but on SQS a dropped long poll runs on until it returns and hands its messages
        // back, so restarting it whenever a session ends would only delay commands.
        let mut receiving = Box::pin(receive(self.ctx.ports.commands.clone()));
        loop {
            tokio::select! {
                received = &mut receiving => match received {
                    Ok(batch) => {
                        receiving.set(receive(self.ctx.ports.commands.clone()));
                        for delivery in batch {
                            self.route(delivery.message, &sessions_stop).await;
                            if let Err(error) = self.ctx.ports.commands.ack(&delivery.receipt).await {
                                tracing::warn!(%error, "command not acknowledged");
                            }
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "command queue unavailable");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        receiving.set(receive(self.ctx.ports.commands.clone()));
                    }
                },
                Some(done) = self.tasks.join_next() => self.on_finished(done, &sessions_stop).await,
                () = shutdown.cancelled() => break,
            }
            self.gauge.0.store(self.sessions.len(), Ordering::Relaxed);
        }
        sessions_stop.cancel();
        let drained =
            tokio::time::timeout(DRAIN_BUDGET, async { while self.tasks.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            tracing::warn!(left = self.tasks.len(), "sessions still stopping at the deadline; aborted");
            self.tasks.abort_all();
        }
        tracing::info!("session host stopped");
        Ok(())
    }

    async fn route(&mut self, command: SessionCommand, stop: &CancellationToken) {
        let instance = command.instance().clone();
        let command = match self.sessions.get(&instance) {
            Some(live) => match live.mailbox.send(command).await {
                Ok(()) => return,
                // The actor ended after its last look at the mailbox: start over.
                Err(mpsc::error::SendError(command)) => {
                    self.sessions.remove(&instance);
                    command
                }
            },
            None => command,
        };
        // Logout, delete and settings need a live session; without one the control plane's own
        // work is all there is to do.
        if !matches!(command, SessionCommand::Connect { .. } | SessionCommand::Reconnect { .. }) {
            return;
        }
        if self.sessions.len() >= self.ctx.config.max_sessions {
            tracing::warn!(%instance, "at capacity; command refused");
            if let SessionCommand::Connect { request, .. } = &command {
                let outcome = ConnectOutcome::Failed { reason: "session host at capacity".into() };
                if let Err(error) = self.ctx.ports.registry.answer_connect_request(request, outcome).await {
                    tracing::error!(%error, "connect request not answered");
                }
            }
            return;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let (mailbox, commands) = mpsc::channel(MAILBOX);
        let session = Session::new(instance.clone(), generation, self.ctx.clone(), commands, stop.clone());
        self.tasks.spawn(session.run());
        // A fresh mailbox has room: this cannot wait.
        if mailbox.send(command).await.is_ok() {
            self.sessions.insert(instance, LiveSession { generation, mailbox });
        }
    }
}

async fn receive(commands: Arc<CommandQueue>) -> ryze_core::Result<Vec<Delivery<SessionCommand>>> {
    commands.receive(10, RECEIVE_WAIT).await
}

impl<F: ClientFactory> SessionHost<F> {
    async fn on_finished(
        &mut self,
        done: Result<Finished, tokio::task::JoinError>,
        stop: &CancellationToken,
    ) {
        match done {
            Ok(finished) => {
                if self.sessions.get(&finished.instance).is_some_and(|s| s.generation == finished.generation)
                {
                    self.sessions.remove(&finished.instance);
                }
                for command in finished.leftovers {
                    self.route(command, stop).await;
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
