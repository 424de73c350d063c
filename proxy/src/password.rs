//! Password-protected links at the edge: the access cookie, the attempt throttle and verification.
//!
//! **Verification.** The snapshot carries the link's argon2id PHC string (the control plane hashes
//! with `argon2::Argon2::default()`: argon2id v19, m = 19 MiB, t = 2, p = 1, the OWASP minimum);
//! the parameters travel inside the string, so the proxy verifies with whatever the hash says.
//! [`verify`] is deliberately slow and memory-hard, so the handler runs it on tokio's blocking pool,
//! never on the executor.
//!
//! **Throttle.** Every POST of a password, right or wrong, spends one cell of a GCRA bucket keyed by
//! (client address, link id): a burst of [`ATTEMPT_BURST`], then one attempt per
//! [`ATTEMPT_PERIOD`]. Over it the answer is 429 with `Retry-After`, before any hashing, so a
//! guesser also cannot make the proxy burn CPU. (`governor`, the same crate as the control plane's
//! rate limits; idle keys are dropped by [`Access::sweep`].)
//!
//! **Cookie.** After a correct password the visitor gets
//! `sling_pw_<link id>=<expiry ms>.<hex HMAC-SHA256(key, "sling-pw\0" link id \0 hash \0 expiry)>`
//! with `Path=/<slug>`, `Max-Age` = [`COOKIE_TTL`], `HttpOnly`, `SameSite=Lax` and `Secure` when
//! the request came over TLS. The expiry is inside the signed value (a client cannot extend it),
//! the name and the MAC bind it to one link, and the MAC covers the password hash, so changing a
//! link's password invalidates every cookie issued for the old one. The key is
//! `HMAC-SHA256(secret, "sling password cookies")` with `--cookie-secret`, else the fleet token,
//! else 32 random bytes per process: a fleet must share one of the first two for a cookie set by
//! one proxy to open the link on another.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use argon2::{PasswordHash, PasswordVerifier};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use http::header::COOKIE;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How long an access cookie opens its link.
pub const COOKIE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Password attempts a client may make on one link at once.
pub const ATTEMPT_BURST: u32 = 5;
/// After the burst, one more attempt per this period.
pub const ATTEMPT_PERIOD: Duration = Duration::from_secs(12);
/// Largest form body read from a password POST.
pub const MAX_FORM_BYTES: usize = 4096;
/// Longest a password POST may take to send its form.
pub const FORM_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys the throttle remembers before idle ones are swept.
const SWEEP_AT: usize = 10_000;

/// The cookie key and the attempt throttle.
pub struct Access {
    key: [u8; 32],
    limiter: DefaultKeyedRateLimiter<(IpAddr, Box<str>)>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").finish_non_exhaustive()
    }
}

impl Access {
    /// `secret`: `--cookie-secret`, else the fleet token; `None` draws a random key.
    pub fn new(secret: Option<&str>) -> Self {
        let key = match secret.filter(|s| !s.is_empty()) {
            Some(secret) => {
                let mut mac = mac_with(secret.as_bytes());
                mac.update(b"sling password cookies");
                mac.finalize().into_bytes().into()
            }
            None => rand::random::<[u8; 32]>(),
        };
        let quota = Quota::with_period(ATTEMPT_PERIOD)
            .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(ATTEMPT_BURST).unwrap_or(NonZeroU32::MIN));
        Self {
            key,
            limiter: RateLimiter::keyed(quota),
        }
    }

    /// Spends one attempt for `(client, link)`; `Err(seconds to wait)` when none is left.
    pub fn attempt(&self, client: IpAddr, link_id: &str) -> Result<(), u64> {
        if self.limiter.len() > SWEEP_AT {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&(client, link_id.into())) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                use governor::clock::{Clock, DefaultClock};
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
        }
    }

    /// Drops throttle entries that have fully recovered.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
    }

    /// The `Set-Cookie` value after a correct password for `link_id` at `path`.
    pub fn issue(
        &self,
        link_id: &str,
        hash: &str,
        path: &str,
        now_ms: i64,
        secure: bool,
    ) -> String {
        let ttl_ms = i64::try_from(COOKIE_TTL.as_millis()).unwrap_or(i64::MAX);
        let expires_ms = now_ms.saturating_add(ttl_ms);
        let mac = hex::encode(self.mac(link_id, hash, expires_ms));
        let path = cookie_path(path);
        format!(
            "{}={expires_ms}.{mac}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax{}",
            cookie_name(link_id),
            COOKIE_TTL.as_secs(),
            if secure { "; Secure" } else { "" }
        )
    }

    /// Does any `Cookie` header carry a valid, unexpired access cookie for this link and hash?
    pub fn is_unlocked(&self, headers: &HeaderMap, link_id: &str, hash: &str, now_ms: i64) -> bool {
        let name = cookie_name(link_id);
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(n, _)| *n == name)
            .any(|(_, value)| self.check(value, link_id, hash, now_ms))
    }

    fn check(&self, value: &str, link_id: &str, hash: &str, now_ms: i64) -> bool {
        let Some((expires, mac_hex)) = value.split_once('.') else {
            return false;
        };
        let Ok(expires_ms) = expires.parse::<i64>() else {
            return false;
        };
        // At most 64 bytes: a longer value is no MAC of ours, and is not decoded.
        let Some(mac) = (mac_hex.len() <= 128)
            .then(|| hex::decode(mac_hex).ok())
            .flatten()
        else {
            return false;
        };
        if expires_ms <= now_ms {
            return false;
        }
        self.mac_state(link_id, hash, expires_ms)
            .verify_slice(&mac)
            .is_ok()
    }

    fn mac(&self, link_id: &str, hash: &str, expires_ms: i64) -> [u8; 32] {
        self.mac_state(link_id, hash, expires_ms)
            .finalize()
            .into_bytes()
            .into()
    }

    fn mac_state(&self, link_id: &str, hash: &str, expires_ms: i64) -> HmacSha256 {
        let mut mac = mac_with(&self.key);
        mac.update(b"sling-pw\0");
        mac.update(link_id.as_bytes());
        mac.update(b"\0");
        mac.update(hash.as_bytes());
        mac.update(b"\0");
        mac.update(expires_ms.to_string().as_bytes());
        mac
    }
}

fn mac_with(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; the error branch cannot happen.
    HmacSha256::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
}

/// `sling_pw_` + the link id's cookie-safe characters.
pub fn cookie_name(link_id: &str) -> String {
    let mut name = String::with_capacity(9 + link_id.len());
    name.push_str("sling_pw_");
    name.extend(
        link_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-'),
    );
    name
}

/// The request path as a cookie `Path`: characters a cookie attribute cannot hold fall back to `/`.
fn cookie_path(path: &str) -> &str {
    if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
        path
    } else {
        "/"
    }
}

/// Checks `password` against a PHC string. Slow by design: call it on the blocking pool.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(error) => {
            tracing::warn!(%error, "stored password hash is not a PHC string");
            false
        }
    }
}

/// The `password` field of an `application/x-www-form-urlencoded` body.
pub fn form_password(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "password")
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use http::HeaderValue;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn cookie_header(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
        );
        h
    }

    #[test]
    fn cookie_opens_its_link_only_until_it_expires() {
        let access = Access::new(Some("fleet"));
        let set = access.issue("lnk_1", "$argon2id$h1", "/abc", NOW, false);
        assert!(set.starts_with("sling_pw_lnk_1="));
        assert!(set.contains("; Path=/abc; Max-Age=86400; HttpOnly; SameSite=Lax"));
        assert!(!set.contains("Secure"));
        let h = cookie_header(&set);
        assert!(access.is_unlocked(&h, "lnk_1", "$argon2id$h1", NOW + 1000));
        // Another link, a changed password, expiry, another key: all refused.
        assert!(!access.is_unlocked(&h, "lnk_2", "$argon2id$h1", NOW));
        assert!(!access.is_unlocked(&h, "lnk_1", "$argon2id$h2", NOW));
        assert!(!access.is_unlocked(&h, "lnk_1", "$argon2id$h1", NOW + 86_400_000));
        assert!(!Access::new(Some("other")).is_unlocked(&h, "lnk_1", "$argon2id$h1", NOW));
        // Same secret on another proxy: accepted.
        assert!(Access::new(Some("fleet")).is_unlocked(&h, "lnk_1", "$argon2id$h1", NOW));
        assert!(
            access
                .issue("lnk_1", "h", "/abc", NOW, true)
                .ends_with("; Secure")
        );
    }

    #[test]
    fn a_forged_expiry_is_refused() {
        let access = Access::new(None);
        let set = access.issue("lnk_1", "h", "/abc", NOW, false);
        let value = set.split(';').next().unwrap();
        let (_, rest) = value.split_once('.').unwrap();
        let forged = format!("sling_pw_lnk_1={}.{rest}", NOW + 10 * 86_400_000);
        let h = cookie_header(&forged);
        assert!(!access.is_unlocked(&h, "lnk_1", "h", NOW + 2 * 86_400_000));
        for junk in [
            "sling_pw_lnk_1=",
            "sling_pw_lnk_1=x.y",
            "sling_pw_lnk_1=1.zz",
        ] {
            assert!(!access.is_unlocked(&cookie_header(junk), "lnk_1", "h", NOW));
        }
    }

    #[test]
    fn attempts_are_throttled_per_client_and_link() {
        let access = Access::new(None);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..ATTEMPT_BURST {
            access.attempt(a, "lnk_1").unwrap();
        }
        let wait = access.attempt(a, "lnk_1").unwrap_err();
        assert!((1..=ATTEMPT_PERIOD.as_secs()).contains(&wait), "{wait}");
        access.attempt(b, "lnk_1").unwrap();
        access.attempt(a, "lnk_2").unwrap();
    }

    #[test]
    fn form_and_verify() {
        assert_eq!(
            form_password(b"password=p%40ss+word").as_deref(),
            Some("p@ss word")
        );
        assert_eq!(form_password(b"x=1"), None);
        assert!(!verify("x", "not a hash"));
    }
}
