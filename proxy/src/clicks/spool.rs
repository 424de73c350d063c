//! The on-disk spool: click batches the control plane has not acknowledged yet.
//!
//! One file per batch, `batch-<batchId>.json`, holding exactly the JSON body that is POSTed. A file
//! is written to `.tmp-…`, fsync'd, renamed to its final name and the directory fsync'd, so a file
//! with a final name is always complete and survives a crash. A file is deleted only after the
//! control plane answered 200 for its batch id (a crash between the answer and the delete means the
//! batch is sent again; ingest is idempotent by batch id). Leftover `.tmp-` files (a crash while
//! writing) are removed on open; a final-named file that does not parse is renamed to `*.bad`
//! and kept for an operator rather than deleted or retried forever.
//!
//! Several threads (the shipper, the overflow spooler) and even several proxies sharing a directory
//! may write and replay concurrently: names are unique per batch and a delete of a file someone
//! else already deleted counts as success.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sling_shared::clicks::ClickBatch;

const PREFIX: &str = "batch-";
const SUFFIX: &str = ".json";
const TMP_PREFIX: &str = ".tmp-";

/// A spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// A batch encoded once, for both the POST body and the spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    pub batch_id: String,
    pub events: usize,
    /// The JSON [`ClickBatch`]; cheap to clone for each POST attempt.
    pub body: Bytes,
}

impl EncodedBatch {
    pub fn new(batch: &ClickBatch) -> Result<Self, serde_json::Error> {
        Ok(Self {
            batch_id: batch.batch_id.clone(),
            events: batch.events.len(),
            body: Bytes::from(serde_json::to_vec(batch)?),
        })
    }
}

/// A spooled batch found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub path: PathBuf,
    pub bytes: u64,
}

impl Spool {
    /// Creates the directory if needed and removes half-written temp files.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Durably stores `batch` (temp file, fsync, rename, directory fsync). Returns its size.
    pub fn write(&self, batch: &EncodedBatch) -> io::Result<u64> {
        let name = format!("{PREFIX}{}{SUFFIX}", batch.batch_id);
        let tmp = self.dir.join(format!("{TMP_PREFIX}{name}"));
        let result = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(&batch.body)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, self.dir.join(&name))?;
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| batch.body.len() as u64)
    }

    /// Spooled batches, oldest first (by modification time, then name).
    pub fn list(&self) -> io::Result<Vec<SpoolEntry>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(PREFIX) && name.ends_with(SUFFIX)) {
                continue;
            }
            // Gone already (another replayer) or unreadable: skip this round.
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().ok();
            found.push((modified, entry.path(), meta.len()));
        }
        found.sort();
        Ok(found
            .into_iter()
            .map(|(_, path, bytes)| SpoolEntry { path, bytes })
            .collect())
    }

    /// Files and bytes spooled.
    pub fn usage(&self) -> io::Result<(u64, u64)> {
        let list = self.list()?;
        Ok((list.len() as u64, list.iter().map(|e| e.bytes).sum()))
    }

    /// Reads a spooled batch. `Ok(None)`: it vanished meanwhile (delivered by someone else).
    /// A file that does not decode is set aside as `*.bad` and reported as an error.
    pub fn read(&self, entry: &SpoolEntry) -> io::Result<Option<(EncodedBatch, ClickBatch)>> {
        let body = match fs::read(&entry.path) {
            Ok(body) => body,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<ClickBatch>(&body) {
            Ok(batch) => Ok(Some((
                EncodedBatch {
                    batch_id: batch.batch_id.clone(),
                    events: batch.events.len(),
                    body: Bytes::from(body),
                },
                batch,
            ))),
            Err(error) => {
                let mut bad = entry.path.clone().into_os_string();
                bad.push(".bad");
                let _ = fs::rename(&entry.path, &bad);
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is not a click batch ({error}); set aside as *.bad",
                        entry.path.display()
                    ),
                ))
            }
        }
    }

    /// Deletes a delivered batch; already gone is fine.
    pub fn remove(&self, entry: &SpoolEntry) -> io::Result<()> {
        match fs::remove_file(&entry.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn batch(id: &str) -> ClickBatch {
        ClickBatch {
            batch_id: id.into(),
            proxy_id: "p".into(),
            events: Vec::new(),
        }
    }

    #[test]
    fn write_list_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".tmp-batch-x.json"), b"half").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert!(!dir.path().join(".tmp-batch-x.json").exists());
        let a = EncodedBatch::new(&batch("a")).unwrap();
        spool.write(&a).unwrap();
        spool
            .write(&EncodedBatch::new(&batch("b")).unwrap())
            .unwrap();
        let list = spool.list().unwrap();
        assert_eq!(list.len(), 2);
        let (files, bytes) = spool.usage().unwrap();
        assert_eq!(files, 2);
        assert!(bytes > 0);
        let (encoded, decoded) = spool.read(&list[0]).unwrap().unwrap();
        assert_eq!(decoded, batch("a"));
        assert_eq!(encoded.body, a.body);
        spool.remove(&list[0]).unwrap();
        spool.remove(&list[0]).unwrap(); // already gone
        assert_eq!(spool.read(&list[0]).unwrap(), None);
        assert_eq!(spool.list().unwrap().len(), 1);
    }

    #[test]
    fn corrupt_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("batch-z.json"), b"{not json").unwrap();
        let list = spool.list().unwrap();
        assert!(spool.read(&list[0]).is_err());
        assert!(spool.list().unwrap().is_empty());
        assert!(dir.path().join("batch-z.json.bad").exists());
    }
}
