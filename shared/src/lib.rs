//! `sling-shared` holds everything the proxy and the control plane must agree on byte for byte:
//! the snapshot file format ([`snapshot`]), the edge view of a link ([`link`]), the change feed
//! ([`feed`]), the slug and host rules ([`slug`], [`host`]) and the TLS state of custom domains ([`tls`]). Only these types cross a process
//! boundary.
#![forbid(unsafe_code)]

pub mod clicks;
pub mod feed;
pub mod host;
pub mod link;
pub mod slug;
pub mod snapshot;
pub mod tls;
