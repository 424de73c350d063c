//! The wall clock that quotas read, injectable so tests can stand at 23:59:59 UTC and then step
//! to midnight. Production uses system time; a test pins the clock with [`Clock::set`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// System time unless pinned. Cheap to clone; clones share the pin.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Pinned unix-ms time, or `i64::MIN` for system time.
    pinned: Arc<AtomicI64Default>,
}

#[derive(Debug)]
struct AtomicI64Default(AtomicI64);

impl Default for AtomicI64Default {
    fn default() -> Self {
        Self(AtomicI64::new(i64::MIN))
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Current time in unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self.pinned.0.load(Ordering::Relaxed) {
            i64::MIN => crate::db::now_ms(),
            t => t,
        }
    }

    /// Pins the clock at `unix_ms` (tests).
    pub fn set(&self, unix_ms: i64) {
        self.pinned.0.store(unix_ms, Ordering::Relaxed);
    }

    /// Back to system time.
    pub fn unpin(&self) {
        self.pinned.0.store(i64::MIN, Ordering::Relaxed);
    }
}
