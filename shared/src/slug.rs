//! Slug rules: what a slug may look like, which words are reserved, how one is generated, and how
//! the proxy finds the slug in a request path.

use std::borrow::Cow;

use rand::Rng;

pub const MIN_LEN: usize = 2;
pub const MAX_LEN: usize = 100;
/// Length of generated slugs: 56^7 ≈ 1.5e12 values, so collisions (which are retried) are rare.
pub const GENERATED_LEN: usize = 7;
/// Generated slugs avoid look-alike characters (0/O/o, 1/l/I) so they survive being read aloud.
pub const ALPHABET: &[u8] = b"23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";

/// Paths the programs use themselves, and words that invite confusion or phishing. Compared
/// case-insensitively.
pub const RESERVED: &[&str] = &[
    "api",
    "admin",
    "app",
    "assets",
    "auth",
    "bio",
    "dashboard",
    "docs",
    "favicon.ico",
    "health",
    "healthz",
    "help",
    "internal",
    "login",
    "logout",
    "metrics",
    "openapi",
    "qr",
    "readyz",
    "register",
    "robots.txt",
    "settings",
    "signin",
    "signup",
    "sling",
    "static",
    "stats",
    "status",
    "support",
    "well-known",
    "www",
    "_sling",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlugError {
    #[error("slug must be between {MIN_LEN} and {MAX_LEN} characters")]
    Length,
    #[error("slug may contain only letters, digits, '-' and '_'")]
    Characters,
    #[error("slug is reserved")]
    Reserved,
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Checks a slug a user asked for.
pub fn validate(slug: &str) -> Result<(), SlugError> {
    if slug.len() < MIN_LEN || slug.len() > MAX_LEN {
        return Err(SlugError::Length);
    }
    if !slug.bytes().all(allowed) {
        return Err(SlugError::Characters);
    }
    if is_reserved(slug) {
        return Err(SlugError::Reserved);
    }
    Ok(())
}

pub fn is_reserved(slug: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(slug))
}

/// A random slug of [`GENERATED_LEN`] characters; the caller checks it against the database.
pub fn generate() -> String {
    generate_len(GENERATED_LEN)
}

pub fn generate_len(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The slug a request path names, if it names one: `/abc` and `/abc/` → `abc`. Anything with
/// further segments or characters a slug cannot have is not a slug (the proxy answers 404).
pub fn from_path(path: &str) -> Option<Cow<'_, str>> {
    let s = path.strip_prefix('/')?;
    let s = s.strip_suffix('/').unwrap_or(s);
    let s = if s.contains('%') {
        // RFC 3986 §6.2.2.2: an encoded unreserved character is that character, so `/%61bc`
        // is `/abc`. Anything else that was encoded cannot be in a slug and fails below.
        percent_encoding::percent_decode_str(s).decode_utf8().ok()?
    } else {
        Cow::Borrowed(s)
    };
    if s.is_empty() || s.len() > MAX_LEN || !s.bytes().all(allowed) {
        return None;
    }
    Some(s)
}

/// Link-in-bio pages live at `/@{handle}`: `@` never appears in a slug, so a handle can never
/// shadow a link.
pub const BIO_PATH_PREFIX: &str = "/@";
pub const HANDLE_MIN_LEN: usize = 2;
pub const HANDLE_MAX_LEN: usize = 50;

/// Checks a gallery handle a user asked for: 2–50 of `A-Z a-z 0-9 - _`, case-sensitive.
pub fn validate_handle(handle: &str) -> Result<(), SlugError> {
    if handle.len() < HANDLE_MIN_LEN || handle.len() > HANDLE_MAX_LEN {
        return Err(SlugError::Length);
    }
    if !handle.bytes().all(allowed) {
        return Err(SlugError::Characters);
    }
    Ok(())
}

/// The handle of a request path `/@handle` (one trailing slash tolerated), if it names one.
pub fn handle_from_path(path: &str) -> Option<&str> {
    let s = path.strip_prefix(BIO_PATH_PREFIX)?;
    let s = s.strip_suffix('/').unwrap_or(s);
    validate_handle(s).ok().map(|()| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles() {
        assert_eq!(handle_from_path("/@jane"), Some("jane"));
        assert_eq!(handle_from_path("/@Jane_Doe-2/"), Some("Jane_Doe-2"));
        assert_eq!(handle_from_path("/@j"), None);
        assert_eq!(handle_from_path("/@"), None);
        assert_eq!(handle_from_path("/jane"), None);
        assert_eq!(handle_from_path("/@ja ne"), None);
        assert_eq!(handle_from_path("/@jane/x"), None);
        assert_eq!(handle_from_path(&format!("/@{}", "a".repeat(51))), None);
        // A handle may be a word that is reserved as a slug: it lives under `@`.
        assert_eq!(validate_handle("api"), Ok(()));
        assert!(from_path("/@jane").is_none());
    }

    #[test]
    fn validation() {
        assert_eq!(validate("ab"), Ok(()));
        assert_eq!(validate("My-Link_2"), Ok(()));
        assert_eq!(validate("a"), Err(SlugError::Length));
        assert_eq!(validate(&"a".repeat(101)), Err(SlugError::Length));
        assert_eq!(validate("a b"), Err(SlugError::Characters));
        assert_eq!(validate("ab/c"), Err(SlugError::Characters));
        assert_eq!(validate("héllo"), Err(SlugError::Characters));
        assert_eq!(validate("API"), Err(SlugError::Reserved));
        assert_eq!(validate("healthz"), Err(SlugError::Reserved));
    }

    #[test]
    fn generated_slugs_are_valid_and_unambiguous() {
        for _ in 0..1000 {
            let s = generate();
            assert_eq!(s.len(), GENERATED_LEN);
            assert_eq!(validate(&s), Ok(()));
            assert!(!s.contains(['0', 'O', 'o', '1', 'l', 'I']), "{s}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(from_path("/abc").as_deref(), Some("abc"));
        assert_eq!(from_path("/abc/").as_deref(), Some("abc"));
        assert_eq!(from_path("/"), None);
        assert_eq!(from_path("/a/b"), None);
        assert_eq!(from_path("/a%20b"), None);
        assert_eq!(from_path("abc"), None);
        // Percent-encoded unreserved characters are the characters themselves.
        assert_eq!(from_path("/%61bc").as_deref(), Some("abc"));
        assert_eq!(from_path("/My%2DLink%5f2").as_deref(), Some("My-Link_2"));
        assert_eq!(from_path("/a%2Fb"), None);
        assert_eq!(from_path("/a%2fb"), None);
        assert_eq!(from_path("/ab%"), None);
        assert_eq!(from_path("/ab%zz"), None);
        assert_eq!(from_path("/%C3%A9t%C3%A9"), None);
        assert_eq!(from_path("/%ff%fe"), None);
    }
}
