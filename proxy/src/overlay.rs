//! The overlay: every link, bio page and domain change the proxy has applied from the change feed
//! since the snapshot it serves. Lookups consult it before the snapshot; when a newer snapshot is
//! swapped in, [`Overlay::trim`] drops what that snapshot already contains, so the overlay stays
//! small.
//!
//! Only the feed follower writes (one task, changes in sequence order); requests read concurrently
//! through [`DashMap`]'s sharded locks, which are held only for the duration of one probe and never
//! across an await. Every entry carries the feed sequence that produced it, so a reader can ignore
//! entries the served snapshot already supersedes even in the instant between a snapshot swap and
//! the trim that follows it.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use sling_shared::feed::{Change, ChangeOp};
use sling_shared::host::normalize_request_host;
use sling_shared::link::{BioPage, DomainPages, LinkRecord};

/// A link change: `None` is a tombstone (the link was deleted since the snapshot).
#[derive(Debug, Clone)]
pub struct LinkEntry {
    pub seq: u64,
    pub link: Option<Arc<LinkRecord>>,
}

/// A bio page change: `None` is a tombstone (unpublished or deleted since the snapshot).
#[derive(Debug, Clone)]
pub struct BioPageEntry {
    pub seq: u64,
    pub page: Option<Arc<BioPage>>,
}

/// The per-domain behaviour a domain change carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    pub id: String,
    pub host: String,
    pub root_redirect: Option<String>,
    pub not_found_redirect: Option<String>,
    pub pages: DomainPages,
}

#[derive(Debug, Clone)]
pub enum DomainState {
    /// Added or changed: these settings supersede the snapshot's.
    Known(Arc<DomainInfo>),
    /// Removed: the host is unknown again (requests fall back to the default domain).
    Deleted,
    /// No domain change seen, but links or pages were added under this host: it is known, with
    /// the snapshot's settings if the snapshot has it and bare settings otherwise.
    Implied,
}

#[derive(Debug, Clone)]
pub struct DomainEntry {
    /// Sequence of the latest change that touched this entry.
    pub seq: u64,
    pub state: DomainState,
    /// Sequence of the latest domain deletion: links older than this (in the snapshot or the
    /// overlay) went with the domain, even if it was added again since.
    pub cleared_at: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Overlay {
    /// Keyed by `host + "\n" + slug` (neither can contain a newline). Every request probes it
    /// while the overlay is non-empty; foldhash instead of SipHash there because entries come
    /// only from the control plane's feed, so requests choose probes, never what is stored.
    links: DashMap<Box<str>, LinkEntry, FastHash>,
    /// Keyed by `host + "\n" + handle`, like `links`.
    bio_pages: DashMap<Box<str>, BioPageEntry, FastHash>,
    /// Keyed by normalised host.
    domains: DashMap<Box<str>, DomainEntry, FastHash>,
    /// `links.len() + bio_pages.len() + domains.len()`, kept separately because `DashMap::len`
    /// visits every shard and the hot path only needs to know whether to probe at all.
    entries: AtomicUsize,
}

/// Seeded per map at creation.
type FastHash = foldhash::fast::RandomState;

thread_local! {
    /// Reused buffer for composite link and bio page keys, so a probe does not allocate.
    static KEY: RefCell<String> = RefCell::new(String::with_capacity(128));
}

impl Overlay {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when there is nothing to look up: the common case right after a snapshot swap.
    pub fn is_empty(&self) -> bool {
        self.entries.load(Ordering::Acquire) == 0
    }

    /// Number of link, bio page and domain entries (for metrics).
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Acquire)
    }

    /// The latest change to `(host, slug)`, if any. `host` must be normalised.
    pub fn link(&self, host: &str, slug: &str) -> Option<LinkEntry> {
        with_key(host, slug, |key| {
            self.links.get(key).map(|e| e.value().clone())
        })
    }

    /// The latest change to the bio page `(host, handle)`, if any. `host` must be normalised.
    pub fn bio_page(&self, host: &str, handle: &str) -> Option<BioPageEntry> {
        with_key(host, handle, |key| {
            self.bio_pages.get(key).map(|e| e.value().clone())
        })
    }

    /// The latest change to the domain `host`, if any. `host` must be normalised.
    pub fn domain(&self, host: &str) -> Option<DomainEntry> {
        self.domains.get(host).map(|e| e.value().clone())
    }

    /// Applies one change. Changes must arrive in sequence order (the feed follower guarantees it).
    pub fn apply(&self, change: &Change) {
        let seq = change.seq;
        match &change.op {
            ChangeOp::UpsertLink { host, slug, link } => {
                let host = normalize_request_host(host);
                self.put_link(&host, slug, seq, Some(Arc::new((**link).clone())));
                self.imply_domain(&host, seq);
            }
            ChangeOp::DeleteLink { host, slug } => {
                let host = normalize_request_host(host);
                self.put_link(&host, slug, seq, None);
            }
            ChangeOp::UpsertBioPage { host, handle, page } => {
                let host = normalize_request_host(host);
                self.put_bio_page(&host, handle, seq, Some(Arc::new((**page).clone())));
                self.imply_domain(&host, seq);
            }
            ChangeOp::DeleteBioPage { host, handle } => {
                let host = normalize_request_host(host);
                self.put_bio_page(&host, handle, seq, None);
            }
            ChangeOp::UpsertDomain {
                id,
                host,
                root_redirect,
                not_found_redirect,
                pages,
            } => {
                let host = normalize_request_host(host);
                let info = Arc::new(DomainInfo {
                    id: id.clone(),
                    host: host.clone().into_owned(),
                    root_redirect: root_redirect.clone(),
                    not_found_redirect: not_found_redirect.clone(),
                    pages: pages.clone(),
                });
                self.update_domain(&host, seq, |prev| {
                    (DomainState::Known(info), prev.and_then(|p| p.cleared_at))
                });
            }
            ChangeOp::DeleteDomain { host } => {
                let host = normalize_request_host(host);
                self.update_domain(&host, seq, |_| (DomainState::Deleted, Some(seq)));
            }
            // Not link data: the feed follower refetches the TLS state instead.
            ChangeOp::TlsChanged => {}
        }
    }

    /// Drops entries the snapshot at `snapshot_seq` already contains.
    pub fn trim(&self, snapshot_seq: u64) {
        let mut removed = 0;
        self.links.retain(|_, e| {
            let keep = e.seq > snapshot_seq;
            removed += usize::from(!keep);
            keep
        });
        self.bio_pages.retain(|_, e| {
            let keep = e.seq > snapshot_seq;
            removed += usize::from(!keep);
            keep
        });
        self.domains.retain(|_, e| {
            let keep = e.seq > snapshot_seq;
            removed += usize::from(!keep);
            keep
        });
        self.entries.fetch_sub(removed, Ordering::AcqRel);
    }

    /// Forgets everything (the feed asked for a reset onto a fresh snapshot).
    pub fn clear(&self) {
        self.links.clear();
        self.bio_pages.clear();
        self.domains.clear();
        self.entries.store(0, Ordering::Release);
    }

    fn put_link(&self, host: &str, slug: &str, seq: u64, link: Option<Arc<LinkRecord>>) {
        let key: Box<str> = format!("{host}\n{slug}").into_boxed_str();
        if self.links.insert(key, LinkEntry { seq, link }).is_none() {
            self.entries.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn put_bio_page(&self, host: &str, handle: &str, seq: u64, page: Option<Arc<BioPage>>) {
        let key: Box<str> = format!("{host}\n{handle}").into_boxed_str();
        if self
            .bio_pages
            .insert(key, BioPageEntry { seq, page })
            .is_none()
        {
            self.entries.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Content under a host makes the host known: with the snapshot's or the latest domain
    /// change's settings, if there are any, and bare settings otherwise.
    fn imply_domain(&self, host: &str, seq: u64) {
        self.update_domain(host, seq, |prev| match prev {
            Some(DomainEntry {
                state: DomainState::Known(info),
                cleared_at,
                ..
            }) => (DomainState::Known(info), cleared_at),
            Some(DomainEntry { cleared_at, .. }) => (DomainState::Implied, cleared_at),
            None => (DomainState::Implied, None),
        });
    }

    fn update_domain(
        &self,
        host: &str,
        seq: u64,
        next: impl FnOnce(Option<DomainEntry>) -> (DomainState, Option<u64>),
    ) {
        let prev = self.domain(host);
        let was_new = prev.is_none();
        let (state, cleared_at) = next(prev);
        self.domains.insert(
            host.into(),
            DomainEntry {
                seq,
                state,
                cleared_at,
            },
        );
        if was_new {
            self.entries.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Runs `f` on `host + "\n" + name` built in the thread's reused buffer (neither part can
/// contain a newline).
fn with_key<T>(host: &str, name: &str, f: impl FnOnce(&str) -> T) -> T {
    KEY.with(|key| {
        let mut key = key.borrow_mut();
        key.clear();
        key.push_str(host);
        key.push('\n');
        key.push_str(name);
        f(key.as_str())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn upsert(seq: u64, host: &str, slug: &str) -> Change {
        Change {
            seq,
            op: ChangeOp::UpsertLink {
                host: host.into(),
                slug: slug.into(),
                link: Box::new(LinkRecord::plain(format!("l{seq}"), "https://example.com/")),
            },
        }
    }

    #[test]
    fn apply_and_trim() {
        let o = Overlay::new();
        assert!(o.is_empty());
        o.apply(&upsert(1, "Localhost:8080", "a"));
        o.apply(&upsert(2, "localhost", "b"));
        o.apply(&Change {
            seq: 3,
            op: ChangeOp::DeleteLink {
                host: "localhost".into(),
                slug: "a".into(),
            },
        });
        // Two links and the implied domain.
        assert_eq!(o.len(), 3);
        let a = o.link("localhost", "a").unwrap();
        assert_eq!((a.seq, a.link.is_none()), (3, true));
        assert_eq!(o.domain("localhost").unwrap().seq, 2);

        o.trim(2);
        assert_eq!(o.len(), 1);
        assert!(o.link("localhost", "b").is_none());
        assert!(o.link("localhost", "a").is_some());
        o.trim(3);
        assert!(o.is_empty());
    }

    fn page(seq: u64, host: &str, handle: &str) -> Change {
        Change {
            seq,
            op: ChangeOp::UpsertBioPage {
                host: host.into(),
                handle: handle.into(),
                page: Box::new(BioPage {
                    id: format!("gal_{seq}"),
                    html: format!("<p>{seq}</p>"),
                }),
            },
        }
    }

    #[test]
    fn bio_pages_apply_imply_their_domain_and_trim() {
        let o = Overlay::new();
        o.apply(&page(1, "Go.Example:8080", "jane"));
        o.apply(&Change {
            seq: 2,
            op: ChangeOp::DeleteBioPage {
                host: "GO.EXAMPLE".into(),
                handle: "bob".into(),
            },
        });
        // Two pages (one a tombstone) and the implied domain.
        assert_eq!(o.len(), 3);
        let jane = o.bio_page("go.example", "jane").unwrap();
        assert_eq!(jane.seq, 1);
        assert_eq!(jane.page.unwrap().html, "<p>1</p>");
        let bob = o.bio_page("go.example", "bob").unwrap();
        assert_eq!((bob.seq, bob.page.is_none()), (2, true));
        // Pages and links are separate namespaces.
        assert!(o.link("go.example", "jane").is_none());
        assert!(o.bio_page("go.example", "Jane").is_none());
        let d = o.domain("go.example").unwrap();
        assert!(matches!(d.state, DomainState::Implied) && d.seq == 1);

        // A known domain stays known (with its settings) when a page is published under it.
        o.apply(&Change {
            seq: 3,
            op: ChangeOp::UpsertDomain {
                id: "d1".into(),
                host: "go.example".into(),
                root_redirect: None,
                not_found_redirect: Some("https://nf/".into()),
                pages: Default::default(),
            },
        });
        o.apply(&page(4, "go.example", "jane"));
        assert_eq!(o.len(), 3);
        let d = o.domain("go.example").unwrap();
        assert_eq!(d.seq, 4);
        assert!(matches!(d.state, DomainState::Known(ref i) if i.id == "d1"));

        o.trim(2);
        assert_eq!(o.len(), 2);
        assert!(o.bio_page("go.example", "bob").is_none());
        assert_eq!(o.bio_page("go.example", "jane").unwrap().seq, 4);
        o.trim(4);
        assert!(o.is_empty());

        o.apply(&page(5, "go.example", "jane"));
        assert_eq!(o.len(), 2);
        o.clear();
        assert!(o.is_empty() && o.bio_page("go.example", "jane").is_none());
    }

    #[test]
    fn domain_deletion_remembers_when_links_were_cleared() {
        let o = Overlay::new();
        o.apply(&Change {
            seq: 4,
            op: ChangeOp::DeleteDomain {
                host: "go.example".into(),
            },
        });
        o.apply(&Change {
            seq: 5,
            op: ChangeOp::UpsertDomain {
                id: "d1".into(),
                host: "go.example".into(),
                root_redirect: Some("https://root/".into()),
                not_found_redirect: None,
                pages: Default::default(),
            },
        });
        let d = o.domain("go.example").unwrap();
        assert_eq!((d.seq, d.cleared_at), (5, Some(4)));
        assert!(
            matches!(d.state, DomainState::Known(ref i) if i.root_redirect.as_deref() == Some("https://root/"))
        );
        o.clear();
        assert!(o.is_empty() && o.domain("go.example").is_none());
    }
}
