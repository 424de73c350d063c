//! The click path: record every followed link without ever slowing down or failing a redirect, and
//! without ever losing a click.
//!
//! ```text
//! request task ──try_send──▶ bounded channel ──▶ shipper thread ──▶ queue ──▶ sender thread ──POST──▶ control plane
//!      │ (full)                                    batch, enrich, id   │ (full)   │ retry w/ backoff   /internal/v1/clicks
//!      ▼                                                               ▼          ▼
//! unbounded overflow ──▶ overflow spooler thread ──────────────▶ spool dir (fsync'd) ──replay──┘
//! ```
//!
//! **On the request task** ([`ClickSink::record`]) a [`RawClick`] is filled with copies of a few
//! header values (no parsing beyond a `qr=1` check of the query string) and offered to a bounded
//! crossbeam channel with `try_send`, which never waits. When the channel is full (the shipper is
//! stuck behind a slow control plane) the click goes to an *unbounded* crossbeam channel instead:
//! its `send` never blocks either (it only allocates), and it is drained by a separate overflow
//! spooler thread that enriches and writes those clicks straight to the spool. Both the fsync and
//! the enrichment therefore always happen on plain threads, never on the async executor. The
//! overflow channel grows only while disk writes are slower than the incoming click rate, which is
//! the price of "never drop, never block"; [`crate::metrics`] counts every overflow.
//!
//! **The shipper thread** ([`shipper`]) drains the channel on a timer tick (never click by click:
//! see its `run`), enriches each click ([`enrich`]), cuts a batch every `batch_size` clicks or
//! `batch_interval`, names it (`proxy id - start time - counter - random`) and hands it to the
//! **sender thread** ([`sender`]) through a short bounded queue; when that queue is full (the
//! control plane is slow) the shipper spools the batch instead, so it never waits on the network
//! and the channel keeps draining while a POST is in flight. The sender POSTs each batch with the
//! fleet token. A batch that is not answered 200 goes to the [`spool`], and the control plane
//! counts as down for a capped, jittered exponential backoff during which new batches are spooled
//! without trying. The spool is replayed oldest first on start, after each backoff, and every
//! second; a file is deleted only after a 200 receipt for its batch id (ingest is idempotent by
//! batch id, so a resend after a crash is harmless). Without a control plane every batch is spooled
//! and kept: nothing is ever deleted unacknowledged, the spool size is exported as metrics, and a
//! warning is logged while it exceeds [`sender::SPOOL_WARN_BYTES`].
//!
//! **Shutdown** ([`Shipper::shutdown`], called by [`crate::run_with_listeners`] after connections
//! have drained): the sink is closed (late clicks take the synchronous [`ClickSink`] fallback
//! below), the shipper drains its channel and hands the last batch on, the sender tries to deliver
//! what it holds for a few seconds and spools the rest, the overflow spooler drains and spools its queue, and both threads are joined
//! with a bounded wait before `run` returns. A click recorded after that (a connection that outlived
//! the drain timeout) is enriched and spooled synchronously on its task: rare, and the executor is
//! shutting down anyway.
//!
//! **QR codes**: a request whose query string contains the parameter `qr=1` is recorded with
//! `qr: true` (QR codes sling renders point at `/{slug}?qr=1`).

mod body;
pub mod client_ip;
pub mod enrich;
pub mod geo;
pub mod sender;
pub mod shipper;
pub mod spool;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Sender, TrySendError};
use http::HeaderMap;
use http::header::{ACCEPT_LANGUAGE, REFERER, USER_AGENT};

use crate::config::{ClicksConfig, ControlPlane};
use crate::metrics::ClickMetrics;
use body::BatchBody;
use enrich::{EnrichCache, Enricher};
use spool::{EncodedBatch, Spool};

pub use shipper::Shipper;

/// A header a [`RawClick`] may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    UserAgent,
    Referer,
    /// Captured for completeness; the wire format has no field for it yet, so it is not shipped.
    AcceptLanguage,
    /// `X-Forwarded-For` (all lines joined), copied only when trusted proxies are configured.
    ForwardedFor,
    /// `Forwarded` (all lines joined), same condition.
    Forwarded,
    /// The `--country-header` value, same condition.
    CountryHeader,
}

const FIELDS: usize = 6;

/// One click as the request handler saw it: copies only, nothing parsed. The link id and every
/// header copied share one allocation, so a request makes one (not four) and the shipper thread
/// frees one: cross-thread frees showed in the profile of the redirect path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawClick {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The socket peer.
    pub peer: IpAddr,
    /// The query had `qr=1`.
    pub qr: bool,
    /// The link id (copied out of the snapshot), then each present field.
    text: Box<str>,
    link_end: u32,
    /// Byte range in `text` of each [`Field`] present.
    spans: [Option<(u32, u32)>; FIELDS],
}

impl RawClick {
    /// A click with just the essentials (tests, benchmarks, locating a client).
    pub fn new(link_id: &str, at_ms: i64, peer: IpAddr) -> Self {
        Self::build(link_id, at_ms, peer, [None; FIELDS])
    }

    /// A click with `values[f as usize]` for each field `f`, in one allocation.
    fn build(link_id: &str, at_ms: i64, peer: IpAddr, values: [Option<&str>; FIELDS]) -> Self {
        let len = link_id.len() + values.iter().flatten().map(|v| v.len()).sum::<usize>();
        let mut text = String::with_capacity(len);
        // Header values are bounded by hyper's header limits, far below 4 GiB; an offset that
        // did not fit would make `get` answer None, never panic.
        let at = |t: &String| u32::try_from(t.len()).unwrap_or(u32::MAX);
        text.push_str(link_id);
        let link_end = at(&text);
        let mut spans = [None; FIELDS];
        for (span, value) in spans.iter_mut().zip(values) {
            if let Some(v) = value {
                let start = at(&text);
                text.push_str(v);
                *span = Some((start, at(&text)));
            }
        }
        Self {
            at_ms,
            peer,
            qr: false,
            text: text.into_boxed_str(),
            link_end,
            spans,
        }
    }

    /// This click with `field` set to `value` (tests; the request path builds clicks whole).
    pub fn with(&self, field: Field, value: Option<&str>) -> Self {
        let mut values = [None; FIELDS];
        for (i, v) in values.iter_mut().enumerate() {
            *v = self.span(i);
        }
        values[field as usize] = value;
        let mut click = Self::build(self.link_id(), self.at_ms, self.peer, values);
        click.qr = self.qr;
        click
    }

    pub fn link_id(&self) -> &str {
        self.text.get(..self.link_end as usize).unwrap_or("")
    }

    pub fn get(&self, field: Field) -> Option<&str> {
        self.span(field as usize)
    }

    fn span(&self, i: usize) -> Option<&str> {
        let (start, end) = self.spans.get(i).copied().flatten()?;
        self.text.get(start as usize..end as usize)
    }
}

/// The request handlers' end: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct ClickSink {
    tx: Sender<RawClick>,
    overflow: Sender<RawClick>,
    shared: Arc<Shared>,
    capture_forwarding: bool,
    country_header: Option<http::HeaderName>,
}

/// What the sink, the shipper and the overflow spooler share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) spool: Spool,
    pub(crate) ids: BatchIds,
    pub(crate) metrics: ClickMetrics,
    /// Set by the shipper thread once the geo data is loaded.
    pub(crate) enricher: OnceLock<Arc<Enricher>>,
    /// Set at shutdown: new clicks skip the channels and are spooled by their own task.
    pub(crate) closed: AtomicBool,
}

impl Shared {
    /// Spools one batch of already-enriched events; the caller keeps the batch on error.
    pub(crate) fn spool_body(&self, body: BatchBody) -> Result<(), (EncodedBatch, std::io::Error)> {
        self.spool_encoded(body.finish(&self.ids))
    }

    pub(crate) fn spool_encoded(
        &self,
        encoded: EncodedBatch,
    ) -> Result<(), (EncodedBatch, std::io::Error)> {
        match self.spool.write(&encoded) {
            Ok(_) => {
                self.metrics.spooled.inc_by(encoded.events as u64);
                Ok(())
            }
            Err(e) => Err((encoded, e)),
        }
    }
}

/// Batches neither delivered nor spooled (the disk refused), kept in memory and retried by the
/// thread that owns them; what is still held at exit is counted as lost.
#[derive(Debug, Default)]
pub(crate) struct Held(std::collections::VecDeque<EncodedBatch>);

impl Held {
    /// Spools `encoded`, holding it in memory if the disk refuses.
    pub(crate) fn spool(&mut self, shared: &Shared, encoded: EncodedBatch) {
        self.hold_on_error(shared.spool_encoded(encoded), shared);
    }

    /// Holds the batch of a failed spool write (`Ok` means it was written).
    pub(crate) fn hold_on_error(
        &mut self,
        written: Result<(), (EncodedBatch, std::io::Error)>,
        shared: &Shared,
    ) {
        if let Err((encoded, error)) = written {
            tracing::error!(%error, batch_id = %encoded.batch_id, spool_dir = %shared.spool.dir().display(), "cannot spool a click batch; holding it in memory");
            self.0.push_back(encoded);
        }
    }

    /// Every held batch, for one more try (a failed try holds it again).
    pub(crate) fn take(&mut self) -> std::collections::VecDeque<EncodedBatch> {
        std::mem::take(&mut self.0)
    }

    /// At exit: what is still held is lost, and said so.
    pub(crate) fn give_up(&self, shared: &Shared) {
        let lost: usize = self.0.iter().map(|b| b.events).sum();
        if lost > 0 {
            shared.metrics.lost.inc_by(lost as u64);
            tracing::error!(
                events = lost,
                batches = self.0.len(),
                "clicks could be neither delivered nor spooled before exit; lost"
            );
        }
    }
}

impl ClickSink {
    /// Records a followed link. Copies the headers it needs and returns; never blocks on the
    /// shipper, never drops the click.
    pub fn record(
        &self,
        link_id: &str,
        at_ms: i64,
        peer: IpAddr,
        headers: &HeaderMap,
        query: Option<&str>,
    ) {
        self.send(self.capture(link_id, at_ms, peer, headers, query));
    }

    /// The raw click a request makes (copies only); [`Self::record`] sends it, targeting reads it.
    pub fn capture(
        &self,
        link_id: &str,
        at_ms: i64,
        peer: IpAddr,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> RawClick {
        let copy = |name: &http::HeaderName| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
        };
        let (forwarded_for, forwarded, country) = self.forwarding(headers);
        let (ua, referer, language) = (copy(&USER_AGENT), copy(&REFERER), copy(&ACCEPT_LANGUAGE));
        let mut click = RawClick::build(
            link_id,
            at_ms,
            peer,
            [
                ua.as_deref(),
                referer.as_deref(),
                language.as_deref(),
                forwarded_for.as_deref(),
                forwarded.as_deref(),
                country.as_deref(),
            ],
        );
        click.qr =
            query.is_some_and(|q| q.split('&').any(|p| p == sling_shared::clicks::QR_MARKER));
        click
    }

    /// The forwarding headers and the country header, copied only when trusted proxies are
    /// configured (otherwise nothing may act on them).
    #[allow(clippy::type_complexity)]
    fn forwarding<'h>(
        &self,
        headers: &'h HeaderMap,
    ) -> (Option<String>, Option<String>, Option<Cow<'h, str>>) {
        if !self.capture_forwarding {
            return (None, None, None);
        }
        let country = self
            .country_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        (
            join_all(headers, "x-forwarded-for"),
            join_all(headers, "forwarded"),
            country,
        )
    }

    /// A raw click holding only what locating the client needs (forwarding headers and the
    /// country header, when trusted proxies are configured): for geo targeting on the request path.
    pub fn locate(&self, peer: IpAddr, headers: &HeaderMap) -> RawClick {
        let (forwarded_for, forwarded, country) = self.forwarding(headers);
        RawClick::build(
            "",
            0,
            peer,
            [
                None,
                None,
                None,
                forwarded_for.as_deref(),
                forwarded.as_deref(),
                country.as_deref(),
            ],
        )
    }

    /// The enricher, once the shipper has loaded the geo data: targeting uses the same user-agent
    /// parser and country source as click enrichment.
    pub fn enricher(&self) -> Option<&Arc<Enricher>> {
        self.shared.enricher.get()
    }

    /// Offers a raw click: channel, else overflow, else (after shutdown) the spool directly.
    pub fn send(&self, click: RawClick) {
        if self.shared.closed.load(Ordering::Acquire) {
            self.late(click);
            return;
        }
        match self.tx.try_send(click) {
            // Counted by the shipper, once per tick (see `MainLoop::count_queued`).
            Ok(()) => {}
            Err(TrySendError::Full(click)) => {
                self.shared.metrics.overflowed.inc();
                if let Err(e) = self.overflow.send(click) {
                    self.late(e.into_inner());
                }
            }
            Err(TrySendError::Disconnected(click)) => self.late(click),
        }
    }

    /// The shipper is gone: enrich and spool on this task. Only reachable during shutdown.
    fn late(&self, click: RawClick) {
        let shared = &self.shared;
        let Some(enricher) = shared.enricher.get() else {
            shared.metrics.lost.inc();
            tracing::error!(link_id = %click.link_id(), "click arrived before the shipper started or after it failed; lost");
            return;
        };
        let mut body = BatchBody::with_capacity(1);
        enricher.with_event(&click, &mut EnrichCache::default(), |event| {
            body.push(event);
        });
        if let Err((_, error)) = shared.spool_body(body) {
            shared.metrics.lost.inc();
            tracing::error!(%error, spool_dir = %shared.spool.dir().display(), "cannot spool a click after shutdown; lost");
        }
    }
}

/// All values of a (possibly repeated) header, comma-joined.
fn join_all(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let mut out = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for v in values {
        out.push_str(", ");
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    Some(out)
}

/// Batch ids: `{proxy}-{start ms hex}-{counter hex}-{random hex}`; unique across restarts (start
/// time) and fleets (proxy id, random), ordered within a process (counter). File-name safe.
#[derive(Debug)]
pub(crate) struct BatchIds {
    proxy_id: String,
    start_ms: u64,
    counter: AtomicU64,
}

impl BatchIds {
    pub(crate) fn new(proxy_id: &str) -> Self {
        Self {
            proxy_id: proxy_id.to_owned(),
            start_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}-{:x}-{n:x}-{:08x}",
            self.proxy_id,
            self.start_ms,
            rand::random::<u32>()
        )
    }

    pub(crate) fn proxy_id(&self) -> &str {
        &self.proxy_id
    }
}

/// Starts the click pipeline: opens the spool (and the MaxMind database, if configured; both are
/// startup errors) and spawns the shipper thread, which loads the tor ranges, starts the overflow
/// spooler and replays the spool. Returns the handlers' sink and the shipper handle.
pub fn start(
    config: &ClicksConfig,
    control: Option<&ControlPlane>,
    metrics: ClickMetrics,
) -> anyhow::Result<(ClickSink, Shipper)> {
    let spool = Spool::open(&config.spool_dir).map_err(|e| {
        anyhow::anyhow!(
            "opening the click spool {}: {e}",
            config.spool_dir.display()
        )
    })?;
    let maxmind = config
        .geoip_db
        .as_deref()
        .map(geo::Geo::maxmind)
        .transpose()?;
    let (tx, rx) = crossbeam_channel::bounded(config.channel_capacity);
    let (overflow_tx, overflow_rx) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        spool,
        ids: BatchIds::new(&config.proxy_id),
        metrics,
        enricher: OnceLock::new(),
        closed: AtomicBool::new(false),
    });
    let sink = ClickSink {
        tx,
        overflow: overflow_tx,
        shared: shared.clone(),
        capture_forwarding: !config.trusted_proxies.is_empty(),
        country_header: config.country_header.clone(),
    };
    let shipper = Shipper::spawn(
        config.clone(),
        control.cloned(),
        shared,
        maxmind,
        rx,
        overflow_rx,
    )?;
    Ok((sink, shipper))
}

/// How long the shipper may spend delivering at shutdown before it spools the rest.
pub const SHUTDOWN_DELIVERY_BUDGET: Duration = Duration::from_secs(3);
