//! The TLS state as the proxy serves it: certificates by SNI name, the hosts whose plain-HTTP
//! requests are sent to HTTPS, and the well-known answers. Built once per fetched [`TlsState`]
//! (off the executor: loading keys costs) and swapped in whole, so a handshake or a request never
//! sees half of an update.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sling_shared::host::normalize_request_host;
use sling_shared::tls::TlsState;

/// Everything the resolver and the request path look up; immutable once built.
#[derive(Debug, Default)]
pub struct Tables {
    /// Normalised SNI name → certificate.
    certs: HashMap<String, Arc<CertifiedKey>>,
    /// Served to a client that sends no server name (connections by IP address).
    fallback: Option<Arc<CertifiedKey>>,
    /// Hosts whose plain-HTTP requests get a 308 to `https://`.
    https_redirect: HashSet<String>,
    /// Host → path → body.
    well_known: HashMap<String, HashMap<String, Bytes>>,
    /// The state's feed sequence (0 when built from the certificate files alone).
    seq: u64,
    /// State certificates skipped because they did not parse or match their key.
    rejected: usize,
}

/// The default domain's certificate from `--tls-cert` / `--tls-key`.
#[derive(Debug, Clone)]
pub struct FileCert {
    /// Normalised default domain: the SNI name it answers.
    pub host: String,
    pub key: Arc<CertifiedKey>,
}

impl Tables {
    /// Builds the tables from `state` plus the file certificate. A certificate entry that does
    /// not parse, or whose key does not match its leaf, is skipped with a warning (and so is its
    /// HTTPS redirect: sending visitors to a port that cannot answer would break the domain).
    /// The file certificate wins over a state entry for the same host: it is explicit
    /// configuration. When the client sends no server name, the file certificate answers, else
    /// the state's certificate for `default_host`.
    pub fn build(
        state: &TlsState,
        file: Option<&FileCert>,
        default_host: &str,
        provider: &CryptoProvider,
    ) -> Self {
        let mut certs: HashMap<String, (i64, Arc<CertifiedKey>)> = HashMap::new();
        let mut https_redirect = HashSet::new();
        let mut rejected = 0;
        for entry in &state.certs {
            let host = normalize_request_host(&entry.host).into_owned();
            let key = match certified_key(
                entry.chain_pem.as_bytes(),
                entry.key_pem.as_bytes(),
                provider,
            ) {
                Ok(key) => Arc::new(key),
                Err(error) => {
                    tracing::warn!(%host, %error, "skipping a certificate of the TLS state");
                    rejected += 1;
                    continue;
                }
            };
            if entry.https_redirect {
                https_redirect.insert(host.clone());
            }
            // Two entries for one host (a renewal caught mid-way): the longer-lived one wins.
            match certs.get(&host) {
                Some((not_after, _)) if *not_after >= entry.not_after => {}
                _ => {
                    certs.insert(host, (entry.not_after, key));
                }
            }
        }
        let mut certs: HashMap<String, Arc<CertifiedKey>> =
            certs.into_iter().map(|(h, (_, k))| (h, k)).collect();
        if let Some(file) = file {
            certs.insert(file.host.clone(), file.key.clone());
        }
        let fallback = file
            .map(|f| f.key.clone())
            .or_else(|| certs.get(default_host).cloned());

        let mut well_known: HashMap<String, HashMap<String, Bytes>> = HashMap::new();
        for entry in &state.well_known {
            if !entry.path.starts_with(super::WELL_KNOWN_PREFIX) {
                tracing::warn!(host = %entry.host, path = %entry.path, "skipping a well-known answer outside /.well-known/");
                continue;
            }
            well_known
                .entry(normalize_request_host(&entry.host).into_owned())
                .or_default()
                .insert(entry.path.clone(), Bytes::from(entry.body.clone()));
        }
        Self {
            certs,
            fallback,
            https_redirect,
            well_known,
            seq: state.seq,
            rejected,
        }
    }

    /// The certificate for a normalised SNI name.
    pub fn cert(&self, host: &str) -> Option<&Arc<CertifiedKey>> {
        self.certs.get(host)
    }

    /// The certificate for a client that sent no server name.
    pub fn fallback(&self) -> Option<&Arc<CertifiedKey>> {
        self.fallback.as_ref()
    }

    /// Whether plain-HTTP requests for a normalised host go to HTTPS.
    pub fn redirects_to_https(&self, host: &str) -> bool {
        self.https_redirect.contains(host)
    }

    pub fn has_https_redirects(&self) -> bool {
        !self.https_redirect.is_empty()
    }

    /// The body served at `path` for a normalised host.
    pub fn well_known(&self, host: &str, path: &str) -> Option<&Bytes> {
        self.well_known.get(host)?.get(path)
    }

    pub fn certificate_count(&self) -> usize {
        self.certs.len()
    }

    pub fn rejected(&self) -> usize {
        self.rejected
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Why a certificate and key pair cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no certificate in the PEM chain")]
    NoCertificate,
    #[error("bad PEM certificate chain: {0}")]
    Chain(rustls_pki_types::pem::Error),
    #[error("bad PEM private key: {0}")]
    Key(rustls_pki_types::pem::Error),
    #[error("the private key is unusable or does not match the certificate: {0}")]
    Mismatch(rustls::Error),
}

/// Parses a PEM chain (leaf first) and a PEM private key into what rustls serves, checking that
/// the key belongs to the leaf.
pub fn certified_key(
    chain_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertError::Chain)?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(CertError::Key)?;
    CertifiedKey::from_der(chain, key, provider).map_err(CertError::Mismatch)
}
