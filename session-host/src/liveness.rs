//! The dead-socket watchdog: one timer per session that notices a WhatsApp socket which stays open
//! but brings nothing in (a dead network path, a hung peer), reports it to the session as a
//! `Disconnected` and makes the client drop the socket and dial again.
//!
//! whatsapp-rust 0.7.0 notices such a socket by itself only 35 to 65 s after the last frame when
//! idle (20 to 50 s after its first unanswered write when busy), and then reconnects without any
//! `Disconnected` event, so the session would show `connected` throughout. This watchdog bounds it:
//! it looks at the client's receive counters every third of the limit; a tick that finds nothing
//! new is silent. On the first and second silent ticks it pings (one keepalive IQ at a time, which
//! any live server answers), on the third it calls the socket dead. So a socket is dropped after at
//! least `limit` and at most `limit * 4 / 3` with nothing received, and a healthy idle one gets
//! a ping every other tick. A client that is not logged in (pairing, between connections) is not
//! watched, and the count starts over when it is again.
//!
//! It knows the client only through [`Line`], so its timing is tested on a scripted line with
//! tokio's paused clock; `whatsapp.rs` implements [`Line`] on whatsapp-rust's `Client`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::ClientEvent;

/// The reason of the `Disconnected` the watchdog reports.
pub const NO_ANSWER: &str = "no answer from WhatsApp";

/// Silent ticks that make a socket dead. Pings go out on the ones before, so the first ping has
/// two ticks to be answered.
const SILENT_TICKS: u32 = 3;

/// How long the watchdog waits for the client to let go of a dead socket. Letting go starts with
/// stopping the socket's reader, so the client reconnects even when the wait is cut short.
const DROP_WAIT: Duration = Duration::from_secs(10);

/// Changes whenever something arrives on the client's socket: its frame count and the time of its
/// last receive.
pub type Mark = (u64, u64);

/// What the watchdog needs of a client.
pub trait Line: Send + Sync + 'static {
    /// The receive mark while logged in on a socket; `None` otherwise (nothing to watch).
    fn heard(&self) -> Option<Mark>;
    /// Sends one keepalive ping and waits at most `within` for its answer, which is a receive.
    fn ping(self: Arc<Self>, within: Duration) -> impl Future<Output = ()> + Send + 'static;
    /// Drops the socket; the client reconnects by itself, with the same credentials.
    fn drop_socket(self: Arc<Self>) -> impl Future<Output = ()> + Send + 'static;
}

/// What one tick found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Something arrived since the last tick, or there is nothing to watch.
    Fine,
    /// Silent: ask the server for an answer.
    Ping,
    /// Silent for [`SILENT_TICKS`] ticks in a row.
    Dead,
}

/// The count of silent ticks: the pure part of the watchdog.
#[derive(Debug, Default)]
struct Silence {
    last: Option<Mark>,
    silent_ticks: u32,
}

impl Silence {
    fn tick(&mut self, heard: Option<Mark>) -> Verdict {
        let Some(mark) = heard else {
            *self = Self::default();
            return Verdict::Fine;
        };
        if self.last != Some(mark) {
            self.last = Some(mark);
            self.silent_ticks = 0;
            return Verdict::Fine;
        }
        self.silent_ticks += 1;
        if self.silent_ticks < SILENT_TICKS {
            return Verdict::Ping;
        }
        // The next connection starts a count of its own.
        *self = Self::default();
        Verdict::Dead
    }
}

/// Watches `line` until it is dropped or nobody listens to `events` any more; the owner aborts
/// it when the client stops. `limit` must not be zero.
pub async fn watch<L: Line>(line: Weak<L>, limit: Duration, events: mpsc::UnboundedSender<ClientEvent>) {
    let period = limit / SILENT_TICKS;
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut silence = Silence::default();
    // The ping out, if any: polled alongside the timer, never more than one.
    let mut ping: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = async { ping.as_mut().expect("guarded by the condition").await }, if ping.is_some() => {
                ping = None;
                continue;
            }
        }
        if events.is_closed() {
            return;
        }
        let Some(line) = line.upgrade() else { return };
        match silence.tick(line.heard()) {
            Verdict::Fine => {}
            Verdict::Ping => {
                if ping.is_none() {
                    ping = Some(Box::pin(line.ping(limit)));
                }
            }
            Verdict::Dead => {
                tracing::warn!(?limit, "nothing received on the whatsapp socket; dropping it to reconnect");
                ping = None;
                if events.send(ClientEvent::Disconnected { reason: NO_ANSWER.to_owned() }).is_err() {
                    return;
                }
                let _ = tokio::time::timeout(DROP_WAIT, line.drop_socket()).await;
                ticks.reset();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

    use super::*;

    const LIMIT: Duration = Duration::from_secs(30);

    #[test]
    fn three_silent_ticks_make_a_dead_socket() {
        let mut silence = Silence::default();
        assert_eq!(silence.tick(Some((1, 1))), Verdict::Fine);
        assert_eq!(silence.tick(Some((1, 1))), Verdict::Ping);
        assert_eq!(silence.tick(Some((2, 1))), Verdict::Fine, "a frame resets the count");
        assert_eq!(silence.tick(Some((2, 1))), Verdict::Ping);
        assert_eq!(silence.tick(Some((2, 2))), Verdict::Fine, "so does a receive still in processing");
        assert_eq!(silence.tick(Some((2, 2))), Verdict::Ping);
        assert_eq!(silence.tick(Some((2, 2))), Verdict::Ping);
        assert_eq!(silence.tick(Some((2, 2))), Verdict::Dead);
        assert_eq!(silence.tick(Some((2, 2))), Verdict::Fine, "the count starts over after a drop");
        assert_eq!(silence.tick(Some((2, 2))), Verdict::Ping);
        assert_eq!(silence.tick(None), Verdict::Fine, "nothing to watch while not logged in");
        assert_eq!(silence.tick(Some((2, 2))), Verdict::Fine);
        assert_eq!(silence.tick(Some((2, 2))), Verdict::Ping);
    }

    /// A scripted client: frames come from the test, pings are answered (after `rtt`) unless the
    /// line is frozen.
    struct Scripted {
        frames: AtomicU64,
        logged_in: AtomicBool,
        frozen: AtomicBool,
        pings: AtomicUsize,
        drops: Mutex<Vec<Instant>>,
    }

    impl Scripted {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                frames: AtomicU64::new(0),
                logged_in: AtomicBool::new(true),
                frozen: AtomicBool::new(false),
                pings: AtomicUsize::new(0),
                drops: Mutex::new(Vec::new()),
            })
        }

        fn receive(&self) {
            self.frames.fetch_add(1, Ordering::SeqCst);
        }

        fn drops(&self) -> Vec<Instant> {
            self.drops.lock().unwrap().clone()
        }
    }

    impl Line for Scripted {
        fn heard(&self) -> Option<Mark> {
            self.logged_in.load(Ordering::SeqCst).then(|| (self.frames.load(Ordering::SeqCst), 0))
        }

        async fn ping(self: Arc<Self>, within: Duration) {
            self.pings.fetch_add(1, Ordering::SeqCst);
            if self.frozen.load(Ordering::SeqCst) {
                tokio::time::sleep(within).await;
            } else {
                tokio::time::sleep(Duration::from_millis(80)).await;
                self.receive();
            }
        }

        async fn drop_socket(self: Arc<Self>) {
            self.drops.lock().unwrap().push(Instant::now());
            // The new connection logs in and talks.
            self.frozen.store(false, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.receive();
        }
    }

    fn start(line: &Arc<Scripted>) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<ClientEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        (tokio::spawn(watch(Arc::downgrade(line), LIMIT, events)), receiver)
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_socket_that_answers_is_kept() {
        let line = Scripted::new();
        let (task, mut events) = start(&line);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(line.drops().is_empty());
        assert!(events.try_recv().is_err(), "no event");
        // One ping every other tick: the answer makes the next tick fine.
        let pings = line.pings.load(Ordering::SeqCst);
        assert!((170..=190).contains(&pings), "{pings} pings in an hour");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_socket_is_not_pinged() {
        let line = Scripted::new();
        let (task, _events) = start(&line);
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            line.receive();
        }
        assert_eq!(line.pings.load(Ordering::SeqCst), 0);
        assert!(line.drops().is_empty());
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_socket_is_dropped_between_the_limit_and_a_third_more() {
        // The last frame at several offsets from the watchdog's ticks.
        for offset_ms in [0, 1, 2500, 5000, 9999] {
            let line = Scripted::new();
            let (task, mut events) = start(&line);
            tokio::time::sleep(Duration::from_secs(25) + Duration::from_millis(offset_ms)).await;
            line.frozen.store(true, Ordering::SeqCst);
            line.receive();
            let last_frame = Instant::now();

            let event = events.recv().await.expect("an event");
            assert_eq!(event, ClientEvent::Disconnected { reason: NO_ANSWER.to_owned() });
            let drops = line.drops();
            assert_eq!(drops.len(), 1);
            let silent = drops[0] - last_frame;
            assert!(
                silent >= LIMIT && silent <= LIMIT * 4 / 3,
                "dropped after {silent:?} (offset {offset_ms} ms)"
            );
            assert!(line.pings.load(Ordering::SeqCst) >= 1, "pinged before giving up");

            // The new connection answers: no second drop.
            tokio::time::sleep(Duration::from_secs(600)).await;
            assert_eq!(line.drops().len(), 1);
            assert!(events.try_recv().is_err());
            task.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_that_stays_dead_is_dropped_again_a_full_limit_later() {
        let line = Scripted::new();
        let (task, mut events) = start(&line);
        line.frozen.store(true, Ordering::SeqCst);
        line.receive();
        events.recv().await.expect("the first drop");
        // The new connection logged in (one frame) and froze too.
        tokio::time::sleep(Duration::from_millis(500)).await;
        line.frozen.store(true, Ordering::SeqCst);
        events.recv().await.expect("the second drop");
        let drops = line.drops();
        assert_eq!(drops.len(), 2);
        assert!(drops[1] - drops[0] >= LIMIT, "{:?} apart", drops[1] - drops[0]);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_not_logged_in_is_not_watched() {
        let line = Scripted::new();
        line.logged_in.store(false, Ordering::SeqCst);
        line.frozen.store(true, Ordering::SeqCst);
        let (task, mut events) = start(&line);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(line.pings.load(Ordering::SeqCst), 0);
        assert!(line.drops().is_empty());
        assert!(events.try_recv().is_err());
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_ends_with_its_client_or_its_session() {
        let line = Scripted::new();
        let (task, _events) = start(&line);
        drop(line);
        tokio::time::timeout(LIMIT, task).await.expect("ended with the client").expect("no panic");

        let line = Scripted::new();
        let (task, events) = start(&line);
        drop(events);
        tokio::time::timeout(LIMIT, task).await.expect("ended with the session").expect("no panic");
    }
}
