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

/// One enriched click. `S` is the string type: `String` (the default) owns its fields, `&str`
/// ([`ClickEventRef`]) borrows them, which is how a proxy writes every click it ships straight into
/// a batch body; the control plane parses into a copy-on-write string. One definition, so every
/// form has the same wire format by construction.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
// Only the strings need parsing; `default` applies to the options and flags, not to `S`.
#[serde(rename_all = "camelCase", bound(deserialize = "S: Deserialize<'de>"))]
pub struct ClickEvent<S = String> {
    pub link_id: S,
    /// Unix milliseconds when the proxy answered.
    pub at_ms: i64,
    /// Upper-case ISO 3166-1 alpha-2, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<S>,
    /// `desktop`, `mobile`, `tablet`, `bot` or `unknown`.
    pub device: S,
    /// Browser family (`Chrome`, `Firefox`, …) or `unknown`.
    pub browser: S,
    /// OS family (`iOS`, `Android`, `Windows`, …) or `unknown`.
    pub os: S,
    /// Flagged by the bot list; kept, but left out of stats by default.
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
    /// Host of the `Referer`, lower-case, when present and parseable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_host: Option<S>,
    /// Keyed hash of (client address, user agent, day) with a daily-rotating salt, hex-encoded;
    /// the raw address never leaves the proxy.
    pub visitor: S,
    /// The request came through a QR code (`?qr=1` or the QR marker the link carries).
    #[serde(default, skip_serializing_if = "is_false")]
    pub qr: bool,
}

/// Absent fields are their defaults (no country, no referrer, not a bot, not a QR scan): most
/// events leave them out, a quarter of a batch's bytes.
fn is_false(b: &bool) -> bool {
    !*b
}

/// [`ClickEvent`] borrowed.
pub type ClickEventRef<'a> = ClickEvent<&'a str>;

impl<S> ClickEvent<S> {
    /// The same event with every string passed through `f` (owning, borrowing, copy-on-write):
    /// the one place that lists the string fields.
    pub fn map_strings<'a, T>(&'a self, f: impl Fn(&'a S) -> T) -> ClickEvent<T> {
        ClickEvent {
            link_id: f(&self.link_id),
            at_ms: self.at_ms,
            country: self.country.as_ref().map(&f),
            device: f(&self.device),
            browser: f(&self.browser),
            os: f(&self.os),
            bot: self.bot,
            referrer_host: self.referrer_host.as_ref().map(&f),
            visitor: f(&self.visitor),
            qr: self.qr,
        }
    }
}

impl<S: AsRef<str>> ClickEvent<S> {
    pub fn to_owned_event(&self) -> ClickEvent {
        self.map_strings(|s| s.as_ref().to_owned())
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

/// The query parameter sling's QR codes add to a link's short URL (`/{slug}?qr=1`): the proxy
/// records such a click as a QR scan and does not pass the parameter on to the destination.
pub const QR_MARKER: &str = "qr=1";

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
