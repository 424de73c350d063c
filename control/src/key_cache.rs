//! Recently verified API keys, so a busy key costs a hash and a map probe per request instead of
//! a database round trip (on Postgres that round trip alone is most of the auth budget).
//!
//! Entries live for `ttl` (`--key-cache-ms`, default 1 s; 0 turns the cache off). Revoking a key
//! through the API evicts it on this replica at once; a revocation made elsewhere (another
//! replica, `sling keys revoke`) or a plan change takes effect within `ttl`. Only keys that
//! exist are cached, and the cache is bounded, so unknown keys cannot grow it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::keys::KeyRow;

/// More distinct live keys than this in one `ttl` simply clears the cache.
const MAX_ENTRIES: usize = 10_000;

pub struct KeyCache {
    ttl: Duration,
    /// Lookup prefix → (key row, team plan, when fetched).
    entries: Mutex<HashMap<String, (KeyRow, String, Instant)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached row and plan for `prefix`, if fetched less than `ttl` ago.
    pub fn get(&self, prefix: &str) -> Option<(KeyRow, String)> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let (row, plan, at) = entries.get(prefix)?;
        (at.elapsed() < self.ttl).then(|| (row.clone(), plan.clone()))
    }

    pub fn put(&self, row: &KeyRow, plan: &str) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(
                row.prefix.clone(),
                (row.clone(), plan.to_owned(), Instant::now()),
            );
        }
    }

    /// Forgets the key with this id (after a revocation on this replica).
    pub fn evict_key(&self, key_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (row, _, _)| row.id != key_id);
        }
    }
}
