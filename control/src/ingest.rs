//! `POST /internal/v1/clicks`: where proxies deliver click batches (fleet token only), and the
//! background task that prunes raw events past the retention period.
//!
//! The contract (`sling_shared::clicks`): 200 with an [`IngestReceipt`] means "stored, or stored
//! before" and the proxy forgets the batch; any other status means "keep it and retry". So the
//! answer is 200 only after the transaction in [`db::clicks::ingest`] committed (or found the
//! batch id already recorded: `accepted: false`), 503 when the database cannot be reached, and
//! 400/413 only for a body no retry could fix.
//!
//! Events for links that no longer exist are acknowledged and counted
//! (`sling_control_click_events_unknown_link`), never refused.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sling_shared::clicks::{ClickBatch, IngestReceipt, MAX_BATCH_EVENTS};

use crate::db::clicks::BatchRef;
use crate::db::{self, clicks};
use crate::internal::FleetAuth;
use crate::state::AppState;

/// Largest accepted batch body: `MAX_BATCH_EVENTS` events of up to ~1.6 KiB each (a real event
/// is ~300 bytes of JSON).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Longest batch id or proxy id.
const MAX_ID_LEN: usize = 200;
/// How often the retention task runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Click-ingest metrics, registered into the control plane's registry.
#[derive(Clone)]
pub struct ClickMetrics {
    pub events: Counter,
    pub batches: Counter,
    pub duplicate_batches: Counter,
    pub unknown_link_events: Counter,
    pub seconds: Histogram,
    pub pruned_events: Counter,
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
            "Time to store one click batch (transaction included)",
            m.seconds.clone(),
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
        Err(e) => {
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

/// Stores one batch and updates the metrics (for callers holding a decoded [`ClickBatch`]).
pub async fn ingest(state: &AppState, batch: &ClickBatch) -> sqlx::Result<IngestReceipt> {
    ingest_parsed(state, &BatchRef::from(batch)).await
}

/// Stores one batch and updates the metrics; what the handler calls.
async fn ingest_parsed(state: &AppState, batch: &BatchRef<'_>) -> sqlx::Result<IngestReceipt> {
    let started = Instant::now();
    let m = &state.metrics.clicks;
    let done = clicks::ingest(&state.db, batch, db::now_ms()).await?;
    if let Some(seq) = done.feed_seq {
        // A link reached its click limit: wake the proxies' long polls.
        state.changes_committed(seq);
    }
    m.seconds.observe(started.elapsed().as_secs_f64());
    if done.accepted {
        m.batches.inc();
        m.events.inc_by(done.stored as u64);
        m.unknown_link_events.inc_by(done.unknown_link as u64);
    } else {
        m.duplicate_batches.inc();
    }
    Ok(IngestReceipt {
        batch_id: batch.batch_id.to_string(),
        accepted: done.accepted,
        events: batch.events.len(),
    })
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
