//! TLS at the edge (certificate path, issue 8).
//!
//! - [`tables`]: a fetched [`TlsState`] turned into lookups (certificates by SNI name, hosts sent
//!   to HTTPS, well-known answers), swapped in whole through one `ArcSwap`.
//! - [`resolver`]: rustls' SNI hook over those tables.
//! - [`handshake`]: the HTTPS listener's per-connection handshake (timeout, metrics).
//! - [`follower`]: fetches the state on start, on `TlsChanged` and after a feed reset, retries
//!   with backoff, and keeps a private cached copy so HTTPS survives a control-plane outage.
//!
//! [`TlsEdge`] ties them together and is what the rest of the proxy holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use arc_swap::{ArcSwap, Guard};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;
use sling_shared::tls::TlsState;
use tokio::sync::Notify;

use crate::config::TlsConfig;
use crate::metrics::Metrics;

pub mod follower;
pub mod handshake;
pub mod resolver;
pub mod tables;

pub use tables::{FileCert, Tables};

/// Well-known answers live under this prefix; anything else is not looked up.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/";
/// Server-side sessions kept for TLS 1.2 resumption by session id (about 100 bytes each).
const SESSION_CACHE_SIZE: usize = 32 * 1024;

/// ring's cipher suites with AES-128-GCM first in each protocol version. Many clients (curl,
/// rustls, Go) list AES-256-GCM-SHA384 first; its SHA-384 key schedule runs on ring's portable
/// SHA-512 code on CPUs without a vector path (AMD), which cost about a tenth of the server's time
/// per full handshake in the `tls` bench, while SHA-256 runs on the SHA extensions. AES-128-GCM is
/// what browsers prefer anyway; ChaCha20 stays available, last.
fn provider() -> CryptoProvider {
    use rustls::CipherSuite as S;
    let mut provider = rustls::crypto::ring::default_provider();
    // Stable sort: TLS 1.3 suites stay before TLS 1.2 ones.
    provider.cipher_suites.sort_by_key(|suite| {
        let aes128 = matches!(
            suite.suite(),
            S::TLS13_AES_128_GCM_SHA256
                | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (
            suite.version().version != rustls::ProtocolVersion::TLSv1_3,
            !aes128,
        )
    });
    provider
}

/// The proxy's TLS state and the means to change it.
#[derive(Debug)]
pub struct TlsEdge {
    tables: Arc<ArcSwap<Tables>>,
    file: Option<FileCert>,
    default_host: String,
    provider: Arc<CryptoProvider>,
    /// Lets a plain-HTTP request skip the table load while no host wants HTTPS.
    any_https_redirect: AtomicBool,
    https_public_port: Option<u16>,
    /// Wakes the follower: a `TlsChanged` change or a feed reset was seen.
    refetch: Notify,
}

impl TlsEdge {
    /// Reads the certificate files, if configured. An unreadable or mismatched file is an error:
    /// the operator asked for it explicitly.
    pub fn new(config: &TlsConfig, default_host: &str) -> anyhow::Result<Self> {
        let provider = Arc::new(provider());
        let file = match &config.cert_files {
            None => None,
            Some((cert, key)) => {
                let chain = std::fs::read(cert)
                    .with_context(|| format!("reading --tls-cert {}", cert.display()))?;
                let key_pem = std::fs::read(key)
                    .with_context(|| format!("reading --tls-key {}", key.display()))?;
                let certified =
                    tables::certified_key(&chain, &key_pem, &provider).with_context(|| {
                        format!(
                            "--tls-cert {} / --tls-key {}",
                            cert.display(),
                            key.display()
                        )
                    })?;
                Some(FileCert {
                    host: default_host.to_owned(),
                    key: Arc::new(certified),
                })
            }
        };
        let edge = Self {
            tables: Arc::new(ArcSwap::from_pointee(Tables::default())),
            file,
            default_host: default_host.to_owned(),
            provider,
            any_https_redirect: AtomicBool::new(false),
            https_public_port: config.https_public_port,
            refetch: Notify::new(),
        };
        edge.tables
            .store(Arc::new(edge.build(&TlsState::default())));
        Ok(edge)
    }

    /// Parses `state` (this loads every key: call it off the executor) into tables for
    /// [`TlsEdge::install`].
    pub fn build(&self, state: &TlsState) -> Tables {
        Tables::build(
            state,
            self.file.as_ref(),
            &self.default_host,
            &self.provider,
        )
    }

    /// Serves `tables` from the next handshake and request on.
    pub fn install(&self, tables: Tables, metrics: &Metrics) {
        metrics.tls_installed(tables.seq(), tables.certificate_count(), tables.rejected());
        self.any_https_redirect
            .store(tables.has_https_redirects(), Ordering::Release);
        self.tables.store(Arc::new(tables));
    }

    pub fn tables(&self) -> Guard<Arc<Tables>> {
        self.tables.load()
    }

    /// Cheap check for the plain listener's hot path.
    pub fn any_https_redirect(&self) -> bool {
        self.any_https_redirect.load(Ordering::Acquire)
    }

    pub fn https_public_port(&self) -> Option<u16> {
        self.https_public_port
    }

    /// Asks the follower to fetch the state again (coalesced: many calls while a fetch runs
    /// cause one more fetch).
    pub fn request_refetch(&self) {
        self.refetch.notify_one();
    }

    pub(crate) async fn refetch_requested(&self) {
        self.refetch.notified().await;
    }

    /// The HTTPS listener's configuration: the SNI resolver, ALPN `h2` then `http/1.1`, and
    /// resumption both ways (a session cache for TLS 1.2 session ids and a rotating ticket key
    /// for tickets; tickets are per process, so a fleet behind one name resumes only on the
    /// proxy that issued them).
    pub fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver::SniResolver::new(self.tables.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Our order (AES-128-GCM first, see `provider`), not the client's.
        config.ignore_client_order = true;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        config.ticketer = rustls::crypto::ring::Ticketer::new().context("TLS ticket key")?;
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes128_gcm_leads_each_protocol_version() {
        let suites: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(suites[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(suites[1], rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
        assert_eq!(
            suites[3],
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        );
        assert_eq!(suites.len(), 9);
    }
}
