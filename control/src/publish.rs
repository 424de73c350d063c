//! Snapshot publishing: a background task that writes a new snapshot file whenever enough has
//! changed (`snapshot_after_changes`) or, if anything changed at all, every `snapshot_interval`.
//!
//! The feed sequence is read *before* the links, so a snapshot may already contain changes newer
//! than its header says; proxies replay those changes on top, which is harmless because every
//! change carries the full new state of its key.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use crate::db::{self, changes};
use crate::state::AppState;

/// Snapshot files kept on disk (the newest serves; older ones cover a proxy mid-download).
const KEEP_FILES: usize = 3;

/// Builds and writes one snapshot of the current database; returns its feed sequence.
pub async fn publish_once(state: &AppState) -> anyhow::Result<u64> {
    let started = Instant::now();
    let seq = changes::head(&state.db)
        .await
        .context("reading feed head")?;
    let body = db::snapshot::load_body(&state.db, &state.config.default_domain)
        .await
        .context("reading links for the snapshot")?;
    let dir = state.config.snapshot_dir.clone();
    let now = db::now_ms();
    let (links, bytes) = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64)> {
        let links = body.link_count();
        let encoded = sling_shared::snapshot::encode_parts(&body, seq, now)?;
        drop(body);
        sling_shared::snapshot::write_atomic_parts(&dir, seq, &[&encoded.header, &encoded.body])?;
        sling_shared::snapshot::prune(&dir, seq, KEEP_FILES - 1)?;
        let bytes = (encoded.header.len() + encoded.body.len()) as u64;
        Ok((links, bytes))
    })
    .await
    .context("snapshot writer panicked")??;
    state.metrics.snapshot_published(seq, links, bytes, now);
    state
        .metrics
        .snapshot_build_seconds
        .observe(started.elapsed().as_secs_f64());
    state.snapshot_seq.send_replace(seq);
    tracing::info!(
        seq,
        links,
        bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot published"
    );
    Ok(seq)
}

/// The newest snapshot already on disk, so a restart does not republish an unchanged database.
fn newest_on_disk(state: &AppState) -> Option<u64> {
    let files = sling_shared::snapshot::list_files(&state.config.snapshot_dir).ok()?;
    files.into_iter().map(|(seq, _)| seq).next()
}

/// Runs until `shutdown` turns true. Database outages delay publishing; they never stop it.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut published = newest_on_disk(&state);
    if let Some(seq) = published {
        state.snapshot_seq.send_replace(seq);
    }
    let mut head_rx = state.feed_head.subscribe();
    let mut backoff = Duration::from_millis(200);
    let mut last_attempt = Instant::now() - state.config.snapshot_interval;
    loop {
        let head = match changes::head(&state.db).await {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "publisher: cannot read feed head");
                None
            }
        };
        let behind = match (head, published) {
            (Some(h), Some(p)) => h.saturating_sub(p),
            (Some(_), None) => u64::MAX,
            (None, _) => 0,
        };
        let due = last_attempt.elapsed() >= state.config.snapshot_interval;
        if behind >= state.config.snapshot_after_changes || (behind > 0 && due) {
            last_attempt = Instant::now();
            match publish_once(&state).await {
                Ok(seq) => {
                    published = Some(seq);
                    backoff = Duration::from_millis(200);
                    prune_feed(&state, seq).await;
                }
                Err(e) => {
                    state.metrics.snapshot_failures.inc();
                    tracing::warn!(
                        error = format!("{e:#}"),
                        retry_ms = backoff.as_millis() as u64,
                        "snapshot publication failed"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
        }
        // Wake on local writes (to count towards the change threshold), on the interval (to see
        // other replicas' writes), or on shutdown.
        tokio::select! {
            _ = head_rx.changed() => {}
            _ = tokio::time::sleep(state.config.snapshot_interval.min(Duration::from_secs(1))) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

async fn prune_feed(state: &AppState, snapshot_seq: u64) {
    let cutoff = db::now_ms() - state.config.feed_retention.as_millis() as i64;
    if let Err(e) = changes::prune(&state.db, cutoff, snapshot_seq).await {
        tracing::warn!(error = %e, "pruning the change feed failed");
    }
}
