//! Field rules for API input, strict and pure: each function takes the raw value a client sent
//! and the field's path (for the error details), and returns the normalised value or the
//! matching [`ApiError`]. Nothing here touches the database; checks that need it (slug taken,
//! URL pointing back at one of sling's own hosts) live with the handlers.

use std::collections::BTreeMap;

use url::Url;

use crate::error::{ApiError, Detail};

pub const MAX_URL_LEN: usize = 2048;
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_LEN: usize = 50;
pub const MAX_TITLE_LEN: usize = 200;
pub const MAX_DESCRIPTION_LEN: usize = 1000;
pub const MAX_EXTERNAL_ID_LEN: usize = 200;
pub const MAX_PASSWORD_LEN: usize = 128;
pub const MAX_UTM_LEN: usize = 200;
pub const DEVICE_KEYS: &[&str] = &["ios", "android", "mobile", "tablet", "desktop"];
pub const REDIRECT_TYPES: &[u16] = &[301, 302, 307, 308];

/// An absolute `http`/`https` URL with a host and no credentials, at most [`MAX_URL_LEN`]
/// characters, free of whitespace and control characters (checked on the raw string, before
/// the parser could silently strip a tab or newline). Returns the normalised form (IDN hosts in
/// punycode, as the `url` crate serialises them).
pub fn url(path: &[&str], raw: &str) -> Result<Url, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::invalid_url(path, "must not be empty"));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(ApiError::invalid_url(
            path,
            format!("must be at most {MAX_URL_LEN} characters"),
        ));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::invalid_url(
            path,
            "must not contain whitespace or control characters",
        ));
    }
    let parsed = Url::parse(raw).map_err(|e| {
        ApiError::invalid_url(path, format!("must be an absolute http or https URL ({e})"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::invalid_url(
            path,
            format!(
                "scheme {:?} is not allowed; use http or https",
                parsed.scheme()
            ),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid_url(path, "must have a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::invalid_url(path, "must not contain credentials"));
    }
    if parsed.as_str().len() > MAX_URL_LEN {
        return Err(ApiError::invalid_url(
            path,
            format!("must be at most {MAX_URL_LEN} characters once normalised"),
        ));
    }
    Ok(parsed)
}

/// A slug a client asked for.
pub fn slug(raw: &str) -> Result<String, ApiError> {
    use sling_shared::slug::SlugError;
    match sling_shared::slug::validate(raw) {
        Ok(()) => Ok(raw.to_owned()),
        Err(SlugError::Reserved) => Err(ApiError::SlugReserved {
            message: format!("the slug {raw:?} is reserved"),
            details: vec![Detail::at(&["slug"], "is reserved")],
        }),
        Err(e) => Err(ApiError::SlugInvalid {
            message: format!("invalid slug: {e}"),
            details: vec![Detail::at(&["slug"], e.to_string())],
        }),
    }
}

/// Tags: trimmed, 1–50 characters each, at most 20, duplicates dropped (first one kept).
pub fn tags(raw: Vec<String>) -> Result<Vec<String>, ApiError> {
    if raw.len() > MAX_TAGS {
        return Err(ApiError::invalid_field(
            &["tags"],
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let t = t.trim();
        let n = t.chars().count();
        let bad = if n == 0 || n > MAX_TAG_LEN {
            Some(format!("must be 1 to {MAX_TAG_LEN} characters"))
        } else if t.chars().any(char::is_control) {
            Some("must not contain control characters".to_owned())
        } else {
            None
        };
        if let Some(msg) = bad {
            return Err(ApiError::InvalidRequest {
                message: format!("invalid tags[{i}]: {msg}"),
                details: vec![Detail::with_path(vec!["tags".into(), i.into()], msg)],
            });
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

/// Free text of at most `max` characters; empty means "none". `multiline` allows newlines and
/// tabs (descriptions); other control characters are always refused.
pub fn text(
    path: &[&str],
    raw: &str,
    max: usize,
    multiline: bool,
) -> Result<Option<String>, ApiError> {
    if raw.chars().count() > max {
        return Err(ApiError::invalid_field(
            path,
            format!("must be at most {max} characters"),
        ));
    }
    let bad = raw
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')));
    if bad {
        return Err(ApiError::invalid_field(
            path,
            "must not contain control characters",
        ));
    }
    Ok((!raw.trim().is_empty()).then(|| raw.to_owned()))
}

/// An external id: 1–200 printable characters (no whitespace other than the space, no controls).
pub fn external_id(raw: &str) -> Result<String, ApiError> {
    let path = &["externalId"];
    let n = raw.chars().count();
    if n == 0 || n > MAX_EXTERNAL_ID_LEN {
        return Err(ApiError::invalid_field(
            path,
            format!("must be 1 to {MAX_EXTERNAL_ID_LEN} characters"),
        ));
    }
    if raw
        .chars()
        .any(|c| c.is_control() || (c.is_whitespace() && c != ' '))
    {
        return Err(ApiError::invalid_field(path, "must be printable"));
    }
    Ok(raw.to_owned())
}

/// A UTM value: short printable text.
pub fn utm(field: &str, raw: &str) -> Result<Option<String>, ApiError> {
    text(&[field], raw, MAX_UTM_LEN, false)
}

/// Geo targets: ISO 3166-1 alpha-2 keys (normalised to upper case) → URLs.
pub fn geo_targets(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, Url>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let code = k.trim().to_ascii_uppercase();
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ApiError::invalid_field(
                &["geoTargets", k.as_str()],
                "keys must be two-letter country codes",
            ));
        }
        let u = url(&["geoTargets", k.as_str()], &v)?;
        out.insert(code, u);
    }
    Ok(out)
}

/// Device targets: keys from [`DEVICE_KEYS`] → URLs.
pub fn device_targets(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, Url>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let key = k.trim().to_ascii_lowercase();
        if !DEVICE_KEYS.contains(&key.as_str()) {
            return Err(ApiError::invalid_field(
                &["deviceTargets", k.as_str()],
                format!("keys must be one of {}", DEVICE_KEYS.join(", ")),
            ));
        }
        let u = url(&["deviceTargets", k.as_str()], &v)?;
        out.insert(key, u);
    }
    Ok(out)
}

pub fn redirect_type(raw: u16) -> Result<u16, ApiError> {
    if REDIRECT_TYPES.contains(&raw) {
        Ok(raw)
    } else {
        Err(ApiError::invalid_field(
            &["redirectType"],
            "must be 301, 302, 307 or 308",
        ))
    }
}

pub fn click_limit(raw: i64) -> Result<i64, ApiError> {
    if raw >= 1 {
        Ok(raw)
    } else {
        Err(ApiError::invalid_field(
            &["clickLimit"],
            "must be at least 1",
        ))
    }
}

/// An RFC 3339 time in the future; returns unix milliseconds.
pub fn future_time(path: &[&str], raw: &str, now_ms: i64) -> Result<i64, ApiError> {
    let ts: jiff::Timestamp = raw.parse().map_err(|_| {
        ApiError::invalid_field(path, "must be an RFC 3339 time, e.g. 2030-01-31T12:00:00Z")
    })?;
    let ms = ts.as_millisecond();
    if ms <= now_ms {
        return Err(ApiError::invalid_field(path, "must be in the future"));
    }
    Ok(ms)
}

pub fn password(raw: &str) -> Result<&str, ApiError> {
    let n = raw.chars().count();
    if n == 0 || n > MAX_PASSWORD_LEN {
        return Err(ApiError::invalid_field(
            &["password"],
            format!("must be 1 to {MAX_PASSWORD_LEN} characters"),
        ));
    }
    Ok(raw)
}

/// RFC 3339 UTC rendering of unix milliseconds, as every API time is shown.
pub fn rfc3339(ms: i64) -> String {
    // Always three fraction digits, so every time the API shows has one shape
    // (`2026-12-08T01:02:03.000Z`), whatever its milliseconds.
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_code(raw: &str) -> Result<String, &'static str> {
        url(&["destinationUrl"], raw)
            .map(|u| u.to_string())
            .map_err(|e| e.code())
    }

    #[test]
    fn urls() {
        assert_eq!(
            url_code("https://example.com"),
            Ok("https://example.com/".into())
        );
        assert_eq!(
            url_code("http://bücher.example/x?y=1"),
            Ok("http://xn--bcher-kva.example/x?y=1".into())
        );
        for bad in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "ftp://example.com/",
            "/relative",
            "example.com",
            "https://exa mple.com/",
            "https://example.com/\r\nX: y",
            "https://example.com/\t",
            "https://example.com/\u{0}",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "",
        ] {
            assert_eq!(url_code(bad), Err("INVALID_URL"), "{bad:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(url_code(&long), Err("INVALID_URL"));
    }

    #[test]
    fn slugs_tags_and_targets() {
        assert_eq!(slug("ok-1").map_err(|e| e.code()), Ok("ok-1".into()));
        assert_eq!(slug("a").map_err(|e| e.code()), Err("SLUG_INVALID"));
        assert_eq!(slug("Admin").map_err(|e| e.code()), Err("SLUG_RESERVED"));
        assert_eq!(
            tags(vec![" a ".into(), "a".into(), "b".into()]).ok(),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert!(tags(vec![" ".into()]).is_err());
        assert!(tags(vec!["x".into(); 21]).is_err());
        let geo = geo_targets([("us".to_string(), "https://e.com".to_string())].into()).unwrap();
        assert!(geo.contains_key("US"));
        assert!(geo_targets([("usa".to_string(), "https://e.com".to_string())].into()).is_err());
        assert!(
            device_targets([("watch".to_string(), "https://e.com".to_string())].into()).is_err()
        );
        assert!(redirect_type(303).is_err());
        assert!(click_limit(0).is_err());
        let now = jiff::Timestamp::now().as_millisecond();
        assert!(future_time(&["expiresAt"], "2000-01-01T00:00:00Z", now).is_err());
        assert!(future_time(&["expiresAt"], "2999-01-01T00:00:00Z", now).is_ok());
        assert!(future_time(&["expiresAt"], "tomorrow", 1).is_err());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(rfc3339(1_781_234_567_891), "2026-06-12T03:22:47.891Z");
    }
}
