//! Tries a session's store call again when the store was unavailable, past the SDK's own retries.
//!
//! A state write or an event that fails for good is a state that stays stale or an event nobody
//! gets. The SDK gives up after three tries within a second or so, and a store that is overwhelmed
//! for a moment (DynamoDB throttling a burst, an emulator out of CPU, a connection pool flooded by a
//! takeover) needs longer than that; so a session tries again, with the waits doubling, for about
//! eight seconds before it reports the failure. Only storage failures are tried again: a refusal
//! (the lease moved on, the instance is gone) is an answer.

use std::time::Duration;

use ryze_core::Error;

/// Tries in all, and the wait before the second; each later wait doubles (0.25 + 0.5 + … ≈ 7.75 s).
const TRIES: u32 = 6;
const FIRST_WAIT: Duration = Duration::from_millis(250);

/// Runs `call` until it returns anything but a storage failure, or the tries are spent.
// A closure returning a future, not an async closure: the futures of those are not yet known to be
// `Send`, which a session's task must be.
pub(crate) async fn while_unavailable<T, F>(what: &str, mut call: impl FnMut() -> F) -> ryze_core::Result<T>
where
    F: Future<Output = ryze_core::Result<T>>,
{
    let mut wait = FIRST_WAIT;
    for _ in 1..TRIES {
        match call().await {
            Err(Error::Storage(cause)) => {
                tracing::warn!(%cause, ?wait, "{what}: store unavailable; trying again");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            answered => return answered,
        }
    }
    call().await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_store_back_within_the_tries_loses_nothing() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let answer = while_unavailable("a write", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 { Err(Error::storage("throttled")) } else { Ok(7) }
        })
        .await;
        assert_eq!(answer.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(started.elapsed(), Duration::from_millis(250 + 500 + 1000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_down_for_good_is_reported_after_the_last_try() {
        let calls = AtomicU32::new(0);
        let answer: ryze_core::Result<()> = while_unavailable("a write", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::storage("down"))
        })
        .await;
        assert!(matches!(answer, Err(Error::Storage(_))));
        assert_eq!(calls.load(Ordering::SeqCst), TRIES);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_an_answer_not_tried_again() {
        let calls = AtomicU32::new(0);
        let answer: ryze_core::Result<()> = while_unavailable("a write", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::LeaseLost)
        })
        .await;
        assert!(matches!(answer, Err(Error::LeaseLost)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
