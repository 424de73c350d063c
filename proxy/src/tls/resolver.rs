//! The SNI resolver: picks the certificate for a ClientHello from the current [`Tables`].

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sling_shared::host::normalize_request_host;

use super::tables::Tables;

/// Reads the tables the follower swaps in; a new certificate is served from the next handshake
/// on, and connections already established keep the one they negotiated.
#[derive(Debug)]
pub struct SniResolver {
    tables: Arc<ArcSwap<Tables>>,
}

impl SniResolver {
    pub fn new(tables: Arc<ArcSwap<Tables>>) -> Self {
        Self { tables }
    }
}

impl ResolvesServerCert for SniResolver {
    /// An unknown name gets `None`: rustls then ends the handshake with a fatal alert. Serving
    /// some other host's certificate instead would only trade the alert for a name-mismatch
    /// error in the browser and reveal which domains share the fleet.
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let tables = self.tables.load();
        match hello.server_name() {
            None => tables.fallback().cloned(),
            Some(name) => tables.cert(&normalize_request_host(name)).cloned(),
        }
    }
}
