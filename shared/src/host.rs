//! Host normalisation: the one rule both programs use to turn a `Host` header or a configured
//! domain into the key domains are stored under (lower-case ASCII/punycode, no port, no trailing
//! dot).

use std::borrow::Cow;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    #[error("host is empty")]
    Empty,
    #[error("host is longer than 253 characters")]
    TooLong,
    #[error("host is not a valid domain name")]
    Invalid,
}

/// Strips an optional `:port` (and the brackets of an IPv6 literal).
fn strip_port(raw: &str) -> &str {
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match raw.rfind(':') {
        // More than one colon and no brackets: a bare IPv6 address, keep it whole.
        Some(i) if raw[..i].contains(':') => raw,
        Some(i) => &raw[..i],
        None => raw,
    }
}

/// Normalises a host for lookups on the request path. Borrows in the common case (an already
/// lower-case ASCII host, with or without a port) so the hot path does not allocate.
pub fn normalize_request_host(raw: &str) -> Cow<'_, str> {
    let h = strip_port(raw.trim());
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Cow::Borrowed(h);
    }
    if h.is_ascii() {
        return Cow::Owned(h.to_ascii_lowercase());
    }
    match idna::domain_to_ascii(h) {
        Ok(a) => Cow::Owned(a),
        Err(_) => Cow::Owned(h.to_lowercase()),
    }
}

/// Strictly normalises a configured host (a domain a customer adds, the default domain): ports
/// are stripped, IDNA applied, and anything that is not a plausible DNS name is refused.
pub fn normalize_host(raw: &str) -> Result<String, HostError> {
    let h = strip_port(raw.trim());
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.is_empty() {
        return Err(HostError::Empty);
    }
    let ascii = idna::domain_to_ascii_strict(h).map_err(|_| HostError::Invalid)?;
    if ascii.is_empty() {
        return Err(HostError::Empty);
    }
    if ascii.len() > 253 {
        return Err(HostError::TooLong);
    }
    let labels_ok = ascii.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !labels_ok {
        return Err(HostError::Invalid);
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_hosts() {
        for (raw, want) in [
            ("localhost", "localhost"),
            ("localhost:8080", "localhost"),
            ("Sho.RT:443", "sho.rt"),
            ("sho.rt.", "sho.rt"),
            ("[::1]:8080", "::1"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("bücher.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(normalize_request_host(raw), want, "{raw}");
        }
        assert!(matches!(
            normalize_request_host("localhost:8080"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn configured_hosts() {
        assert_eq!(normalize_host("Go.Example.COM").unwrap(), "go.example.com");
        assert_eq!(
            normalize_host("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(normalize_host("localhost:8080").unwrap(), "localhost");
        assert_eq!(normalize_host(""), Err(HostError::Empty));
        assert!(normalize_host("bad host").is_err());
        assert!(normalize_host("-bad.example").is_err());
        assert!(normalize_host(&"a".repeat(64)).is_err());
    }
}
