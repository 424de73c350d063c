//! The feed follower: a background task that keeps the overlay and the snapshot current.
//!
//! It long-polls the control plane's change feed (`after` = the highest sequence applied), applies
//! each page's changes to the overlay in order, and whenever the feed announces a snapshot newer
//! than the served one, has the idle-priority install thread download it and
//! [`snapshot::install`] verify and store it, then swaps it in and trims the overlay. A `reset`
//! page (the proxy fell further behind than the feed remembers) is answered the same way before
//! resuming from the new snapshot.
//!
//! A `TlsChanged` change or a reset also wakes the TLS state follower ([`crate::tls::follower`]):
//! keys never travel in the feed, so it fetches the whole state instead.
//!
//! When the control plane is unreachable the task retries with capped exponential backoff and
//! jitter; requests keep being answered from what is already loaded. Nothing here can fail a
//! request.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow};
use sling_shared::feed::{ChangeOp, FEED_PATH, FeedPage, SNAPSHOT_PATH, SNAPSHOT_SEQ_HEADER};

use crate::State;
use crate::config::ControlPlane;
use crate::snapshot::LoadedSnapshot;
use crate::snapshot_files::{self, SnapshotFiles};

/// Extra time beyond the long-poll wait before a feed request counts as hung.
const POLL_GRACE: Duration = Duration::from_secs(10);
/// A snapshot download of any sane size finishes well within this.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// If an empty page comes back faster than this, the control plane is not long-polling: pause so
/// the loop does not spin.
const MIN_EMPTY_POLL: Duration = Duration::from_millis(100);

/// The HTTP client for the control plane's internal endpoints.
pub fn control_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("sling-proxy/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The client for snapshot downloads. It keeps no connection between requests: each download
/// runs in a runtime of its own on the install thread, which a pooled connection (an idle
/// HTTP/1.1 one, or a shared HTTP/2 one) would outlive.
pub fn download_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("sling-proxy/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(0)
        .http1_only()
        .build()
}

/// Follows the feed until the task is aborted. Runs forever: every failure is logged, counted and
/// retried.
pub async fn follow(
    client: reqwest::Client,
    downloads: reqwest::Client,
    control: ControlPlane,
    wait: Duration,
    state: Arc<State>,
) {
    let follower = Follower {
        client,
        downloads,
        control,
        wait,
        files: Arc::new(SnapshotFiles::new(
            &state.snapshot_dir,
            snapshot_files::DURABLE_AFTER,
            state.snapshots.seq(),
        )),
        state,
    };
    // One task for both, so aborting the follower also stops the syncer.
    tokio::join!(
        follower.run(),
        follower.files.sync_served(&follower.state.snapshots)
    );
}

struct Follower {
    client: reqwest::Client,
    downloads: reqwest::Client,
    control: ControlPlane,
    wait: Duration,
    files: Arc<SnapshotFiles>,
    state: Arc<State>,
}

impl Follower {
    async fn run(&self) {
        let state = &self.state;
        let mut applied = state.snapshots.seq();
        let mut poll_backoff = Backoff::default();
        let mut snapshot_backoff = Backoff::default();
        // After a failed snapshot download, when to try again (the feed keeps flowing meanwhile).
        let mut snapshot_retry_at: Option<Instant> = None;

        loop {
            let started = Instant::now();
            let page = match self.poll(applied, state.snapshots.seq()).await {
                Ok(page) => page,
                Err(error) => {
                    let delay = poll_backoff.next_delay();
                    tracing::warn!(error = %format!("{error:#}"), retry_in_ms = delay.as_millis() as u64, "change feed poll failed");
                    state.metrics.feed_error();
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };

            let served = state.snapshots.seq();
            let due = snapshot_retry_at.is_none_or(|at| Instant::now() >= at);
            if page.reset || (page.snapshot_seq > served && due) {
                match self.fetch_snapshot(served).await {
                    Ok(Some(loaded)) => {
                        applied = applied.max(loaded.seq());
                        state.install_snapshot(loaded);
                        self.files.installed();
                        snapshot_backoff.reset();
                        snapshot_retry_at = None;
                    }
                    Ok(None) if !page.reset => {
                        // The feed announced a newer snapshot the snapshot endpoint does not have
                        // (yet): try again later rather than on every page.
                        snapshot_retry_at = Some(Instant::now() + snapshot_backoff.next_delay());
                    }
                    Ok(None) => {
                        state.metrics.feed_error();
                        let delay = poll_backoff.next_delay();
                        tracing::error!(
                            applied,
                            served,
                            retry_in_ms = delay.as_millis() as u64,
                            "feed reset but the control plane has no newer snapshot"
                        );
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    Err(error) => {
                        state.metrics.feed_error();
                        let delay = snapshot_backoff.next_delay();
                        tracing::warn!(error = %format!("{error:#}"), retry_in_ms = delay.as_millis() as u64, "snapshot download refused or failed; still serving the current one");
                        if page.reset {
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                        snapshot_retry_at = Some(Instant::now() + delay);
                    }
                }
                if page.reset {
                    // The page's changes start after a gap: drop the overlay and resume from
                    // the snapshot just loaded. A `TlsChanged` may be in the gap.
                    state.overlay.clear();
                    state.tls.request_refetch();
                    applied = state.snapshots.seq();
                    tracing::info!(applied, "feed reset onto a fresh snapshot");
                    continue;
                }
            }

            for change in &page.changes {
                // Changes the served snapshot already includes are skipped.
                if change.seq > applied {
                    if matches!(change.op, ChangeOp::TlsChanged) {
                        state.tls.request_refetch();
                    }
                    state.overlay.apply(change);
                    applied = change.seq;
                }
            }
            poll_backoff.reset();
            state.metrics.feed_synced(applied, page.head_seq);
            state.mark_ready();

            if page.changes.is_empty() && started.elapsed() < MIN_EMPTY_POLL {
                tokio::time::sleep(MIN_EMPTY_POLL).await;
            }
        }
    }

    /// One long poll. `served` tells the control plane which snapshot we hold, so it can answer
    /// as soon as a newer one is published rather than only when a change arrives.
    async fn poll(&self, after: u64, served: u64) -> anyhow::Result<FeedPage> {
        let url = format!(
            "{}{FEED_PATH}?after={after}&snapshot={served}&wait_ms={}",
            self.control.url,
            self.wait.as_millis()
        );
        let resp = self
            .client
            .get(&url)
            .bearer_auth(&self.control.fleet_token)
            .timeout(self.wait + POLL_GRACE)
            .send()
            .await
            .context("requesting the change feed")?;
        let status = resp.status();
        if !status.is_success() {
            return Err(anyhow!("change feed answered {status}"));
        }
        resp.json::<FeedPage>()
            .await
            .context("decoding a change-feed page")
    }

    /// Downloads, verifies and stores a snapshot newer than `served`; `None` when there is none.
    ///
    /// All of it runs on the idle-priority install thread, the download included: receiving a
    /// snapshot means copying every byte of it into freshly faulted buffers, which on the request
    /// thread cost the `swap` bench's proxy about a tenth of its core at ten swaps a second. The
    /// feed's own small pages stay on the runtime, so changes keep arriving however busy the core.
    async fn fetch_snapshot(&self, served: u64) -> anyhow::Result<Option<LoadedSnapshot>> {
        let download = Download {
            client: self.downloads.clone(),
            url: format!("{}{SNAPSHOT_PATH}?newer_than={served}", self.control.url),
            token: self.control.fleet_token.clone(),
            served,
            files: self.files.clone(),
        };
        let loaded = crate::idle::run("snapshot-install", move || download.run())
            .await
            .ok_or_else(|| anyhow!("the snapshot install thread failed"))??;
        if let Some(loaded) = &loaded {
            tracing::info!(
                seq = loaded.seq(),
                links = loaded.header().link_count,
                body_bytes = loaded.header().body_len,
                "downloaded and verified a snapshot"
            );
        }
        Ok(loaded)
    }
}

/// One snapshot download and install, run on the install thread.
struct Download {
    client: reqwest::Client,
    url: String,
    token: String,
    served: u64,
    files: Arc<SnapshotFiles>,
}

impl Download {
    /// Downloads in a runtime of its own on this thread, then has [`SnapshotFiles::install`]
    /// store, verify and prune. Blocking.
    fn run(self) -> anyhow::Result<Option<LoadedSnapshot>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the snapshot download runtime")?;
        let Some((chunks, expected)) = runtime.block_on(self.fetch())? else {
            return Ok(None);
        };
        Ok(Some(self.files.install(&chunks, expected, self.served)?))
    }

    /// The chunks as they arrived and the sequence the control plane announced; `None` when it
    /// has nothing newer.
    async fn fetch(&self) -> anyhow::Result<Option<(Vec<bytes::Bytes>, Option<u64>)>> {
        let mut resp = self
            .client
            .get(&self.url)
            .bearer_auth(&self.token)
            .timeout(SNAPSHOT_TIMEOUT)
            .send()
            .await
            .context("requesting a snapshot")?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(anyhow!("snapshot endpoint answered {status}"));
        }
        let expected = match resp.headers().get(SNAPSHOT_SEQ_HEADER) {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| anyhow!("bad {SNAPSHOT_SEQ_HEADER} header"))?,
            ),
            None => None,
        };
        // Kept as the chunks hyper read: the install writes them out as they are, and verifies
        // the written file, so nothing copies the whole snapshot into one buffer.
        let mut chunks = Vec::new();
        while let Some(chunk) = resp.chunk().await.context("downloading a snapshot")? {
            chunks.push(chunk);
        }
        Ok(Some((chunks, expected)))
    }
}

/// Capped exponential backoff with up to 25% random-ish jitter, so a fleet that lost its control
/// plane at the same moment does not reconnect in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);
    const CAP: Duration = Duration::from_secs(30);

    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        // The sub-second clock is a good enough jitter source and needs no RNG dependency.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let quarter = base.as_millis() as u64 / 4;
        base + Duration::from_millis(u64::from(nanos) % quarter.max(1))
    }

    pub(crate) fn reset(&mut self) {
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
        assert!(
            first >= Backoff::FIRST && first < Backoff::FIRST * 5 / 4 + Duration::from_millis(1)
        );
        let mut last = first;
        for _ in 0..20 {
            last = b.next_delay();
        }
        assert!(last >= Backoff::CAP && last <= Backoff::CAP * 5 / 4);
        b.reset();
        assert!(b.next_delay() < Backoff::FIRST * 2);
    }
}
