//! A host-wide pace for client starts: starts take turns, in the order they asked, one every
//! `1 / rate` seconds, so that a host taking over a thousand sessions, or resuming them after a
//! restart, dials WhatsApp at a steady rate instead of all at once. A start that finds the pace
//! idle goes at once. The waiting one's slot follows the pace as it is now, not as it was when
//! the start asked: a takeover that slowed the pace and queued hundreds of starts meanwhile must
//! not keep them two seconds apart once the store is healthy again (at 300 sessions that was
//! the difference between a p99 of 280 s and one of a minute).
//!
//! The pace also yields to the store: every start costs the store a handful of calls (lease, state,
//! credential store, event), and a store that slows down under them (DynamoDB throttling, an
//! emulator out of CPU) would slow the heartbeat too, until the host fences itself. The heartbeat
//! reports each beat's latency ([`Pacer::observe_store`]): a slow one doubles the interval between
//! starts, a fast one quarters it back towards the configured rate.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The slowest the pace goes when the store is slow: one start every two seconds.
const SLOWEST: Duration = Duration::from_secs(2);
/// Where a pace that was off (rate 0) starts slowing down from.
const UNPACED_FLOOR: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub(crate) struct Pacer {
    configured: Duration,
    state: Mutex<State>,
    /// Held by the start whose turn it is; tokio's mutex queues the others in order.
    turn: tokio::sync::Mutex<()>,
    /// The interval changed: the start waiting for its slot works it out again.
    changed: tokio::sync::Notify,
}

#[derive(Debug)]
struct State {
    last_start: Option<Instant>,
    interval: Duration,
}

impl Pacer {
    /// `rate` starts per second; 0 means no pace at all.
    pub(crate) fn new(rate: u32) -> Self {
        let configured = if rate == 0 { Duration::ZERO } else { Duration::from_secs(1) / rate };
        Self {
            configured,
            state: Mutex::new(State { last_start: None, interval: configured }),
            turn: tokio::sync::Mutex::new(()),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for this caller's turn, then for its slot: an interval after the last start, at the
    /// interval of the moment. Cancel safe: a caller dropped while waiting gives its turn up.
    pub(crate) async fn wait(&self) {
        let _turn = self.turn.lock().await;
        loop {
            // Registered before the slot is read, so a change in between still wakes this one.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let slot = {
                let state = self.state();
                state.last_start.map_or_else(Instant::now, |last| last + state.interval)
            };
            if slot <= Instant::now() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(slot) => break,
                () = changed => {}
            }
        }
        self.state().last_start = Some(Instant::now());
    }

    /// One call of the store took `latency`, where `slow` is too long and `fast` is healthy: slows
    /// the pace down or lets it recover.
    pub(crate) fn observe_store(&self, latency: Duration, slow: Duration, fast: Duration) {
        let mut state = self.state();
        let before = state.interval;
        if latency >= slow {
            state.interval = (before.max(UNPACED_FLOOR) * 2).min(SLOWEST.max(self.configured));
        } else if latency <= fast && before > self.configured {
            // Back faster than it slowed: beats are a period apart, and the starts a takeover
            // queued wait at the slow pace until it is back.
            let quartered = before / 4;
            state.interval =
                if quartered <= self.configured.max(UNPACED_FLOOR) { self.configured } else { quartered };
        }
        if state.interval != before {
            tracing::info!(?latency, interval = ?state.interval, "the store's latency changed the connect pace");
            self.changed.notify_waiters();
        }
    }

    #[cfg(test)]
    fn interval(&self) -> Duration {
        self.state().interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` starts waiting for their turn at once; each resolves to when it went.
    fn spawn_starts(pacer: &std::sync::Arc<Pacer>, count: usize) -> Vec<tokio::task::JoinHandle<Instant>> {
        (0..count)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    pacer.wait().await;
                    Instant::now()
                })
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn starts_are_spaced_at_the_rate_and_an_idle_pace_goes_at_once() {
        let pacer = std::sync::Arc::new(Pacer::new(10));
        let begin = Instant::now();
        let mut starts = Vec::new();
        let waits = spawn_starts(&pacer, 5);
        for wait in waits {
            starts.push(wait.await.unwrap().duration_since(begin));
        }
        starts.sort();
        let millis: Vec<u128> = starts.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [0, 100, 200, 300, 400]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle = Instant::now();
        pacer.wait().await;
        assert_eq!(Instant::now(), idle, "an idle pace does not hold a start back");
    }

    #[tokio::test(start_paused = true)]
    async fn starts_queued_at_a_slow_pace_speed_up_as_soon_as_it_recovers() {
        let (slow, fast) = (Duration::from_secs(1), Duration::from_millis(250));
        let pacer = std::sync::Arc::new(Pacer::new(25));
        for _ in 0..6 {
            pacer.observe_store(Duration::from_secs(3), slow, fast);
        }
        assert_eq!(pacer.interval(), SLOWEST);
        let begin = Instant::now();
        let waits = spawn_starts(&pacer, 10);
        // Two starts at the slow pace (at once, then 2 s later), then the store is healthy again.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        for _ in 0..10 {
            pacer.observe_store(Duration::from_millis(20), slow, fast);
        }
        let mut starts = Vec::new();
        for wait in waits {
            starts.push(wait.await.unwrap().duration_since(begin).as_millis());
        }
        starts.sort_unstable();
        // The rest at 40 ms apart from the recovery on, not 2 s apart as they were queued.
        assert_eq!(starts, [0, 2_000, 2_500, 2_540, 2_580, 2_620, 2_660, 2_700, 2_740, 2_780]);
    }

    #[test]
    fn a_slow_store_slows_the_pace_and_a_fast_one_brings_it_back() {
        let (slow, fast) = (Duration::from_secs(1), Duration::from_millis(250));
        let pacer = Pacer::new(25);
        pacer.observe_store(Duration::from_millis(100), slow, fast);
        assert_eq!(pacer.interval(), Duration::from_millis(40), "healthy: the configured rate");
        pacer.observe_store(Duration::from_secs(3), slow, fast);
        pacer.observe_store(Duration::from_secs(3), slow, fast);
        assert_eq!(pacer.interval(), Duration::from_millis(160));
        for _ in 0..10 {
            pacer.observe_store(Duration::from_secs(6), slow, fast);
        }
        assert_eq!(pacer.interval(), SLOWEST, "bounded");
        pacer.observe_store(Duration::from_millis(500), slow, fast);
        assert_eq!(pacer.interval(), SLOWEST, "in between: held");
        pacer.observe_store(Duration::from_millis(20), slow, fast);
        assert_eq!(pacer.interval(), SLOWEST / 4, "back faster than it slowed");
        for _ in 0..10 {
            pacer.observe_store(Duration::from_millis(20), slow, fast);
        }
        assert_eq!(pacer.interval(), Duration::from_millis(40), "back to the configured rate, not past it");

        let unpaced = Pacer::new(0);
        unpaced.observe_store(Duration::from_secs(2), slow, fast);
        assert_eq!(unpaced.interval(), Duration::from_millis(20));
        unpaced.observe_store(Duration::from_millis(1), slow, fast);
        assert_eq!(unpaced.interval(), Duration::ZERO);
    }
}
