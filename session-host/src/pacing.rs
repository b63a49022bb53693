//! A host-wide pace for client starts: each start waits for its own slot, one every
//! `1 / rate` seconds, so that a host taking over a thousand sessions, or resuming them after a
//! restart, dials WhatsApp at a steady rate instead of all at once. A start that finds the pace
//! idle goes at once.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    /// `rate` starts per second; 0 means no pace at all.
    pub(crate) fn new(rate: u32) -> Self {
        let interval = if rate == 0 { Duration::ZERO } else { Duration::from_secs(1) / rate };
        Self { interval, next: Mutex::new(Instant::now()) }
    }

    /// Waits for this caller's slot.
    pub(crate) async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn starts_are_spaced_at_the_rate_and_an_idle_pace_goes_at_once() {
        let pacer = std::sync::Arc::new(Pacer::new(10));
        let begin = Instant::now();
        let mut starts = Vec::new();
        let waits: Vec<_> = (0..5)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    pacer.wait().await;
                    Instant::now()
                })
            })
            .collect();
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
}
