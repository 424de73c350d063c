//! Raw click → [`ClickEvent`]: the client address ([`super::client_ip`]), its country
//! ([`super::geo`] or a trusted CDN header), device / browser / OS, the bot flag, the referrer's
//! host and the unique-visitor key. Runs on the shipper (and overflow spooler) thread only.
//!
//! Libraries, chosen for bundled data (nothing fetched or loaded at run time) and speed:
//! - `woothee`: the woothee project's shared UA dataset compiled into the crate; a handful of
//!   string probes per agent instead of hundreds of regexes (uap-rs needs the external regexes
//!   YAML). Its `crawler` category also marks bots.
//! - `isbot`: the regex list of the widely used `isbot` (npm) project, bundled. An agent is a bot
//!   when either says so (curl and other HTTP libraries are only on the isbot list).
//!
//! Results are cached per agent string (agents repeat heavily), and referrer hosts per referring
//! origin, each cache being cleared when it grows past [`UA_CACHE_MAX`] entries or a mebibyte of
//! keys (values longer than [`CACHE_KEY_MAX`] are never kept: they come from request headers, and
//! a flood of huge distinct agents must not grow the proxy's memory). An event is handed out
//! borrowed ([`ClickEventRef`]) and written straight into its batch's JSON, so a click with a
//! known agent and origin allocates nothing on the shipper thread.
//!
//! **Visitor key.** `hex(HMAC-SHA256(salt_day, ip ‖ 0 ‖ user-agent ‖ 0 ‖ day))[..32]` with
//! `salt_day = HMAC-SHA256(fleet token, "visitor-salt:" + YYYY-MM-DD)` (UTC day of the click). Every
//! proxy of a fleet shares the fleet token, so they agree on the salt without talking to each
//! other; the salt changes every day, so keys cannot be linked across days, and the address itself
//! is never stored or shipped. Without a fleet token (no control plane) a random per-process key
//! is used.

use std::fmt::Write as _;
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sling_shared::clicks::{ClickEvent, ClickEventRef};

use super::client_ip::TrustedProxies;
use super::geo::{Country, Geo, country_code};
use super::{Field, RawClick};

/// Distinct user agents remembered before the cache is cleared.
pub const UA_CACHE_MAX: usize = 10_000;

type HmacSha256 = Hmac<Sha256>;

/// Immutable enrichment data, shared by the threads that enrich.
pub struct Enricher {
    geo: Geo,
    trusted: TrustedProxies,
    /// A `--country-header` is configured (its value was copied into the raw click).
    country_header: bool,
    ua: woothee::parser::Parser,
    bots: isbot::Bots,
    visitor_key: Vec<u8>,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("geo", &self.geo)
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

/// What a user agent says about the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub device: &'static str,
    pub browser: String,
    pub os: String,
    pub bot: bool,
}

/// Per-thread memo: the day's salt, parsed user agents and referrer hosts.
#[derive(Debug, Default)]
pub struct EnrichCache {
    salt: Option<DayMac>,
    agents: Memo<Agent>,
    /// Referring origin (`scheme://authority`) → its host.
    referrers: Memo<Option<Box<str>>>,
}

/// A string-keyed cache cleared when full (the keys repeat heavily; an LRU would cost more per
/// hit than the rare re-parse after a clear). Keys come from request headers, so their bytes are
/// bounded too: a key longer than [`CACHE_KEY_MAX`] is answered without being kept, and the cache
/// is cleared once its keys hold [`MEMO_KEY_BYTES`].
#[derive(Debug)]
struct Memo<V> {
    map: hashbrown::HashMap<Box<str>, V>,
    key_bytes: usize,
    /// The value of the empty key (a click without a user agent), kept outside the map: matching
    /// an empty key in the map compares zero bytes at an empty string's dangling address, which
    /// glibc's AVX-512 `memcmp` does with a fault-suppressed masked load, a microcode assist of
    /// hundreds of cycles (perf: ~0.8% of the proxy's CPU under wrk, which sends no agent).
    empty: Option<V>,
}

/// Longest header value (user agent, referring origin) a cache keeps.
pub const CACHE_KEY_MAX: usize = 1024;
/// Key bytes one [`Memo`] holds before it is cleared.
const MEMO_KEY_BYTES: usize = 1 << 20;

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Self {
            map: hashbrown::HashMap::default(),
            key_bytes: 0,
            empty: None,
        }
    }
}

impl<V: Clone> Memo<V> {
    fn get_or_insert_with(
        &mut self,
        key: &str,
        make: impl FnOnce(&str) -> V,
    ) -> std::borrow::Cow<'_, V> {
        if key.len() > CACHE_KEY_MAX {
            return std::borrow::Cow::Owned(make(key));
        }
        if key.is_empty() {
            return std::borrow::Cow::Borrowed(self.empty.get_or_insert_with(|| make(key)));
        }
        let full = self.map.len() >= UA_CACHE_MAX || self.key_bytes + key.len() > MEMO_KEY_BYTES;
        if full && !self.map.contains_key(key) {
            self.map.clear();
            self.key_bytes = 0;
        }
        let key_bytes = &mut self.key_bytes;
        std::borrow::Cow::Borrowed(self.map.entry_ref(key).or_insert_with(|| {
            *key_bytes += key.len();
            make(key)
        }))
    }
}

/// The day's salt as an HMAC already keyed with it (day number, state): a click clones the state
/// instead of hashing the two key blocks again, a third of the visitor key's SHA-256 work.
#[derive(Clone)]
struct DayMac(i64, HmacSha256);

impl std::fmt::Debug for DayMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DayMac")
            .field(&self.0)
            .finish_non_exhaustive()
    }
}

impl Enricher {
    /// `visitor_key`: the fleet token (or any fleet-wide secret); `None` draws a random one.
    pub fn new(
        geo: Geo,
        trusted: TrustedProxies,
        country_header: bool,
        visitor_key: Option<&str>,
    ) -> Self {
        let visitor_key = match visitor_key {
            Some(key) if !key.is_empty() => key.as_bytes().to_vec(),
            _ => rand::random::<[u8; 32]>().to_vec(),
        };
        Self {
            geo,
            trusted,
            country_header,
            ua: woothee::parser::Parser::new(),
            bots: isbot::Bots::default(),
            visitor_key,
        }
    }

    /// The enriched event, owned (tests, the odd click spooled on its own).
    pub fn enrich(&self, raw: &RawClick, cache: &mut EnrichCache) -> ClickEvent {
        self.with_event(raw, cache, |event| event.to_owned_event())
    }

    /// Enriches `raw` and hands the event, borrowed, to `f` (the shipper writes it into a batch).
    pub fn with_event<R>(
        &self,
        raw: &RawClick,
        cache: &mut EnrichCache,
        f: impl FnOnce(&ClickEventRef<'_>) -> R,
    ) -> R {
        let (ip, country) = self.client_and_country(raw);
        let ua = raw.get(Field::UserAgent).unwrap_or("");
        let visitor = self.visitor(ip, ua, raw.at_ms, &mut cache.salt);
        let agent = cache.agents.get_or_insert_with(ua, |ua| self.agent(ua));
        let referrer = raw.get(Field::Referer).map(|referer| {
            cache
                .referrers
                .get_or_insert_with(origin(referer), |origin| {
                    referrer_host(origin).map(String::into_boxed_str)
                })
        });
        let referrer_host = referrer.as_ref().and_then(|host| host.as_deref());
        f(&ClickEventRef {
            link_id: raw.link_id(),
            at_ms: raw.at_ms,
            country: country.as_deref(),
            device: agent.device,
            browser: &agent.browser,
            os: &agent.os,
            bot: agent.bot,
            referrer_host,
            visitor: visitor.as_str(),
            qr: raw.qr,
        })
    }

    /// The client address (trusted forwarding headers applied) and its country: a trusted CDN
    /// header first, then the geo data. Geo targeting asks the same question.
    pub fn client_and_country(&self, raw: &RawClick) -> (IpAddr, Option<Country>) {
        let peer_trusted = self.trusted.contains(raw.peer);
        let ip = self.trusted.client_ip(
            raw.peer,
            raw.get(Field::ForwardedFor),
            raw.get(Field::Forwarded),
        );
        let country = raw
            .get(Field::CountryHeader)
            .filter(|_| self.country_header && peer_trusted)
            .and_then(country_code)
            .or_else(|| self.geo.country(ip));
        (ip, country)
    }

    /// Device, browser, OS and bot flag of a user agent.
    pub fn agent(&self, ua: &str) -> Agent {
        let parsed = self.ua.parse(ua);
        let crawler = parsed.as_ref().is_some_and(|r| r.category == "crawler");
        let bot = crawler || (!ua.is_empty() && self.bots.is_bot(ua));
        let (name, os, category) = parsed
            .as_ref()
            .map_or(("", "", ""), |r| (r.name, r.os, r.category));
        let device = if bot {
            "bot"
        } else {
            match category {
                "pc" => "desktop",
                "smartphone" if os == "iPad" || (os == "Android" && !ua.contains("Mobile")) => {
                    "tablet"
                }
                "smartphone" | "mobilephone" => "mobile",
                _ => "unknown",
            }
        };
        Agent {
            device,
            browser: known(name),
            os: os_family(os).to_owned(),
            bot,
        }
    }

    fn visitor(&self, ip: IpAddr, ua: &str, at_ms: i64, salt: &mut Option<DayMac>) -> Hex16 {
        let day = at_ms.div_euclid(86_400_000);
        let mac = match salt {
            Some(DayMac(d, mac)) if *d == day => mac.clone(),
            _ => {
                let day_salt = day_salt(&self.visitor_key, at_ms);
                // HMAC accepts keys of any length, so this cannot fail.
                let Ok(mac) = HmacSha256::new_from_slice(&day_salt) else {
                    return Hex16::default();
                };
                *salt = Some(DayMac(day, mac.clone()));
                mac
            }
        };
        visitor_key(mac, ip, ua, day)
    }
}

/// 16 bytes as 32 lower-case hex digits, inline.
#[derive(Debug, Clone, Copy)]
struct Hex16([u8; 32]);

impl Default for Hex16 {
    fn default() -> Self {
        Self([b'0'; 32])
    }
}

impl Hex16 {
    fn new(bytes: &[u8; 16]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0; 32];
        for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
        Self(out)
    }

    fn as_str(&self) -> &str {
        // Hex digits only.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// An IPv4 address in dotted-decimal text, written without the formatting machinery: every click
/// from an IPv4 client hashes it, and `Display` cost about ten times as many instructions.
struct Ipv4Text {
    buf: [u8; 15],
    len: usize,
}

impl Ipv4Text {
    fn new(ip: std::net::Ipv4Addr) -> Self {
        let mut text = Self {
            buf: [0; 15],
            len: 0,
        };
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                text.push(b'.');
            }
            if octet >= 100 {
                text.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                text.push(b'0' + octet / 10 % 10);
            }
            text.push(b'0' + octet % 10);
        }
        text
    }

    fn push(&mut self, byte: u8) {
        // Four octets of at most three digits and three dots: 15 bytes always suffice.
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// Feeds formatted text to an HMAC (the address, without a `String` per click).
struct MacWriter<'a>(&'a mut HmacSha256);

impl std::fmt::Write for MacWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// `scheme://authority` of a URL (what its host depends on), or the whole text when it has no
/// `://`. Special schemes treat `\` like `/`, so it ends the authority too.
fn origin(referer: &str) -> &str {
    let referer = referer.trim();
    let Some(scheme_end) = referer.find("://") else {
        return referer;
    };
    let rest = scheme_end + 3;
    let end = referer
        .get(rest..)
        .and_then(|tail| tail.find(['/', '?', '#', '\\']))
        .map_or(referer.len(), |i| rest + i);
    referer.get(..end).unwrap_or(referer)
}

/// `HMAC-SHA256(key, "visitor-salt:" + YYYY-MM-DD)` for the UTC day of `at_ms`.
pub fn day_salt(key: &[u8], at_ms: i64) -> [u8; 32] {
    let date = jiff::Timestamp::from_millisecond(at_ms)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        // Outside jiff's range (year ±9999): fall back to the day number, still daily and shared.
        .unwrap_or_else(|_| at_ms.div_euclid(86_400_000).to_string());
    hmac(key, &[b"visitor-salt:", date.as_bytes()])
}

/// `keyed`: an HMAC keyed with the day's salt.
fn visitor_key(mut keyed: HmacSha256, ip: IpAddr, ua: &str, day: i64) -> Hex16 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => keyed.update(Ipv4Text::new(v4).as_bytes()),
        // Writing to the MAC cannot fail.
        v6 => {
            let _ = write!(MacWriter(&mut keyed), "{v6}");
        }
    }
    for part in [b"\0", ua.as_bytes(), b"\0", &day.to_be_bytes()] {
        keyed.update(part);
    }
    let mac: [u8; 32] = keyed.finalize().into_bytes().into();
    let mut first = [0; 16];
    first.copy_from_slice(&mac[..16]);
    Hex16::new(&first)
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn known(value: &str) -> String {
    if value.is_empty() || value == woothee::woothee::VALUE_UNKNOWN {
        "unknown".to_owned()
    } else {
        value.to_owned()
    }
}

/// woothee names OS versions (`Windows 10`, `iPhone`, `Mac OSX`); stats group by family.
fn os_family(os: &str) -> &str {
    match os {
        "iPhone" | "iPad" | "iPod" | "iOS" => "iOS",
        "Mac OSX" | "Mac OS Classic" => "macOS",
        "Windows Phone OS" => "Windows Phone",
        "" | woothee::woothee::VALUE_UNKNOWN => "unknown",
        os if os.starts_with("Windows") => "Windows",
        os => os,
    }
}

/// The lower-case host of a `Referer`, when it is an absolute URL with a host.
pub fn referrer_host(referer: &str) -> Option<String> {
    let url = url::Url::parse(referer.trim()).ok()?;
    let host = url.host_str()?.trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hex_and_salt() {
        let mut bytes = [0; 16];
        bytes[..3].copy_from_slice(&[0x00, 0xab, 0x7f]);
        assert_eq!(
            Hex16::new(&bytes).as_str(),
            "00ab7f00000000000000000000000000"
        );
        // 2024-03-10T23:59:59.999Z and 2024-03-11T00:00:00Z fall on different days.
        let a = day_salt(b"k", 1_710_115_199_999);
        let b = day_salt(b"k", 1_710_115_200_000);
        assert_ne!(a, b);
        assert_eq!(a, day_salt(b"k", 1_710_028_800_000));
        assert_ne!(a, day_salt(b"other", 1_710_115_199_999));
    }

    /// The visitor key is the documented HMAC over the address's canonical text, whichever way the
    /// address is written out.
    #[test]
    fn visitor_key_hashes_the_canonical_address() {
        let salt = day_salt(b"fleet", 1_710_115_200_000);
        let day = 1_710_115_200_000_i64.div_euclid(86_400_000);
        let addresses = [
            "0.0.0.0",
            "9.10.99.100",
            "127.0.0.1",
            "198.51.100.7",
            "255.255.255.255",
            "10.0.200.5",
            "2001:db8::1",
            "::ffff:203.0.113.9",
            "::1",
        ];
        let octets = (0..=255u8)
            .step_by(7)
            .chain([9, 10, 99, 100, 199, 200, 255]);
        let generated: Vec<String> = octets.map(|o| format!("{o}.{o}.1.{o}")).collect();
        for text in addresses
            .iter()
            .copied()
            .chain(generated.iter().map(String::as_str))
        {
            let ip: IpAddr = text.parse().unwrap();
            let canonical = ip.to_canonical().to_string();
            let want = hmac(
                &salt,
                &[
                    canonical.as_bytes(),
                    b"\0",
                    b"UA",
                    b"\0",
                    &day.to_be_bytes(),
                ],
            );
            let mut first = [0; 16];
            first.copy_from_slice(&want[..16]);
            let keyed = HmacSha256::new_from_slice(&salt).unwrap();
            assert_eq!(
                visitor_key(keyed, ip, "UA", day).as_str(),
                Hex16::new(&first).as_str(),
                "{text}"
            );
            if let IpAddr::V4(v4) = ip {
                assert_eq!(Ipv4Text::new(v4).as_bytes(), text.as_bytes());
            }
        }
    }

    /// Header values are cache keys: long ones are not kept, and the key bytes stay bounded.
    #[test]
    fn caches_bound_their_keys() {
        let mut memo = Memo::<usize>::default();
        let long = "x".repeat(CACHE_KEY_MAX + 1);
        assert_eq!(*memo.get_or_insert_with(&long, str::len), CACHE_KEY_MAX + 1);
        assert!(memo.map.is_empty());
        assert_eq!(*memo.get_or_insert_with("ua", str::len), 2);
        assert_eq!(*memo.get_or_insert_with("ua", |_| 99), 2, "cached");
        // The empty key is remembered beside the map.
        assert_eq!(*memo.get_or_insert_with("", |_| 7), 7);
        assert_eq!(*memo.get_or_insert_with("", |_| 99), 7, "cached");
        assert!(!memo.map.contains_key(""));
        let key = "k".repeat(CACHE_KEY_MAX);
        for i in 0..(2 * MEMO_KEY_BYTES / CACHE_KEY_MAX) {
            let k = format!("{i:08}{}", &key[8..]);
            memo.get_or_insert_with(&k, str::len);
            assert!(memo.key_bytes <= MEMO_KEY_BYTES);
            assert_eq!(
                memo.key_bytes,
                memo.map.keys().map(|k| k.len()).sum::<usize>()
            );
        }
        assert!(memo.map.len() < MEMO_KEY_BYTES / CACHE_KEY_MAX + 1);
    }

    /// The host is read from the origin alone (the cache key): the same answer as the full URL.
    #[test]
    fn referrer_host_from_the_origin() {
        for referer in [
            "https://News.Example.com/a/b?q=1#x",
            " http://user:pw@[::1]:8080/path ",
            "https://example.org?x=/y",
            "https://example.org#frag/x",
            "https://xn--bcher-kva.example/",
            "https://bücher.example/page",
            "http://example.com.\\evil/",
            "android-app://com.google.android.gm/",
            "https://%65xample.com/",
            "http://=1+1/",
            "no scheme at all",
            "mailto:someone@example.com",
            "https://",
            "",
        ] {
            assert_eq!(
                referrer_host(origin(referer)),
                referrer_host(referer),
                "{referer:?} (origin {:?})",
                origin(referer)
            );
        }
        // Hosts may start with characters spreadsheets read as formulas; the control plane's CSV
        // export guards against that (`control/src/api/stats.rs`).
        assert_eq!(referrer_host("http://=1+1/").as_deref(), Some("=1+1"));
    }
}
