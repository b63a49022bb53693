//! What every authenticated request reads, kept for a moment: a token's owner and its account.
//!
//! Without it a request costs four DynamoDB calls (owner, account, rate counter, the record itself);
//! with it, two. Entries are trusted for [`READ_TTL`] only, and this process forgets its own
//! changes at once, so a change made elsewhere (another function, the CLI) is seen within that
//! long: a deleted instance's token, or an account's new limits, after at most a second here.
//! Unknown tokens are never cached, so a token created a moment ago works at once.
//!
//! An instance's name is cached for longer ([`NAME_TTL`]) because it cannot go stale unseen: names
//! never change, and the record read through the cached id is checked against the name asked for, so
//! a deleted (or deleted and re-created) instance sends the lookup back to the name item.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a cached read is trusted.
pub const READ_TTL: Duration = Duration::from_secs(1);
/// How long an instance name's id is kept: any length is correct, this bounds the memory's churn.
pub const NAME_TTL: Duration = Duration::from_secs(600);
/// Entries kept at most; past it, stale ones go first, then all.
const CAPACITY: usize = 10_000;

pub(super) struct ReadCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> Default for ReadCache<K, V> {
    fn default() -> Self {
        Self::trusted_for(READ_TTL)
    }
}

impl<K: Eq + Hash, V: Clone> ReadCache<K, V> {
    pub(super) fn trusted_for(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub(super) fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let (read_at, value) = entries.get(key)?;
        (read_at.elapsed() < self.ttl).then(|| value.clone())
    }

    pub(super) fn put(&self, key: K, value: V) {
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.len() >= CAPACITY {
            entries.retain(|_, (read_at, _)| read_at.elapsed() < self.ttl);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }

    pub(super) fn forget(&self, key: &K) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_served_for_the_ttl_and_forgotten_on_demand() {
        let cache = ReadCache::<&str, u32>::default();
        assert_eq!(cache.get(&"a"), None);
        cache.put("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        cache.forget(&"a");
        assert_eq!(cache.get(&"a"), None);
        cache.put("b", 2);
        std::thread::sleep(READ_TTL + Duration::from_millis(50));
        assert_eq!(cache.get(&"b"), None, "stale after the TTL");
    }
}
