//! Country of an address. Two real data sources, picked once at start:
//!
//! - a MaxMind-format database (`--geoip-db`: GeoIP2/GeoLite2 Country or City, DB-IP lite, …),
//!   read with the `maxminddb` crate;
//! - otherwise tor's range files as Debian ships them in `tor-geoipdb` (`/usr/share/tor/geoip`:
//!   `FROM,TO,CC` with IPv4 addresses as integers; `geoip6`: `FROM_IP,TO_IP,CC`), loaded into
//!   sorted vectors and binary-searched (IPv4 within the ranges of the address's /16 block).
//!   Free, updated with tor, no account needed.
//!
//! A trusted CDN header beats both; that choice is made in [`super::enrich`].

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use maxminddb::{PathElement, Reader};

/// A country source.
pub enum Geo {
    MaxMind(Box<Reader<Vec<u8>>>),
    Tor(TorGeoIp),
    None,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Geo::MaxMind(_) => f.write_str("Geo::MaxMind"),
            Geo::Tor(t) => write!(f, "Geo::Tor({} v4, {} v6 ranges)", t.v4.len(), t.v6.len()),
            Geo::None => f.write_str("Geo::None"),
        }
    }
}

impl Geo {
    /// Opens a MaxMind database (an error: the operator asked for it and it is unusable).
    pub fn maxmind(path: &Path) -> anyhow::Result<Self> {
        let reader = Reader::open_readfile(path)
            .map_err(|e| anyhow::anyhow!("opening --geoip-db {}: {e}", path.display()))?;
        Ok(Geo::MaxMind(Box::new(reader)))
    }

    /// Loads tor's files from `dir`, or `Geo::None` (with a warning) when they are missing.
    pub fn tor_or_none(dir: &Path) -> Self {
        match TorGeoIp::load(dir) {
            Ok(tor) => {
                tracing::info!(
                    dir = %dir.display(),
                    ipv4_ranges = tor.v4.len(),
                    ipv6_ranges = tor.v6.len(),
                    "loaded tor geoip ranges"
                );
                Geo::Tor(tor)
            }
            Err(error) => {
                tracing::warn!(%error, dir = %dir.display(), "no tor geoip files (apt-get install tor-geoipdb); clicks will have no country");
                Geo::None
            }
        }
    }

    /// Upper-case ISO 3166-1 alpha-2 code, when known.
    pub fn country(&self, ip: IpAddr) -> Option<Country> {
        match self {
            Geo::MaxMind(reader) => {
                let result = reader.lookup(ip.to_canonical()).ok()?;
                let code: Option<String> = result
                    .decode_path(&[PathElement::Key("country"), PathElement::Key("iso_code")])
                    .ok()
                    .flatten()
                    .or_else(|| {
                        result
                            .decode_path(&[
                                PathElement::Key("registered_country"),
                                PathElement::Key("iso_code"),
                            ])
                            .ok()
                            .flatten()
                    });
                code.and_then(|c| country_code(&c))
            }
            Geo::Tor(tor) => tor.lookup(ip),
            Geo::None => None,
        }
    }
}

/// An upper-case ISO 3166-1 alpha-2 code: two ASCII letters, held inline (no allocation per
/// click). Only [`country_code`] makes one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country([u8; 2]);

impl Country {
    pub fn as_str(&self) -> &str {
        // Always two ASCII letters (see `country_code`), so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    pub fn bytes(&self) -> [u8; 2] {
        self.0
    }
}

impl std::ops::Deref for Country {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Country {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `XX`-style two-letter code, upper-cased; `None` for anything else and for the placeholders
/// CDNs and databases use for "unknown" (`XX`, `T1` (tor), `??`).
pub fn country_code(raw: &str) -> Option<Country> {
    let &[a, b] = raw.trim().as_bytes() else {
        return None;
    };
    if !(a.is_ascii_alphabetic() && b.is_ascii_alphabetic()) {
        return None;
    }
    let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
    (&code != b"XX").then_some(Country(code))
}

/// tor's ranges: `(first, last, country)`, sorted by `first`, non-overlapping.
#[derive(Debug, Default)]
pub struct TorGeoIp {
    v4: Vec<(u32, u32, Country)>,
    /// `v4_by_top16[h]`: the first v4 range starting at or after `h << 16` (65,537 entries, the
    /// last being `v4.len()`), so a lookup searches a handful of ranges instead of descending
    /// ~18 levels of a 200,000-range binary search, most of them cache misses.
    v4_by_top16: Vec<u32>,
    v6: Vec<(u128, u128, Country)>,
}

impl TorGeoIp {
    /// Reads `dir/geoip` and `dir/geoip6`; either may be missing, not both.
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        let v4 = std::fs::read_to_string(dir.join("geoip"));
        let v6 = std::fs::read_to_string(dir.join("geoip6"));
        if let (Err(e), Err(_)) = (&v4, &v6) {
            return Err(std::io::Error::new(e.kind(), e.to_string()));
        }
        Ok(Self::parse(
            v4.as_deref().unwrap_or(""),
            v6.as_deref().unwrap_or(""),
        ))
    }

    /// Parses the two files' text; malformed lines, comments and `??` ranges are skipped.
    pub fn parse(v4_text: &str, v6_text: &str) -> Self {
        let mut v4: Vec<(u32, u32, Country)> = lines(v4_text)
            .filter_map(|(from, to, cc)| Some((from.parse().ok()?, to.parse().ok()?, cc)))
            .filter(|(from, to, _)| from <= to)
            .collect();
        let mut v6: Vec<(u128, u128, Country)> = lines(v6_text)
            .filter_map(|(from, to, cc)| {
                let from: Ipv6Addr = from.parse().ok()?;
                let to: Ipv6Addr = to.parse().ok()?;
                Some((u128::from(from), u128::from(to), cc))
            })
            .filter(|(from, to, _)| from <= to)
            .collect();
        v4.sort_unstable_by_key(|r| r.0);
        v6.sort_unstable_by_key(|r| r.0);
        let v4_by_top16 = (0..=1u32 << 16)
            .map(|top| {
                let first = v4.partition_point(|r| u64::from(r.0) < u64::from(top) << 16);
                u32::try_from(first).unwrap_or(u32::MAX)
            })
            .collect();
        Self {
            v4,
            v4_by_top16,
            v6,
        }
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<Country> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.find_v4(u32::from(v4)),
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)),
        }
    }
}

impl TorGeoIp {
    fn find_v4(&self, key: u32) -> Option<Country> {
        let top = (key >> 16) as usize;
        let at = |i: usize| self.v4_by_top16.get(i).map(|&n| n as usize);
        // The range holding `key` starts in this block or is the last one before it.
        let (from, to) = (at(top)?.saturating_sub(1), at(top + 1)?);
        find(self.v4.get(from..to)?, key)
    }
}

fn lines(text: &str) -> impl Iterator<Item = (&str, &str, Country)> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.starts_with('#') {
            return None;
        }
        let mut parts = line.split(',');
        let (from, to, cc) = (parts.next()?, parts.next()?, parts.next()?);
        Some((from.trim(), to.trim(), country_code(cc)?))
    })
}

fn find<T: Ord + Copy>(ranges: &[(T, T, Country)], key: T) -> Option<Country> {
    // The last range starting at or before `key`, if `key` is inside it.
    let i = ranges.partition_point(|r| r.0 <= key);
    let (from, to, cc) = *ranges.get(i.checked_sub(1)?)?;
    (from <= key && key <= to).then_some(cc)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_searches_ranges() {
        // Out of order on purpose; a comment, a `??` range and a broken line are skipped.
        let v4 = "# comment\n33554432,33554687,FR\n16777216,16777471,AU\n16777472,16778239,??\nbroken\n50331648,50331903,us\n";
        let v6 = "2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP\n2a00::,2a00:ff::,DE\n";
        let t = TorGeoIp::parse(v4, v6);
        let cc = |ip: &str| t.lookup(ip.parse().unwrap()).map(|c| c.as_str().to_owned());
        assert_eq!(cc("1.0.0.0").as_deref(), Some("AU")); // first address of a range
        assert_eq!(cc("1.0.0.255").as_deref(), Some("AU")); // last
        assert_eq!(cc("1.0.1.0"), None); // `??`
        assert_eq!(cc("2.0.0.7").as_deref(), Some("FR"));
        assert_eq!(cc("3.0.0.1").as_deref(), Some("US"));
        assert_eq!(cc("3.0.1.0"), None); // past the last range
        assert_eq!(cc("0.0.0.1"), None); // before the first
        assert_eq!(cc("::ffff:1.0.0.9").as_deref(), Some("AU")); // mapped v4
        assert_eq!(cc("2001:200:1::1").as_deref(), Some("JP"));
        assert_eq!(cc("2a00:ff::").as_deref(), Some("DE"));
        assert_eq!(cc("2a00:ff::1"), None);
        let geo = Geo::Tor(t);
        assert_eq!(
            geo.country("2.0.0.1".parse().unwrap()).as_deref(),
            Some("FR")
        );
        assert_eq!(Geo::None.country("2.0.0.1".parse().unwrap()), None);
    }

    /// The block index answers exactly as a binary search over every range.
    #[test]
    fn indexed_v4_lookup_matches_a_full_search() {
        // Ranges inside one block, spanning blocks, ending at a block's last address, gaps, and
        // the very first and last addresses.
        let v4 = "0,0,AA\n1,65535,AB\n65536,65536,AC\n70000,200000,AD\n16777216,16777471,AE\n\
                  16777472,33554431,AF\n4294901760,4294967294,AG\n4294967295,4294967295,AH\n";
        let t = TorGeoIp::parse(v4, "");
        let mut keys: Vec<u32> = vec![0, 1, 2, 65535, 65536, 65537, 69999, 70000, 131072, 200000];
        keys.extend([
            200001, 16777215, 16777216, 16777471, 16777472, 33554431, 33554432,
        ]);
        keys.extend([4294901759, 4294901760, 4294967294, 4294967295]);
        let mut x: u32 = 12345;
        for _ in 0..20_000 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            keys.push(x);
            keys.push(x % 40_000_000);
        }
        for key in keys {
            assert_eq!(t.find_v4(key), find(&t.v4, key), "{key}");
        }
        assert_eq!(t.find_v4(65536).as_deref(), Some("AC"));
        assert_eq!(t.find_v4(4294967295).as_deref(), Some("AH"));
        assert_eq!(t.find_v4(200001), None);
    }

    #[test]
    fn country_codes() {
        assert_eq!(country_code("de").as_deref(), Some("DE"));
        assert_eq!(country_code(" US ").as_deref(), Some("US"));
        assert_eq!(country_code("XX"), None);
        assert_eq!(country_code("T1"), None);
        assert_eq!(country_code("??"), None);
        assert_eq!(country_code("USA"), None);
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(TorGeoIp::load(dir.path()).is_err());
        assert!(matches!(Geo::tor_or_none(dir.path()), Geo::None));
        assert!(Geo::maxmind(&dir.path().join("nope.mmdb")).is_err());
    }
}
