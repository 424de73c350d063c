//! The shipper thread and the overflow spooler thread (see [`super`] for the whole design).
//!
//! Both are plain `std::thread`s: they block on channels and on fsync, neither of which may happen
//! on the async executor. The shipper drains the click channel on a timer tick, enriches, cuts
//! batches and hands them to the delivery thread ([`super::sender`]); it never waits on the network,
//! so the channel keeps draining while a POST is in flight.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, select};

use super::body::BatchBody;
use super::client_ip::TrustedProxies;
use super::enrich::{EnrichCache, Enricher};
use super::geo::Geo;
use super::sender;
use super::spool::EncodedBatch;
use super::{Held, RawClick, Shared};
use crate::config::{ClicksConfig, ControlPlane};

/// Longest a click waits in the channel before the shipper takes it.
const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// Clicks enriched between two `sched_yield`s while draining. A tick's drain is a burst of work
/// (20 ms of clicks), and where this thread shares a core with the request workers the scheduler
/// would let it run its whole slice while requests wait; yielding every few hundred clicks (tens
/// of microseconds) hands the core back to a waiting worker, and costs nothing when none waits.
const YIELD_EVERY: usize = 256;
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

    let (queue_tx, queue_rx) = crossbeam_channel::bounded(sender::QUEUE_BATCHES);
    let sender = match sender::spawn(control, shared.clone(), queue_rx, shutdown.clone()) {
        Ok(handle) => Some(handle),
        Err(error) => {
            // Without the thread every batch is spooled (offer fails): kept, delivered after a restart.
            tracing::error!(%error, "cannot start the click delivery thread; clicks will only be spooled");
            None
        }
    };

    let mut main = MainLoop::new(config, queue_tx, shared, enricher);
    main.run(&clicks, &overflow, &shutdown, spooler.is_none());
    if let Some(spooler) = spooler {
        let _ = spooler.join();
    }
    // Anything the spooler could not take (it exited early) is spooled here.
    main.drain_overflow(&overflow);
    main.finish_held();
    // Closing the queue lets the delivery thread finish once it has sent or spooled the rest.
    drop(main);
    if let Some(sender) = sender {
        let _ = sender.join();
    }
    tracing::info!("click shipper stopped");
}

enum Event {
    Tick,
    Shutdown,
}

struct MainLoop {
    config: ClicksConfig,
    /// To the delivery thread.
    queue: Sender<EncodedBatch>,
    shared: Arc<Shared>,
    enricher: Arc<Enricher>,
    cache: EnrichCache,
    /// The batch being filled.
    pending: BatchBody,
    pending_since: Option<Instant>,
    /// Batches the disk refused (the delivery queue was full too); retried every tick.
    held: Held,
    /// Clicks taken from the channel and not yet added to `clicks_queued`.
    uncounted: u64,
}

impl MainLoop {
    fn new(
        config: ClicksConfig,
        queue: Sender<EncodedBatch>,
        shared: Arc<Shared>,
        enricher: Arc<Enricher>,
    ) -> Self {
        Self {
            pending: BatchBody::with_capacity(config.batch_size),
            config,
            queue,
            shared,
            enricher,
            cache: EnrichCache::default(),
            pending_since: None,
            held: Held::default(),
            uncounted: 0,
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
        for taken in 0..most {
            match clicks.try_recv() {
                Ok(click) => {
                    self.on_click(&click);
                    if taken % YIELD_EVERY == YIELD_EVERY - 1 {
                        std::thread::yield_now();
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    fn on_click(&mut self, click: &RawClick) {
        self.uncounted += 1;
        let pending = &mut self.pending;
        self.enricher
            .with_event(click, &mut self.cache, |event| pending.push(event));
        self.pending_since.get_or_insert_with(Instant::now);
        if self.pending.len() >= self.config.batch_size {
            self.flush();
        }
    }

    fn on_tick(&mut self) {
        self.count_queued();
        if self
            .pending_since
            .is_some_and(|since| since.elapsed() >= self.config.batch_interval)
        {
            self.flush();
        }
        self.retry_held();
    }

    /// Drains the channel (twice, with a pause, so a handler that passed the `closed` check just
    /// before it was set still lands), then hands everything to the delivery thread.
    fn on_shutdown(&mut self, clicks: &Receiver<RawClick>) {
        for _ in 0..2 {
            while let Ok(click) = clicks.try_recv() {
                self.on_click(&click);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        while let Ok(click) = clicks.try_recv() {
            self.on_click(&click);
        }
        self.count_queued();
        self.flush();
        tracing::info!("click channel flushed");
    }

    fn drain_overflow(&mut self, overflow: &Receiver<RawClick>) {
        let batch_size = self.config.batch_size;
        let mut body = BatchBody::for_queued(overflow.len(), batch_size);
        while let Ok(click) = overflow.try_recv() {
            self.enricher
                .with_event(&click, &mut self.cache, |event| body.push(event));
            if body.len() >= self.config.batch_size {
                let full =
                    std::mem::replace(&mut body, BatchBody::for_queued(overflow.len(), batch_size));
                self.spool_body(full);
            }
        }
        if !body.is_empty() {
            self.spool_body(body);
        }
    }

    fn spool_body(&mut self, body: BatchBody) {
        let written = self.shared.spool_body(body);
        self.held.hold_on_error(written, &self.shared);
    }

    /// Adds the clicks taken since the last call to `clicks_queued`: once per tick here, rather
    /// than one atomic add per click on the request path, where that locked add, right after the
    /// channel write, stalled the request thread on its store buffer (1.2% of the proxy's
    /// samples under wrk).
    fn count_queued(&mut self) {
        if self.uncounted > 0 {
            self.shared.metrics.queued.inc_by(self.uncounted);
            self.uncounted = 0;
        }
    }

    /// Cuts the pending events into a batch and hands it on.
    fn flush(&mut self) {
        self.pending_since = None;
        if self.pending.is_empty() {
            return;
        }
        let body = std::mem::replace(
            &mut self.pending,
            BatchBody::with_capacity(self.config.batch_size),
        );
        self.hand_over(body.finish(&self.shared.ids));
    }

    /// To the delivery thread, or to the spool when its queue is full (a slow control plane).
    fn hand_over(&mut self, encoded: EncodedBatch) {
        if let Some(encoded) = sender::offer(&self.queue, encoded) {
            self.held.spool(&self.shared, encoded);
        }
    }

    fn retry_held(&mut self) {
        // `hand_over` holds a batch again if it fails again.
        for encoded in self.held.take() {
            self.hand_over(encoded);
        }
    }

    /// At shutdown, a last try for batches the disk refused.
    fn finish_held(&mut self) {
        self.retry_held();
        self.held.give_up(&self.shared);
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
        let mut events = BatchBody::for_queued(overflow.len(), batch_size);
        let stop = if failed.is_empty() {
            select! {
                recv(overflow) -> msg => match msg {
                    Ok(click) => { enricher.with_event(&click, &mut cache, |e| events.push(e)); false }
                    Err(_) => true,
                },
                recv(shutdown) -> _ => true,
            }
        } else {
            select! {
                recv(overflow) -> msg => match msg {
                    Ok(click) => { enricher.with_event(&click, &mut cache, |e| events.push(e)); false }
                    Err(_) => true,
                },
                recv(shutdown) -> _ => true,
                default(SPOOL_RETRY) => false,
            }
        };
        loop {
            while events.len() < batch_size {
                match overflow.try_recv() {
                    Ok(click) => enricher.with_event(&click, &mut cache, |e| events.push(e)),
                    Err(_) => break,
                }
            }
            if events.is_empty() {
                break;
            }
            if let Err((encoded, error)) = shared.spool_body(std::mem::replace(
                &mut events,
                BatchBody::for_queued(overflow.len(), batch_size),
            )) {
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
