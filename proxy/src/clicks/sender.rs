//! The delivery thread: POSTs the batches the shipper cuts, spools them while the control plane is
//! down, and replays the spool (see [`super`] for the whole design).
//!
//! It is a thread of its own so that a POST in flight (milliseconds to seconds, against a busy or
//! dying control plane) never stops the shipper from draining the click channel: the shipper hands
//! batches over through a short bounded queue and spools a batch itself when the queue is full.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use sling_shared::clicks::{CLICKS_PATH, IngestReceipt};

use super::spool::{EncodedBatch, SpoolEntry};
use super::{Held, SHUTDOWN_DELIVERY_BUDGET, Shared};
use crate::config::ControlPlane;

/// A spool larger than this is logged as a warning (once a minute) but never trimmed.
pub const SPOOL_WARN_BYTES: u64 = 1 << 30;
const SPOOL_WARN_EVERY: Duration = Duration::from_secs(60);
/// How often the spool is listed for replay (when the control plane is up) and for the metrics.
const REPLAY_EVERY: Duration = Duration::from_secs(1);
/// Longest one replay pass may hold up new batches.
const REPLAY_BUDGET: Duration = Duration::from_millis(500);
/// Batches waiting for the sender; beyond that the shipper spools them (a slow control plane must
/// not make the proxy buffer clicks in memory without bound).
pub(super) const QUEUE_BATCHES: usize = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-attempt limit while shutting down.
const SHUTDOWN_POST_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts the delivery thread. It runs until `queue`'s senders are all gone (the shipper is done)
/// or, after `shutdown` disconnects, until the queue is empty and closed, trying to deliver for at
/// most [`SHUTDOWN_DELIVERY_BUDGET`] and spooling the rest.
pub(super) fn spawn(
    control: Option<ControlPlane>,
    shared: Arc<Shared>,
    queue: Receiver<EncodedBatch>,
    shutdown: Receiver<()>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sling-click-send".into())
        .spawn(move || {
            let delivery = control.and_then(|control| match Delivery::new(&control) {
                Ok(delivery) => Some(delivery),
                Err(error) => {
                    tracing::error!(%error, "cannot build the click HTTP client; clicks will only be spooled");
                    None
                }
            });
            if delivery.is_none() {
                tracing::warn!(spool_dir = %shared.spool.dir().display(), "no control plane: clicks are kept in the spool until one is configured");
            }
            let mut sender = SendLoop::new(delivery, shared);
            sender.run(&queue, &shutdown);
        })
}

struct SendLoop {
    delivery: Option<Delivery>,
    shared: Arc<Shared>,
    /// The control plane counts as down until then (new batches go straight to the spool).
    down_until: Option<Instant>,
    backoff: Backoff,
    next_replay: Instant,
    next_usage: Instant,
    last_spool_warning: Option<Instant>,
    /// Batches neither delivered nor spooled (the disk refused); retried every tick.
    held: Held,
    /// Set at shutdown: stop trying to deliver after this.
    deadline: Option<Instant>,
}

impl SendLoop {
    fn new(delivery: Option<Delivery>, shared: Arc<Shared>) -> Self {
        let now = Instant::now();
        Self {
            delivery,
            shared,
            down_until: None,
            backoff: Backoff::default(),
            next_replay: now,
            next_usage: now,
            last_spool_warning: None,
            held: Held::default(),
            deadline: None,
        }
    }

    fn run(&mut self, queue: &Receiver<EncodedBatch>, shutdown: &Receiver<()>) {
        let tick = crossbeam_channel::tick(Duration::from_millis(100));
        loop {
            select! {
                recv(queue) -> msg => match msg {
                    Ok(encoded) => self.dispatch(encoded),
                    Err(_) => break,
                },
                recv(tick) -> _ => self.on_tick(),
                recv(shutdown) -> _ => {
                    self.deadline = Some(Instant::now() + SHUTDOWN_DELIVERY_BUDGET);
                    // The shipper flushes its last batch into the queue and then drops it.
                    while let Ok(encoded) = queue.recv() {
                        self.dispatch(encoded);
                    }
                    break;
                }
            }
        }
        self.finish_held();
        self.refresh_usage();
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.retry_held();
        if now >= self.next_replay {
            self.replay();
        }
        if now >= self.next_usage {
            self.refresh_usage();
        }
    }

    /// Delivers `encoded` if the control plane is believed up, else spools it.
    fn dispatch(&mut self, encoded: EncodedBatch) {
        if let Some(timeout) = self.attempt_timeout() {
            match self.post(&encoded, timeout) {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => self.failed(&error),
            }
        }
        self.held.spool(&self.shared, encoded);
    }

    fn retry_held(&mut self) {
        // `dispatch` holds a batch again if it fails again.
        for encoded in self.held.take() {
            self.dispatch(encoded);
        }
    }

    /// At shutdown, a last try for batches the disk refused.
    fn finish_held(&mut self) {
        self.retry_held();
        self.held.give_up(&self.shared);
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

    /// `Ok(true)`: delivered; `Ok(false)`: there is no control plane to deliver to.
    fn post(&mut self, encoded: &EncodedBatch, timeout: Duration) -> Result<bool, ShipError> {
        let Some(delivery) = &self.delivery else {
            return Ok(false);
        };
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
        Ok(true)
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
        if self.delivery.is_none() || self.attempt_timeout().is_none() {
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
            match self.replay_one(&entry) {
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
    fn replay_one(&mut self, entry: &SpoolEntry) -> Result<bool, ShipError> {
        let encoded = match self.shared.spool.read(entry) {
            Ok(Some((encoded, _))) => encoded,
            Ok(None) => return Ok(false),
            Err(error) => {
                tracing::error!(%error, "unreadable spooled click batch");
                return Ok(false);
            }
        };
        let timeout = self.attempt_timeout().unwrap_or(SHUTDOWN_POST_TIMEOUT);
        if !self.post(&encoded, timeout)? {
            return Ok(false);
        }
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

/// Hands a batch to the delivery thread without waiting; gives it back when the queue is full or
/// the thread is gone, for the caller to spool.
pub(super) fn offer(queue: &Sender<EncodedBatch>, encoded: EncodedBatch) -> Option<EncodedBatch> {
    match queue.try_send(encoded) {
        Ok(()) => None,
        Err(e) => Some(e.into_inner()),
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
