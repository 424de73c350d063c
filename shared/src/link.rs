//! The edge view of a link: exactly the fields the proxy needs to answer a redirect, in a form that
//! is both rkyv-archivable (inside the snapshot) and serde-serialisable (inside the change feed).

use std::collections::HashMap;

/// A `(key, url)` pair: a device or country target.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Debug,
    Clone,
    PartialEq,
    Eq,
)]
pub struct Target {
    /// `ios`, `android`, `mobile`, `tablet`, `desktop` for device targets; an upper-case ISO
    /// 3166-1 alpha-2 code for geo targets.
    pub key: String,
    pub url: String,
}

/// A query parameter the proxy adds to the destination (`utm_source=…`).
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Debug,
    Clone,
    PartialEq,
    Eq,
)]
pub struct Param {
    pub name: String,
    pub value: String,
}

/// Everything the proxy needs to decide what `GET /{slug}` answers.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Debug,
    Clone,
    PartialEq,
    Eq,
)]
#[serde(rename_all = "camelCase")]
pub struct LinkRecord {
    pub id: String,
    pub destination_url: String,
    /// 301, 302, 307 or 308.
    pub redirect_type: u16,
    pub forward_query: bool,
    pub active: bool,
    pub archived: bool,
    /// Unix milliseconds.
    pub expires_at_ms: Option<i64>,
    pub expired_url: Option<String>,
    pub click_limit: Option<u64>,
    /// The control plane has counted `click_limit` clicks: every proxy refuses the link (410) from
    /// now on, whatever its local count. Published through the feed by click ingest; see
    /// ARCHITECTURE.md, "Click limits at the edge", for the overshoot bound.
    #[serde(default)]
    pub click_limit_reached: bool,
    /// A PHC-format password hash; never the password.
    pub password_hash: Option<String>,
    pub ios_url: Option<String>,
    pub android_url: Option<String>,
    pub device_targets: Vec<Target>,
    pub geo_targets: Vec<Target>,
    /// UTM parameters in the order they are appended.
    pub utm: Vec<Param>,
}

impl LinkRecord {
    /// A plain, active link: the common case and a convenient starting point in tests.
    pub fn plain(id: impl Into<String>, destination_url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            destination_url: destination_url.into(),
            redirect_type: 302,
            forward_query: true,
            active: true,
            archived: false,
            expires_at_ms: None,
            expired_url: None,
            click_limit: None,
            click_limit_reached: false,
            password_hash: None,
            ios_url: None,
            android_url: None,
            device_targets: Vec::new(),
            geo_targets: Vec::new(),
            utm: Vec::new(),
        }
    }
}

/// A domain with its per-domain behaviour and its links, keyed by slug.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
)]
#[serde(rename_all = "camelCase")]
pub struct DomainRecord {
    pub id: String,
    /// Normalised host (lower-case ASCII, no port, no trailing dot).
    pub host: String,
    pub root_redirect: Option<String>,
    pub not_found_redirect: Option<String>,
    /// The domain's own wording for its landing, 404 and 410 pages.
    #[serde(default)]
    pub pages: DomainPages,
    #[serde(skip)]
    pub links: HashMap<String, LinkRecord>,
    /// Published link-in-bio pages, keyed by handle (served at `/@{handle}`).
    #[serde(skip)]
    pub bio_pages: HashMap<String, BioPage>,
}

/// The `Content-Security-Policy` a bio page is served with. The page the control plane renders
/// needs only its own inline `<style>`, `https:` images and the two video players it embeds; no
/// script runs, even if a user's text or CSS got past the renderer's escaping.
pub const BIO_PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; \
     frame-src https://www.youtube-nocookie.com https://player.vimeo.com; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Every gallery id starts with this (`gal_…`), and no link id does: a click event whose link
/// id has it is a view of that gallery's page.
pub const BIO_PAGE_ID_PREFIX: &str = "gal_";

pub fn is_bio_page_id(id: &str) -> bool {
    id.starts_with(BIO_PAGE_ID_PREFIX)
}

/// A published link-in-bio page (a gallery). The control plane renders the whole page when it is
/// published, so the proxy serves these bytes as they are and never builds markup from user input.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Debug,
    Clone,
    PartialEq,
    Eq,
)]
#[serde(rename_all = "camelCase")]
pub struct BioPage {
    /// The gallery's id (`gal_…`).
    pub id: String,
    /// A complete, self-contained HTML document.
    pub html: String,
}

/// A domain's own wording for the pages the proxy shows on it; `None` keeps the built-in page
/// (in the visitor's language). Plain text: the proxy escapes it into its own page template.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
)]
#[serde(rename_all = "camelCase")]
pub struct DomainPages {
    /// `/` without a root redirect.
    #[serde(default)]
    pub landing: Option<PageText>,
    /// An unknown slug without a not-found redirect (404).
    #[serde(default)]
    pub not_found: Option<PageText>,
    /// A link that exists but may not be followed: disabled, archived, expired, click limit (410).
    #[serde(default)]
    pub gone: Option<PageText>,
}

impl DomainPages {
    pub fn is_empty(&self) -> bool {
        self.landing.is_none() && self.not_found.is_none() && self.gone.is_none()
    }
}

/// The heading and the paragraph of one page.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Debug,
    Clone,
    PartialEq,
    Eq,
)]
#[serde(rename_all = "camelCase")]
pub struct PageText {
    pub title: String,
    pub message: String,
}
