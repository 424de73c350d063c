//! Snapshot publishing: a background task that writes a new snapshot file whenever enough has
//! changed (`snapshot_after_changes`) or, if anything changed at all, every `snapshot_interval`.
//!
//! The first snapshot a process publishes reads every domain and link from the database. Later
//! ones start from the body this process published last, kept in memory, and apply the feed's
//! changes since its sequence, so a publication reads what changed rather than the whole table (a
//! full read of a million links takes seconds; the feed since the last snapshot is a handful of
//! rows). Keeping the body costs one decoded copy of the links, which every publication held
//! anyway; reading the previous file back instead cost a decode and a drop of the whole body each
//! time, half of an incremental publication's CPU in the `swap` bench. A full read still happens
//! every [`FULL_READ_EVERY`], after a failed publication (its body may be half updated), and
//! whenever the feed no longer covers the previous body, so nothing the feed missed (a hand edit
//! of the database, say) outlives that period.
//!
//! A full read takes the feed sequence *before* the links, so it may already contain changes
//! newer than its header says; proxies (and the next incremental build) replay those changes on
//! top, which is harmless because every change carries the full new state of its key.
//!
//! Files are written to the page cache without an fsync. The database is the durable copy and
//! the files only a cache of it for proxies to download: a process crash loses nothing (the page
//! cache outlives it), and after a power loss [`run`] deletes a newest file that is no longer whole
//! and publishes again from the database. An fsync per publication (every 100 ms under churn)
//! was 23 MiB/s of writes whose completion interrupts, on the `swap` bench's VM, all land on the
//! proxy's core.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use sling_shared::snapshot::{self, Durability, SnapshotBody};
use tokio::sync::watch;

use crate::db::{self, changes};
use crate::state::AppState;

/// Snapshot files kept on disk (the newest serves; older ones cover a proxy mid-download).
const KEEP_FILES: usize = 3;

/// Feed pruning runs after a publication at most this often: retention is counted in minutes, and
/// each prune is a write that API writes queue behind.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Longest run of incremental publications before the next one reads the database in full.
const FULL_READ_EVERY: Duration = Duration::from_secs(15 * 60);

/// The last snapshot this process wrote: where the next incremental build starts.
pub struct Published {
    pub seq: u64,
    pub build: Build,
    pub path: PathBuf,
    /// The body written at `seq`, which the next incremental build updates in place.
    body: SnapshotBody,
    /// Its encoded size: the next encoding's buffer starts this large (plus room to grow).
    encoded_len: usize,
    /// When the chain of incremental builds ending here last read the database in full.
    full_read_at: Instant,
}

impl std::fmt::Debug for Published {
    // Without the body: it holds every link.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("seq", &self.seq)
            .field("build", &self.build)
            .field("path", &self.path)
            .field("links", &self.body.link_count())
            .field("encoded_len", &self.encoded_len)
            .finish()
    }
}

/// How a publication got its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Every domain and link read from the database.
    Full,
    /// The previous body plus this many feed changes.
    Incremental { changes: usize },
}

/// Builds and writes one snapshot: incrementally from `previous` (consumed: its body becomes the
/// new one) when it can, in full otherwise.
pub async fn publish_once(
    state: &AppState,
    previous: Option<Published>,
) -> anyhow::Result<Published> {
    let started = Instant::now();
    let seq = changes::head(&state.db)
        .await
        .context("reading feed head")?;
    // Room for a few thousand more links before the buffer has to grow once.
    let capacity = previous
        .as_ref()
        .map_or(0, |p| p.encoded_len + p.encoded_len / 64 + 4096);
    let base = previous.filter(|p| p.seq <= seq && p.full_read_at.elapsed() < FULL_READ_EVERY);
    let incremental = match base {
        Some(p) => incremental_body(state, p, seq).await.unwrap_or_else(|e| {
            tracing::warn!(
                error = format!("{e:#}"),
                "incremental snapshot failed; reading in full"
            );
            None
        }),
        None => None,
    };
    let (body, build, full_read_at) = match incremental {
        Some(built) => built,
        None => {
            let read_at = Instant::now();
            let body = db::snapshot::load_body(&state.db, &state.config.default_domain)
                .await
                .context("reading links for the snapshot")?;
            (body, Build::Full, read_at)
        }
    };
    let dir = state.config.snapshot_dir.clone();
    let now = db::now_ms();
    let (links, encoded_len, path, body) = tokio::task::spawn_blocking(
        move || -> anyhow::Result<(u64, usize, PathBuf, SnapshotBody)> {
            let links = body.link_count();
            let encoded = snapshot::encode_parts(&body, seq, now, capacity)?;
            // Written to the page cache only (module docs: the database is the durable copy).
            let tmp = snapshot::write_temp(
                &dir,
                &snapshot::file_name(seq),
                &[&encoded.header[..], &encoded.body[..]],
                Durability::PageCache,
            )?;
            let path = snapshot::publish_temp(&tmp, &dir, seq, Durability::PageCache)?;
            snapshot::prune(&dir, seq, KEEP_FILES - 1, |_| false)?;
            Ok((links, encoded.body.len(), path, body))
        },
    )
    .await
    .context("snapshot writer panicked")??;
    let bytes = (snapshot::HEADER_LEN + encoded_len) as u64;
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
        build = ?build,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot published"
    );
    Ok(Published {
        seq,
        build,
        path,
        body,
        encoded_len,
        full_read_at,
    })
}

/// The body of `previous` with the feed's changes up to `seq` applied, how it was built, and when
/// its chain last read in full; `None` when the feed no longer covers the changes.
async fn incremental_body(
    state: &AppState,
    previous: Published,
    seq: u64,
) -> anyhow::Result<Option<(SnapshotBody, Build, Instant)>> {
    let Published {
        seq: from,
        mut body,
        full_read_at,
        ..
    } = previous;
    let applied = db::snapshot::apply_changes(&state.db, &mut body, from, seq)
        .await
        .context("reading the feed for the snapshot")?;
    Ok(applied.map(|changes| (body, Build::Incremental { changes }, full_read_at)))
}

/// The newest snapshot on disk that is whole, so a restart does not republish an unchanged
/// database. Files are written without an fsync, so after a power loss the newest may be cut
/// short or hold unwritten blocks: each is checked (length and checksum) newest first, and one
/// that fails is deleted, since this directory is what proxies download from. Blocking.
fn newest_whole_on_disk(dir: &Path) -> Option<u64> {
    let files = match snapshot::list_files(dir) {
        Ok(files) => files,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list snapshot files");
            return None;
        }
    };
    for (seq, path) in files {
        let refused = match snapshot::check_file(&path) {
            Ok(header) if header.feed_seq == seq => return Some(seq),
            Ok(header) => format!("file name says sequence {seq}, header {}", header.feed_seq),
            Err(e) => e.to_string(),
        };
        tracing::warn!(path = %path.display(), reason = %refused, "deleting a damaged snapshot file");
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::error!(path = %path.display(), error = %e, "cannot delete damaged snapshot file");
        }
    }
    None
}

/// Runs until `shutdown` turns true. Database outages delay publishing; they never stop it.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    // A file from an earlier process only says what is already published; the first build of
    // this one reads in full (the configuration, the default domain included, may have changed).
    let dir = state.config.snapshot_dir.clone();
    let mut published = tokio::task::spawn_blocking(move || newest_whole_on_disk(&dir))
        .await
        .unwrap_or_default();
    if let Some(seq) = published {
        state.snapshot_seq.send_replace(seq);
    }
    let mut last: Option<Published> = None;
    let mut last_prune: Option<Instant> = None;
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
            // Taken: a failed publication may leave the body half updated, so the next one reads
            // in full.
            match publish_once(&state, last.take()).await {
                Ok(p) => {
                    published = Some(p.seq);
                    backoff = Duration::from_millis(200);
                    if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                        prune_feed(&state, p.seq).await;
                        last_prune = Some(Instant::now());
                    }
                    last = Some(p);
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
