//! What the proxies need to terminate TLS for custom domains and to answer the HTTP tokens of
//! domain verification and ACME HTTP-01 challenges.
//!
//! The feed carries only [`crate::feed::ChangeOp::TlsChanged`]: private keys never enter the
//! change log (which is stored in plain text). On that op, on start and after a feed reset, a
//! proxy fetches the whole [`TlsState`] from [`TLS_STATE_PATH`] with the fleet token; the control
//! plane decrypts the keys it stores sealed only for that answer.

use serde::{Deserialize, Serialize};

/// `GET TLS_STATE_PATH` with the fleet token → [`TlsState`] as JSON.
pub const TLS_STATE_PATH: &str = "/internal/v1/tls";

/// Every certificate and well-known answer the fleet serves, as of feed sequence `seq`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TlsState {
    /// The feed head when the state was read: changes after it may change the state again.
    pub seq: u64,
    pub certs: Vec<CertEntry>,
    pub well_known: Vec<WellKnownEntry>,
}

/// The certificate for one host name (a custom domain or the default domain).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertEntry {
    /// Normalised host (lower case, ASCII/punycode, no port): the SNI name it answers.
    pub host: String,
    /// The leaf certificate first, then the intermediates, PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Plain-HTTP requests for this host get a 308 to `https://` (except well-known paths).
    pub https_redirect: bool,
}

/// A fixed plain-text answer at a well-known path: `/.well-known/acme-challenge/<token>` (the
/// key authorisation) or `/.well-known/sling-verify/<token>` (the token itself).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WellKnownEntry {
    /// Normalised host the answer is for.
    pub host: String,
    /// The full path, starting with `/.well-known/`.
    pub path: String,
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_json() {
        let s = TlsState {
            seq: 3,
            certs: vec![CertEntry {
                host: "go.example.com".into(),
                chain_pem: "-----BEGIN CERTIFICATE-----".into(),
                key_pem: "-----BEGIN PRIVATE KEY-----".into(),
                not_after: 1_800_000_000,
                https_redirect: true,
            }],
            well_known: vec![WellKnownEntry {
                host: "go.example.com".into(),
                path: "/.well-known/acme-challenge/abc".into(),
                body: "abc.xyz".into(),
            }],
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"httpsRedirect\":true"), "{json}");
        assert_eq!(serde_json::from_str::<TlsState>(&json).unwrap(), s);
    }
}
