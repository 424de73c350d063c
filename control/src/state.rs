//! Shared state handed to every handler and background task.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::db::Db;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    /// Highest feed sequence committed by this process; long-polls and the publisher wait on
    /// it. (Other replicas' writes are picked up by the feed's periodic database check.)
    pub feed_head: Arc<watch::Sender<u64>>,
    /// Feed sequence of the newest snapshot this process has published.
    pub snapshot_seq: Arc<watch::Sender<u64>>,
    pub metrics: Arc<Metrics>,
    /// Turns true when the process is shutting down; long-polls return early on it.
    pub shutdown: Arc<watch::Sender<bool>>,
    /// Per-team request rate limits (in memory, or shared through Redis).
    pub limiter: Arc<crate::ratelimit::Limiter>,
    /// Queue of API call log entries (written by a background task).
    pub api_logs: crate::api_logs::ApiLogSink,
    /// The time quotas are counted in; tests pin it.
    pub clock: crate::clock::Clock,
    /// Recently verified API keys (see `key_cache`).
    pub key_cache: Arc<crate::key_cache::KeyCache>,
    /// Wakes the ACME worker when an order becomes due now (a verified domain, a forced
    /// renewal); without a wake it finds the order at its next poll.
    pub acme_wake: Arc<tokio::sync::Notify>,
    /// The queue of click batches in front of the group-commit writer (`ingest`).
    pub click_writer: Arc<crate::ingest::GroupWriter>,
    /// Wakes the webhook worker when a delivery is due now (`POST /webhooks/{id}/test`, link
    /// events); without a wake it finds deliveries at its next poll.
    pub webhook_wake: Arc<tokio::sync::Notify>,
}

impl AppState {
    pub fn new(db: Db, config: Config) -> Self {
        let limiter = match &config.redis_url {
            Some(url) => crate::ratelimit::Limiter::redis(url, &config.redis_key_prefix)
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "bad Redis URL; rate limits stay per replica");
                    crate::ratelimit::Limiter::local()
                }),
            None => crate::ratelimit::Limiter::local(),
        };
        Self {
            limiter: Arc::new(limiter),
            api_logs: crate::api_logs::ApiLogSink::start(db.clone()),
            clock: crate::clock::Clock::system(),
            key_cache: Arc::new(crate::key_cache::KeyCache::new(config.key_cache_ttl)),
            db,
            config: Arc::new(config),
            feed_head: Arc::new(watch::channel(0).0),
            snapshot_seq: Arc::new(watch::channel(0).0),
            metrics: Arc::new(Metrics::new()),
            shutdown: Arc::new(watch::channel(false).0),
            acme_wake: Arc::new(tokio::sync::Notify::new()),
            click_writer: Arc::default(),
            webhook_wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Call after committing a transaction that appended changes up to `seq`: wakes long-polls.
    pub fn changes_committed(&self, seq: u64) {
        self.feed_head.send_if_modified(|head| {
            if seq > *head {
                *head = seq;
                true
            } else {
                false
            }
        });
    }
}
