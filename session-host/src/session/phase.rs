//! Where a session is in its life, each phase with the data that only it has: no client while
//! idle; while pairing, the login method, the code on screen and the QR budget; once linked, the
//! pending store save, and per link state the reconnect budget or the presence to set.

use ryze_core::domain::{ConnectOutcome, LoginMethod};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::ClientEvent;

pub(super) enum Phase<C> {
    /// No client.
    Idle,
    Running(Running<C>),
}

/// A client and what the session knows of it.
pub(super) struct Running<C> {
    pub client: C,
    pub events: mpsc::UnboundedReceiver<ClientEvent>,
    pub stage: Stage,
}

pub(super) enum Stage {
    /// Waiting for a QR scan or a pairing code to be entered.
    Pairing(Pairing),
    /// The device is linked: its credential store is worth saving.
    Linked {
        link: Link,
        /// When the credential store is next saved.
        persist_at: Option<Instant>,
    },
}

pub(super) struct Pairing {
    pub login: LoginMethod,
    /// The code connect calls are answered with, once the client has one.
    pub code: Option<ConnectOutcome>,
    /// The QR budget's end.
    pub give_up_at: Instant,
}

pub(super) enum Link {
    /// Logging in with the saved credentials, or just paired.
    LoggingIn { give_up_at: Instant },
    Connected {
        /// When the presence is next set from the settings.
        presence_at: Option<Instant>,
    },
    /// The socket dropped; the client is retrying until the reconnect budget's end.
    Reconnecting { give_up_at: Instant },
}

/// What a timer found due, in the order it is handled.
#[derive(Debug, Default)]
pub(super) struct Due {
    pub presence: bool,
    pub persist: bool,
    pub give_up: Option<&'static str>,
}

impl<C> Phase<C> {
    pub fn client(&self) -> Option<&C> {
        match self {
            Self::Idle => None,
            Self::Running(running) => Some(&running.client),
        }
    }

    pub fn is_idle(&self) -> bool {
        matches!(self, Self::Idle)
    }

    pub fn pairing(&self) -> Option<&Pairing> {
        match self {
            Self::Running(Running { stage: Stage::Pairing(pairing), .. }) => Some(pairing),
            _ => None,
        }
    }

    pub fn pairing_mut(&mut self) -> Option<&mut Pairing> {
        match self {
            Self::Running(Running { stage: Stage::Pairing(pairing), .. }) => Some(pairing),
            _ => None,
        }
    }

    pub fn link(&self) -> Option<&Link> {
        match self {
            Self::Running(Running { stage: Stage::Linked { link, .. }, .. }) => Some(link),
            _ => None,
        }
    }

    /// The client of a linked device, the only kind whose store is worth saving.
    pub fn linked_client(&self) -> Option<&C> {
        self.link().and(self.client())
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.link(), Some(Link::Connected { .. }))
    }

    /// Moves a running client to `link`, keeping a pending save; a pairing one becomes linked.
    pub fn relink(&mut self, link: Link) {
        let Self::Running(running) = self else { return };
        match &mut running.stage {
            Stage::Linked { link: current, .. } => *current = link,
            Stage::Pairing(_) => running.stage = Stage::Linked { link, persist_at: None },
        }
    }

    /// Asks for a store save at `at`, unless one is pending already or nothing is linked.
    pub fn schedule_persist(&mut self, at: Instant) {
        if let Self::Running(Running { stage: Stage::Linked { persist_at: pending @ None, .. }, .. }) = self {
            *pending = Some(at);
        }
    }

    pub fn clear_persist(&mut self) {
        if let Self::Running(Running { stage: Stage::Linked { persist_at, .. }, .. }) = self {
            *persist_at = None;
        }
    }

    /// Asks for the presence to be set at `at`, when connected.
    pub fn schedule_presence(&mut self, at: Instant) {
        if let Self::Running(Running {
            stage: Stage::Linked { link: Link::Connected { presence_at }, .. },
            ..
        }) = self
        {
            *presence_at = Some(at);
        }
    }

    /// The soonest of the phase's timers.
    pub fn wake_at(&self) -> Option<Instant> {
        let Self::Running(running) = self else { return None };
        match &running.stage {
            Stage::Pairing(pairing) => Some(pairing.give_up_at),
            Stage::Linked { link, persist_at } => {
                let link_at = match link {
                    Link::LoggingIn { give_up_at } | Link::Reconnecting { give_up_at } => Some(*give_up_at),
                    Link::Connected { presence_at } => *presence_at,
                };
                [link_at, *persist_at].into_iter().flatten().min()
            }
        }
    }

    /// What is due at `now`; a due presence is taken (it is set once per schedule).
    pub fn take_due(&mut self, now: Instant) -> Due {
        let Self::Running(running) = self else { return Due::default() };
        match &mut running.stage {
            Stage::Pairing(pairing) => Due {
                give_up: (pairing.give_up_at <= now).then_some("QR code not scanned in time"),
                ..Due::default()
            },
            Stage::Linked { link, persist_at } => {
                let mut due = Due { persist: persist_at.is_some_and(|at| at <= now), ..Due::default() };
                match link {
                    Link::LoggingIn { give_up_at } | Link::Reconnecting { give_up_at } => {
                        due.give_up = (*give_up_at <= now).then_some("could not reconnect");
                    }
                    Link::Connected { presence_at } => {
                        due.presence = presence_at.is_some_and(|at| at <= now);
                        if due.presence {
                            *presence_at = None;
                        }
                    }
                }
                due
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Running(running) => match &running.stage {
                Stage::Pairing(_) => "pairing",
                Stage::Linked { link: Link::LoggingIn { .. }, .. } => "logging in",
                Stage::Linked { link: Link::Connected { .. }, .. } => "connected",
                Stage::Linked { link: Link::Reconnecting { .. }, .. } => "reconnecting",
            },
        }
    }
}

/// The next client event; a client that has stopped reporting says `Stopped` (the session then
/// ends it). Cancel safe: `recv` is.
pub(super) async fn next_event<C>(phase: &mut Phase<C>) -> ClientEvent {
    match phase {
        Phase::Running(running) => running.events.recv().await.unwrap_or(ClientEvent::Stopped),
        Phase::Idle => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn running(stage: Stage) -> Phase<()> {
        let (_, events) = mpsc::unbounded_channel();
        Phase::Running(Running { client: (), events, stage })
    }

    #[test]
    fn a_pairing_session_wakes_at_its_qr_budget_and_gives_up_then() {
        let now = Instant::now();
        let login = LoginMethod::QrCode;
        let mut phase = running(Stage::Pairing(Pairing { login, code: None, give_up_at: now }));
        assert_eq!(phase.wake_at(), Some(now));
        assert_eq!(phase.take_due(now).give_up, Some("QR code not scanned in time"));
        // Nothing linked, nothing to save.
        phase.schedule_persist(now);
        assert!(!phase.take_due(now).persist);
        assert!(phase.linked_client().is_none());
    }

    #[test]
    fn a_linked_session_keeps_its_pending_save_across_link_states() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let mut phase =
            running(Stage::Linked { link: Link::LoggingIn { give_up_at: later }, persist_at: None });
        phase.schedule_persist(now);
        phase.schedule_persist(later);
        phase.relink(Link::Connected { presence_at: None });
        assert_eq!(phase.wake_at(), Some(now));
        let due = phase.take_due(now);
        assert!(due.persist && due.give_up.is_none() && !due.presence);
        phase.clear_persist();
        assert_eq!(phase.wake_at(), None);
    }

    #[test]
    fn a_due_presence_is_taken_once() {
        let now = Instant::now();
        let mut phase =
            running(Stage::Linked { link: Link::Connected { presence_at: None }, persist_at: None });
        phase.schedule_presence(now);
        assert!(phase.take_due(now).presence);
        assert!(!phase.take_due(now).presence);
    }

    #[test]
    fn pairing_becomes_linked_with_nothing_pending() {
        let now = Instant::now();
        let login = LoginMethod::QrCode;
        let mut phase = running(Stage::Pairing(Pairing { login, code: None, give_up_at: now }));
        phase.relink(Link::LoggingIn { give_up_at: now });
        assert_eq!(phase.name(), "logging in");
        assert!(phase.linked_client().is_some() && phase.pairing().is_none());
    }
}
