//! Click batches: what a proxy's shipper POSTs to the control plane's ingest endpoint.
//!
//! Events are enriched on the proxy's shipper thread (never on a request's task) so the control
//! plane only stores them. A batch id is chosen by the proxy when the batch is formed and kept
//! through retries and the on-disk spool; the control plane ingests each batch id at most once, so
//! a retried batch is never counted twice.

use serde::{Deserialize, Serialize};

/// `POST CLICKS_PATH` with the fleet token and a JSON [`ClickBatch`] body. Answers 200 with a
/// [`IngestReceipt`] whether the batch is new or a duplicate; any other status means "retry".
pub const CLICKS_PATH: &str = "/internal/v1/clicks";

/// Most events one batch may carry.
pub const MAX_BATCH_EVENTS: usize = 10_000;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClickBatch {
    /// Globally unique (proxy id + monotonic counter + random); the idempotency key.
    pub batch_id: String,
    /// Which proxy sent it (for logs and metrics).
    pub proxy_id: String,
    pub events: Vec<ClickEvent>,
}

/// One enriched click.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClickEvent {
    pub link_id: String,
    /// Unix milliseconds when the proxy answered.
    pub at_ms: i64,
    /// Upper-case ISO 3166-1 alpha-2, when known.
    pub country: Option<String>,
    /// `desktop`, `mobile`, `tablet`, `bot` or `unknown`.
    pub device: String,
    /// Browser family (`Chrome`, `Firefox`, …) or `unknown`.
    pub browser: String,
    /// OS family (`iOS`, `Android`, `Windows`, …) or `unknown`.
    pub os: String,
    /// Flagged by the bot list; kept, but left out of stats by default.
    pub bot: bool,
    /// Host of the `Referer`, lower-case, when present and parseable.
    pub referrer_host: Option<String>,
    /// Keyed hash of (client address, user agent, day) with a daily-rotating salt, hex-encoded;
    /// the raw address never leaves the proxy.
    pub visitor: String,
    /// The request came through a QR code (`?qr=1` or the QR marker the link carries).
    pub qr: bool,
}

/// The ingest endpoint's answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IngestReceipt {
    pub batch_id: String,
    /// False when this batch id had been ingested before (nothing was written this time).
    pub accepted: bool,
    pub events: usize,
}
