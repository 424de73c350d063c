//! The internal fleet endpoints proxies use: the long-poll change feed, the latest snapshot
//! file and the TLS state (certificates with their opened keys, well-known answers). They
//! require the fleet token and never accept a customer API key.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sling_shared::feed::{FEED_PATH, FeedPage, MAX_PAGE, SNAPSHOT_PATH, SNAPSHOT_SEQ_HEADER};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::db::changes;
use crate::state::AppState;

/// Longest a feed request is held open.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting feed request re-reads the database, to see other replicas' writes.
const RECHECK: Duration = Duration::from_millis(500);

pub fn router() -> Router<AppState> {
    Router::new()
        .route(FEED_PATH, get(feed))
        .route(SNAPSHOT_PATH, get(snapshot))
        .route(sling_shared::tls::TLS_STATE_PATH, get(tls_state))
        .route(
            sling_shared::clicks::CLICKS_PATH,
            post(crate::ingest::handler),
        )
}

/// Proof that the request carried the fleet token (checked in constant time).
pub struct FleetAuth;

impl FromRequestParts<AppState> for FleetAuth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let got = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(got.as_bytes().ct_eq(state.config.fleet_token.as_bytes())) && !got.is_empty()
        {
            Ok(FleetAuth)
        } else {
            Err((StatusCode::UNAUTHORIZED, "fleet token required\n").into_response())
        }
    }
}

#[derive(Deserialize)]
struct FeedQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
    /// The snapshot the proxy serves; a newer published one ends the wait.
    #[serde(default)]
    snapshot: Option<u64>,
}

fn unavailable(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "{what}");
    (StatusCode::SERVICE_UNAVAILABLE, format!("{what}\n")).into_response()
}

async fn feed(_: FleetAuth, State(state): State<AppState>, Query(q): Query<FeedQuery>) -> Response {
    state.metrics.feed_polls.inc();
    let deadline = Instant::now() + Duration::from_millis(q.wait_ms).min(MAX_WAIT);
    let mut head_rx = state.feed_head.subscribe();
    let mut shutdown = state.shutdown.subscribe();
    let mut snapshot_rx = state.snapshot_seq.subscribe();
    let newer_snapshot = |seq: u64| q.snapshot.is_some_and(|served| seq > served);
    loop {
        head_rx.mark_unchanged();
        let changes = match changes::after(&state.db, q.after, MAX_PAGE).await {
            Ok(c) => c,
            Err(e) => return unavailable("change feed: database unavailable", &e),
        };
        if !changes.is_empty()
            || Instant::now() >= deadline
            || *shutdown.borrow()
            || newer_snapshot(*snapshot_rx.borrow_and_update())
        {
            return feed_page(&state, q.after, changes).await;
        }
        tokio::select! {
            _ = head_rx.changed() => {}
            _ = tokio::time::sleep(RECHECK) => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
            _ = snapshot_rx.changed() => {}
        }
    }
}

async fn feed_page(
    state: &AppState,
    after: u64,
    changes: Vec<sling_shared::feed::Change>,
) -> Response {
    let (head, oldest) =
        match tokio::try_join!(changes::head(&state.db), changes::oldest(&state.db)) {
            Ok(v) => v,
            Err(e) => return unavailable("change feed: database unavailable", &e),
        };
    state.metrics.feed_head_seq.set(head as i64);
    // Changes after `after` were pruned if the oldest kept one is beyond the next expected.
    let reset =
        oldest.is_some_and(|o| o > after + 1) && changes.first().is_none_or(|c| c.seq > after + 1);
    let page = FeedPage {
        changes: if reset { Vec::new() } else { changes },
        head_seq: head,
        snapshot_seq: *state.snapshot_seq.borrow(),
        reset,
    };
    axum::Json(page).into_response()
}

#[derive(Deserialize)]
struct SnapshotQuery {
    #[serde(default)]
    newer_than: Option<u64>,
}

async fn snapshot(
    _: FleetAuth,
    State(state): State<AppState>,
    Query(q): Query<SnapshotQuery>,
) -> Response {
    let dir = state.config.snapshot_dir.clone();
    let newest =
        tokio::task::spawn_blocking(move || sling_shared::snapshot::list_files(&dir)).await;
    let (seq, path) = match newest {
        Ok(Ok(files)) => match files.into_iter().next() {
            Some(f) => f,
            None => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no snapshot published yet\n",
                )
                    .into_response();
            }
        },
        Ok(Err(e)) => return unavailable("snapshot directory unreadable", &e),
        Err(e) => return unavailable("snapshot listing failed", &e),
    };
    if q.newer_than.is_some_and(|n| seq <= n) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        // Pruned between listing and opening: the proxy simply asks again.
        Err(e) => return unavailable("snapshot file vanished", &e),
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return unavailable("snapshot file unreadable", &e),
    };
    // An open file stays readable if pruned meanwhile (the inode lives until closed).
    let chunks = tokio_util::io::ReaderStream::with_capacity(file, SNAPSHOT_CHUNK);
    let mut res = Response::new(Body::from_stream(chunks));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(SNAPSHOT_SEQ_HEADER, HeaderValue::from(seq));
    res
}

/// Bytes of a snapshot file read, and so written to the socket, at a time. Sent as one buffer, a
/// snapshot went out in writes as large as the socket took, which a kernel without preemption
/// (`PREEMPT_NONE`) runs to the end, on loopback with the receiver's side of them too: in the
/// `swap` bench the load generator sharing that core waited up to 0.7 ms behind it, and the p99
/// ratio of swapping to quiet runs fell from 1.17–1.26 to 1.03–1.06 with chunks. Each chunk is a
/// separate read on the blocking pool, so the connection flushes between chunks.
const SNAPSHOT_CHUNK: usize = 64 * 1024;

/// `GET /internal/v1/tls`: every live certificate (key opened) and well-known answer. The feed
/// head is read first, so a change committed while the state is read carries a higher sequence
/// and makes the proxy fetch again.
async fn tls_state(_: FleetAuth, State(state): State<AppState>) -> Response {
    match read_tls_state(&state).await {
        Ok(tls) => axum::Json(tls).into_response(),
        Err(e) => unavailable("TLS state: database unavailable", &e),
    }
}

pub async fn read_tls_state(state: &AppState) -> sqlx::Result<sling_shared::tls::TlsState> {
    let seq = changes::head(&state.db).await?;
    let now = crate::db::now_ms();
    let rows = crate::db::certs::list_live(&state.db.pool, now).await?;
    let well_known = crate::db::well_known::list_live(&state.db.pool, now).await?;
    let mut certs = Vec::with_capacity(rows.len());
    for (cert, https_redirect) in rows {
        // One unreadable key (a wrong --secret-key on this replica, a damaged row) must not
        // take every other domain's certificate down with it.
        let key_pem = match state.config.sealer.open_string(&cert.key_sealed) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(host = %cert.host, error = %e, "certificate key does not open; not served");
                continue;
            }
        };
        certs.push(sling_shared::tls::CertEntry {
            host: cert.host,
            chain_pem: cert.chain_pem,
            key_pem,
            not_after: cert.not_after.div_euclid(1000),
            https_redirect,
        });
    }
    Ok(sling_shared::tls::TlsState {
        seq,
        certs,
        well_known,
    })
}
