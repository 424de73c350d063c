//! The certificate side of an order: a fresh ECDSA P-256 key and its CSR for one host, and the
//! facts read back from an issued chain (validity, serial, issuer).

use anyhow::Context;

/// A new key (PKCS#8 PEM) and a CSR for `host` (DER), the subject left empty as CAs ignore it.
pub fn key_and_csr(host: &str) -> anyhow::Result<(String, Vec<u8>)> {
    // rcgen's default algorithm is ECDSA P-256 with SHA-256.
    let key = rcgen::KeyPair::generate().context("generating the certificate key")?;
    let mut params =
        rcgen::CertificateParams::new(vec![host.to_owned()]).context("CSR parameters")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .context("serialising the CSR")?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// What the API and the renewal scan need to know about a chain's leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFacts {
    /// Unix milliseconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Lower-case hex, colon-separated (as `openssl x509 -serial` shows it, but in lower case).
    pub serial: String,
    /// The issuer's distinguished name (RFC 4514 form).
    pub issuer: String,
}

/// Reads the first certificate of a PEM chain.
pub fn leaf_facts(chain_pem: &str) -> anyhow::Result<LeafFacts> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the chain is not PEM: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("the leaf is not a valid X.509 certificate: {e}"))?;
    let validity = cert.validity();
    Ok(LeafFacts {
        not_before: validity.not_before.timestamp().saturating_mul(1000),
        not_after: validity.not_after.timestamp().saturating_mul(1000),
        serial: cert.raw_serial_as_string(),
        issuer: cert.issuer().to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn csr_names_the_host_and_the_key_is_pkcs8() {
        let (key, csr) = key_and_csr("go.example.com").unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        // The SAN is an IA5String: the host's bytes appear as they are in the DER.
        assert!(csr.windows(14).any(|w| w == b"go.example.com"));
    }

    #[test]
    fn facts_come_from_the_leaf() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 2);
        params.not_after = rcgen::date_time_ymd(2030, 4, 2);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test Issuer");
        let pem = params.self_signed(&key).unwrap().pem();
        let facts = leaf_facts(&format!("{pem}{pem}")).unwrap();
        assert_eq!(facts.not_before, 1_893_542_400_000);
        assert_eq!(facts.not_after, 1_901_318_400_000);
        assert_eq!(facts.serial, "0a:bc");
        assert!(facts.issuer.contains("Test Issuer"), "{}", facts.issuer);
        assert!(leaf_facts("not a certificate").is_err());
    }
}
