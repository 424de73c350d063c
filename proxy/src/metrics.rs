//! Prometheus metrics, served as text on the admin listener's `/metrics`. Counters and the
//! latency histogram are updated on the request path (atomics, no allocation: one counter per
//! status class is created up front); gauges describing state (snapshot age, overlay size) are
//! refreshed when scraped.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::snapshot::LoadedSnapshot;

type Labels = [(&'static str, &'static str); 1];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// How a TLS handshake ended (the `result` label of `sling_proxy_tls_handshakes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Ok = 0,
    /// The client named a host the proxy has no certificate for.
    UnknownName,
    /// Any other failure: not TLS, no shared protocol or cipher, the peer hung up.
    Failed,
    /// The client did not finish within the handshake timeout.
    Timeout,
}

impl Handshake {
    const ALL: [Handshake; 4] = [
        Handshake::Ok,
        Handshake::UnknownName,
        Handshake::Failed,
        Handshake::Timeout,
    ];

    fn label(self) -> &'static str {
        match self {
            Handshake::Ok => "ok",
            Handshake::UnknownName => "unknown_name",
            Handshake::Failed => "failed",
            Handshake::Timeout => "timeout",
        }
    }
}

/// The TLS listener's and the TLS state follower's metrics.
#[derive(Debug)]
struct TlsMetrics {
    /// Indexed like [`Handshake::ALL`].
    handshakes: [Counter; 4],
    certificates: Gauge,
    rejected_certificates: Gauge,
    state_seq: Gauge,
    state_errors: Counter,
}

impl TlsMetrics {
    fn new(r: &mut Registry) -> Self {
        let family = Family::<Labels, Counter>::default();
        r.register(
            "tls_handshakes",
            "TLS handshakes on the HTTPS listener by result",
            family.clone(),
        );
        let m = Self {
            handshakes: Handshake::ALL
                .map(|h| family.get_or_create(&[("result", h.label())]).clone()),
            certificates: Gauge::default(),
            rejected_certificates: Gauge::default(),
            state_seq: Gauge::default(),
            state_errors: Counter::default(),
        };
        r.register(
            "tls_certificates",
            "Certificates the SNI resolver serves (TLS state and certificate files)",
            m.certificates.clone(),
        );
        r.register(
            "tls_rejected_certificates",
            "Certificates of the TLS state skipped because the chain or key does not parse or match",
            m.rejected_certificates.clone(),
        );
        r.register(
            "tls_state_seq",
            "Feed sequence of the installed TLS state (0: none)",
            m.state_seq.clone(),
        );
        r.register(
            "tls_state_errors",
            "Failed TLS state fetches",
            m.state_errors.clone(),
        );
        m
    }
}

/// The click pipeline's metrics; cloned into the shipper threads (each handle shares its value).
#[derive(Clone, Debug)]
pub struct ClickMetrics {
    /// Clicks accepted into the shipper's channel.
    pub queued: Counter,
    /// Clicks that found the channel full and went to the overflow spooler.
    pub overflowed: Counter,
    /// Clicks acknowledged by the control plane (live or replayed).
    pub shipped: Counter,
    pub batches_shipped: Counter,
    /// Clicks written to the spool.
    pub spooled: Counter,
    /// Failed deliveries (connection errors, non-200 answers).
    pub ship_failures: Counter,
    /// Clicks that could be neither delivered nor spooled (disk failure at exit); should stay 0.
    pub lost: Counter,
    pub spool_files: Gauge,
    pub spool_bytes: Gauge,
    /// Round trip of a delivered batch.
    pub batch_duration: Histogram,
}

impl ClickMetrics {
    fn new() -> Self {
        Self {
            queued: Counter::default(),
            overflowed: Counter::default(),
            shipped: Counter::default(),
            batches_shipped: Counter::default(),
            spooled: Counter::default(),
            ship_failures: Counter::default(),
            lost: Counter::default(),
            spool_files: Gauge::default(),
            spool_bytes: Gauge::default(),
            // 1 ms to ~16 s.
            batch_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "clicks_queued",
            "Clicks the shipper took from its channel (counted once per tick)",
            self.queued.clone(),
        );
        r.register(
            "clicks_overflowed",
            "Clicks that found the shipper channel full and were spooled directly",
            self.overflowed.clone(),
        );
        r.register(
            "clicks_shipped",
            "Clicks acknowledged by the control plane",
            self.shipped.clone(),
        );
        r.register(
            "click_batches_shipped",
            "Click batches acknowledged by the control plane",
            self.batches_shipped.clone(),
        );
        r.register(
            "clicks_spooled",
            "Clicks written to the on-disk spool",
            self.spooled.clone(),
        );
        r.register(
            "click_ship_failures",
            "Failed click batch deliveries",
            self.ship_failures.clone(),
        );
        r.register(
            "clicks_lost",
            "Clicks neither delivered nor spooled (disk failure at exit)",
            self.lost.clone(),
        );
        r.register(
            "click_spool_files",
            "Click batches waiting in the spool",
            self.spool_files.clone(),
        );
        r.register_with_unit(
            "click_spool",
            "Size of the click spool",
            Unit::Bytes,
            self.spool_bytes.clone(),
        );
        r.register_with_unit(
            "click_batch_duration",
            "Round trip of a delivered click batch",
            Unit::Seconds,
            self.batch_duration.clone(),
        );
    }
}

pub struct Metrics {
    registry: Registry,
    pub clicks: ClickMetrics,
    /// Requests by status class, indexed by `status / 100 - 1`.
    requests: [Counter; 5],
    latency: Histogram,
    snapshot_seq: Gauge,
    /// Creation time of the served snapshot (unix ms); the age gauge is derived at scrape time.
    snapshot_created_ms: AtomicI64,
    snapshot_age: Gauge<f64, AtomicU64>,
    snapshot_links: Gauge,
    overlay_entries: Gauge,
    feed_applied_seq: Gauge,
    feed_lag: Gauge,
    feed_errors: Counter,
    feed_last_success: Gauge<f64, AtomicU64>,
    tls: TlsMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sling_proxy");
        let family = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Redirect-listener responses by status class",
            family.clone(),
        );
        let requests = CLASSES.map(|class| family.get_or_create(&[("class", class)]).clone());
        // 25 µs to ~1.6 s.
        let latency = Histogram::new(exponential_buckets(0.000_025, 2.0, 17));
        registry.register_with_unit(
            "request_duration",
            "Time to answer a redirect-listener request",
            Unit::Seconds,
            latency.clone(),
        );

        let tls = TlsMetrics::new(&mut registry);
        let mut m = Self {
            tls,
            registry,
            clicks: ClickMetrics::new(),
            requests,
            latency,
            snapshot_seq: Gauge::default(),
            snapshot_created_ms: AtomicI64::new(0),
            snapshot_age: Gauge::default(),
            snapshot_links: Gauge::default(),
            overlay_entries: Gauge::default(),
            feed_applied_seq: Gauge::default(),
            feed_lag: Gauge::default(),
            feed_errors: Counter::default(),
            feed_last_success: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "snapshot_seq",
            "Feed sequence of the served snapshot (0: none)",
            m.snapshot_seq.clone(),
        );
        r.register_with_unit(
            "snapshot_age",
            "Age of the served snapshot",
            Unit::Seconds,
            m.snapshot_age.clone(),
        );
        r.register(
            "snapshot_links",
            "Links in the served snapshot",
            m.snapshot_links.clone(),
        );
        r.register(
            "overlay_entries",
            "Link and domain changes applied since the served snapshot",
            m.overlay_entries.clone(),
        );
        r.register(
            "feed_applied_seq",
            "Highest change-feed sequence applied",
            m.feed_applied_seq.clone(),
        );
        r.register(
            "feed_lag",
            "Changes written by the control plane and not yet applied here",
            m.feed_lag.clone(),
        );
        r.register(
            "feed_errors",
            "Failed change-feed polls and snapshot downloads",
            m.feed_errors.clone(),
        );
        r.register_with_unit(
            "feed_last_success_timestamp",
            "Unix time of the last successful change-feed poll",
            Unit::Seconds,
            m.feed_last_success.clone(),
        );
        m.clicks.register(&mut m.registry);
        m
    }

    /// Hot path: one atomic increment and one histogram observation.
    pub fn record_request(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        if let Some(counter) = self.requests.get(class) {
            counter.inc();
        }
        self.latency.observe(elapsed.as_secs_f64());
    }

    pub fn snapshot_loaded(&self, snapshot: &LoadedSnapshot) {
        let header = snapshot.header();
        self.snapshot_seq.set(saturating_i64(header.feed_seq));
        self.snapshot_links.set(saturating_i64(header.link_count));
        self.snapshot_created_ms
            .store(header.created_at_ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn feed_synced(&self, applied: u64, head: u64) {
        self.feed_applied_seq.set(saturating_i64(applied));
        self.feed_lag
            .set(saturating_i64(head.saturating_sub(applied)));
        self.feed_last_success.set(now_secs());
    }

    pub fn feed_error(&self) {
        self.feed_errors.inc();
    }

    pub fn tls_handshake(&self, result: Handshake) {
        if let Some(counter) = self.tls.handshakes.get(result as usize) {
            counter.inc();
        }
    }

    /// A TLS state (or the certificate files alone) was installed.
    pub fn tls_installed(&self, seq: u64, certificates: usize, rejected: usize) {
        self.tls.state_seq.set(saturating_i64(seq));
        self.tls
            .certificates
            .set(i64::try_from(certificates).unwrap_or(i64::MAX));
        self.tls
            .rejected_certificates
            .set(i64::try_from(rejected).unwrap_or(i64::MAX));
    }

    pub fn tls_state_error(&self) {
        self.tls.state_errors.inc();
    }

    /// The text exposition, with state gauges refreshed first.
    pub fn render(&self, overlay_entries: usize) -> String {
        self.overlay_entries
            .set(i64::try_from(overlay_entries).unwrap_or(i64::MAX));
        let created_ms = self
            .snapshot_created_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if created_ms > 0 {
            self.snapshot_age
                .set((now_secs() - created_ms as f64 / 1000.0).max(0.0));
        }
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new();
        m.record_request(StatusCode::FOUND, Duration::from_micros(40));
        m.feed_synced(10, 12);
        m.feed_error();
        m.clicks.queued.inc();
        m.clicks.spool_bytes.set(42);
        m.tls_handshake(Handshake::UnknownName);
        m.tls_installed(7, 2, 1);
        let text = m.render(3);
        for needle in [
            "sling_proxy_requests_total{class=\"3xx\"} 1",
            "sling_proxy_requests_total{class=\"5xx\"} 0",
            "sling_proxy_request_duration_seconds_count 1",
            "sling_proxy_overlay_entries 3",
            "sling_proxy_feed_lag 2",
            "sling_proxy_feed_errors_total 1",
            "sling_proxy_snapshot_seq 0",
            "sling_proxy_clicks_queued_total 1",
            "sling_proxy_clicks_overflowed_total 0",
            "sling_proxy_clicks_shipped_total 0",
            "sling_proxy_clicks_spooled_total 0",
            "sling_proxy_click_ship_failures_total 0",
            "sling_proxy_click_spool_files 0",
            "sling_proxy_click_spool_bytes 42",
            "sling_proxy_click_batch_duration_seconds_count 0",
            "sling_proxy_tls_handshakes_total{result=\"unknown_name\"} 1",
            "sling_proxy_tls_handshakes_total{result=\"ok\"} 0",
            "sling_proxy_tls_certificates 2",
            "sling_proxy_tls_rejected_certificates 1",
            "sling_proxy_tls_state_seq 7",
            "sling_proxy_tls_state_errors_total 0",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
