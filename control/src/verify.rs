//! Outbound checks of domain ownership: the DNS TXT record `_sling-challenge.<host>` and the HTTP
//! token at `http://<host>/.well-known/sling-verify/<token>`. [`fetch_well_known`] is also what
//! the ACME worker uses to self-check an HTTP-01 answer before telling the CA.
//!
//! Names are resolved with hickory against the configured upstream (`--dns-resolver`, else the
//! system's resolv.conf), with a fresh resolver per check so a record the user just fixed is
//! seen at once rather than after a cached negative answer expires.
//!
//! SSRF guard: a customer chooses the host, so an HTTP fetch could be aimed at the control
//! plane's own network. Resolved addresses in private, loopback, link-local, unique-local,
//! shared (CGNAT), multicast and reserved ranges are refused unless `--allow-private-verify`.
//! The connection goes to the address that was vetted (reqwest's resolver is pinned to it), so
//! a second resolution cannot swap in another address (DNS rebinding). Redirects are not
//! followed: a redirect could point anywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use ipnet::{Ipv4Net, Ipv6Net};

/// The label in front of a host where its TXT record lives.
pub const TXT_LABEL: &str = "_sling-challenge";
/// The path prefix of the HTTP token.
pub const HTTP_PREFIX: &str = "/.well-known/sling-verify/";
/// Largest body read from a well-known answer; tokens and key authorisations are far smaller.
pub const MAX_BODY_BYTES: usize = 4096;
/// Addresses of one host tried in turn when connections are refused.
const MAX_ADDRESSES: usize = 4;

/// Where names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsUpstream {
    /// The system's configuration (`/etc/resolv.conf`), read at each check.
    System,
    /// One server, over UDP with TCP fallback (tests point this at a local DNS server).
    Server(SocketAddr),
}

/// Configuration of ownership checks (flags in `config.rs`).
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub dns: DnsUpstream,
    /// Port of the HTTP token fetch (80 in production; tests use the proxy's port).
    pub http_port: u16,
    /// Let fetches reach private and loopback addresses (`--allow-private-verify`).
    pub allow_private: bool,
    /// Budget of one DNS query and of one HTTP fetch.
    pub timeout: Duration,
    /// How often pending domains are re-checked in the background.
    pub interval: Duration,
    /// How long after creation a pending domain is re-checked before it is marked failed.
    pub window: Duration,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            dns: DnsUpstream::System,
            http_port: 80,
            allow_private: false,
            timeout: Duration::from_secs(5),
            interval: Duration::from_secs(60),
            window: Duration::from_secs(72 * 3600),
        }
    }
}

/// Why a check found nothing usable. The `Display` text is what users read in `failureReason`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the DNS resolver is not usable: {0}")]
    Resolver(String),
    #[error("{host} does not resolve")]
    NoAddress { host: String },
    #[error("DNS lookup of {host} failed: {detail}")]
    Dns { host: String, detail: String },
    #[error("{host} resolves only to private or local addresses ({addrs}), which are refused")]
    PrivateAddress { host: String, addrs: String },
    #[error("connection refused by {}", list(.0))]
    ConnectionRefused(Vec<SocketAddr>),
    #[error("cannot connect to {0}")]
    Connect(SocketAddr),
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("the answer is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Http(String),
}

/// `GET http://<host>:<http_port><path>` and the body as text, after resolving `host` with the
/// configured resolver and vetting the addresses. Any status but 200 is an error. When a vetted
/// address refuses the connection the next one is tried (IPv4 first), as a browser would.
pub async fn fetch_well_known(
    cfg: &VerifyConfig,
    host: &str,
    path: &str,
) -> Result<String, VerifyError> {
    let mut refused = Vec::new();
    let mut last = None;
    for ip in resolve_vetted(cfg, host).await? {
        match fetch_from(cfg, host, path, SocketAddr::new(ip, cfg.http_port)).await {
            Err(VerifyError::ConnectionRefused(addrs)) => refused.extend(addrs),
            Err(e @ VerifyError::Connect(_)) => last = Some(e),
            other => return other,
        }
    }
    // Every address failed: say so for each that refused (the usual case), else the last error.
    Err(match last {
        Some(e) if refused.is_empty() => e,
        _ if !refused.is_empty() => VerifyError::ConnectionRefused(refused),
        _ => VerifyError::NoAddress {
            host: host.to_owned(),
        },
    })
}

/// One GET of `path` on `host`, connected to `addr` and nowhere else.
async fn fetch_from(
    cfg: &VerifyConfig,
    host: &str,
    path: &str,
    addr: SocketAddr,
) -> Result<String, VerifyError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        // Pinned: reqwest connects to the vetted address, never resolving `host` itself.
        .resolve(host, addr)
        .build()
        .map_err(|e| VerifyError::Http(e.to_string()))?;
    // reqwest takes the port from the URL, not from the pinned address.
    let url = format!("http://{host}:{}{path}", cfg.http_port);
    let mut resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| http_error(e, addr, cfg.timeout))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(VerifyError::Status(resp.status().as_u16()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(VerifyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| http_error(e, addr, cfg.timeout))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(VerifyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Every TXT string at `name` (each record's character-strings joined, as RFC 7208 reads them).
/// No record (NXDOMAIN or no data) is an empty list, not an error.
pub async fn txt_records(cfg: &VerifyConfig, name: &str) -> Result<Vec<String>, VerifyError> {
    let resolver = resolver(cfg)?;
    match resolver.txt_lookup(fqdn(name)).await {
        Ok(lookup) => Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect()),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
        Err(e) => Err(VerifyError::Dns {
            host: name.to_owned(),
            detail: e.to_string(),
        }),
    }
}

/// How a domain's ownership was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Dns,
    Http,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Dns => "dns",
            Method::Http => "http",
        }
    }
}

/// Checks both proofs for `host`, DNS first. `Err` says exactly what was found for each, so
/// the user can fix it and retry.
pub async fn check_ownership(
    cfg: &VerifyConfig,
    host: &str,
    token: &str,
) -> Result<Method, String> {
    let name = format!("{TXT_LABEL}.{host}");
    let dns = match txt_records(cfg, &name).await {
        Ok(values) if values.iter().any(|v| v.trim() == token) => return Ok(Method::Dns),
        Ok(values) if values.is_empty() => format!("no TXT record at {name}"),
        Ok(_) => format!("TXT record found at {name} but its value does not match"),
        Err(e) => format!("TXT record at {name}: {e}"),
    };
    let http = match fetch_well_known(cfg, host, &format!("{HTTP_PREFIX}{token}")).await {
        Ok(body) if body.trim() == token => return Ok(Method::Http),
        Ok(_) => "wrong body".to_owned(),
        Err(VerifyError::Status(404)) => "404 (not found)".to_owned(),
        Err(e) => e.to_string(),
    };
    Err(format!("{dns}; HTTP token: {http}"))
}

/// Resolves `host` and returns the addresses the SSRF guard lets through, IPv4 first.
pub(crate) async fn resolve_vetted(
    cfg: &VerifyConfig,
    host: &str,
) -> Result<Vec<IpAddr>, VerifyError> {
    let mut addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => {
            let resolver = resolver(cfg)?;
            match resolver.lookup_ip(fqdn(host)).await {
                Ok(found) => found.iter().collect(),
                Err(e) if e.is_no_records_found() || e.is_nx_domain() => Vec::new(),
                Err(e) => {
                    return Err(VerifyError::Dns {
                        host: host.to_owned(),
                        detail: e.to_string(),
                    });
                }
            }
        }
    };
    if addrs.is_empty() {
        return Err(VerifyError::NoAddress {
            host: host.to_owned(),
        });
    }
    addrs.sort_by_key(|ip| ip.is_ipv6());
    addrs.dedup();
    let vetted: Vec<IpAddr> = addrs
        .iter()
        .copied()
        .filter(|ip| cfg.allow_private || is_public(*ip))
        .take(MAX_ADDRESSES)
        .collect();
    if vetted.is_empty() {
        return Err(VerifyError::PrivateAddress {
            host: host.to_owned(),
            addrs: addrs
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(vetted)
}

/// A resolver for one check (no cache shared between checks).
fn resolver(cfg: &VerifyConfig) -> Result<TokioResolver, VerifyError> {
    let (config, mut opts) = match cfg.dns {
        DnsUpstream::System => hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| VerifyError::Resolver(e.to_string()))?,
        DnsUpstream::Server(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            (
                ResolverConfig::from_name_servers(vec![ns]),
                ResolverOpts::default(),
            )
        }
    };
    opts.timeout = cfg.timeout;
    opts.attempts = 2;
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = opts;
    builder
        .build()
        .map_err(|e| VerifyError::Resolver(e.to_string()))
}

/// `name.` — absolute, so no search domain is tried.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

/// Ranges an outbound fetch must not reach by default (RFC 6890 special-purpose space and the
/// private ranges).
const BLOCKED_V4: [Ipv4Net; 13] = [
    Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10),
    Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16),
    Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12),
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 0, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 2, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16),
    Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15),
    Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24),
    // Multicast (224/4) and reserved (240/4, including broadcast).
    Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 3),
];

const BLOCKED_V6: [Ipv6Net; 6] = [
    Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 128),
    Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128),
    Ipv6Net::new_assert(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    Ipv6Net::new_assert(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
];

/// Is `ip` outside every blocked range? IPv4-mapped and NAT64 IPv6 addresses are judged by
/// the IPv4 address inside them.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !BLOCKED_V4.iter().any(|n| n.contains(&v4)),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let o = v6.octets();
            let seg = v6.segments();
            let nat64 = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
            // NAT64 and the deprecated IPv4-compatible form (::a.b.c.d) carry the address last.
            if nat64.contains(&v6) || (seg[..6] == [0; 6] && !matches!(seg[6..], [0, 0] | [0, 1])) {
                return is_public(IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15])));
            }
            // 6to4 (2002:a.b.c.d::/48) routes to the IPv4 address in bits 16–48.
            if seg[0] == 0x2002 {
                return is_public(IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5])));
            }
            !BLOCKED_V6.iter().any(|n| n.contains(&v6))
        }
    }
}

/// Maps a reqwest failure to what the user should read.
pub(crate) fn http_error(e: reqwest::Error, addr: SocketAddr, timeout: Duration) -> VerifyError {
    if e.is_timeout() {
        return VerifyError::Timeout(timeout.as_millis());
    }
    if e.is_connect() && source_is(&e, std::io::ErrorKind::ConnectionRefused) {
        return VerifyError::ConnectionRefused(vec![addr]);
    }
    if e.is_connect() {
        return VerifyError::Connect(addr);
    }
    VerifyError::Http(format!("request to {addr} failed"))
}

/// `a, b, c` for an error message.
fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn source_is(e: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == kind
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_refuses_private_and_special_addresses() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::127.0.0.1",
            "::10.0.0.1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(!is_public(ip), "{bad} must be refused");
        }
        for good in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "::1.1.1.1",
            "2002:101:101::",
        ] {
            let ip: IpAddr = good.parse().unwrap();
            assert!(is_public(ip), "{good} must be allowed");
        }
    }

    #[tokio::test]
    async fn private_addresses_are_refused_before_connecting() {
        let cfg = VerifyConfig::default();
        let err = fetch_well_known(&cfg, "127.0.0.1", "/.well-known/sling-verify/x")
            .await
            .unwrap_err();
        assert!(matches!(err, VerifyError::PrivateAddress { .. }), "{err}");
    }

    #[tokio::test]
    async fn connection_refused_is_reported() {
        // Bind and drop a listener: its port is then (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = VerifyConfig {
            allow_private: true,
            http_port: port,
            timeout: Duration::from_secs(2),
            ..VerifyConfig::default()
        };
        let err = fetch_well_known(&cfg, "127.0.0.1", "/x").await.unwrap_err();
        assert!(matches!(err, VerifyError::ConnectionRefused(_)), "{err}");
        assert!(err.to_string().starts_with("connection refused"), "{err}");
    }
}
