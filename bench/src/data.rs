//! The link set every side serves: N random slugs from a seeded RNG, with destination
//! `https://example.com/l/<index>`, written as a sling snapshot, as an nginx `map`, and as a
//! sample file of slugs the load generators pick from.
//!
//! Slugs are kept as integers (7 digits in base `ALPHABET.len()`), 8 bytes each, so 10M of them
//! cost 80 MB; the snapshot body itself has to be built whole because
//! [`sling_shared::snapshot::encode`] takes a complete `SnapshotBody`, and is dropped as soon as
//! it is encoded.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sling_shared::link::LinkRecord;
use sling_shared::slug::{ALPHABET, GENERATED_LEN};
use sling_shared::snapshot::{self, SnapshotBody};

/// The host the snapshot files its links under (the proxy's default domain).
pub const HOST: &str = "localhost";

/// N distinct slugs, in generation order.
pub struct LinkSet {
    codes: Vec<u64>,
}

impl LinkSet {
    /// Generates `n` distinct random slugs of [`GENERATED_LEN`] characters from `seed`.
    ///
    /// Distinct *ignoring case*: nginx's `map` lower-cases its keys (and the value looked up), so
    /// two slugs differing only in case would collide there — and at 10M random slugs several
    /// hundred such pairs occur. Reserved words are skipped as sling would.
    pub fn generate(n: u64, seed: u64) -> anyhow::Result<LinkSet> {
        let base = ALPHABET.len() as u64;
        let space = base.pow(GENERATED_LEN as u32);
        anyhow::ensure!(
            n < space / 100,
            "{n} links is too close to the {space} possible slugs"
        );
        let n = usize::try_from(n).context("link count does not fit in memory")?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut folded = HashSet::with_capacity(n);
        let mut codes = Vec::with_capacity(n);
        while codes.len() < n {
            let code = rng.random_range(0..space);
            let slug = slug_of(code);
            if sling_shared::slug::is_reserved(std::str::from_utf8(&slug).unwrap_or_default()) {
                continue;
            }
            // The lower-cased slug packed into a u64: 8 bytes a slug in the set.
            let mut key = [0u8; 8];
            for (k, b) in key.iter_mut().zip(slug) {
                *k = b.to_ascii_lowercase();
            }
            if folded.insert(u64::from_le_bytes(key)) {
                codes.push(code);
            }
        }
        Ok(LinkSet { codes })
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// The slug of link `i`.
    pub fn slug(&self, i: usize) -> String {
        String::from_utf8_lossy(&slug_of(self.codes[i])).into_owned()
    }

    /// The destination of link `i`.
    pub fn destination(i: usize) -> String {
        format!("https://example.com/l/{i}")
    }

    /// Builds the snapshot body, encodes it and writes it atomically into `dir` as feed sequence
    /// `seq`.
    pub fn write_snapshot(&self, dir: &Path, seq: u64) -> anyhow::Result<SnapshotBuild> {
        let started = Instant::now();
        let mut body = SnapshotBody::new(HOST);
        if let Some(domain) = body.domains.get_mut(HOST) {
            domain.links.reserve(self.len());
        }
        for i in 0..self.len() {
            body.insert_link(
                HOST,
                self.slug(i),
                LinkRecord::plain(format!("lnk_{i}"), Self::destination(i)),
            );
        }
        let body_ms = started.elapsed().as_secs_f64() * 1e3;
        let encode_started = Instant::now();
        let created_ms = jiff::Timestamp::now().as_millisecond();
        let bytes = snapshot::encode(&body, seq, created_ms).context("encoding the snapshot")?;
        drop(body);
        let encode_ms = encode_started.elapsed().as_secs_f64() * 1e3;
        let write_started = Instant::now();
        let path = snapshot::write_atomic(dir, seq, &bytes)
            .with_context(|| format!("writing the snapshot into {}", dir.display()))?;
        let write_ms = write_started.elapsed().as_secs_f64() * 1e3;
        Ok(SnapshotBuild {
            path,
            bytes: bytes.len() as u64,
            body_ms,
            encode_ms,
            write_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Writes the nginx `map` body: one `/slug destination;` line per link.
    pub fn write_nginx_map(&self, path: &Path) -> anyhow::Result<()> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        for i in 0..self.len() {
            writeln!(w, "/{} {};", self.slug(i), Self::destination(i))?;
        }
        w.flush()?;
        Ok(())
    }

    /// Writes `k` slugs chosen at random (distinct when `k` < N) to `path`, one per line, and
    /// returns their indexes.
    pub fn write_sample(&self, path: &Path, k: usize, seed: u64) -> anyhow::Result<Vec<usize>> {
        let indexes: Vec<usize> = if k >= self.len() {
            (0..self.len()).collect()
        } else {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5a5a_5a5a);
            rand::seq::index::sample(&mut rng, self.len(), k).into_vec()
        };
        write_lines(path, indexes.iter().map(|&i| self.slug(i)))?;
        Ok(indexes)
    }
}

/// Writes one line per item.
pub fn write_lines(path: &Path, lines: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(file);
    for line in lines {
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    Ok(())
}

/// What writing a snapshot cost.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotBuild {
    pub path: PathBuf,
    pub bytes: u64,
    /// Building the in-memory `SnapshotBody`.
    pub body_ms: f64,
    /// `snapshot::encode` (rkyv archive + header + checksum).
    pub encode_ms: f64,
    /// `snapshot::write_atomic` (write, fsync, rename, fsync dir).
    pub write_ms: f64,
    pub total_ms: f64,
}

/// The slug a code stands for.
fn slug_of(mut code: u64) -> [u8; GENERATED_LEN] {
    let base = ALPHABET.len() as u64;
    let mut out = [0u8; GENERATED_LEN];
    for b in out.iter_mut().rev() {
        *b = ALPHABET[(code % base) as usize];
        code /= base;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn slugs_are_valid_distinct_ignoring_case_and_reproducible() {
        let a = LinkSet::generate(20_000, 7).unwrap();
        let b = LinkSet::generate(20_000, 7).unwrap();
        let mut seen = HashSet::new();
        for i in 0..a.len() {
            let s = a.slug(i);
            assert_eq!(s, b.slug(i));
            assert_eq!(sling_shared::slug::validate(&s), Ok(()));
            assert!(seen.insert(s.to_ascii_lowercase()), "{s}");
        }
    }

    #[test]
    fn snapshot_holds_every_link() {
        let set = LinkSet::generate(1_000, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let build = set.write_snapshot(dir.path(), 9).unwrap();
        let bytes = std::fs::read(&build.path).unwrap();
        let (header, body) = snapshot::decode(&bytes).unwrap();
        assert_eq!((header.feed_seq, header.link_count), (9, 1_000));
        let link = &body.domains[HOST].links[&set.slug(17)];
        assert_eq!(link.destination_url, "https://example.com/l/17");
    }
}
