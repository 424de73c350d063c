//! The TLS state follower: fetches [`TLS_STATE_PATH`] on start, whenever the feed follower asks
//! (a `TlsChanged` change, a feed reset), and again with backoff after a failure, and installs
//! each answer whole.
//!
//! Every installed state is also written to `<snapshot dir>/tls-state.json` (mode 0600: it holds
//! private keys; temp file, fsync, rename), which is loaded at start before anything is fetched,
//! so a proxy restarted while the control plane is down still serves HTTPS.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use sling_shared::tls::{TLS_STATE_PATH, TlsState};

use crate::State;
use crate::config::ControlPlane;
use crate::feed::Backoff;

/// The cached copy's name inside the snapshot directory.
pub const CACHE_FILE: &str = "tls-state.json";
/// A state of any sane size arrives well within this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// `<dir>/tls-state.json`.
pub fn cache_path(dir: &Path) -> PathBuf {
    dir.join(CACHE_FILE)
}

/// Reads the cached state; `None` (logged) when there is none or it cannot be read.
pub fn load_cache(dir: &Path) -> Option<TlsState> {
    let path = cache_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "cannot read the cached TLS state");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(state) => Some(state),
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "ignoring a corrupt cached TLS state");
            None
        }
    }
}

/// Replaces the cached state atomically; the file is created with mode 0600.
pub fn write_cache(dir: &Path, state: &TlsState) -> std::io::Result<()> {
    let json = serde_json::to_vec(state)?;
    std::fs::create_dir_all(dir)?;
    // Not `*.tmp`: snapshot pruning deletes stray `.…tmp` files in this directory.
    let tmp = dir.join(format!(".{CACHE_FILE}.{}.partial", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, cache_path(dir))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Follows the TLS state until the task is aborted. `cached` is what the cache file held at
/// start (already installed), so an unchanged answer is neither parsed nor written again.
pub(crate) async fn follow(
    client: reqwest::Client,
    control: ControlPlane,
    state: Arc<State>,
    mut cached: Option<TlsState>,
) {
    let mut backoff = Backoff::default();
    loop {
        match fetch(&client, &control).await {
            Ok(Some(fetched)) => {
                if cached.as_ref() != Some(&fetched) {
                    install(&state, fetched.clone()).await;
                    let dir = state.snapshot_dir.clone();
                    let copy = fetched.clone();
                    match tokio::task::spawn_blocking(move || write_cache(&dir, &copy)).await {
                        Ok(Ok(())) => cached = Some(fetched),
                        Ok(Err(error)) => {
                            tracing::warn!(%error, "cannot write the cached TLS state");
                        }
                        Err(error) => tracing::warn!(%error, "TLS cache task failed"),
                    }
                }
                backoff.reset();
            }
            Ok(None) => {
                // A control plane without the endpoint (older, or not written yet): nothing to
                // install, and what is loaded stays.
                tracing::debug!("the control plane has no TLS state (404)");
                backoff.reset();
            }
            Err(error) => {
                state.metrics.tls_state_error();
                let delay = backoff.next_delay();
                tracing::warn!(error = %format!("{error:#}"), retry_in_ms = delay.as_millis() as u64, "TLS state fetch failed; serving the certificates already loaded");
                tokio::time::sleep(delay).await;
                continue;
            }
        }
        state.tls.refetch_requested().await;
    }
}

/// Parses `tls` off the executor (loading keys costs) and swaps it in.
pub(crate) async fn install(state: &Arc<State>, tls: TlsState) {
    let seq = tls.seq;
    let s = state.clone();
    match tokio::task::spawn_blocking(move || s.tls.build(&tls)).await {
        Ok(tables) => {
            tracing::info!(
                seq,
                certificates = tables.certificate_count(),
                rejected = tables.rejected(),
                "TLS state installed"
            );
            state.tls.install(tables, &state.metrics);
        }
        Err(error) => tracing::warn!(%error, "TLS state parsing task failed"),
    }
}

/// One fetch; `None` on 404 (no TLS state to serve).
async fn fetch(
    client: &reqwest::Client,
    control: &ControlPlane,
) -> anyhow::Result<Option<TlsState>> {
    let resp = client
        .get(format!("{}{TLS_STATE_PATH}", control.url))
        .bearer_auth(&control.fleet_token)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .context("requesting the TLS state")?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(anyhow!("TLS state endpoint answered {status}"));
    }
    resp.json::<TlsState>()
        .await
        .map(Some)
        .context("decoding the TLS state")
}
