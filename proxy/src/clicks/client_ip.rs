//! Which address clicked: the socket peer, unless the peer is a configured trusted proxy, in which
//! case the forwarding headers it added are believed as far as they stay inside trusted hops.
//!
//! The rule is the usual "right-most untrusted hop": a trusted proxy appends the address it saw to
//! the right of `X-Forwarded-For` (or adds a `Forwarded: for=` element), so walking the list from
//! the right and skipping our own proxies gives the first address we cannot vouch for, which is
//! the client. Anything to its left was written by the client and could be invented. A hop that
//! does not parse (garbage, `unknown`, an obfuscated `_name`) stops the walk and the socket address
//! is used: a header we cannot read proves nothing. Runs on the shipper thread, never on a
//! request's task.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The configured trusted proxies (`--trusted-proxies`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client address for a request from `peer` carrying these forwarding headers.
    /// `Forwarded` (RFC 7239) wins over `X-Forwarded-For` when both are present.
    pub fn client_ip(
        &self,
        peer: IpAddr,
        forwarded_for: Option<&str>,
        forwarded: Option<&str>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let hops: Option<Vec<IpAddr>> = match (forwarded, forwarded_for) {
            (Some(fwd), _) => parse_forwarded(fwd),
            (None, Some(xff)) => parse_xff(xff),
            (None, None) => return peer,
        };
        let Some(hops) = hops else {
            return peer;
        };
        // Right to left: the first hop that is not one of ours is the client; if every hop is
        // ours, the left-most is as close to the client as anyone saw.
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            client = hop;
            if !self.contains(hop) {
                break;
            }
        }
        client
    }
}

/// `X-Forwarded-For: client, proxy1, proxy2` → addresses, left to right; `None` if any element is
/// not an address.
fn parse_xff(value: &str) -> Option<Vec<IpAddr>> {
    let hops: Option<Vec<IpAddr>> = value.split(',').map(|h| parse_node(h.trim())).collect();
    hops.filter(|h| !h.is_empty())
}

/// `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"` → the `for=` addresses, left
/// to right; `None` if an element has no `for=` or it is not an address.
fn parse_forwarded(value: &str) -> Option<Vec<IpAddr>> {
    let mut hops = Vec::new();
    for element in value.split(',') {
        let node = element.split(';').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("for")
                .then(|| value.trim().trim_matches('"'))
        })?;
        hops.push(parse_node(node)?);
    }
    Some(hops).filter(|h| !h.is_empty())
}

/// An address, optionally with a port (`1.2.3.4:80`, `[::1]:80`, `[::1]`, `::1`).
fn parse_node(node: &str) -> Option<IpAddr> {
    if node.is_empty() {
        return None;
    }
    let ip = node
        .parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            node.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse::<IpAddr>().ok())
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn trusted() -> TrustedProxies {
        TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
        ])
    }

    #[track_caller]
    fn check(peer: &str, xff: Option<&str>, fwd: Option<&str>, want: &str) {
        let got = trusted().client_ip(peer.parse().unwrap(), xff, fwd);
        assert_eq!(got.to_string(), want, "peer={peer} xff={xff:?} fwd={fwd:?}");
    }

    #[test]
    fn rules() {
        // Untrusted peer: headers are ignored.
        check("203.0.113.9", Some("198.51.100.1"), None, "203.0.113.9");
        check("203.0.113.9", None, Some("for=198.51.100.1"), "203.0.113.9");
        // Trusted peer without headers.
        check("10.1.1.1", None, None, "10.1.1.1");
        // Trusted peer: right-most untrusted hop.
        check("10.1.1.1", Some("198.51.100.1"), None, "198.51.100.1");
        check(
            "10.1.1.1",
            Some("6.6.6.6, 198.51.100.1, 10.2.2.2"),
            None,
            "198.51.100.1",
        );
        // Every hop trusted: the left-most.
        check("10.1.1.1", Some("10.9.9.9, 10.2.2.2"), None, "10.9.9.9");
        // Ports and IPv6.
        check("10.1.1.1", Some("198.51.100.1:4711"), None, "198.51.100.1");
        check("10.1.1.1", Some("[2001:db8::7]:80"), None, "2001:db8::7");
        check("2001:db8:ffff::1", Some("2001:db8::7"), None, "2001:db8::7");
        // An IPv4-mapped peer counts as its IPv4 address.
        check(
            "::ffff:10.1.1.1",
            Some("198.51.100.1"),
            None,
            "198.51.100.1",
        );
        // Forwarded, and it wins over X-Forwarded-For.
        check(
            "10.1.1.1",
            Some("1.1.1.1"),
            Some("for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8::1]:4711\""),
            "2001:db8::1",
        );
        check(
            "10.1.1.1",
            None,
            Some("For=\"192.0.2.60:99\", for=10.3.3.3"),
            "192.0.2.60",
        );
        // Garbage: the socket address.
        check("10.1.1.1", Some("not-an-ip"), None, "10.1.1.1");
        check(
            "10.1.1.1",
            Some("198.51.100.1, ,10.2.2.2"),
            None,
            "10.1.1.1",
        );
        check("10.1.1.1", Some(""), None, "10.1.1.1");
        check("10.1.1.1", None, Some("for=unknown"), "10.1.1.1");
        check("10.1.1.1", None, Some("proto=https"), "10.1.1.1");
        check(
            "10.1.1.1",
            None,
            Some("for=_hidden, for=10.2.2.2"),
            "10.1.1.1",
        );
        check("10.1.1.1", Some("1.2.3.4.5"), None, "10.1.1.1");
    }

    #[test]
    fn no_trusted_proxies_means_socket_address() {
        let none = TrustedProxies::default();
        assert!(none.is_empty());
        assert_eq!(
            none.client_ip("10.1.1.1".parse().unwrap(), Some("1.2.3.4"), None)
                .to_string(),
            "10.1.1.1"
        );
    }
}
