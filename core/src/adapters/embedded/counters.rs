//! Rate counters in memory: right for one process, which is the whole deployment in embedded mode.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::RateCounter;
use crate::{Error, Result};

/// Beyond this many keys, counters of past windows are dropped.
const PRUNE_ABOVE: usize = 100_000;

#[derive(Debug, Default)]
pub struct MemoryRateCounter {
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

#[async_trait]
impl RateCounter for MemoryRateCounter {
    async fn hit(&self, key: &str, window_start: i64) -> Result<u32> {
        let mut windows = self.windows.lock().map_err(|_| Error::storage("rate counters poisoned"))?;
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, (start, _)| *start >= window_start);
        }
        // Looked up before inserting, so that the hot path allocates no key.
        let Some(entry) = windows.get_mut(key) else {
            windows.insert(key.to_owned(), (window_start, 1));
            return Ok(1);
        };
        if entry.0 != window_start {
            *entry = (window_start, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        Ok(entry.1)
    }
}
