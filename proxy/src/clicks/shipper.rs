//! The shipper thread and the overflow spooler thread (see [`super`] for the whole design).
//!
//! Both are plain `std::thread`s: they block on channels, on HTTP (reqwest's blocking client) and
//! on fsync, none of which may happen on the async executor. Every input of the shipper's loop is
//! visible in one `select!`: a timer tick (on which clicks are drained in bulk) and the shutdown
//! signal.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, select};
use sling_shared::clicks::{CLICKS_PATH, ClickEvent, IngestReceipt};

use super::client_ip::TrustedProxies;
use super::enrich::{EnrichCache, Enricher};
use super::geo::Geo;
use super::spool::{EncodedBatch, SpoolEntry};
use super::{RawClick, SHUTDOWN_DELIVERY_BUDGET, Shared};
use crate::config::{ClicksConfig, ControlPlane};

/// A spool larger than this is logged as a warning (once a minute) but never trimmed.
pub const SPOOL_WARN_BYTES: u64 = 1 << 30;
const SPOOL_WARN_EVERY: Duration = Duration::from_secs(60);
/// How often the spool is listed for replay (when the control plane is up) and for the metrics.
const REPLAY_EVERY: Duration = Duration::from_secs(1);
/// Longest one replay pass may hold up new clicks.
const REPLAY_BUDGET: Duration = Duration::from_millis(500);
/// Longest a click waits in the channel before the shipper takes it.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-attempt limit while shutting down.
const SHUTDOWN_POST_TIMEOUT: Duration = Duration::from_secs(2);
/// Retry interval of the overflow spooler when the disk refuses a write.
const SPOOL_RETRY: Duration = Duration::from_secs(1);

/// Handle to the running shipper; [`Shipper::shutdown`] flushes and joins it.
#[derive(Debug)]
pub struct Shipper {
    /// Dropped to signal shutdown (both threads see the disconnect).
    shutdown: Option<Sender<()>>,
    /// Disconnects when the shipper thread has finished (after joining the spooler).
    done: Receiver<()>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Shipper {
    pub(crate) fn spawn(
        config: ClicksConfig,
        control: Option<ControlPlane>,
        shared: Arc<Shared>,
        maxmind: Option<Geo>,
        clicks: Receiver<RawClick>,
        overflow: Receiver<RawClick>,
    ) -> anyhow::Result<Self> {
        let (shutdown_tx, shutdown_rx) = crossbeam_channel::bounded::<()>(0);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sling-clicks".into())
            .spawn(move || {
                let _done = done_tx;
                shipper_thread(
                    config,
                    control,
                    thread_shared,
                    maxmind,
                    clicks,
                    overflow,
                    shutdown_rx,
                );
            })?;
        Ok(Self {
            shutdown: Some(shutdown_tx),
            done: done_rx,
            shared,
            thread: Some(thread),
        })
    }

    /// Closes the sink, lets the shipper deliver or spool everything pending and waits for it
    /// (at most `wait`). True when it finished in time.
    pub fn shutdown(mut self, wait: Duration) -> bool {
        self.signal();
        match self.done.recv_timeout(wait) {
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => {
                tracing::error!(
                    wait_ms = wait.as_millis() as u64,
                    "click shipper did not finish flushing in time"
                );
                false
            }
        }
    }

    fn signal(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        drop(self.shutdown.take());
    }
}

impl Drop for Shipper {
    /// Dropped without [`Shipper::shutdown`]: still tell the threads to flush, without waiting.
    fn drop(&mut self) {
        if self.shutdown.is_some() {
            self.signal();
        }
    }
}

fn shipper_thread(
    config: ClicksConfig,
    control: Option<ControlPlane>,
    shared: Arc<Shared>,
    maxmind: Option<Geo>,
    clicks: Receiver<RawClick>,
    overflow: Receiver<RawClick>,
    shutdown: Receiver<()>,
) {
    let geo = match (maxmind, &config.tor_geoip_dir) {
        (Some(geo), _) => geo,
        (None, Some(dir)) => Geo::tor_or_none(dir),
        (None, None) => Geo::None,
    };
    let enricher = Arc::new(Enricher::new(
        geo,
        TrustedProxies::new(config.trusted_proxies.clone()),
        config.country_header.is_some(),
        control.as_ref().map(|c| c.fleet_token.as_str()),
    ));
    let _ = shared.enricher.set(enricher.clone());

    let spooler = {
        let (overflow, shutdown, shared, enricher) = (
            overflow.clone(),
            shutdown.clone(),
            shared.clone(),
            enricher.clone(),
        );
        let batch_size = config.batch_size;
        std::thread::Builder::new()
            .name("sling-click-spool".into())
            .spawn(move || run_spooler(&overflow, &shutdown, &shared, &enricher, batch_size))
    };
    let spooler = match spooler {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::error!(%error, "cannot start the overflow spooler thread; the shipper drains overflow itself");
            None
        }
    };

    let delivery = control.and_then(|control| match Delivery::new(&control) {
        Ok(delivery) => Some(Arc::new(delivery)),
        Err(error) => {
            tracing::error!(%error, "cannot build the click HTTP client; clicks will only be spooled");
            None
        }
    });
    if delivery.is_none() {
        tracing::warn!(spool_dir = %shared.spool.dir().display(), "no control plane: clicks are kept in the spool until one is configured");
    }

    let mut main = MainLoop::new(config, delivery, shared, enricher);
    main.run(&clicks, &overflow, &shutdown, spooler.is_none());
    if let Some(spooler) = spooler {
        let _ = spooler.join();
    }
    // Anything the spooler could not take (it exited early) is spooled here.
    main.drain_overflow(&overflow);
    main.finish_held();
    main.refresh_usage();
    tracing::info!("click shipper stopped");
}

enum Event {
    Tick,
    Shutdown,
}

struct MainLoop {
    config: ClicksConfig,
    delivery: Option<Arc<Delivery>>,
    shared: Arc<Shared>,
    enricher: Arc<Enricher>,
    cache: EnrichCache,
    pending: Vec<ClickEvent>,
    pending_since: Option<Instant>,
    /// The control plane counts as down until then (new batches go straight to the spool).
    down_until: Option<Instant>,
    backoff: Backoff,
    next_replay: Instant,
    next_usage: Instant,
    last_spool_warning: Option<Instant>,
    /// Batches neither delivered nor spooled (the disk refused); retried every tick.
    held: VecDeque<EncodedBatch>,
    /// Set at shutdown: stop trying to deliver after this.
    deadline: Option<Instant>,
}

impl MainLoop {
    fn new(
        config: ClicksConfig,
        delivery: Option<Arc<Delivery>>,
        shared: Arc<Shared>,
        enricher: Arc<Enricher>,
    ) -> Self {
        let now = Instant::now();
        Self {
            pending: Vec::with_capacity(config.batch_size),
            config,
            delivery,
            shared,
            enricher,
            cache: EnrichCache::default(),
            pending_since: None,
            down_until: None,
            backoff: Backoff::default(),
            next_replay: now,
            next_usage: now,
            last_spool_warning: None,
            held: VecDeque::new(),
            deadline: None,
        }
    }

    fn run(
        &mut self,
        clicks: &Receiver<RawClick>,
        overflow: &Receiver<RawClick>,
        shutdown: &Receiver<()>,
        drain_overflow: bool,
    ) {
        // Clicks are taken in bulk on each tick, never received one by one: a blocking receive
        // parks this thread between clicks, so every request's send would have to wake it (a
        // futex wake and a context switch per click, on the core that serves requests). The
        // bench measured that at ~40% of redirect throughput.
        let tick = crossbeam_channel::tick(
            (self.config.batch_interval / 4).clamp(Duration::from_millis(5), DRAIN_EVERY),
        );
        loop {
            let event = select! {
                recv(tick) -> _ => Event::Tick,
                recv(shutdown) -> _ => Event::Shutdown,
            };
            match event {
                Event::Tick => {
                    if !self.drain_clicks(clicks) {
                        self.on_shutdown(clicks);
                        return;
                    }
                    if drain_overflow {
                        self.drain_overflow(overflow);
                    }
                    self.on_tick();
                }
                Event::Shutdown => {
                    self.on_shutdown(clicks);
                    return;
                }
            }
        }
    }

    /// Takes what the channel holds now (at most one channel's worth, so a flood cannot starve
    /// the tick's other work). False once every sender is gone: the proxy is shutting down.
    fn drain_clicks(&mut self, clicks: &Receiver<RawClick>) -> bool {
        let most = clicks.capacity().unwrap_or(usize::MAX).max(1);
        for _ in 0..most {
            match clicks.try_recv() {
                Ok(click) => self.on_click(&click),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    fn on_click(&mut self, click: &RawClick) {
        self.pending
            .push(self.enricher.enrich(click, &mut self.cache));
        self.pending_since.get_or_insert_with(Instant::now);
        if self.pending.len() >= self.config.batch_size {
            self.flush();
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if self
            .pending_since
            .is_some_and(|since| now.duration_since(since) >= self.config.batch_interval)
        {
            self.flush();
        }
        self.retry_held();
        if now >= self.next_replay {
            self.replay();
        }
        if now >= self.next_usage {
            self.refresh_usage();
        }
    }

    /// Drains the channel (twice, with a pause, so a handler that passed the `closed` check just
    /// before it was set still lands), then delivers or spools everything.
    fn on_shutdown(&mut self, clicks: &Receiver<RawClick>) {
        self.deadline = Some(Instant::now() + SHUTDOWN_DELIVERY_BUDGET);
        for _ in 0..2 {
            while let Ok(click) = clicks.try_recv() {
                self.on_click(&click);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        while let Ok(click) = clicks.try_recv() {
            self.on_click(&click);
        }
        self.flush();
        tracing::info!("click channel flushed");
    }

    fn drain_overflow(&mut self, overflow: &Receiver<RawClick>) {
        let mut events = Vec::new();
        while let Ok(click) = overflow.try_recv() {
            events.push(self.enricher.enrich(&click, &mut self.cache));
            if events.len() >= self.config.batch_size {
                self.spool_events(std::mem::take(&mut events));
            }
        }
        if !events.is_empty() {
            self.spool_events(events);
        }
    }

    fn spool_events(&mut self, events: Vec<ClickEvent>) {
        if let Err((encoded, error)) = self.shared.spool_events(events) {
            tracing::error!(%error, batch_id = %encoded.batch_id, "cannot spool a click batch; holding it in memory");
            self.held.push_back(encoded);
        }
    }

    /// Cuts the pending events into a batch and sends or spools it.
    fn flush(&mut self) {
        self.pending_since = None;
        if self.pending.is_empty() {
            return;
        }
        let events = std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(self.config.batch_size),
        );
        let batch = self.shared.ids.batch(events);
        match EncodedBatch::new(&batch) {
            Ok(encoded) => self.dispatch(encoded),
            Err(error) => {
                // Plain strings and numbers always serialise; this is unreachable in practice.
                self.shared.metrics.lost.inc_by(batch.events.len() as u64);
                tracing::error!(%error, "cannot encode a click batch");
            }
        }
    }

    /// Delivers `encoded` if the control plane is believed up, else spools it.
    fn dispatch(&mut self, encoded: EncodedBatch) {
        if let Some(delivery) = self.delivery.clone()
            && let Some(timeout) = self.attempt_timeout()
        {
            match self.post(&delivery, &encoded, timeout) {
                Ok(()) => return,
                Err(error) => self.failed(&error),
            }
        }
        self.spool(encoded);
    }

    fn spool(&mut self, encoded: EncodedBatch) {
        if let Err((encoded, error)) = self.shared.spool_encoded(encoded) {
            tracing::error!(%error, batch_id = %encoded.batch_id, spool_dir = %self.shared.spool.dir().display(), "cannot spool a click batch; holding it in memory");
            self.held.push_back(encoded);
        }
    }

    fn retry_held(&mut self) {
        for _ in 0..self.held.len() {
            let Some(encoded) = self.held.pop_front() else {
                break;
            };
            // `dispatch` puts it back at the end if it fails again.
            self.dispatch(encoded);
        }
    }

    /// At shutdown, a last try for batches the disk refused.
    fn finish_held(&mut self) {
        self.retry_held();
        let lost: usize = self.held.iter().map(|b| b.events).sum();
        if lost > 0 {
            self.shared.metrics.lost.inc_by(lost as u64);
            tracing::error!(
                events = lost,
                batches = self.held.len(),
                "clicks could be neither delivered nor spooled before exit; lost"
            );
        }
    }

    /// `Some(timeout)` when a delivery may be attempted now.
    fn attempt_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        if self.down_until.is_some_and(|until| now < until) {
            return None;
        }
        match self.deadline {
            None => Some(POST_TIMEOUT),
            Some(deadline) => {
                let left = deadline.checked_duration_since(now)?;
                (left > Duration::from_millis(50)).then(|| left.min(SHUTDOWN_POST_TIMEOUT))
            }
        }
    }

    fn post(
        &mut self,
        delivery: &Delivery,
        encoded: &EncodedBatch,
        timeout: Duration,
    ) -> Result<(), ShipError> {
        let started = Instant::now();
        delivery.post(encoded, timeout)?;
        let metrics = &self.shared.metrics;
        metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.shipped.inc_by(encoded.events as u64);
        metrics.batches_shipped.inc();
        if self.down_until.take().is_some() {
            tracing::info!("control plane accepts clicks again; replaying the spool");
            self.next_replay = Instant::now();
        }
        self.backoff.reset();
        Ok(())
    }

    fn failed(&mut self, error: &ShipError) {
        self.shared.metrics.ship_failures.inc();
        let delay = self.backoff.next_delay();
        self.down_until = Some(Instant::now() + delay);
        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "click batch not delivered; spooling");
    }

    /// Sends spooled batches, oldest first, for at most [`REPLAY_BUDGET`].
    fn replay(&mut self) {
        self.next_replay = Instant::now() + REPLAY_EVERY;
        let Some(delivery) = self.delivery.clone() else {
            return;
        };
        if self.attempt_timeout().is_none() {
            return;
        }
        let entries = match self.shared.spool.list() {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%error, spool_dir = %self.shared.spool.dir().display(), "cannot list the click spool");
                return;
            }
        };
        let started = Instant::now();
        let mut delivered = 0usize;
        for entry in entries {
            if started.elapsed() >= REPLAY_BUDGET {
                // More to do: continue on the next tick.
                self.next_replay = Instant::now();
                break;
            }
            match self.replay_one(&delivery, &entry) {
                Ok(true) => delivered += 1,
                Ok(false) => {}
                Err(error) => {
                    self.failed(&error);
                    break;
                }
            }
        }
        if delivered > 0 {
            tracing::info!(batches = delivered, "replayed spooled click batches");
            self.refresh_usage();
        }
    }

    /// `Ok(true)`: delivered and removed; `Ok(false)`: nothing to send.
    fn replay_one(&mut self, delivery: &Delivery, entry: &SpoolEntry) -> Result<bool, ShipError> {
        let encoded = match self.shared.spool.read(entry) {
            Ok(Some((encoded, _))) => encoded,
            Ok(None) => return Ok(false),
            Err(error) => {
                tracing::error!(%error, "unreadable spooled click batch");
                return Ok(false);
            }
        };
        let timeout = self.attempt_timeout().unwrap_or(SHUTDOWN_POST_TIMEOUT);
        self.post(delivery, &encoded, timeout)?;
        if let Err(error) = self.shared.spool.remove(entry) {
            // Delivered: a resend later is deduplicated by batch id.
            tracing::warn!(%error, path = %entry.path.display(), "cannot delete a delivered spool file");
        }
        Ok(true)
    }

    fn refresh_usage(&mut self) {
        let now = Instant::now();
        self.next_usage = now + REPLAY_EVERY;
        let Ok((files, bytes)) = self.shared.spool.usage() else {
            return;
        };
        let metrics = &self.shared.metrics;
        metrics
            .spool_files
            .set(i64::try_from(files).unwrap_or(i64::MAX));
        metrics
            .spool_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        if bytes > SPOOL_WARN_BYTES
            && self
                .last_spool_warning
                .is_none_or(|at| now.duration_since(at) >= SPOOL_WARN_EVERY)
        {
            self.last_spool_warning = Some(now);
            tracing::warn!(
                spool_files = files,
                spool_bytes = bytes,
                spool_dir = %self.shared.spool.dir().display(),
                "the click spool is large: clicks are not reaching the control plane (nothing is deleted until they do)"
            );
        }
    }
}

/// The overflow spooler: clicks that found the channel full are enriched and written straight to
/// the spool, in batches of whatever has queued up (at most `batch_size`).
fn run_spooler(
    overflow: &Receiver<RawClick>,
    shutdown: &Receiver<()>,
    shared: &Shared,
    enricher: &Enricher,
    batch_size: usize,
) {
    let mut cache = EnrichCache::default();
    let mut failed: Vec<EncodedBatch> = Vec::new();
    loop {
        let mut events = Vec::new();
        let stop = if failed.is_empty() {
            select! {
                recv(overflow) -> msg => match msg {
                    Ok(click) => { events.push(enricher.enrich(&click, &mut cache)); false }
                    Err(_) => true,
                },
                recv(shutdown) -> _ => true,
            }
        } else {
            select! {
                recv(overflow) -> msg => match msg {
                    Ok(click) => { events.push(enricher.enrich(&click, &mut cache)); false }
                    Err(_) => true,
                },
                recv(shutdown) -> _ => true,
                default(SPOOL_RETRY) => false,
            }
        };
        loop {
            while events.len() < batch_size {
                match overflow.try_recv() {
                    Ok(click) => events.push(enricher.enrich(&click, &mut cache)),
                    Err(_) => break,
                }
            }
            if events.is_empty() {
                break;
            }
            if let Err((encoded, error)) = shared.spool_events(std::mem::take(&mut events)) {
                tracing::error!(%error, "cannot spool overflowed clicks; retrying");
                failed.push(encoded);
            }
            if !stop {
                break;
            }
        }
        for encoded in std::mem::take(&mut failed) {
            if let Err((encoded, _)) = shared.spool_encoded(encoded) {
                failed.push(encoded);
            }
        }
        if stop {
            let lost: usize = failed.iter().map(|b| b.events).sum();
            if lost > 0 {
                shared.metrics.lost.inc_by(lost as u64);
                tracing::error!(
                    events = lost,
                    "overflowed clicks could not be spooled before exit; lost"
                );
            }
            return;
        }
    }
}

/// The ingest endpoint of one control plane.
#[derive(Debug)]
struct Delivery {
    client: reqwest::blocking::Client,
    url: String,
    token: String,
}

#[derive(Debug, thiserror::Error)]
enum ShipError {
    #[error("cannot reach the control plane: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("ingest answered {0}")]
    Status(reqwest::StatusCode),
    #[error("ingest receipt is for batch {got:?}, not {sent:?}")]
    WrongReceipt { sent: String, got: String },
}

impl Delivery {
    fn new(control: &ControlPlane) -> Result<Self, reqwest::Error> {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(POST_TIMEOUT)
            .user_agent(concat!("sling-proxy/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            url: format!("{}{CLICKS_PATH}", control.url),
            token: control.fleet_token.clone(),
        })
    }

    /// POSTs the batch; `Ok` only for a 200 with a receipt for this batch id.
    fn post(&self, batch: &EncodedBatch, timeout: Duration) -> Result<(), ShipError> {
        let resp = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(batch.body.clone())
            .timeout(timeout)
            .send()?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            return Err(ShipError::Status(status));
        }
        let receipt: IngestReceipt = resp.json()?;
        if receipt.batch_id != batch.batch_id {
            return Err(ShipError::WrongReceipt {
                sent: batch.batch_id.clone(),
                got: receipt.batch_id,
            });
        }
        Ok(())
    }
}

/// Capped exponential backoff with up to 25% random jitter, so a fleet that lost its control plane
/// at the same moment does not come back in lockstep.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);
    const CAP: Duration = Duration::from_secs(30);

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        let quarter = (base.as_millis() as u64 / 4).max(1);
        base + Duration::from_millis(rand::random_range(0..quarter))
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first >= Backoff::FIRST && first <= Backoff::FIRST * 5 / 4);
        let mut last = first;
        for _ in 0..20 {
            last = b.next_delay();
        }
        assert!(last >= Backoff::CAP && last <= Backoff::CAP * 5 / 4);
        b.reset();
        assert!(b.next_delay() < Backoff::FIRST * 2);
    }
}
