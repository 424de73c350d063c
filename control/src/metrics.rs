//! Prometheus metrics of the control plane, exposed at `/metrics`.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// Status class (`2xx`, `4xx`, …) keeps the label set small.
    pub status: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Histogram,
    pub feed_head_seq: Gauge,
    pub snapshot_seq: Gauge,
    pub snapshot_links: Gauge,
    pub snapshot_bytes: Gauge,
    pub snapshot_build_seconds: Histogram,
    pub snapshot_failures: Counter,
    pub feed_polls: Counter,
    /// Click ingestion (`crate::ingest`).
    pub clicks: crate::ingest::ClickMetrics,
    /// Unix ms of the newest published snapshot; the age gauge is derived at scrape time.
    snapshot_published_ms: AtomicI64,
    snapshot_age_seconds: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sling_control");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "API requests by method and status class",
            requests.clone(),
        );
        let request_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "http_request_duration_seconds",
            "API request latency",
            request_seconds.clone(),
        );
        let feed_head_seq = Gauge::default();
        registry.register(
            "feed_head_seq",
            "Highest change-feed sequence written",
            feed_head_seq.clone(),
        );
        let snapshot_seq = Gauge::default();
        registry.register(
            "snapshot_seq",
            "Feed sequence of the newest published snapshot",
            snapshot_seq.clone(),
        );
        let snapshot_links = Gauge::default();
        registry.register(
            "snapshot_links",
            "Links in the newest published snapshot",
            snapshot_links.clone(),
        );
        let snapshot_bytes = Gauge::default();
        registry.register(
            "snapshot_bytes",
            "Size of the newest published snapshot",
            snapshot_bytes.clone(),
        );
        let snapshot_build_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "snapshot_build_duration_seconds",
            "Time to read, encode and write a snapshot",
            snapshot_build_seconds.clone(),
        );
        let snapshot_failures = Counter::default();
        registry.register(
            "snapshot_failures",
            "Snapshot publications that failed",
            snapshot_failures.clone(),
        );
        let feed_polls = Counter::default();
        registry.register(
            "feed_polls",
            "Change-feed requests served",
            feed_polls.clone(),
        );
        let clicks = crate::ingest::ClickMetrics::register(&mut registry);
        let snapshot_age_seconds = Gauge::default();
        registry.register(
            "snapshot_age_seconds",
            "Seconds since the newest snapshot was published",
            snapshot_age_seconds.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            feed_head_seq,
            snapshot_seq,
            snapshot_links,
            snapshot_bytes,
            snapshot_build_seconds,
            snapshot_failures,
            feed_polls,
            clicks,
            snapshot_published_ms: AtomicI64::new(0),
            snapshot_age_seconds,
        }
    }

    pub fn snapshot_published(&self, seq: u64, links: u64, bytes: u64, at_ms: i64) {
        self.snapshot_seq.set(seq as i64);
        self.snapshot_links.set(links as i64);
        self.snapshot_bytes.set(bytes as i64);
        self.snapshot_published_ms.store(at_ms, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let published = self.snapshot_published_ms.load(Ordering::Relaxed);
        if published > 0 {
            self.snapshot_age_seconds
                .set((crate::db::now_ms() - published) / 1000);
        }
        let mut out = String::new();
        // Encoding into a String cannot fail (fmt::Write for String is infallible).
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
