//! The served snapshot: a verified snapshot file, memory-mapped and read in place, behind an
//! [`ArcSwapOption`] so the feed follower can swap in a newer one while requests keep reading the
//! old one without a lock.
//!
//! This is the one module allowed `unsafe`, for two reasons, each explained where it happens:
//! mapping a file ([`Mmap::map`]) and reading the rkyv archive without re-validating it on every
//! request ([`rkyv::access_unchecked`]). Both rest on one invariant of the snapshot directory: a
//! file under its final `snapshot-*.snap` name is never modified. New snapshots are written to a
//! temporary name, verified and renamed into place ([`sling_shared::snapshot::write_atomic`]); old
//! ones are only ever deleted, and deleting a mapped file keeps its inode alive until the map is
//! dropped.
#![allow(
    unsafe_code,
    reason = "memory-mapping verified snapshot files and reading them in place; see module docs"
)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};
use memmap2::{Mmap, MmapMut};
use sling_shared::snapshot::{
    self, ArchivedSnapshotBody, Durability, HEADER_LEN, Header, SnapshotError,
};

/// A snapshot that passed [`snapshot::verify`], kept mapped for as long as anyone reads it.
pub struct LoadedSnapshot {
    /// Header fields, decoded once at load.
    header: Header,
    /// The whole file. Page-aligned, so the body at [`HEADER_LEN`] (a multiple of 16) is aligned
    /// for rkyv.
    map: Mmap,
    /// Where it came from (`None` for in-memory snapshots); for logs.
    path: Option<PathBuf>,
}

impl std::fmt::Debug for LoadedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedSnapshot")
            .field("header", &self.header)
            .field("path", &self.path)
            .finish()
    }
}

impl LoadedSnapshot {
    /// Maps and fully verifies a snapshot file. Blocking (reads and checksums the whole file): call
    /// it from `spawn_blocking`, never on a request's task.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let file = File::open(path)?;
        // SAFETY: snapshot files under their final name are never written again (module docs), nor
        // is the temp file `install` opens here after writing it; a concurrent delete or rename
        // does not change a mapped inode's contents.
        let map = unsafe { Mmap::map(&file)? };
        let header = snapshot::verify(&map)?;
        Ok(Self {
            header,
            map,
            path: Some(path.to_owned()),
        })
    }

    /// Verifies `bytes` and copies them into an anonymous read-only mapping: the same type the
    /// request path reads from files, for tests and tools that have a snapshot in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut map = MmapMut::map_anon(bytes.len().max(1))?;
        map[..bytes.len()].copy_from_slice(bytes);
        let map = map.make_read_only()?;
        // An empty input maps one byte, which `verify` refuses, so from here `map` is `bytes`.
        let header = snapshot::verify(&map)?;
        Ok(Self {
            header,
            map,
            path: None,
        })
    }

    /// The archived body, read in place.
    pub fn body(&self) -> &ArchivedSnapshotBody {
        // SAFETY: `snapshot::verify` ran on exactly these bytes when `self` was built (checksum,
        // length, rkyv structural validation), the map is read-only and the file behind it is never
        // modified (module docs), so the bytes are still a valid, aligned archive.
        unsafe { rkyv::access_unchecked::<ArchivedSnapshotBody>(&self.map[HEADER_LEN..]) }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Feed sequence the snapshot includes.
    pub fn seq(&self) -> u64 {
        self.header.feed_seq
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// Loads the newest snapshot in `dir` that passes verification, skipping (and logging) any that do
/// not. `Ok(None)` when the directory is missing or holds no good snapshot. Blocking.
pub fn load_newest(dir: &Path) -> std::io::Result<Option<LoadedSnapshot>> {
    let files = match snapshot::list_files(dir) {
        Ok(files) => files,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for (seq, path) in files {
        match LoadedSnapshot::open(&path) {
            Ok(loaded) if loaded.seq() == seq => return Ok(Some(loaded)),
            Ok(loaded) => tracing::warn!(
                path = %path.display(),
                name_seq = seq,
                header_seq = loaded.seq(),
                "snapshot file name and header disagree; skipping it"
            ),
            Err(error) => tracing::warn!(
                path = %path.display(),
                %error,
                "refusing snapshot file; trying an older one"
            ),
        }
    }
    Ok(None)
}

/// Why a downloaded snapshot was not installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("downloaded snapshot is invalid: {0}")]
    Invalid(#[from] SnapshotError),
    #[error("downloaded snapshot has sequence {got}, expected {expected}")]
    WrongSeq { expected: u64, got: u64 },
    #[error("downloaded snapshot has sequence {got}, not newer than the served {served}")]
    NotNewer { served: u64, got: u64 },
    #[error("writing snapshot file: {0}")]
    Io(#[from] std::io::Error),
}

/// Stores a downloaded snapshot (the chunks as they arrived) in `dir` and maps it: the chunks are
/// written to a temp file, the mapped temp file is verified, and only then is it renamed to its
/// final name, so a corrupt or truncated download never becomes a file the proxy would load. One
/// pass over the bytes checks both the download and what the disk holds, with no joined copy of
/// the chunks; it also faults the whole map in here, off the request thread. A snapshot not newer
/// than `served_seq` is refused before the rename, so the file being served is never replaced.
/// Blocking.
pub fn install<B: AsRef<[u8]>>(
    dir: &Path,
    chunks: &[B],
    expected_seq: Option<u64>,
    served_seq: u64,
) -> Result<LoadedSnapshot, InstallError> {
    // Not fsynced here: `crate::snapshot_files` makes the served file durable later, off the
    // swap, and keeps an older durable file until it has.
    let tmp = snapshot::write_temp(dir, "download", chunks, Durability::PageCache)?;
    let installed = map_and_publish(dir, &tmp, expected_seq, served_seq);
    if installed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    installed
}

fn map_and_publish(
    dir: &Path,
    tmp: &Path,
    expected_seq: Option<u64>,
    served_seq: u64,
) -> Result<LoadedSnapshot, InstallError> {
    let mut loaded = LoadedSnapshot::open(tmp)?;
    let got = loaded.seq();
    if got <= served_seq {
        return Err(InstallError::NotNewer {
            served: served_seq,
            got,
        });
    }
    if let Some(expected) = expected_seq
        && got != expected
    {
        return Err(InstallError::WrongSeq { expected, got });
    }
    loaded.path = Some(snapshot::publish_temp(
        tmp,
        dir,
        got,
        Durability::PageCache,
    )?);
    Ok(loaded)
}

/// The currently served snapshot, swappable without blocking readers.
#[derive(Debug, Default)]
pub struct SnapshotStore {
    current: ArcSwapOption<LoadedSnapshot>,
}

impl SnapshotStore {
    pub fn new(initial: Option<LoadedSnapshot>) -> Self {
        Self {
            current: ArcSwapOption::new(initial.map(Arc::new)),
        }
    }

    /// A cheap, lock-free read guard. Hold it only for the synchronous part of a request.
    pub fn load(&self) -> Guard<Option<Arc<LoadedSnapshot>>> {
        self.current.load()
    }

    /// Sequence of the served snapshot, 0 when there is none.
    pub fn seq(&self) -> u64 {
        self.current.load().as_ref().map_or(0, |s| s.seq())
    }

    /// Serves `next` from now on. Requests that already hold the old one finish with it; its map
    /// is released when the last of them drops its guard.
    pub fn swap(&self, next: Arc<LoadedSnapshot>) {
        self.current.store(Some(next));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sling_shared::link::LinkRecord;
    use sling_shared::snapshot::{SnapshotBody, encode, write_atomic};

    fn body(dest: &str) -> SnapshotBody {
        let mut b = SnapshotBody::new("localhost");
        b.insert_link("localhost", "abc", LinkRecord::plain("l1", dest));
        b
    }

    fn dest(s: &LoadedSnapshot) -> String {
        s.body()
            .domain("localhost")
            .and_then(|d| d.link("abc"))
            .unwrap()
            .destination_url
            .to_string()
    }

    #[test]
    fn refuses_corrupt_and_truncated_files_and_keeps_the_good_one() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(
            dir.path(),
            5,
            &encode(&body("https://good/"), 5, 0).unwrap(),
        )
        .unwrap();

        let mut flipped = encode(&body("https://flipped/"), 6, 0).unwrap();
        let at = flipped.len() - 5;
        flipped[at] ^= 0x01;
        write_atomic(dir.path(), 6, &flipped).unwrap();
        let truncated = encode(&body("https://truncated/"), 7, 0).unwrap();
        write_atomic(dir.path(), 7, &truncated[..truncated.len() - 10]).unwrap();

        let loaded = load_newest(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.seq(), 5);
        assert_eq!(dest(&loaded), "https://good/");

        // A corrupt download is refused, leaves no final-named file, and the old one keeps serving.
        let store = SnapshotStore::new(Some(loaded));
        let mut bad = encode(&body("https://bad/"), 9, 0).unwrap();
        let at = bad.len() - 7;
        bad[at] ^= 0x80;
        assert!(matches!(
            install(dir.path(), &[&bad[..4], &bad[4..]], Some(9), 5),
            Err(InstallError::Invalid(_))
        ));
        let short = encode(&body("https://short/"), 9, 0).unwrap();
        assert!(install(dir.path(), &[&short[..short.len() / 2]], Some(9), 5).is_err());
        assert!(!dir.path().join(snapshot::file_name(9)).exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
        assert_eq!(dest(store.load().as_ref().unwrap()), "https://good/");

        // A good download is installed and swapped in.
        let good = encode(&body("https://newer/"), 9, 0).unwrap();
        assert!(matches!(
            install(dir.path(), &[&good], Some(8), 5),
            Err(InstallError::WrongSeq { .. })
        ));
        assert!(matches!(
            install(dir.path(), &[&good], None, 9),
            Err(InstallError::NotNewer { .. })
        ));
        let next = install(dir.path(), &[&good[..100], &good[100..]], Some(9), 5).unwrap();
        store.swap(Arc::new(next));
        assert_eq!(store.seq(), 9);
        assert_eq!(dest(store.load().as_ref().unwrap()), "https://newer/");
    }

    #[test]
    fn missing_or_empty_dir_has_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_newest(dir.path()).unwrap().is_none());
        assert!(load_newest(&dir.path().join("nope")).unwrap().is_none());
    }

    #[test]
    fn in_memory_snapshots_read_like_files() {
        let s = LoadedSnapshot::from_bytes(&encode(&body("https://mem/"), 3, 0).unwrap()).unwrap();
        assert_eq!((s.seq(), dest(&s).as_str()), (3, "https://mem/"));
        assert!(LoadedSnapshot::from_bytes(&[]).is_err());
    }
}
