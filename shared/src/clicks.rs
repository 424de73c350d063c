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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// `desktop`, `mobile`, `tablet`, `bot` or `unknown`.
    pub device: String,
    /// Browser family (`Chrome`, `Firefox`, …) or `unknown`.
    pub browser: String,
    /// OS family (`iOS`, `Android`, `Windows`, …) or `unknown`.
    pub os: String,
    /// Flagged by the bot list; kept, but left out of stats by default.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
    /// Host of the `Referer`, lower-case, when present and parseable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_host: Option<String>,
    /// Keyed hash of (client address, user agent, day) with a daily-rotating salt, hex-encoded;
    /// the raw address never leaves the proxy.
    pub visitor: String,
    /// The request came through a QR code (`?qr=1` or the QR marker the link carries).
    #[serde(default, skip_serializing_if = "is_false")]
    pub qr: bool,
}

/// Absent fields are their defaults (no country, no referrer, not a bot, not a QR scan): most
/// events leave them out, a quarter of a batch's bytes.
fn is_false(b: &bool) -> bool {
    !*b
}

/// [`ClickEvent`] borrowed: what a proxy serialises straight into a batch body, without owning a
/// string per field (the shipper writes every click it ships). Same wire format, field for field.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClickEventRef<'a> {
    pub link_id: &'a str,
    pub at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<&'a str>,
    pub device: &'a str,
    pub browser: &'a str,
    pub os: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    pub bot: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer_host: Option<&'a str>,
    pub visitor: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    pub qr: bool,
}

impl ClickEventRef<'_> {
    pub fn to_owned_event(&self) -> ClickEvent {
        ClickEvent {
            link_id: self.link_id.to_owned(),
            at_ms: self.at_ms,
            country: self.country.map(str::to_owned),
            device: self.device.to_owned(),
            browser: self.browser.to_owned(),
            os: self.os.to_owned(),
            bot: self.bot,
            referrer_host: self.referrer_host.map(str::to_owned),
            visitor: self.visitor.to_owned(),
            qr: self.qr,
        }
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The borrowed form is the same wire format: what it writes parses back as the owned event.
    #[test]
    fn borrowed_event_serialises_as_the_owned_one() {
        for (country, referrer_host, flag) in [
            (None, None, false),
            (Some("DE"), Some("news.example"), true),
        ] {
            let event = ClickEventRef {
                link_id: "lnk_1",
                at_ms: -5,
                country,
                device: "mobile",
                browser: "Firefox \"quoted\" \u{1F600}",
                os: "Android",
                bot: flag,
                referrer_host,
                visitor: "00ff",
                qr: flag,
            };
            let json = serde_json::to_string(&event).unwrap();
            let parsed: ClickEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(parsed, event.to_owned_event());
            assert_eq!(
                json,
                serde_json::to_string(&event.to_owned_event()).unwrap()
            );
        }
    }
}
