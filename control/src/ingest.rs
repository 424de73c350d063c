//! `POST /internal/v1/clicks`: where proxies deliver click batches (fleet token only), the group
//! writer that stores them, and the background task that prunes raw events past the retention
//! period.
//!
//! The contract (`sling_shared::clicks`): 200 with an [`IngestReceipt`] means "stored, or stored
//! before" and the proxy forgets the batch; any other status means "keep it and retry". So the
//! answer is 200 only after the transaction in [`db::clicks::ingest`] committed (or found the
//! batch id already recorded: `accepted: false`), 503 when the database cannot be reached, and
//! 400/413 only for a body no retry could fix.
//!
//! Events for links that no longer exist are acknowledged and counted
//! (`sling_control_click_events_unknown_link`), never refused.
//!
//! Group commit: the handler parses and cleans a batch, splits it into parts by link id
//! ([`clicks::PARTS`]) and queues each for its writer task ([`GroupWriter`]: one per part on
//! Postgres, one in all on SQLite). A writer takes everything queued (up to
//! [`GROUP_MAX_EVENTS`], waiting up to [`GROUP_LINGER`] for more under load), stores it in one
//! transaction ([`clicks::ingest_group`]) and answers each waiting part; the request answers
//! once all of its parts are stored.
//! Concurrent batches so share one commit and one aggregation of rollups and link counters
//! instead of queueing behind each other's row locks and fsyncs. The queue is bounded
//! ([`QUEUE_MAX_EVENTS`]): past that the answer is 503 with `Retry-After`, and the proxy keeps
//! the batch and retries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sling_shared::clicks::{ClickBatch, IngestReceipt, MAX_BATCH_EVENTS};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::db::clicks::{BatchRef, Ingested, Prepared};
use crate::db::{self, Db, clicks};
use crate::internal::FleetAuth;
use crate::state::AppState;

/// Largest accepted batch body: `MAX_BATCH_EVENTS` events of up to ~1.6 KiB each (a real event
/// is ~300 bytes of JSON).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest batch id or proxy id.
const MAX_ID_LEN: usize = 200;
/// How often the retention task runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Most events one group transaction takes (a single larger batch still goes alone). Big enough
/// that rollups and counters aggregate well (their rows are bounded by links x dimension values,
/// not by events: 100,000 events over 1,000 links touched ~26,000 rollup rows), small enough that
/// one transaction stays under a second.
pub const GROUP_MAX_EVENTS: usize = 100_000;
/// Longest wait for more batches when the queue holds fewer events than the previous group did.
/// Under load, the senders answered by one commit send their next batches while the writer
/// starts the next group; without the wait it would store the one batch already queued alone,
/// paying the rollup and counter upserts of a whole group for a fraction of the events
/// (measured: groups alternated between 15 batches and 1). A lone sender never waits, because
/// its group is never smaller than the previous one.
const GROUP_LINGER: Duration = Duration::from_millis(50);
/// Most events waiting for the writer (each batch counts at least one); past this, 503. A few
/// groups' worth: enough to keep the writer busy, little enough memory (~20 MiB per 100,000).
pub const QUEUE_MAX_EVENTS: usize = 4 * GROUP_MAX_EVENTS;
/// `Retry-After` of the 503 for a full queue.
const RETRY_AFTER_SECS: &str = "1";

/// Click-ingest metrics, registered into the control plane's registry.
#[derive(Clone)]
pub struct ClickMetrics {
    pub events: Counter,
    pub batches: Counter,
    pub duplicate_batches: Counter,
    pub unknown_link_events: Counter,
    pub seconds: Histogram,
    pub pruned_events: Counter,
    /// Batches refused with 503 because the queue was full.
    pub queue_full: Counter,
    /// Events queued for the writer or being written.
    pub queued_events: Gauge,
    /// Batches per group transaction.
    pub group_batches: Histogram,
}

impl ClickMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            events: Counter::default(),
            batches: Counter::default(),
            duplicate_batches: Counter::default(),
            unknown_link_events: Counter::default(),
            seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            pruned_events: Counter::default(),
            queue_full: Counter::default(),
            queued_events: Gauge::default(),
            group_batches: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
        };
        registry.register(
            "click_events_ingested",
            "Click events stored",
            m.events.clone(),
        );
        registry.register(
            "click_batches_ingested",
            "Click batches stored (first delivery)",
            m.batches.clone(),
        );
        registry.register(
            "click_batches_duplicate",
            "Click batches delivered again and ignored",
            m.duplicate_batches.clone(),
        );
        registry.register(
            "click_events_unknown_link",
            "Click events for links that do not exist (acknowledged, not stored)",
            m.unknown_link_events.clone(),
        );
        registry.register(
            "click_ingest_duration_seconds",
            "Time to store one click batch (queue wait and group transaction included)",
            m.seconds.clone(),
        );
        registry.register(
            "click_ingest_queue_full",
            "Click batches refused with 503 because the ingest queue was full",
            m.queue_full.clone(),
        );
        registry.register(
            "click_ingest_queued_events",
            "Click events waiting for the ingest writer or being written",
            m.queued_events.clone(),
        );
        registry.register(
            "click_ingest_group_batches",
            "Click batches stored per group transaction",
            m.group_batches.clone(),
        );
        registry.register(
            "click_events_pruned",
            "Raw click events deleted after the retention period",
            m.pruned_events.clone(),
        );
        m
    }
}

fn plain(status: StatusCode, msg: String) -> Response {
    (status, format!("{msg}\n")).into_response()
}

/// `POST /internal/v1/clicks`.
pub async fn handler(_: FleetAuth, State(state): State<AppState>, body: Body) -> Response {
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("click batch larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    // Borrowed from `bytes`: no string copies for the (usually escape-free) event fields.
    let batch: BatchRef<'_> = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("malformed click batch: {e}"),
            );
        }
    };
    if batch.batch_id.is_empty() || batch.batch_id.len() > MAX_ID_LEN {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("batchId must be 1 to {MAX_ID_LEN} bytes"),
        );
    }
    if batch.proxy_id.len() > MAX_ID_LEN {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("proxyId must be at most {MAX_ID_LEN} bytes"),
        );
    }
    if batch.events.len() > MAX_BATCH_EVENTS {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {MAX_BATCH_EVENTS} events per batch"),
        );
    }
    match ingest_parsed(&state, &batch).await {
        Ok(receipt) => axum::Json(receipt).into_response(),
        Err(Refused::Busy) => {
            let mut r = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "click ingest queue full; retry".into(),
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
            r
        }
        Err(Refused::Failed(e)) => {
            tracing::warn!(error = %e, batch_id = %batch.batch_id, proxy_id = %batch.proxy_id,
                "click batch not stored; the proxy will retry");
            // Every failure here is worth retrying (unreachable database, deadlock, restart).
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "click batch not stored; retry".into(),
            )
        }
    }
}

/// Why a batch was not stored; either way the sender should retry.
#[derive(Debug)]
pub enum Refused {
    /// The queue is full.
    Busy,
    /// Storing failed (database unreachable, transaction failed, writer gone).
    Failed(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Busy => f.write_str("click ingest queue full"),
            Refused::Failed(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Refused {}

/// Stores one batch and updates the metrics (for callers holding a decoded [`ClickBatch`]).
pub async fn ingest(state: &AppState, batch: &ClickBatch) -> Result<IngestReceipt, Refused> {
    ingest_parsed(state, &BatchRef::from(batch)).await
}

/// Queues a batch's parts for their group writers, waits for all their outcomes and updates the
/// metrics; what the handler calls.
async fn ingest_parsed(state: &AppState, batch: &BatchRef<'_>) -> Result<IngestReceipt, Refused> {
    let started = Instant::now();
    let m = &state.metrics.clicks;
    let weight = u32::try_from(batch.events.len().max(1)).unwrap_or(u32::MAX);
    let Ok(permit) = state
        .click_writer
        .room
        .clone()
        .try_acquire_many_owned(weight)
    else {
        m.queue_full.inc();
        return Err(Refused::Busy);
    };
    m.queued_events.inc_by(i64::from(weight));
    let queued = Arc::new(Queued {
        gauge: m.queued_events.clone(),
        weight,
        _permit: permit,
    });
    let writers = state.click_writer.senders(&state.db, m);
    let mut answers = Vec::with_capacity(clicks::PARTS);
    for part in Prepared::split(batch) {
        let (reply, answer) = oneshot::channel();
        let writer = &writers[part.part % writers.len()];
        let job = Job {
            batch: part,
            reply,
            _queued: queued.clone(),
        };
        if writer.send(job).is_err() {
            return Err(Refused::Failed("click ingest writer stopped".into()));
        }
        answers.push(answer);
    }
    drop(queued);
    // A part the writer never took (or dropped unanswered: a panic) is a retry for the proxy;
    // the parts stored meanwhile are recognised by their (batch id, part) then.
    let mut parts = Vec::with_capacity(answers.len());
    let mut failed = None;
    for answer in answers {
        match answer.await {
            Ok(Ok(done)) => {
                // Counted per part: a part stored now is not counted again on the retry that
                // a failed sibling causes.
                m.events.inc_by(done.stored as u64);
                m.unknown_link_events.inc_by(done.unknown_link as u64);
                if let Some(seq) = done.feed_seq {
                    // A link reached its click limit: wake the proxies' long polls.
                    state.changes_committed(seq);
                }
                if done.webhooks_queued > 0 {
                    state.webhook_wake.notify_one();
                }
                parts.push(done);
            }
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some("click ingest writer stopped".into()),
        }
    }
    if let Some(e) = failed {
        return Err(Refused::Failed(e));
    }
    let done = Ingested::merge(parts);
    m.seconds.observe(started.elapsed().as_secs_f64());
    if done.accepted {
        m.batches.inc();
    } else {
        m.duplicate_batches.inc();
    }
    Ok(IngestReceipt {
        batch_id: batch.batch_id.to_string(),
        accepted: done.accepted,
        events: batch.events.len(),
    })
}

/// A queued batch part and where its outcome goes.
struct Job {
    batch: Prepared,
    reply: oneshot::Sender<Result<Ingested, String>>,
    _queued: Arc<Queued>,
}

/// A batch's share of [`QUEUE_MAX_EVENTS`] and of the queued-events gauge, given back when the
/// last of its parts is dropped (answered, or lost with the writer).
struct Queued {
    gauge: Gauge,
    weight: u32,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.gauge.dec_by(i64::from(self.weight));
    }
}

/// The queues in front of the writer tasks, which start on first use (on the runtime serving
/// the request) and again if one ever stopped. One per [`AppState`].
///
/// On Postgres there is one writer per part ([`clicks::PARTS`]): parts hold disjoint links, so
/// the writers' transactions never touch the same rollup or counter rows and run side by side
/// on two server backends (a single writer kept one Postgres core busy and the other idle; two
/// writers sharing links were measured at half the throughput, each waiting row by row for the
/// other's commit). On SQLite, whose writes are serialised anyway, one writer takes every part.
pub struct GroupWriter {
    tx: Mutex<Vec<mpsc::UnboundedSender<Job>>>,
    /// Bounds the queues by events (the channels themselves are unbounded).
    room: Arc<Semaphore>,
}

impl Default for GroupWriter {
    fn default() -> Self {
        Self {
            tx: Mutex::new(Vec::new()),
            room: Arc::new(Semaphore::new(QUEUE_MAX_EVENTS)),
        }
    }
}

impl GroupWriter {
    /// One sender per writer; part `k` goes to writer `k % len`.
    fn senders(&self, db: &Db, m: &ClickMetrics) -> Vec<mpsc::UnboundedSender<Job>> {
        let writers = if db.pg.is_some() { clicks::PARTS } else { 1 };
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..writers {
            if tx.get(i).is_some_and(|t| !t.is_closed()) {
                continue;
            }
            let (t, rx) = mpsc::unbounded_channel();
            // The task holds no sender, so it ends when the state (and its queue) is dropped.
            tokio::spawn(write_groups(db.clone(), rx, m.group_batches.clone()));
            if i < tx.len() {
                tx[i] = t;
            } else {
                tx.push(t);
            }
        }
        tx.clone()
    }
}

/// A writer: takes everything queued (up to [`GROUP_MAX_EVENTS`]), stores it in one
/// transaction, answers each job; repeats until the queue is dropped.
async fn write_groups(db: Db, mut queue: mpsc::UnboundedReceiver<Job>, group_batches: Histogram) {
    let mut next: Option<Job> = None;
    // Events of the previous group: while this one is smaller, the writer lingers for more.
    let mut previous = 0;
    loop {
        let first = match next.take() {
            Some(j) => j,
            None => match queue.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let linger_until = tokio::time::Instant::now() + GROUP_LINGER;
        let mut events = first.batch.len();
        let mut group = vec![first];
        while events < GROUP_MAX_EVENTS {
            let j = match queue.try_recv() {
                Ok(j) => j,
                Err(_) if events < previous => {
                    match tokio::time::timeout_at(linger_until, queue.recv()).await {
                        Ok(Some(j)) => j,
                        _ => break,
                    }
                }
                Err(_) => break,
            };
            if events + j.batch.len() > GROUP_MAX_EVENTS {
                next = Some(j);
                break;
            }
            events += j.batch.len();
            group.push(j);
        }
        previous = events;
        group_batches.observe(group.len() as f64);
        write_group(&db, group).await;
    }
}

async fn write_group(db: &Db, group: Vec<Job>) {
    let batches: Vec<&Prepared> = group.iter().map(|j| &j.batch).collect();
    let result = clicks::ingest_group(db, &batches, db::now_ms()).await;
    drop(batches);
    match result {
        Ok(done) => {
            for (job, d) in group.into_iter().zip(done) {
                // The requester may have gone (client timeout); the proxy's retry then finds
                // the batch id stored.
                let _ = job.reply.send(Ok(d));
            }
        }
        // The server refused a statement: maybe because of one batch's content. Store the
        // batches one by one so such a batch fails alone instead of failing everyone's.
        Err(sqlx::Error::Database(e)) if group.len() > 1 => {
            tracing::warn!(error = %e, batches = group.len(),
                "click ingest group failed; storing its batches one at a time");
            for job in group {
                let r = clicks::ingest_group(db, &[&job.batch], db::now_ms())
                    .await
                    .map(|d| d.first().copied().unwrap_or_default())
                    .map_err(|e| e.to_string());
                let _ = job.reply.send(r);
            }
        }
        Err(e) => {
            let e = e.to_string();
            for job in group {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Deletes raw events older than the retention period, at start and then hourly, until
/// `shutdown` turns true.
pub async fn prune_loop(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let retention_ms = i64::try_from(state.config.click_retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        let cutoff = db::now_ms().saturating_sub(retention_ms);
        match clicks::prune(&state.db, cutoff).await {
            Ok(n) => {
                state.metrics.clicks.pruned_events.inc_by(n);
                if n > 0 {
                    tracing::info!(events = n, "pruned raw click events past retention");
                }
            }
            Err(e) => tracing::warn!(error = %e, "pruning click events failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
