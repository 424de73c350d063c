//! API call logs for plans that keep them (`Plan::api_logs`): method, path, status, latency, key
//! prefix and time of each call. Never the key, never a body: [`loggable_path`] drops query
//! parameters that can carry secrets (`key=` and friends) before anything is stored.
//!
//! Logging is off the request's critical path: the rate-limit middleware hands each entry to
//! [`ApiLogSink::record`], a `try_send` on a bounded channel that never waits. A writer task
//! drains the channel and inserts entries in batches (up to [`BATCH`] rows or [`LINGER`] of
//! waiting, one statement each). When the channel is full (the database is slow or down) entries
//! are dropped and counted (`dropped()`, and a warning at most every 30 s) rather than blocking
//! or failing the API. [`maintain`] prunes rows older than each plan's retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::db::{self, Db};
use crate::state::AppState;

/// Entries waiting to be written; past this they are dropped.
pub const CAPACITY: usize = 10_000;
/// Largest batch per INSERT (7 parameters each, well under both backends' limits).
pub const BATCH: usize = 500;
/// How long the writer waits to fill a batch once it has one entry.
pub const LINGER: Duration = Duration::from_millis(200);
/// How often [`maintain`] prunes logs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often [`maintain`] drops idle in-memory rate-limit buckets.
const SHRINK_EVERY: Duration = Duration::from_secs(60);

/// Query parameters never logged, whatever their case.
const SECRET_PARAMS: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "token",
    "access_token",
    "password",
    "secret",
];
const MAX_PATH_LEN: usize = 2048;

/// One API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub team_id: String,
    pub key_prefix: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub latency_us: u64,
    pub at_ms: i64,
}

/// The sending side, cheap to clone (in [`AppState`]).
#[derive(Clone)]
pub struct ApiLogSink {
    tx: Option<mpsc::Sender<Entry>>,
    dropped: Arc<AtomicU64>,
    warned_at: Arc<AtomicI64>,
}

impl ApiLogSink {
    /// A sink whose writer task runs on the current tokio runtime (entries are discarded, and
    /// counted as dropped, when there is none).
    pub fn start(db: Db) -> Self {
        let dropped = Arc::new(AtomicU64::new(0));
        let tx = match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let (tx, rx) = mpsc::channel(CAPACITY);
                rt.spawn(writer(db, rx));
                Some(tx)
            }
            Err(_) => None,
        };
        Self {
            tx,
            dropped,
            warned_at: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// Queues an entry; never waits.
    pub fn record(&self, entry: Entry) {
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(entry).is_ok());
        if !sent {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let now = db::now_ms();
            if now.saturating_sub(self.warned_at.load(Ordering::Relaxed)) >= 30_000 {
                self.warned_at.store(now, Ordering::Relaxed);
                tracing::warn!(dropped_total = n, "API log queue full; dropping entries");
            }
        }
    }

    /// Entries dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn writer(db: Db, mut rx: mpsc::Receiver<Entry>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                Ok(None) | Err(_) => break,
            }
        }
        if let Err(e) = db::api_logs::insert_batch(&db, &batch).await {
            tracing::warn!(error = %e, entries = batch.len(), "could not write API logs");
        }
        batch.clear();
    }
}

/// The path and query of `uri` as stored: parameters named in [`SECRET_PARAMS`] removed,
/// truncated to a sane length.
pub fn loggable_path(uri: &axum::http::Uri) -> String {
    let mut out = uri.path().to_owned();
    if let Some(q) = uri.query() {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or("");
                let name = url::form_urlencoded::parse(name.as_bytes())
                    .next()
                    .map(|(k, _)| k.into_owned())
                    .unwrap_or_default();
                !name.is_empty()
                    && !SECRET_PARAMS
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(name.trim()))
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    if out.len() > MAX_PATH_LEN {
        let mut end = MAX_PATH_LEN;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// Background upkeep until shutdown: prunes API logs past each plan's retention (hourly) and
/// drops idle in-memory rate-limit buckets (every minute).
pub async fn maintain(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SHRINK_EVERY);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        state.limiter.shrink();
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(tokio::time::Instant::now());
            match prune(&state).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "pruned API logs"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not prune API logs"),
            }
        }
    }
}

/// Deletes every log row past its team's plan retention (all rows of plans that keep none).
pub async fn prune(state: &AppState) -> sqlx::Result<u64> {
    let now = db::now_ms();
    let mut total = 0;
    for plan_name in db::api_logs::plans_in_use(&state.db).await? {
        let plan = state.config.plans.resolve(&plan_name);
        let cutoff = if plan.api_logs {
            now - i64::from(plan.api_log_retention_days) * 86_400_000
        } else {
            i64::MAX
        };
        total += db::api_logs::prune(&state.db, &plan_name, cutoff).await?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_logged() {
        let p = |s: &str| loggable_path(&s.parse().unwrap_or_default());
        assert_eq!(p("/api/v1/links?key=sk_abc&page=2"), "/api/v1/links?page=2");
        assert_eq!(p("/api/v1/links?KEY=x&Api_Key=y&token=z"), "/api/v1/links");
        assert_eq!(p("/api/v1/links?k%65y=x&tag=a"), "/api/v1/links?tag=a");
        assert_eq!(p("/api/v1/usage"), "/api/v1/usage");
    }
}
