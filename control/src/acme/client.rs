//! Talking to the CA: the HTTPS client instant-acme uses (ring; the platform's roots, or only
//! `--acme-ca-cert` for a test CA such as pebble; a timeout on every request; the last
//! `Retry-After` of an error answer kept for the rate-limit backoff) and the one persistent
//! account per directory, sealed in `acme_accounts`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use http::Request;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, BodyWrapper, BytesResponse, HttpClient, NewAccount,
};

use super::AcmeConfig;
use crate::db::{self, Db};
use crate::seal::Sealer;

/// Longest a single request to the CA may take; a hung CA must not stall an order forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The `Retry-After` instant of the newest error answer from the CA.
#[derive(Clone, Default)]
pub struct RetryAfter(Arc<Mutex<Option<SystemTime>>>);

impl RetryAfter {
    /// Takes the recorded instant (so a later error does not reuse a stale one).
    pub fn take(&self) -> Option<SystemTime> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }

    fn record(&self, at: SystemTime) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(at);
        }
    }
}

type Inner = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// The HTTP client handed to instant-acme.
struct CaClient {
    inner: Inner,
    retry_after: RetryAfter,
}

impl HttpClient for CaClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = HttpClient::request(&self.inner, req);
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let rsp = tokio::time::timeout(REQUEST_TIMEOUT, fut)
                .await
                .map_err(|_| {
                    instant_acme::Error::Other(
                        format!("no answer from the CA within {REQUEST_TIMEOUT:?}").into(),
                    )
                })??;
            if (rsp.parts.status.is_client_error() || rsp.parts.status.is_server_error())
                && let Some(at) = parse_retry_after(&rsp.parts.headers, SystemTime::now())
            {
                retry_after.record(at);
            }
            Ok(rsp)
        })
    }
}

/// `Retry-After: <seconds>` or `Retry-After: <HTTP date>` as an instant.
pub fn parse_retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<SystemTime> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return now.checked_add(Duration::from_secs(secs));
    }
    let ts: jiff::Timestamp = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(SystemTime::from(ts))
}

/// A fresh HTTP client for instant-acme (an `AccountBuilder` consumes one).
fn http_client(cfg: &AcmeConfig, retry_after: &RetryAfter) -> anyhow::Result<Box<dyn HttpClient>> {
    // An explicit provider: the process default may be ambiguous when another crate in the
    // binary enables a second rustls backend.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match &cfg.ca_cert {
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading --acme-ca-cert {}", path.display()))?
            {
                let cert =
                    cert.with_context(|| format!("parsing --acme-ca-cert {}", path.display()))?;
                roots.add(cert).context("adding the --acme-ca-cert root")?;
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "--acme-ca-cert {} holds no certificate",
                path.display()
            );
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .context("TLS versions")?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.with_tls_config(tls)
        }
        None => builder
            .with_provider_and_platform_verifier(provider)
            .context("loading the platform's root certificates")?,
    };
    let connector = builder.https_only().enable_http1().enable_http2().build();
    Ok(Box::new(CaClient {
        inner: HyperClient::builder(TokioExecutor::new()).build(connector),
        retry_after: retry_after.clone(),
    }))
}

/// The account on `cfg.directory_url`: the stored one, or a new one created (and stored) now.
/// Errors are network or database trouble: the caller retries later.
pub async fn account(
    db: &Db,
    sealer: &Sealer,
    cfg: &AcmeConfig,
    retry_after: &RetryAfter,
) -> anyhow::Result<Account> {
    let dir = &cfg.directory_url;
    let stored = match db::acme::account(db, dir).await? {
        Some(sealed) => sealed,
        None => {
            let contact: Vec<&str> = cfg.contact.iter().map(String::as_str).collect();
            let (_, credentials) = Account::builder_with_http(http_client(cfg, retry_after)?)
                .create(
                    &NewAccount {
                        contact: &contact,
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    dir.clone(),
                    None,
                )
                .await
                .with_context(|| format!("creating an ACME account at {dir}"))?;
            let json = serde_json::to_vec(&credentials).context("serialising the account")?;
            let stored =
                db::acme::store_account(db, dir, &sealer.seal(&json), db::now_ms()).await?;
            tracing::info!(directory = %dir, "ACME account created");
            stored
        }
    };
    let json = sealer
        .open(&stored)
        .with_context(|| format!("opening the stored ACME account for {dir}"))?;
    let credentials: AccountCredentials =
        serde_json::from_slice(&json).context("the stored ACME account is not valid")?;
    Account::builder_with_http(http_client(cfg, retry_after)?)
        .from_credentials(credentials)
        .await
        .with_context(|| format!("loading the ACME account at {dir}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = http::HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(
            parse_retry_after(&h, now),
            Some(now + Duration::from_secs(120))
        );
        h.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            parse_retry_after(&h, now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480))
        );
        h.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h, now), None);
    }
}
