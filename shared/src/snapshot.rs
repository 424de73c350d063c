//! The snapshot file: every domain and link the proxies serve, as of one feed sequence.
//!
//! Layout: a fixed [`HEADER_LEN`]-byte little-endian header, then an rkyv-archived
//! [`SnapshotBody`]. The body is read in place from a memory map: looking up `(host, slug)` is two
//! hash-map probes in the archive, with no deserialisation.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `SLINGSNP` |
//! | 8 | 4 | format version ([`FORMAT_VERSION`]) |
//! | 12 | 4 | header length (64) |
//! | 16 | 8 | feed sequence the snapshot includes |
//! | 24 | 8 | link count |
//! | 32 | 8 | body length in bytes |
//! | 40 | 8 | xxh3-64 checksum of the body |
//! | 48 | 8 | creation time, unix milliseconds |
//! | 56 | 8 | reserved, zero |
//!
//! A file is accepted only if the header is sound, the file is exactly header + body long (so a
//! truncated download is refused), the checksum matches, the archive passes rkyv's structural
//! validation, and the link count agrees with the archive.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::feed::ChangeOp;
use crate::link::{
    ArchivedBioPage, ArchivedDomainRecord, ArchivedLinkRecord, BioPage, DomainRecord, LinkRecord,
};

pub const MAGIC: [u8; 8] = *b"SLINGSNP";
/// 2: `LinkRecord::click_limit_reached`. 3: `DomainRecord::pages`.
pub const FORMAT_VERSION: u32 = 4;
/// A multiple of 16, so the body of a page-aligned mapping is aligned for rkyv.
pub const HEADER_LEN: usize = 64;
const FILE_PREFIX: &str = "snapshot-";
const FILE_SUFFIX: &str = ".snap";

/// The archived part of a snapshot.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq, Default,
)]
pub struct SnapshotBody {
    /// Host that unknown hosts fall back to.
    pub default_host: String,
    /// Normalised host → domain (with its links).
    pub domains: HashMap<String, DomainRecord>,
}

impl SnapshotBody {
    pub fn new(default_host: impl Into<String>) -> Self {
        let default_host = default_host.into();
        let mut body = Self {
            default_host: default_host.clone(),
            domains: HashMap::new(),
        };
        body.domains.insert(
            default_host.clone(),
            DomainRecord {
                id: String::new(),
                host: default_host,
                ..Default::default()
            },
        );
        body
    }

    /// Adds a link, creating a bare domain record for `host` if it has none yet.
    pub fn insert_link(&mut self, host: &str, slug: impl Into<String>, link: LinkRecord) {
        self.domain_entry(host).links.insert(slug.into(), link);
    }

    /// Adds a published bio page, creating a bare domain record for `host` if it has none yet.
    pub fn insert_bio_page(&mut self, host: &str, handle: impl Into<String>, page: BioPage) {
        self.domain_entry(host)
            .bio_pages
            .insert(handle.into(), page);
    }

    fn domain_entry(&mut self, host: &str) -> &mut DomainRecord {
        self.domains
            .entry(host.to_owned())
            .or_insert_with(|| DomainRecord {
                host: host.to_owned(),
                ..Default::default()
            })
    }

    pub fn link_count(&self) -> u64 {
        self.domains.values().map(|d| d.links.len() as u64).sum()
    }

    /// Applies one feed change, so a publisher can build the next snapshot from the last one
    /// instead of re-reading every link. Every change carries the whole new state of its key, so
    /// the result is what a full read at that sequence gives.
    pub fn apply(&mut self, op: &ChangeOp) {
        match op {
            ChangeOp::UpsertLink { host, slug, link } => {
                self.insert_link(host, slug.clone(), (**link).clone());
            }
            ChangeOp::DeleteLink { host, slug } => {
                if let Some(d) = self.domains.get_mut(host) {
                    d.links.remove(slug);
                }
            }
            ChangeOp::UpsertBioPage { host, handle, page } => {
                self.insert_bio_page(host, handle.clone(), (**page).clone());
            }
            ChangeOp::DeleteBioPage { host, handle } => {
                if let Some(d) = self.domains.get_mut(host) {
                    d.bio_pages.remove(handle);
                }
            }
            ChangeOp::UpsertDomain {
                id,
                host,
                root_redirect,
                not_found_redirect,
                pages,
            } => {
                let d = self.domains.entry(host.clone()).or_default();
                d.id.clone_from(id);
                d.host.clone_from(host);
                d.root_redirect.clone_from(root_redirect);
                d.not_found_redirect.clone_from(not_found_redirect);
                d.pages.clone_from(pages);
            }
            ChangeOp::DeleteDomain { host } => {
                self.domains.remove(host);
                // The default host always has a record, as in a fresh body.
                if *host == self.default_host {
                    let fresh = Self::new(host.clone());
                    self.domains.extend(fresh.domains);
                }
            }
            ChangeOp::TlsChanged => {}
        }
    }
}

impl ArchivedSnapshotBody {
    /// The domain stored under an already-normalised host.
    pub fn domain(&self, host: &str) -> Option<&ArchivedDomainRecord> {
        self.domains.get(host)
    }

    pub fn default_domain(&self) -> Option<&ArchivedDomainRecord> {
        self.domains.get(self.default_host.as_str())
    }

    pub fn link_count(&self) -> u64 {
        self.domains.values().map(|d| d.links.len() as u64).sum()
    }
}

impl ArchivedDomainRecord {
    pub fn link(&self, slug: &str) -> Option<&ArchivedLinkRecord> {
        self.links.get(slug)
    }

    pub fn bio_page(&self, handle: &str) -> Option<&ArchivedBioPage> {
        self.bio_pages.get(handle)
    }
}

/// The decoded fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format_version: u32,
    pub feed_seq: u64,
    pub link_count: u64,
    pub body_len: u64,
    pub checksum: u64,
    pub created_at_ms: i64,
}

impl Header {
    /// Refuses a file of `actual` bytes that is not exactly this header and its body.
    fn check_len(&self, actual: u64) -> Result<(), SnapshotError> {
        let expected = HEADER_LEN as u64 + self.body_len;
        if actual != expected {
            return Err(SnapshotError::Length { expected, actual });
        }
        Ok(())
    }

    /// Refuses a body whose xxh3 is not the one this header recorded.
    fn check_sum(&self, actual: u64) -> Result<(), SnapshotError> {
        if actual != self.checksum {
            return Err(SnapshotError::Checksum {
                expected: self.checksum,
                actual,
            });
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("file is shorter than the {HEADER_LEN}-byte header")]
    TooShort,
    #[error("bad magic: not a sling snapshot")]
    BadMagic,
    #[error("unsupported snapshot format version {0}")]
    UnsupportedVersion(u32),
    #[error("length mismatch: header says {expected} bytes, file has {actual}")]
    Length { expected: u64, actual: u64 },
    #[error("checksum mismatch: header {expected:016x}, body {actual:016x}")]
    Checksum { expected: u64, actual: u64 },
    #[error("archive failed structural validation: {0}")]
    Structure(String),
    #[error("header link count {header} disagrees with archive ({archive})")]
    LinkCount { header: u64, archive: u64 },
    #[error("snapshot i/o: {0}")]
    Io(#[from] io::Error),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A snapshot as its two parts. Writers put both into the file without first copying the body
/// (gigabytes at ten million links) into one buffer with the header.
pub struct Encoded {
    pub header: [u8; HEADER_LEN],
    pub body: AlignedVec,
}

impl Encoded {
    /// Header and body in one buffer (tests and in-memory use).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.body);
        out
    }
}

/// Serialises a snapshot into its header and archived body. `capacity` is the body size expected
/// (a publisher knows its previous one): an output buffer of the right size is never grown, and
/// each growth copies everything written so far. 0 when unknown.
pub fn encode_parts(
    body: &SnapshotBody,
    feed_seq: u64,
    created_at_ms: i64,
    capacity: usize,
) -> Result<Encoded, SnapshotError> {
    let archived =
        rkyv::api::high::to_bytes_in::<_, rancor::Error>(body, AlignedVec::with_capacity(capacity))
            .map_err(|e| SnapshotError::Structure(e.to_string()))?;
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    header[16..24].copy_from_slice(&feed_seq.to_le_bytes());
    header[24..32].copy_from_slice(&body.link_count().to_le_bytes());
    header[32..40].copy_from_slice(&(archived.len() as u64).to_le_bytes());
    header[40..48].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(&archived).to_le_bytes());
    header[48..56].copy_from_slice(&created_at_ms.to_le_bytes());
    Ok(Encoded {
        header,
        body: archived,
    })
}

/// Serialises a snapshot into one buffer: header followed by the archived body.
pub fn encode(
    body: &SnapshotBody,
    feed_seq: u64,
    created_at_ms: i64,
) -> Result<Vec<u8>, SnapshotError> {
    Ok(encode_parts(body, feed_seq, created_at_ms, 0)?.to_vec())
}

/// Decodes the header alone (cheap; used to pick the newest file before verifying it).
pub fn parse_header(bytes: &[u8]) -> Result<Header, SnapshotError> {
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotError::TooShort);
    }
    if bytes[..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let format_version = u32_at(bytes, 8);
    if format_version != FORMAT_VERSION || u32_at(bytes, 12) as usize != HEADER_LEN {
        return Err(SnapshotError::UnsupportedVersion(format_version));
    }
    Ok(Header {
        format_version,
        feed_seq: u64_at(bytes, 16),
        link_count: u64_at(bytes, 24),
        body_len: u64_at(bytes, 32),
        checksum: u64_at(bytes, 40),
        created_at_ms: u64_at(bytes, 48) as i64,
    })
}

/// Fully verifies a snapshot file's bytes: header, exact length, checksum, archive structure and
/// link count. On success the body may be read with [`access_unchecked`](rkyv::access_unchecked)
/// for as long as the bytes do not change.
pub fn verify(bytes: &[u8]) -> Result<Header, SnapshotError> {
    let header = parse_header(bytes)?;
    header.check_len(bytes.len() as u64)?;
    let body = &bytes[HEADER_LEN..];
    header.check_sum(xxhash_rust::xxh3::xxh3_64(body))?;
    let count = if (body.as_ptr() as usize).is_multiple_of(16) {
        access_body(body)?.link_count()
    } else {
        // Only in-memory buffers land here; mapped files are page-aligned.
        let mut aligned = AlignedVec::<16>::with_capacity(body.len());
        aligned.extend_from_slice(body);
        access_body(&aligned)?.link_count()
    };
    if count != header.link_count {
        return Err(SnapshotError::LinkCount {
            header: header.link_count,
            archive: count,
        });
    }
    Ok(header)
}

/// Checks a snapshot file on disk without holding it in memory: header, exact length and the
/// body's checksum, read in 1 MiB pieces. It proves the file is the bytes a writer produced (what
/// a power loss can damage), not the archive's structure, which [`verify`] checks before anything
/// reads the body in place; the control plane, which only serves its files, needs no more at start.
pub fn check_file(path: &Path) -> Result<Header, SnapshotError> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let actual = f.metadata()?.len();
    if actual < HEADER_LEN as u64 {
        return Err(SnapshotError::TooShort);
    }
    let mut head = [0u8; HEADER_LEN];
    f.read_exact(&mut head)?;
    let header = parse_header(&head)?;
    header.check_len(actual)?;
    // A file that changed length while read hashes differently, so the sum catches that too.
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    io::copy(&mut io::BufReader::with_capacity(1 << 20, f), &mut hasher)?;
    header.check_sum(hasher.digest())?;
    Ok(header)
}

/// Validating access to an archived body (aligned to 16 bytes).
pub fn access_body(body: &[u8]) -> Result<&ArchivedSnapshotBody, SnapshotError> {
    rkyv::access::<ArchivedSnapshotBody, rancor::Error>(body)
        .map_err(|e| SnapshotError::Structure(e.to_string()))
}

/// Decodes a whole snapshot into owned values (tests and tools; the proxy reads in place).
pub fn decode(bytes: &[u8]) -> Result<(Header, SnapshotBody), SnapshotError> {
    let header = verify(bytes)?;
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len() - HEADER_LEN);
    aligned.extend_from_slice(&bytes[HEADER_LEN..]);
    let body = rkyv::from_bytes::<SnapshotBody, rancor::Error>(&aligned)
        .map_err(|e| SnapshotError::Structure(e.to_string()))?;
    Ok((header, body))
}

/// File name of the snapshot for a feed sequence; names sort in sequence order.
pub fn file_name(feed_seq: u64) -> String {
    format!("{FILE_PREFIX}{feed_seq:020}{FILE_SUFFIX}")
}

/// Snapshot files in `dir`, newest (highest sequence) first. Unverified: callers verify.
pub fn list_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(seq) = name
            .strip_prefix(FILE_PREFIX)
            .and_then(|s| s.strip_suffix(FILE_SUFFIX))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(out)
}

/// Writes `bytes` as the snapshot for `feed_seq` in `dir` atomically: a temp file in the same
/// directory, fsync, rename, fsync of the directory. Readers never see a partial file under the
/// final name, and a file is never modified once it has that name (the proxy maps it).
pub fn write_atomic(dir: &Path, feed_seq: u64, bytes: &[u8]) -> io::Result<PathBuf> {
    write_atomic_parts(dir, feed_seq, &[bytes])
}

/// [`write_atomic`] for a file made of several parts written back to back.
pub fn write_atomic_parts(dir: &Path, feed_seq: u64, parts: &[&[u8]]) -> io::Result<PathBuf> {
    let tmp_path = write_temp(dir, &file_name(feed_seq), parts, Durability::Fsync)?;
    publish_temp(&tmp_path, dir, feed_seq, Durability::Fsync)
}

/// Whether a write waits for the disk. A file written with [`Durability::PageCache`] is whole for
/// every reader and survives the process, but a power loss may leave it damaged or missing until
/// [`make_durable`] has run; [`verify`] refuses such a file and loaders fall back to an older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Fsync,
    PageCache,
}

/// The first half of [`write_atomic_parts`]: writes `parts` to a temp file in `dir` (created if
/// missing), fsynced when asked. The name, from `label`, is one [`prune`] removes if it is left
/// behind, and one [`list_files`] never returns, so the file can be checked before it is published.
pub fn write_temp<B: AsRef<[u8]>>(
    dir: &Path,
    label: &str,
    parts: &[B],
    durability: Durability,
) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let tmp_path = dir.join(format!(".{label}.{}.tmp", std::process::id()));
    let mut f = File::create(&tmp_path)?;
    for part in parts {
        f.write_all(part.as_ref())?;
    }
    if durability == Durability::Fsync {
        f.sync_all()?;
    }
    Ok(tmp_path)
}

/// The second half: renames a complete temp file to the snapshot name for `feed_seq`, and when
/// asked fsyncs the directory, so the rename survives a crash.
pub fn publish_temp(
    tmp_path: &Path,
    dir: &Path,
    feed_seq: u64,
    durability: Durability,
) -> io::Result<PathBuf> {
    let final_path = dir.join(file_name(feed_seq));
    fs::rename(tmp_path, &final_path)?;
    if durability == Durability::Fsync {
        sync_dir(dir)?;
    }
    Ok(final_path)
}

/// Fsyncs a directory, so renames and creations in it survive a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes a file published with [`Durability::PageCache`] survive a power loss: fsyncs it, then
/// its directory (for the rename).
pub fn make_durable(path: &Path, dir: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()?;
    sync_dir(dir)
}

/// Deletes snapshot files older than `served_seq` beyond the `keep_older` newest of them, except
/// those `also_keep` names (and deletes stale temp files). Files at or above `served_seq` are never
/// touched: the served file must survive, and a newer file that failed verification is not
/// evidence that older good ones can go.
pub fn prune(
    dir: &Path,
    served_seq: u64,
    keep_older: usize,
    also_keep: impl Fn(u64) -> bool,
) -> io::Result<()> {
    let older = list_files(dir)?
        .into_iter()
        .filter(|(seq, _)| *seq < served_seq)
        .skip(keep_older)
        .filter(|(seq, _)| !also_keep(*seq));
    for (_, path) in older {
        if let Err(e) = fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(e);
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
        {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapshotBody {
        let mut body = SnapshotBody::new("localhost");
        body.insert_link(
            "localhost",
            "abc",
            LinkRecord::plain("lnk_1", "https://example.com/a"),
        );
        body.insert_link(
            "go.example.com",
            "xyz",
            LinkRecord::plain("lnk_2", "https://example.com/b"),
        );
        body
    }

    #[test]
    fn applying_changes_keeps_links_across_domain_updates_and_the_default_host_always_known() {
        let mut body = sample();
        body.apply(&ChangeOp::UpsertDomain {
            id: "dom_1".into(),
            host: "go.example.com".into(),
            root_redirect: Some("https://example.com/root".into()),
            not_found_redirect: None,
            pages: Default::default(),
        });
        let d = &body.domains["go.example.com"];
        assert_eq!(
            (d.id.as_str(), d.links.len()),
            ("dom_1", 1),
            "settings change, links stay"
        );
        body.apply(&ChangeOp::UpsertLink {
            host: "new.example".into(),
            slug: "n".into(),
            link: Box::new(LinkRecord::plain("lnk_3", "https://example.com/n")),
        });
        body.apply(&ChangeOp::DeleteLink {
            host: "localhost".into(),
            slug: "abc".into(),
        });
        body.apply(&ChangeOp::DeleteLink {
            host: "nowhere.example".into(),
            slug: "abc".into(),
        });
        assert_eq!(body.link_count(), 2);
        body.apply(&ChangeOp::DeleteDomain {
            host: "go.example.com".into(),
        });
        body.apply(&ChangeOp::DeleteDomain {
            host: "localhost".into(),
        });
        body.apply(&ChangeOp::TlsChanged);
        let mut expected = SnapshotBody::new("localhost");
        expected.insert_link(
            "new.example",
            "n",
            LinkRecord::plain("lnk_3", "https://example.com/n"),
        );
        assert_eq!(body, expected);
    }

    #[test]
    fn round_trip_and_lookup() {
        let bytes = encode(&sample(), 42, 1_700_000_000_000).unwrap();
        let header = verify(&bytes).unwrap();
        assert_eq!((header.feed_seq, header.link_count), (42, 2));
        let (_, decoded) = decode(&bytes).unwrap();
        assert_eq!(decoded, sample());

        let mut aligned = AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes[HEADER_LEN..]);
        let view = access_body(&aligned).unwrap();
        let link = view
            .domain("localhost")
            .and_then(|d| d.link("abc"))
            .unwrap();
        assert_eq!(link.destination_url.as_str(), "https://example.com/a");
        assert!(view.domain("localhost").unwrap().link("nope").is_none());
        assert_eq!(view.default_domain().unwrap().host.as_str(), "localhost");
    }

    #[test]
    fn refuses_damage() {
        let bytes = encode(&sample(), 1, 0).unwrap();
        assert!(matches!(verify(&bytes[..10]), Err(SnapshotError::TooShort)));
        assert!(matches!(
            verify(&bytes[..bytes.len() - 1]),
            Err(SnapshotError::Length { .. })
        ));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0xff;
        assert!(matches!(
            verify(&flipped),
            Err(SnapshotError::Checksum { .. })
        ));
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert!(matches!(verify(&magic), Err(SnapshotError::BadMagic)));
        let mut version = bytes.clone();
        version[8] = 9;
        assert!(matches!(
            verify(&version),
            Err(SnapshotError::UnsupportedVersion(9))
        ));
        // A body that checksums correctly but is not a valid archive.
        let mut garbage = bytes[..HEADER_LEN].to_vec();
        let junk = vec![0xAB; 64];
        garbage[32..40].copy_from_slice(&(junk.len() as u64).to_le_bytes());
        garbage[40..48].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(&junk).to_le_bytes());
        garbage.extend_from_slice(&junk);
        assert!(matches!(verify(&garbage), Err(SnapshotError::Structure(_))));
    }

    /// The streaming file check accepts what a writer wrote, over more than one read buffer, and
    /// refuses a file cut short, grown, or with a changed byte: what a power loss can leave.
    #[test]
    fn the_file_check_refuses_the_damage_a_power_loss_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let mut body = SnapshotBody::new("localhost");
        for i in 0..12_000 {
            body.insert_link(
                "localhost",
                format!("s{i}"),
                LinkRecord::plain(format!("l{i}"), format!("https://example.com/{i}")),
            );
        }
        let bytes = encode(&body, 5, 0).unwrap();
        assert!(
            bytes.len() > 2 << 20,
            "{} bytes: spans several reads",
            bytes.len()
        );
        let good = write_atomic(dir.path(), 5, &bytes).unwrap();
        let header = check_file(&good).unwrap();
        assert_eq!((header.feed_seq, header.link_count), (5, 12_000));

        let damaged = |name: &str, content: &[u8]| {
            let path = dir.path().join(name);
            fs::write(&path, content).unwrap();
            check_file(&path)
        };
        assert!(matches!(
            damaged("short", &bytes[..bytes.len() / 2]),
            Err(SnapshotError::Length { .. })
        ));
        assert!(matches!(
            damaged("tiny", &bytes[..10]),
            Err(SnapshotError::TooShort)
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            damaged("long", &longer),
            Err(SnapshotError::Length { .. })
        ));
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        assert!(matches!(
            damaged("flipped", &flipped),
            Err(SnapshotError::Checksum { .. })
        ));
        // A page of zeros where data was: an unwritten block after a crash.
        let mut zeroed = bytes.clone();
        zeroed[HEADER_LEN + 4096..HEADER_LEN + 8192].fill(0);
        assert!(matches!(
            damaged("zeroed", &zeroed),
            Err(SnapshotError::Checksum { .. })
        ));
        assert!(matches!(
            check_file(&dir.path().join("missing")),
            Err(SnapshotError::Io(_))
        ));
    }

    #[test]
    fn files_are_written_atomically_and_listed_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        for seq in [3, 10, 7] {
            write_atomic(dir.path(), seq, &encode(&sample(), seq, 0).unwrap()).unwrap();
        }
        let seqs: Vec<u64> = list_files(dir.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(seqs, vec![10, 7, 3]);
        // Serving 7: 10 (newer, possibly damaged) and 7 stay; of the older ones only the newest
        // `keep_older` (1) does.
        write_atomic(dir.path(), 1, &encode(&sample(), 1, 0).unwrap()).unwrap();
        prune(dir.path(), 7, 1, |_| false).unwrap();
        let seqs: Vec<u64> = list_files(dir.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(seqs, vec![10, 7, 3]);
    }

    #[test]
    fn pruning_keeps_the_named_older_files_and_files_written_without_fsync_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let seqs = |dir: &Path| -> Vec<u64> {
            list_files(dir)
                .unwrap()
                .into_iter()
                .map(|(s, _)| s)
                .collect()
        };
        write_atomic(dir.path(), 2, &encode(&sample(), 2, 0).unwrap()).unwrap();
        for seq in [3, 4, 5, 6] {
            let bytes = encode(&sample(), seq, 0).unwrap();
            let tmp = write_temp(dir.path(), "t", &[&bytes], Durability::PageCache).unwrap();
            publish_temp(&tmp, dir.path(), seq, Durability::PageCache).unwrap();
        }
        prune(dir.path(), 6, 1, |_| true).unwrap();
        assert_eq!(seqs(dir.path()), vec![6, 5, 4, 3, 2]);
        // 5 is the kept predecessor, 2 and 3 the ones named; 4 goes.
        prune(dir.path(), 6, 1, |seq| seq == 2 || seq == 3).unwrap();
        assert_eq!(seqs(dir.path()), vec![6, 5, 3, 2]);
        make_durable(&dir.path().join(file_name(6)), dir.path()).unwrap();
        prune(dir.path(), 6, 1, |_| false).unwrap();
        assert_eq!(seqs(dir.path()), vec![6, 5]);
        let written = fs::read(dir.path().join(file_name(5))).unwrap();
        assert_eq!(verify(&written).unwrap().feed_seq, 5);
    }
}
