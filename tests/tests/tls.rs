//! HTTPS on the real `sling-proxy` binary: `--tls-listen`, `--tls-cert`/`--tls-key` and the
//! `listening tls=…` line, a restart with the control plane unreachable that serves custom-domain
//! certificates from the cached TLS state, well-known answers and the per-domain 308 over plain
//! HTTP, and a clean SIGTERM with HTTPS connections open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sling_e2e::{Backend, Proxy, TestEnv, http_client};
use sling_shared::link::LinkRecord;
use sling_shared::snapshot::{SnapshotBody, encode, write_atomic};
use sling_shared::tls::{CertEntry, TlsState, WellKnownEntry};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "e2e CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// (chain PEM, key PEM, leaf DER).
    fn issue(&self, host: &str) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        (
            format!("{}{}", cert.pem(), self.cert.pem()),
            key.serialize_pem(),
            cert.der().clone(),
        )
    }

    fn client(&self, alpn: &[u8]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(config)
    }
}

/// One GET over a fresh TLS connection with `host` as SNI: (served leaf, status, Location).
async fn https_get(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    host: &str,
    path: &str,
) -> (CertificateDer<'static>, u16, Option<String>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let tls = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("https://{host}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = resp.into_body().collect().await.unwrap();
    (leaf, status, location)
}

fn addr_of(url: &str) -> SocketAddr {
    url.strip_prefix("https://").unwrap().parse().unwrap()
}

fn write_cached_state(dir: &Path, state: &TlsState) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("tls-state.json"))
        .unwrap();
    f.write_all(&serde_json::to_vec(state).unwrap()).unwrap();
}

#[tokio::test]
async fn binary_serves_https_from_files_and_the_cached_state_without_a_control_plane() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let ca = Ca::new();
    let (default_chain, default_key, default_der) = ca.issue("localhost");
    let (custom_chain, custom_key, custom_der) = ca.issue("go.custom.example");

    let snapshots = env.dir("proxy-snapshots");
    let mut body = SnapshotBody::new("localhost");
    body.insert_link(
        "localhost",
        "abc",
        LinkRecord::plain("l1", "https://example.com/a"),
    );
    write_atomic(&snapshots, 2, &encode(&body, 2, 0).unwrap()).unwrap();
    // What an earlier run of the proxy cached from the control plane, which is now unreachable.
    write_cached_state(
        &snapshots,
        &TlsState {
            seq: 2,
            certs: vec![CertEntry {
                host: "go.custom.example".into(),
                chain_pem: custom_chain,
                key_pem: custom_key,
                not_after: 4_000_000_000,
                https_redirect: true,
            }],
            well_known: vec![WellKnownEntry {
                host: "go.custom.example".into(),
                path: "/.well-known/acme-challenge/tok".into(),
                body: "tok.key".into(),
            }],
        },
    );
    let cert = env.root().join("default-cert.pem");
    let key = env.root().join("default-key.pem");
    std::fs::write(&cert, default_chain).unwrap();
    std::fs::write(&key, default_key).unwrap();
    let args: Vec<String> = vec![
        "--tls-listen".into(),
        "127.0.0.1:0".into(),
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
        "--https-public-port".into(),
        "8443".into(),
        "--clicks".into(),
        "off".into(),
    ];
    // Nothing listens on port 9 of loopback: the control plane is down.
    let mut proxy =
        Proxy::start_with_args(&env, &snapshots, Some("http://127.0.0.1:9"), &args).await;
    let tls = addr_of(proxy.tls_url.as_deref().unwrap());

    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let config = ca.client(alpn);
        let (leaf, status, location) = https_get(tls, &config, "localhost", "/abc").await;
        assert_eq!(leaf, default_der);
        assert_eq!(
            (status, location.as_deref()),
            (302, Some("https://example.com/a"))
        );
        let (leaf, status, _) = https_get(tls, &config, "go.custom.example", "/abc").await;
        assert_eq!(leaf, custom_der);
        assert_eq!(status, 302);
    }

    let client = http_client();
    let plain = |path: &str| {
        client
            .get(format!("{}{path}", proxy.url))
            .header("host", "go.custom.example")
            .send()
    };
    let challenge = plain("/.well-known/acme-challenge/tok").await.unwrap();
    assert_eq!(challenge.status(), 200);
    assert_eq!(challenge.text().await.unwrap(), "tok.key");
    let moved = plain("/abc?x=1").await.unwrap();
    assert_eq!(moved.status(), 308);
    assert_eq!(
        moved.headers()["location"],
        "https://go.custom.example:8443/abc?x=1"
    );

    let (status, metrics) = proxy.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("sling_proxy_tls_handshakes_total{result=\"ok\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sling_proxy_tls_certificates 2"),
        "{metrics}"
    );
    proxy.stop().await;
}
