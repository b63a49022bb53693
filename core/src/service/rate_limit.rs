//! Per-token rate limits in fixed one-minute windows, counted through the [`RateCounter`] port so
//! that every process of a deployment shares one count.

use std::sync::Arc;

use crate::Result;
use crate::clock::Clock;
use crate::ports::RateCounter;
use crate::service::Caller;

pub const WINDOW_SECS: i64 = 60;

/// Which of a token's two budgets a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Every route but create.
    Requests,
    /// `POST /api/instance/new`, which has its own, smaller budget.
    Creates,
}

impl Bucket {
    fn key_suffix(self) -> &'static str {
        match self {
            Self::Requests => "req",
            Self::Creates => "new",
        }
    }
}

/// The outcome of counting one request; the HTTP layer turns it into the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds at which the window resets.
    pub reset_at: i64,
    /// Seconds until then, at least 1.
    pub retry_after: i64,
}

pub struct RateLimiter {
    counter: Arc<dyn RateCounter>,
    clock: Arc<dyn Clock>,
}

impl RateLimiter {
    pub fn new(counter: Arc<dyn RateCounter>, clock: Arc<dyn Clock>) -> Self {
        Self { counter, clock }
    }

    /// Counts one request of `caller` against `bucket`.
    pub async fn check(&self, caller: &Caller, bucket: Bucket) -> Result<RateDecision> {
        let limit = match bucket {
            Bucket::Requests => caller.account.limits.requests_per_minute,
            Bucket::Creates => caller.account.limits.creates_per_minute,
        };
        let now = self.clock.now().timestamp();
        let window_start = now - now.rem_euclid(WINDOW_SECS);
        let key = format!("{}:{}", caller.token_hash.as_str(), bucket.key_suffix());
        let count = self.counter.hit(&key, window_start).await?;
        let reset_at = window_start + WINDOW_SECS;
        Ok(RateDecision {
            allowed: count <= limit,
            limit,
            remaining: limit.saturating_sub(count),
            reset_at,
            retry_after: (reset_at - now).max(1),
        })
    }
}
