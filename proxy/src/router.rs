//! The routing decision: given the facts of a request (host, path, query, method, the time) and a
//! [`View`] of the served snapshot plus overlay, decide what to answer. Pure: no I/O, no clock, no
//! randomness, so every rule is covered by table tests. [`crate::respond`] turns the [`Decision`]
//! into bytes.
//!
//! The rules follow PRODUCT.md, "What the proxy does", in order. Facts that cost something to learn
//! (is the access cookie valid, this proxy's click count, the visitor's device and country) come in
//! through [`Facts`] as closures that [`route_with`] calls only when the link at hand needs them:
//! a plain link never parses a user agent or looks up an address.
//!
//! **Target precedence** (rule 6): on iOS `iosUrl`, on Android `androidUrl`; then `deviceTargets`,
//! the platform key (`ios`, `android`) before the form factor (`tablet`, `mobile`, `desktop`; a
//! tablet matches `tablet` only); then `geoTargets` by country; then `destinationUrl`. Bots and
//! unknown agents have no platform and no form factor, so they get the geo or default target.
//!
//! The plain-link case (no UTM parameters, nothing to forward) borrows the destination straight
//! from the memory-mapped snapshot: no parsing and no allocation.

use std::borrow::Cow;
use std::sync::Arc;

use http::{Method, StatusCode};
use sling_shared::clicks::QR_MARKER;
use sling_shared::host::normalize_request_host;
use sling_shared::link::{
    ArchivedBioPage, ArchivedDomainRecord, ArchivedLinkRecord, BioPage, LinkRecord, PageText,
};
use sling_shared::snapshot::ArchivedSnapshotBody;
use url::form_urlencoded;

use crate::overlay::{DomainInfo, DomainState, Overlay};
use crate::snapshot::LoadedSnapshot;

/// Longest path plus query the proxy answers (longer requests get 414): no short link needs more,
/// and it bounds the `Location` header built from a forwarded query.
pub const MAX_TARGET_LEN: usize = 8 * 1024;

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    Redirect(Redirect<'a>),
    /// `/` on a domain without a root redirect; the domain's own wording, if it has one.
    Landing(CustomPage),
    /// No such slug and no not-found redirect.
    NotFound(CustomPage),
    /// The link exists but may not be followed.
    Gone(GoneReason, CustomPage),
    /// Anything but GET and HEAD (and POST to a password-protected link).
    MethodNotAllowed,
    /// Path plus query longer than [`MAX_TARGET_LEN`].
    UriTooLong,
    /// A GET or HEAD of a password-protected link without a valid access cookie: the form (401).
    Locked(Locked<'a>),
    /// A POST to a password-protected link: the handler verifies the submitted password (off the
    /// executor) and answers the form again or a redirect to the same URL with the cookie.
    Unlock(Locked<'a>),
    /// A GET or HEAD of a published link-in-bio page (`/@handle`). Never a click.
    BioPage(BioPageRef<'a>),
}

/// A bio page, without copying its HTML: borrowed from the mapped snapshot or shared with the
/// overlay.
#[derive(Clone)]
pub enum BioPageRef<'a> {
    Archived(&'a ArchivedBioPage),
    Overlay(Arc<BioPage>),
}

impl BioPageRef<'_> {
    /// The gallery's id.
    pub fn id(&self) -> &str {
        match self {
            BioPageRef::Archived(p) => p.id.as_str(),
            BioPageRef::Overlay(p) => &p.id,
        }
    }

    /// The complete HTML document, served as it is.
    pub fn html(&self) -> &str {
        match self {
            BioPageRef::Archived(p) => p.html.as_str(),
            BioPageRef::Overlay(p) => &p.html,
        }
    }

    /// Copies an archived page out of the snapshot; an overlay page is only shared again.
    pub fn into_owned(self) -> BioPageRef<'static> {
        match self {
            BioPageRef::Archived(p) => BioPageRef::Overlay(Arc::new(BioPage {
                id: p.id.as_str().to_owned(),
                html: p.html.as_str().to_owned(),
            })),
            BioPageRef::Overlay(p) => BioPageRef::Overlay(p),
        }
    }
}

// By hand: archived types have no `Debug`/`PartialEq`, and a page's HTML is too long to log.
impl std::fmt::Debug for BioPageRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BioPageRef")
            .field("id", &self.id())
            .field("html_len", &self.html().len())
            .finish()
    }
}

impl PartialEq for BioPageRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id() && self.html() == other.html()
    }
}

impl Eq for BioPageRef<'_> {}

/// A domain's own text for a page (boxed: rare, and it keeps [`Decision`] small).
pub type CustomPage = Option<Box<PageText>>;

/// A password-protected link, as the password rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked<'a> {
    pub link_id: Cow<'a, str>,
    /// PHC string; the access cookie's MAC covers it, so a new password invalidates old cookies.
    pub password_hash: Cow<'a, str>,
}

impl Locked<'_> {
    pub fn into_owned(self) -> Locked<'static> {
        Locked {
            link_id: Cow::Owned(self.link_id.into_owned()),
            password_hash: Cow::Owned(self.password_hash.into_owned()),
        }
    }
}

/// What the visitor's user agent says, for device targeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Device {
    pub platform: Platform,
    pub form: FormFactor,
    /// Flagged by the click pipeline's bot list: matches no device target, and spends no click
    /// of a link's limit (the control plane counts human clicks only).
    pub bot: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Platform {
    Ios,
    Android,
    #[default]
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormFactor {
    Mobile,
    Tablet,
    Desktop,
    /// Bots and agents nobody recognises.
    #[default]
    Unknown,
}

/// The request facts some rules need, each learned only when asked.
pub struct Facts<'f> {
    /// Unix milliseconds.
    pub now_ms: i64,
    /// Does the request carry a valid access cookie for `(link id, password hash)`?
    pub unlocked: &'f dyn Fn(&str, &str) -> bool,
    /// Clicks this proxy has already served for the link id.
    pub local_clicks: &'f dyn Fn(&str) -> u64,
    /// The visitor's device.
    pub device: &'f dyn Fn() -> Device,
    /// The visitor's country, upper-case ISO 3166-1 alpha-2.
    pub country: &'f dyn Fn() -> Option<[u8; 2]>,
}

impl Facts<'_> {
    /// Nothing known: no cookie, no clicks, unknown device and country.
    pub fn none(now_ms: i64) -> Facts<'static> {
        Facts {
            now_ms,
            unlocked: &|_, _| false,
            local_clicks: &|_| 0,
            device: &Device::default,
            country: &|| None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect<'a> {
    pub status: StatusCode,
    pub location: Cow<'a, str>,
    /// The link followed; `None` for domain-level redirects (root, not found).
    pub link_id: Option<Cow<'a, str>>,
    /// True when this is a click to record (GET of a link's destination; HEAD is not a click).
    pub count_click: bool,
    /// The link's click limit: the handler reserves a click in this proxy's counter and answers
    /// 410 instead when the reservation goes past it (the router's check is only a pre-check).
    pub click_limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneReason {
    Disabled,
    Archived,
    Expired,
    /// The click limit is reached (published by the control plane or counted by this proxy).
    ClickLimit,
}

impl Decision<'_> {
    /// Detaches the decision from the data it borrows from.
    pub fn into_owned(self) -> Decision<'static> {
        match self {
            Decision::Redirect(r) => Decision::Redirect(Redirect {
                status: r.status,
                location: Cow::Owned(r.location.into_owned()),
                link_id: r.link_id.map(|id| Cow::Owned(id.into_owned())),
                count_click: r.count_click,
                click_limit: r.click_limit,
            }),
            Decision::Landing(page) => Decision::Landing(page),
            Decision::NotFound(page) => Decision::NotFound(page),
            Decision::Gone(reason, page) => Decision::Gone(reason, page),
            Decision::MethodNotAllowed => Decision::MethodNotAllowed,
            Decision::UriTooLong => Decision::UriTooLong,
            Decision::Locked(l) => Decision::Locked(l.into_owned()),
            Decision::Unlock(l) => Decision::Unlock(l.into_owned()),
            Decision::BioPage(p) => Decision::BioPage(p.into_owned()),
        }
    }
}

/// Decides the answer to `method host path?query` at `now_ms` (unix milliseconds) for a request
/// that carries no cookie, from an unknown device and country.
pub fn route<'a>(
    host: &str,
    path: &'a str,
    query: Option<&'a str>,
    method: &Method,
    view: &View<'a>,
    now_ms: i64,
) -> Decision<'a> {
    route_with(host, path, query, method, view, &Facts::none(now_ms))
}

/// Decides the answer to `method host path?query`, asking `facts` what the link's rules need.
///
/// POST is accepted only on a password-protected link (the form posts to the link's own URL);
/// anywhere else it is 405. `/@handle` is a bio page, looked up apart from links: it is never a
/// click, and the query string plays no part.
pub fn route_with<'a>(
    host: &str,
    path: &'a str,
    query: Option<&'a str>,
    method: &Method,
    view: &View<'a>,
    facts: &Facts<'_>,
) -> Decision<'a> {
    let is_get = *method == Method::GET;
    let is_post = *method == Method::POST;
    if !is_get && !is_post && *method != Method::HEAD {
        return Decision::MethodNotAllowed;
    }
    if path.len() + query.map_or(0, str::len) > MAX_TARGET_LEN {
        return Decision::UriTooLong;
    }

    let host = normalize_request_host(host);
    let (key, domain) = match view.domain(&host) {
        Some(domain) => (&*host, domain),
        None => {
            let default = view.default_host();
            (default, view.domain(default).unwrap_or_default())
        }
    };

    // Rule 1, `/.well-known/acme-challenge/…`, is answered before routing (certificate issue).
    if is_post && path == "/" {
        return Decision::MethodNotAllowed;
    }
    if path == "/" {
        return match domain.root_redirect() {
            Some(location) => domain_redirect(location),
            None => Decision::Landing(domain.page(PageKind::Landing)),
        };
    }
    // One byte compare keeps slug paths from paying for bio pages (`@` is never in a slug).
    if path.as_bytes().get(1) == Some(&b'@')
        && let Some(handle) = sling_shared::slug::handle_from_path(path)
    {
        // Found or not, a POST is 405 (no form posts here); a missing page is a missing slug.
        if is_post {
            return Decision::MethodNotAllowed;
        }
        return match view.bio_page(&domain, key, handle) {
            Some(page) => Decision::BioPage(page),
            None => not_found(&domain),
        };
    }
    let link = sling_shared::slug::from_path(path).and_then(|slug| view.link(&domain, key, &slug));
    match link {
        None if is_post => Decision::MethodNotAllowed,
        None => not_found(&domain),
        Some(LinkRef::Archived(link)) => {
            with_gone_page(decide(link, query, method, facts), &domain)
        }
        Some(LinkRef::Overlay(link)) => {
            with_gone_page(decide(&*link, query, method, facts).into_owned(), &domain)
        }
    }
}

/// No such slug or page: the domain's not-found redirect, else its 404 page.
fn not_found<'a>(domain: &Domain<'a>) -> Decision<'a> {
    match domain.not_found_redirect() {
        Some(location) => domain_redirect(location),
        None => Decision::NotFound(domain.page(PageKind::NotFound)),
    }
}

/// A 410 shows the domain's own gone page when it has one.
fn with_gone_page<'l>(decision: Decision<'l>, domain: &Domain<'_>) -> Decision<'l> {
    match decision {
        Decision::Gone(reason, None) => Decision::Gone(reason, domain.page(PageKind::Gone)),
        other => other,
    }
}

/// Root and not-found redirects are domain settings that can change at any time, so they are
/// temporary (302) and carry no query or UTM parameters.
fn domain_redirect(location: Cow<'_, str>) -> Decision<'_> {
    Decision::Redirect(Redirect {
        status: StatusCode::FOUND,
        location,
        link_id: None,
        count_click: false,
        click_limit: None,
    })
}

fn decide<'l, L: LinkFields>(
    link: &'l L,
    query: Option<&'l str>,
    method: &Method,
    facts: &Facts<'_>,
) -> Decision<'l> {
    let now_ms = facts.now_ms;
    let is_get = *method == Method::GET;
    if !link.active() {
        return Decision::Gone(GoneReason::Disabled, None);
    }
    if link.archived() {
        return Decision::Gone(GoneReason::Archived, None);
    }
    if link.expires_at_ms().is_some_and(|at| at <= now_ms) {
        // The expired URL is a fallback chosen by the owner, so it is followed as-is and
        // temporarily: the link may be extended again.
        return match link.expired_url() {
            Some(url) => Decision::Redirect(Redirect {
                status: StatusCode::FOUND,
                location: Cow::Borrowed(url),
                link_id: Some(Cow::Borrowed(link.id())),
                count_click: false,
                click_limit: None,
            }),
            None => Decision::Gone(GoneReason::Expired, None),
        };
    }
    let click_limit = link.click_limit();
    if let Some(limit) = click_limit
        && (link.click_limit_reached() || (facts.local_clicks)(link.id()) >= limit)
    {
        return Decision::Gone(GoneReason::ClickLimit, None);
    }
    match link.password_hash() {
        Some(hash) => {
            let locked = Locked {
                link_id: Cow::Borrowed(link.id()),
                password_hash: Cow::Borrowed(hash),
            };
            if *method == Method::POST {
                return Decision::Unlock(locked);
            }
            if !(facts.unlocked)(link.id(), hash) {
                return Decision::Locked(locked);
            }
        }
        None if *method == Method::POST => return Decision::MethodNotAllowed,
        None => {}
    }
    // A query that is only sling's QR marker forwards nothing (and keeps plain links borrowed).
    let query = query.filter(|q| link.forward_query() && !q.is_empty() && *q != QR_MARKER);
    Decision::Redirect(Redirect {
        status: redirect_status(link.redirect_type()),
        location: build_target(pick_target(link, facts), link.utm(), query),
        link_id: Some(Cow::Borrowed(link.id())),
        count_click: is_get,
        click_limit,
    })
}

/// Rule 6's target, in the precedence the module documentation gives.
fn pick_target<'l, L: LinkFields>(link: &'l L, facts: &Facts<'_>) -> &'l str {
    if link.ios_url().is_some() || link.android_url().is_some() || link.device_targets().len() > 0 {
        let device = (facts.device)();
        let platform_url = match device.platform {
            Platform::Ios => link.ios_url(),
            Platform::Android => link.android_url(),
            Platform::Other => None,
        };
        if let Some(url) = platform_url {
            return url;
        }
        let platform_key = match device.platform {
            Platform::Ios => Some("ios"),
            Platform::Android => Some("android"),
            Platform::Other => None,
        };
        let form_key = match device.form {
            FormFactor::Mobile => Some("mobile"),
            FormFactor::Tablet => Some("tablet"),
            FormFactor::Desktop => Some("desktop"),
            FormFactor::Unknown => None,
        };
        for key in [platform_key, form_key].into_iter().flatten() {
            if let Some((_, url)) = link.device_targets().find(|(k, _)| *k == key) {
                return url;
            }
        }
    }
    if link.geo_targets().len() > 0
        && let Some(country) = (facts.country)()
        && let Some((_, url)) = link
            .geo_targets()
            .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(&country))
    {
        return url;
    }
    link.destination_url()
}

/// The link's configured status; anything unexpected is treated as the default, 302.
fn redirect_status(code: u16) -> StatusCode {
    match code {
        301 => StatusCode::MOVED_PERMANENTLY,
        307 => StatusCode::TEMPORARY_REDIRECT,
        308 => StatusCode::PERMANENT_REDIRECT,
        _ => StatusCode::FOUND,
    }
}

/// Builds the redirect target from the destination, the link's UTM parameters and the request's
/// query string (already filtered by `forward_query`).
///
/// Precedence, lowest first: the destination's own parameters, then the link's UTM parameters
/// (each replaces every destination parameter of the same name), then the request's parameters
/// less sling's QR marker (`qr=1`, see `sling_shared::clicks::QR_MARKER`)
/// (each name present in the request replaces every earlier parameter of that name, so a visitor's
/// `?utm_source=newsletter` overrides the link's). Replaced parameters are removed and the
/// replacements appended, in order; everything else keeps its place and its exact encoding. Names
/// are compared after form-decoding (`utm%5Fsource` is `utm_source`). A fragment in the
/// destination stays at the end.
pub fn build_target<'l>(
    destination: &'l str,
    utm: impl ExactSizeIterator<Item = (&'l str, &'l str)>,
    query: Option<&str>,
) -> Cow<'l, str> {
    if utm.len() == 0 && query.is_none() {
        return Cow::Borrowed(destination);
    }
    let (before_fragment, fragment) = match destination.find('#') {
        Some(i) => destination.split_at(i),
        None => (destination, ""),
    };
    let (base, existing) = match before_fragment.split_once('?') {
        Some((base, q)) => (base, q),
        None => (before_fragment, ""),
    };

    let mut params: Vec<(Cow<'_, str>, Cow<'_, str>)> = split_query(existing).collect();
    let utm: Vec<(Cow<'_, str>, Cow<'_, str>)> = utm
        .map(|(name, value)| {
            let pair = format!("{}={}", encode(name), encode(value));
            (Cow::Borrowed(name), Cow::Owned(pair))
        })
        .collect();
    replace_params(&mut params, utm);
    if let Some(query) = query {
        // sling's own QR marker is for the click record, not for the destination.
        let incoming = split_query(query).filter(|(_, pair)| pair != QR_MARKER);
        replace_params(&mut params, incoming.collect());
    }

    let mut out = String::with_capacity(destination.len() + 1 + query.map_or(0, str::len) + 64);
    out.push_str(base);
    for (i, (_, pair)) in params.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(pair);
    }
    out.push_str(fragment);
    Cow::Owned(out)
}

/// `a=1&b&&c=%20` → `(name, raw pair)` items; empty items are dropped.
fn split_query(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let raw_name = pair.split_once('=').map_or(pair, |(n, _)| n);
        let name = if raw_name.contains(['%', '+']) {
            form_urlencoded::parse(raw_name.as_bytes())
                .next()
                .map_or(Cow::Borrowed(raw_name), |(n, _)| Cow::Owned(n.into_owned()))
        } else {
            Cow::Borrowed(raw_name)
        };
        (name, Cow::Borrowed(pair))
    })
}

fn replace_params<'p>(
    params: &mut Vec<(Cow<'p, str>, Cow<'p, str>)>,
    incoming: Vec<(Cow<'p, str>, Cow<'p, str>)>,
) {
    params.retain(|(name, _)| !incoming.iter().any(|(n, _)| n == name));
    params.extend(incoming);
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The data a decision is made from: the served snapshot (if any) and the overlay of changes since.
/// Overlay entries win over the snapshot unless the snapshot is at least as new as they are.
#[derive(Clone, Copy)]
pub struct View<'a> {
    snapshot: Option<&'a ArchivedSnapshotBody>,
    snapshot_seq: u64,
    overlay: &'a Overlay,
    /// Default domain while no snapshot is loaded.
    fallback_host: &'a str,
}

impl<'a> View<'a> {
    pub fn new(
        snapshot: Option<&'a LoadedSnapshot>,
        overlay: &'a Overlay,
        fallback_host: &'a str,
    ) -> Self {
        Self {
            snapshot: snapshot.map(LoadedSnapshot::body),
            snapshot_seq: snapshot.map_or(0, LoadedSnapshot::seq),
            overlay,
            fallback_host,
        }
    }

    /// Host that unknown hosts fall back to.
    pub fn default_host(&self) -> &'a str {
        self.snapshot
            .map_or(self.fallback_host, |s| s.default_host.as_str())
    }

    /// The domain stored under a normalised host, or `None` if the host is unknown.
    fn domain(&self, host: &str) -> Option<Domain<'a>> {
        let in_snapshot = self.snapshot.and_then(|s| s.domain(host));
        if !self.overlay.is_empty()
            && let Some(entry) = self
                .overlay
                .domain(host)
                .filter(|e| e.seq > self.snapshot_seq)
        {
            let cleared_at = entry.cleared_at.filter(|&c| c > self.snapshot_seq);
            let snapshot = if cleared_at.is_some() {
                None
            } else {
                in_snapshot
            };
            return match entry.state {
                DomainState::Deleted => None,
                DomainState::Known(info) => Some(Domain {
                    snapshot,
                    settings: Some(info),
                    cleared_at,
                }),
                DomainState::Implied => Some(Domain {
                    snapshot,
                    settings: None,
                    cleared_at,
                }),
            };
        }
        in_snapshot.map(|d| Domain {
            snapshot: Some(d),
            settings: None,
            cleared_at: None,
        })
    }

    /// The link at `slug` in `domain` (stored under `host`), overlay first.
    fn link(&self, domain: &Domain<'a>, host: &str, slug: &str) -> Option<LinkRef<'a>> {
        if !self.overlay.is_empty()
            && let Some(entry) = self.overlay.link(host, slug)
            && self.overlay_current(domain, entry.seq)
        {
            return entry.link.map(LinkRef::Overlay);
        }
        domain
            .snapshot
            .and_then(|d| d.link(slug))
            .map(LinkRef::Archived)
    }

    /// Whether an overlay entry written at `seq` supersedes the snapshot (and any deleted
    /// incarnation of `domain`).
    #[inline]
    fn overlay_current(&self, domain: &Domain<'_>, seq: u64) -> bool {
        seq > self.snapshot_seq && domain.cleared_at.is_none_or(|c| seq > c)
    }

    /// The bio page at `handle` in `domain` (stored under `host`), overlay first: the same
    /// precedence as [`View::link`].
    fn bio_page(&self, domain: &Domain<'a>, host: &str, handle: &str) -> Option<BioPageRef<'a>> {
        if !self.overlay.is_empty()
            && let Some(entry) = self.overlay.bio_page(host, handle)
            && self.overlay_current(domain, entry.seq)
        {
            return entry.page.map(BioPageRef::Overlay);
        }
        domain
            .snapshot
            .and_then(|d| d.bio_page(handle))
            .map(BioPageRef::Archived)
    }
}

/// A resolved domain: where its settings and links come from.
#[derive(Default)]
struct Domain<'a> {
    /// The snapshot's record: links, bio pages, and settings unless `settings` overrides them.
    /// `None` when the snapshot lacks the domain or predates its deletion.
    snapshot: Option<&'a ArchivedDomainRecord>,
    /// Settings changed since the snapshot.
    settings: Option<Arc<DomainInfo>>,
    /// Overlay links and pages at or before this sequence belong to a deleted incarnation of the
    /// domain.
    cleared_at: Option<u64>,
}

impl<'a> Domain<'a> {
    fn root_redirect(&self) -> Option<Cow<'a, str>> {
        match &self.settings {
            Some(info) => info.root_redirect.clone().map(Cow::Owned),
            None => self
                .snapshot
                .and_then(|d| d.root_redirect.as_ref())
                .map(|s| Cow::Borrowed(s.as_str())),
        }
    }

    /// The domain's own text for a page, copied (only pages, never redirects, pay for it).
    fn page(&self, kind: PageKind) -> CustomPage {
        match &self.settings {
            Some(info) => {
                let p = &info.pages;
                let text = match kind {
                    PageKind::Landing => &p.landing,
                    PageKind::NotFound => &p.not_found,
                    PageKind::Gone => &p.gone,
                };
                text.clone().map(Box::new)
            }
            None => {
                let p = &self.snapshot?.pages;
                let text = match kind {
                    PageKind::Landing => p.landing.as_ref(),
                    PageKind::NotFound => p.not_found.as_ref(),
                    PageKind::Gone => p.gone.as_ref(),
                }?;
                Some(Box::new(PageText {
                    title: text.title.as_str().to_owned(),
                    message: text.message.as_str().to_owned(),
                }))
            }
        }
    }

    fn not_found_redirect(&self) -> Option<Cow<'a, str>> {
        match &self.settings {
            Some(info) => info.not_found_redirect.clone().map(Cow::Owned),
            None => self
                .snapshot
                .and_then(|d| d.not_found_redirect.as_ref())
                .map(|s| Cow::Borrowed(s.as_str())),
        }
    }
}

#[derive(Clone, Copy)]
enum PageKind {
    Landing,
    NotFound,
    Gone,
}

enum LinkRef<'a> {
    Archived(&'a ArchivedLinkRecord),
    Overlay(Arc<LinkRecord>),
}

/// What [`decide`] reads from a link, whether archived in the snapshot or owned in the overlay.
trait LinkFields {
    fn id(&self) -> &str;
    fn destination_url(&self) -> &str;
    fn redirect_type(&self) -> u16;
    fn forward_query(&self) -> bool;
    fn active(&self) -> bool;
    fn archived(&self) -> bool;
    fn expires_at_ms(&self) -> Option<i64>;
    fn expired_url(&self) -> Option<&str>;
    fn utm(&self) -> impl ExactSizeIterator<Item = (&str, &str)>;
    fn click_limit(&self) -> Option<u64>;
    fn click_limit_reached(&self) -> bool;
    fn password_hash(&self) -> Option<&str>;
    fn ios_url(&self) -> Option<&str>;
    fn android_url(&self) -> Option<&str>;
    fn device_targets(&self) -> impl ExactSizeIterator<Item = (&str, &str)>;
    fn geo_targets(&self) -> impl ExactSizeIterator<Item = (&str, &str)>;
}

impl LinkFields for ArchivedLinkRecord {
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn destination_url(&self) -> &str {
        self.destination_url.as_str()
    }
    fn redirect_type(&self) -> u16 {
        self.redirect_type.to_native()
    }
    fn forward_query(&self) -> bool {
        self.forward_query
    }
    fn active(&self) -> bool {
        self.active
    }
    fn archived(&self) -> bool {
        self.archived
    }
    fn expires_at_ms(&self) -> Option<i64> {
        self.expires_at_ms.as_ref().map(|v| v.to_native())
    }
    fn expired_url(&self) -> Option<&str> {
        self.expired_url.as_ref().map(|s| s.as_str())
    }
    fn utm(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.utm.iter().map(|p| (p.name.as_str(), p.value.as_str()))
    }
    fn click_limit(&self) -> Option<u64> {
        self.click_limit.as_ref().map(|v| v.to_native())
    }
    fn click_limit_reached(&self) -> bool {
        self.click_limit_reached
    }
    fn password_hash(&self) -> Option<&str> {
        self.password_hash.as_ref().map(|s| s.as_str())
    }
    fn ios_url(&self) -> Option<&str> {
        self.ios_url.as_ref().map(|s| s.as_str())
    }
    fn android_url(&self) -> Option<&str> {
        self.android_url.as_ref().map(|s| s.as_str())
    }
    fn device_targets(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.device_targets
            .iter()
            .map(|t| (t.key.as_str(), t.url.as_str()))
    }
    fn geo_targets(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.geo_targets
            .iter()
            .map(|t| (t.key.as_str(), t.url.as_str()))
    }
}

impl LinkFields for LinkRecord {
    fn id(&self) -> &str {
        &self.id
    }
    fn destination_url(&self) -> &str {
        &self.destination_url
    }
    fn redirect_type(&self) -> u16 {
        self.redirect_type
    }
    fn forward_query(&self) -> bool {
        self.forward_query
    }
    fn active(&self) -> bool {
        self.active
    }
    fn archived(&self) -> bool {
        self.archived
    }
    fn expires_at_ms(&self) -> Option<i64> {
        self.expires_at_ms
    }
    fn expired_url(&self) -> Option<&str> {
        self.expired_url.as_deref()
    }
    fn utm(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.utm.iter().map(|p| (p.name.as_str(), p.value.as_str()))
    }
    fn click_limit(&self) -> Option<u64> {
        self.click_limit
    }
    fn click_limit_reached(&self) -> bool {
        self.click_limit_reached
    }
    fn password_hash(&self) -> Option<&str> {
        self.password_hash.as_deref()
    }
    fn ios_url(&self) -> Option<&str> {
        self.ios_url.as_deref()
    }
    fn android_url(&self) -> Option<&str> {
        self.android_url.as_deref()
    }
    fn device_targets(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.device_targets
            .iter()
            .map(|t| (t.key.as_str(), t.url.as_str()))
    }
    fn geo_targets(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.geo_targets
            .iter()
            .map(|t| (t.key.as_str(), t.url.as_str()))
    }
}
