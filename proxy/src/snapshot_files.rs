//! Which downloaded snapshot files the proxy keeps on disk, and when they reach the disk.
//!
//! A downloaded snapshot is installed from the page cache, without an fsync. Under a stream of
//! publishes (one every 100 ms) an fsync per file wrote every snapshot to disk, although most are
//! replaced and deleted before the kernel would write them back (the `swap` bench: 127–147 MiB
//! per swapping run then, 9 MiB now). Instead, [`DURABLE_AFTER`] after an install the file then
//! served is fsynced on an idle-priority thread, and pruning always keeps the newest file known to
//! be fsynced. A power loss therefore leaves at least one good snapshot for a restart without the
//! control plane: [`crate::snapshot::load_newest`] refuses a damaged newer file and falls back.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::snapshot::{self, InstallError, LoadedSnapshot, SnapshotStore};

/// How long a newly installed snapshot may live only in the page cache. Bounds how stale the
/// snapshot a proxy restarts with after a power loss can be (the feed then catches it up), and
/// makes a stream of swaps cost one fsync per interval instead of one per swap.
pub const DURABLE_AFTER: Duration = Duration::from_secs(2);
/// Older snapshot files kept besides the served one and the durable one.
const KEEP_OLDER: usize = 1;

/// The proxy's snapshot directory, as the feed follower changes it.
#[derive(Debug)]
pub struct SnapshotFiles {
    dir: PathBuf,
    durable_after: Duration,
    /// The snapshot served at start. It and older files come from earlier runs, so any of them
    /// may be the one on disk until this run has synced one; later files never are.
    loaded_at_start: u64,
    marks: Mutex<Marks>,
    installed: Notify,
}

/// Files pruning must not delete besides the served one.
#[derive(Debug, Default)]
struct Marks {
    /// Newest file known to be fsynced; `None` until the first sync (a file loaded at start may
    /// be one a previous run never synced).
    durable: Option<u64>,
    /// The file being fsynced right now.
    syncing: Option<u64>,
}

impl SnapshotFiles {
    pub fn new(dir: &Path, durable_after: Duration, loaded_at_start: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            durable_after,
            loaded_at_start,
            marks: Mutex::default(),
            installed: Notify::new(),
        }
    }

    fn marks(&self) -> MutexGuard<'_, Marks> {
        // The marks are two plain numbers, valid whatever a panicking holder was doing.
        self.marks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the syncer a new file is served. Cheap; never waits.
    pub fn installed(&self) {
        self.installed.notify_one();
    }

    /// Makes the served file durable `durable_after` after each install (and once at start, for
    /// the file loaded from disk). Runs until dropped; one sync at a time, and installs during a
    /// sync lead to one more.
    pub async fn sync_served(&self, store: &SnapshotStore) {
        self.installed();
        loop {
            self.installed.notified().await;
            tokio::time::sleep(self.durable_after).await;
            self.sync_once(store).await;
        }
    }

    async fn sync_once(&self, store: &SnapshotStore) {
        let Some((seq, path)) = self.start_sync(store) else {
            return;
        };
        let dir = self.dir.clone();
        let synced = crate::idle::run("snapshot-sync", move || {
            sling_shared::snapshot::make_durable(&path, &dir)
        })
        .await;
        self.finish_sync(seq, synced);
    }

    /// Marks the served file as being synced, so no prune deletes it meanwhile. A prune that ran
    /// before kept it too, as the newest file older than the one being installed; only a stale
    /// file left between the two (one refused at start) could have taken that place, and then the
    /// sync's open fails and nothing is marked durable. `None` when there is nothing to sync.
    fn start_sync(&self, store: &SnapshotStore) -> Option<(u64, PathBuf)> {
        let mut marks = self.marks();
        let served = store.load();
        let served = served.as_ref()?;
        let seq = served.seq();
        if marks.durable.is_some_and(|d| d >= seq) {
            return None;
        }
        let path = served.path()?.to_path_buf();
        marks.syncing = Some(seq);
        Some((seq, path))
    }

    fn finish_sync(&self, seq: u64, synced: Option<std::io::Result<()>>) {
        let mut marks = self.marks();
        marks.syncing = None;
        match synced {
            Some(Ok(())) => marks.durable = Some(seq),
            Some(Err(error)) => {
                tracing::warn!(%error, seq, "fsync of the served snapshot failed; retrying after the next install");
            }
            None => tracing::warn!(seq, "the snapshot sync thread failed"),
        }
    }

    /// Newest snapshot file known to be on disk.
    #[cfg(test)]
    fn durable_seq(&self) -> Option<u64> {
        self.marks().durable
    }

    /// Stores, verifies and maps a downloaded snapshot ([`snapshot::install`]), then deletes old
    /// files. Pruning before the swap is safe: it keeps the served file (the newest older one,
    /// or a marked one), and mapped readers survive a deleted file. Blocking.
    pub fn install<B: AsRef<[u8]>>(
        &self,
        chunks: &[B],
        expected_seq: Option<u64>,
        served_seq: u64,
    ) -> Result<LoadedSnapshot, InstallError> {
        let loaded = snapshot::install(&self.dir, chunks, expected_seq, served_seq)?;
        if let Err(error) = self.prune(loaded.seq()) {
            tracing::warn!(%error, dir = %self.dir.display(), "pruning old snapshots failed");
        }
        Ok(loaded)
    }

    /// Deletes old files: keeps the served one, [`KEEP_OLDER`] older ones, the durable one and the
    /// one being synced. Until the first sync completes, the files from earlier runs stand in for
    /// the durable one; files this run downloaded are known not to be on disk, so a failing disk
    /// cannot make them pile up. Blocking.
    fn prune(&self, served_seq: u64) -> std::io::Result<()> {
        let marks = self.marks();
        sling_shared::snapshot::prune(&self.dir, served_seq, KEEP_OLDER, |seq| {
            let durable = match marks.durable {
                Some(d) => seq == d,
                None => seq <= self.loaded_at_start,
            };
            durable || marks.syncing == Some(seq)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use sling_shared::link::LinkRecord;
    use sling_shared::snapshot::{SnapshotBody, encode, list_files, write_atomic};

    use super::*;

    fn bytes(seq: u64) -> Vec<u8> {
        let mut body = SnapshotBody::new("localhost");
        body.insert_link(
            "localhost",
            "s",
            LinkRecord::plain("l", "https://example.com/"),
        );
        encode(&body, seq, 0).unwrap()
    }

    fn on_disk(dir: &Path) -> Vec<u64> {
        list_files(dir)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// What the feed follower does with each downloaded snapshot.
    fn follow(files: &SnapshotFiles, store: &SnapshotStore, seq: u64) {
        let loaded = files
            .install(&[bytes(seq)], Some(seq), store.seq())
            .unwrap();
        store.swap(Arc::new(loaded));
        files.installed();
    }

    fn started_with_file_1(dir: &Path, durable_after: Duration) -> (SnapshotFiles, SnapshotStore) {
        let path = write_atomic(dir, 1, &bytes(1)).unwrap();
        let store = SnapshotStore::new(Some(LoadedSnapshot::open(&path).unwrap()));
        (SnapshotFiles::new(dir, durable_after, 1), store)
    }

    #[tokio::test]
    async fn pruning_never_deletes_the_last_durable_file_nor_the_one_being_synced() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let (files, store) = started_with_file_1(dir, DURABLE_AFTER);

        // Nothing synced yet: the file loaded at start may be the only one on disk, so it stays;
        // this run's downloads are known not to be, so they are pruned as usual.
        for seq in [2, 3, 4] {
            follow(&files, &store, seq);
        }
        assert_eq!(on_disk(dir), vec![4, 3, 1]);

        files.sync_once(&store).await;
        assert_eq!(files.durable_seq(), Some(4));
        // Another sync finds the served file durable already.
        assert!(files.start_sync(&store).is_none());
        follow(&files, &store, 5);
        // 4 is both the predecessor and the durable one.
        assert_eq!(on_disk(dir), vec![5, 4]);
        for seq in [6, 7] {
            follow(&files, &store, seq);
        }
        // 6 is the predecessor kept, 4 the durable one.
        assert_eq!(on_disk(dir), vec![7, 6, 4]);

        // While 7 is being synced, newer installs keep it too.
        let (syncing, path) = files.start_sync(&store).unwrap();
        assert_eq!(syncing, 7);
        for seq in [8, 9, 10] {
            follow(&files, &store, seq);
        }
        assert_eq!(on_disk(dir), vec![10, 9, 7, 4]);
        sling_shared::snapshot::make_durable(&path, dir).unwrap();
        files.finish_sync(7, Some(Ok(())));
        follow(&files, &store, 11);
        assert_eq!(on_disk(dir), vec![11, 10, 7]);

        // A failed sync leaves the older durable file in place.
        let (syncing, _) = files.start_sync(&store).unwrap();
        files.finish_sync(syncing, Some(Err(std::io::Error::other("disk gone"))));
        assert_eq!(files.durable_seq(), Some(7));
        follow(&files, &store, 12);
        assert_eq!(on_disk(dir), vec![12, 11, 7]);
    }

    #[tokio::test]
    async fn the_served_file_is_synced_a_while_after_each_install() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let (files, store) = started_with_file_1(dir, Duration::from_millis(20));
        let (files, store) = (Arc::new(files), Arc::new(store));
        let syncer = tokio::spawn({
            let (files, store) = (files.clone(), store.clone());
            async move { files.sync_served(&store).await }
        });
        let durable = |want: u64| {
            let files = files.clone();
            async move {
                for _ in 0..500 {
                    if files.durable_seq() == Some(want) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!(
                    "snapshot {want} never became durable: {:?}",
                    files.durable_seq()
                );
            }
        };
        // The file loaded at start, then each later one.
        durable(1).await;
        follow(&files, &store, 2);
        durable(2).await;
        follow(&files, &store, 3);
        follow(&files, &store, 4);
        durable(4).await;
        syncer.abort();
    }
}
