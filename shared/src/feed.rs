//! The change feed: what the control plane's long-poll endpoint returns to proxies.
//!
//! Every write to a link or a domain appends one or more [`Change`]s, numbered by a strictly
//! increasing sequence, in the same database transaction as the write. A proxy asks for the
//! changes after the last sequence it applied and applies them to its overlay; the snapshot header
//! carries the sequence it includes, so the proxy knows where to start after loading one.

use serde::{Deserialize, Serialize};

use crate::link::{BioPage, DomainPages, LinkRecord};

/// Long-poll change feed: `GET FEED_PATH?after=<seq>&wait_ms=<ms>` with the fleet token.
pub const FEED_PATH: &str = "/internal/v1/feed";
/// Latest snapshot file: `GET SNAPSHOT_PATH` with the fleet token; `?newer_than=<seq>` answers
/// 304 when there is nothing newer. The body is the file, byte for byte.
pub const SNAPSHOT_PATH: &str = "/internal/v1/snapshot";
/// Response header carrying the feed sequence of the snapshot being served.
pub const SNAPSHOT_SEQ_HEADER: &str = "x-sling-snapshot-seq";
/// Most changes one feed page carries.
pub const MAX_PAGE: usize = 1000;

/// One page of the feed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FeedPage {
    /// Changes with `seq > after`, ascending, at most [`MAX_PAGE`].
    pub changes: Vec<Change>,
    /// The highest sequence written so far (the proxy's lag is `head_seq - applied`).
    pub head_seq: u64,
    /// The feed sequence of the newest published snapshot.
    pub snapshot_seq: u64,
    /// True when `after` is older than the oldest change kept: the proxy must load a snapshot
    /// (at least `snapshot_seq`) and resume from it.
    pub reset: bool,
}

/// One change, with its sequence number.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub seq: u64,
    #[serde(flatten)]
    pub op: ChangeOp,
}

/// What changed. Renaming a slug is a delete of the old key and an upsert of the new one.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ChangeOp {
    /// The link at `(host, slug)` now looks like `link`.
    #[serde(rename_all = "camelCase")]
    UpsertLink {
        host: String,
        slug: String,
        /// Boxed: a link record is far larger than the other variants.
        link: Box<LinkRecord>,
    },
    /// Nothing lives at `(host, slug)` any more.
    #[serde(rename_all = "camelCase")]
    DeleteLink { host: String, slug: String },
    /// A domain was added or its behaviour changed.
    #[serde(rename_all = "camelCase")]
    UpsertDomain {
        id: String,
        host: String,
        root_redirect: Option<String>,
        not_found_redirect: Option<String>,
        /// Absent in JSON means the built-in pages.
        #[serde(default)]
        pages: DomainPages,
    },
    /// The link-in-bio page at `(host, handle)` was published (again).
    #[serde(rename_all = "camelCase")]
    UpsertBioPage {
        host: String,
        handle: String,
        page: Box<BioPage>,
    },
    /// The page at `(host, handle)` was unpublished, deleted or moved.
    #[serde(rename_all = "camelCase")]
    DeleteBioPage { host: String, handle: String },
    /// A domain was removed (with all its links and pages).
    #[serde(rename_all = "camelCase")]
    DeleteDomain { host: String },
    /// A certificate, an HTTPS policy or a well-known answer changed: fetch the whole
    /// [`crate::tls::TlsState`] again (keys never travel in the feed itself).
    TlsChanged,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_round_trips_through_json() {
        let c = Change {
            seq: 7,
            op: ChangeOp::UpsertLink {
                host: "localhost".into(),
                slug: "abc".into(),
                link: Box::new(LinkRecord::plain("lnk_1", "https://example.com/")),
            },
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"op\":\"upsertLink\""), "{json}");
        assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), c);
    }
}
