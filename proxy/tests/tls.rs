//! TLS at the edge over real sockets: the proxy runs in-process with an HTTPS listener, follows a
//! stub control plane that serves the change feed and `/internal/v1/tls`, and is spoken to by a
//! rustls client with certificates made by rcgen at test time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use sling_proxy::{Config, Listeners};
use sling_shared::feed::{Change, ChangeOp, FeedPage};
use sling_shared::link::LinkRecord;
use sling_shared::snapshot::{SnapshotBody, encode, write_atomic};
use sling_shared::tls::{CertEntry, TlsState, WellKnownEntry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const TOKEN: &str = "fleet-secret";
/// How long a test waits for the proxy to pick up a change before failing.
const PICKUP: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A test CA issuing leaf certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf: PEMs for the proxy and the DER to compare with what the client was served.
#[derive(Clone)]
struct Leaf {
    chain_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "sling test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for `names` (DNS names or IP addresses); the chain PEM carries leaf then CA.
    fn issue(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }
}

fn entry(host: &str, leaf: &Leaf, https_redirect: bool) -> CertEntry {
    CertEntry {
        host: host.into(),
        chain_pem: leaf.chain_pem.clone(),
        key_pem: leaf.key_pem.clone(),
        not_after: 4_000_000_000,
        https_redirect,
    }
}

// ---------------------------------------------------------------------------------------------
// A stub control plane: change feed, TLS state, no snapshots
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Stub {
    /// `None`: `/internal/v1/tls` answers 404.
    tls: Option<TlsState>,
    changes: Vec<Change>,
    tls_fetches: usize,
    /// After [`ControlStub::reset_with`]: the feed forgot everything before this snapshot.
    reset_snapshot: Option<(u64, Vec<u8>)>,
}

/// The snapshot the proxy starts from has this sequence; feed changes come after it.
const SNAPSHOT_SEQ: u64 = 1;

#[derive(Clone)]
struct ControlStub {
    addr: SocketAddr,
    inner: Arc<Mutex<Stub>>,
    head: watch::Sender<u64>,
    stop: Arc<watch::Sender<bool>>,
}

impl ControlStub {
    async fn start(tls: Option<TlsState>) -> ControlStub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stub = ControlStub {
            addr,
            inner: Arc::new(Mutex::new(Stub {
                tls,
                ..Stub::default()
            })),
            head: watch::Sender::new(SNAPSHOT_SEQ),
            stop: Arc::new(watch::Sender::new(false)),
        };
        let server = stub.clone();
        let mut stopped = stub.stop.subscribe();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap(),
                    _ = stopped.wait_for(|s| *s) => return,
                };
                let mut stopped = server.stop.subscribe();
                let server = server.clone();
                let svc = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.answer(req).await) }
                });
                tokio::spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.wait_for(|s| *s) => {}
                    }
                });
            }
        });
        stub
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the TLS state and announces it with a `TlsChanged` change.
    fn publish(&self, mut tls: TlsState) {
        let mut inner = self.inner.lock().unwrap();
        let seq = *self.head.borrow() + 1;
        tls.seq = seq;
        inner.tls = Some(tls);
        inner.changes.push(Change {
            seq,
            op: ChangeOp::TlsChanged,
        });
        self.head.send_replace(seq);
    }

    /// The feed forgets its history (a proxy behind it must reset onto a new snapshot) while the
    /// TLS state changes: the `TlsChanged` falls into the gap and is never seen.
    fn reset_with(&self, mut tls: TlsState) {
        let mut inner = self.inner.lock().unwrap();
        let seq = *self.head.borrow() + 5;
        let mut body = SnapshotBody::new("localhost");
        body.insert_link(
            "localhost",
            "abc",
            LinkRecord::plain("l1", "https://example.com/a"),
        );
        inner.reset_snapshot = Some((seq, encode(&body, seq, 0).unwrap()));
        inner.changes.clear();
        tls.seq = seq;
        inner.tls = Some(tls);
        self.head.send_replace(seq);
    }

    fn tls_fetches(&self) -> usize {
        self.inner.lock().unwrap().tls_fetches
    }

    /// Closes the listener and every open connection: the control plane is down.
    fn stop(&self) {
        self.stop.send_replace(true);
    }

    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: u16, body: Vec<u8>| {
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        };
        let auth = req.headers().get("authorization").map(|v| v.as_bytes());
        if auth != Some(format!("Bearer {TOKEN}").as_bytes()) {
            return reply(401, Vec::new());
        }
        let query = req.uri().query().unwrap_or("");
        let after: u64 = query
            .split('&')
            .find_map(|p| p.strip_prefix("after="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match req.uri().path() {
            "/internal/v1/feed" => {
                // A short long poll: answer at once when there is news, else after a while.
                let mut head = self.head.subscribe();
                let _ =
                    tokio::time::timeout(Duration::from_millis(300), head.wait_for(|h| *h > after))
                        .await;
                let inner = self.inner.lock().unwrap();
                let (snapshot_seq, reset) = match &inner.reset_snapshot {
                    Some((seq, _)) => (*seq, after < *seq),
                    None => (SNAPSHOT_SEQ, false),
                };
                let page = FeedPage {
                    changes: inner
                        .changes
                        .iter()
                        .filter(|c| c.seq > after)
                        .cloned()
                        .collect(),
                    head_seq: *self.head.borrow(),
                    snapshot_seq,
                    reset,
                };
                reply(200, serde_json::to_vec(&page).unwrap())
            }
            "/internal/v1/snapshot" => {
                let newer_than: u64 = query
                    .split('&')
                    .find_map(|p| p.strip_prefix("newer_than="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let inner = self.inner.lock().unwrap();
                match &inner.reset_snapshot {
                    Some((seq, bytes)) if newer_than < *seq => Response::builder()
                        .header("x-sling-snapshot-seq", seq.to_string())
                        .body(Full::new(Bytes::from(bytes.clone())))
                        .unwrap(),
                    _ => reply(304, Vec::new()),
                }
            }
            "/internal/v1/tls" => {
                let mut inner = self.inner.lock().unwrap();
                inner.tls_fetches += 1;
                match &inner.tls {
                    Some(tls) => reply(200, serde_json::to_vec(tls).unwrap()),
                    None => reply(404, Vec::new()),
                }
            }
            _ => reply(404, Vec::new()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

struct Running {
    http: SocketAddr,
    https: SocketAddr,
    admin: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A snapshot dir with one link, `/abc` → `https://example.com/a` on the default domain (every
/// unknown host falls back to it).
fn snapshot_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snapshots");
    let mut body = SnapshotBody::new("localhost");
    body.insert_link(
        "localhost",
        "abc",
        LinkRecord::plain("l1", "https://example.com/a"),
    );
    write_atomic(
        &snaps,
        SNAPSHOT_SEQ,
        &encode(&body, SNAPSHOT_SEQ, 0).unwrap(),
    )
    .unwrap();
    dir
}

#[derive(Default)]
struct Options<'a> {
    control: Option<&'a str>,
    /// Certificate files for the default domain (`localhost`).
    files: Option<&'a Leaf>,
    https_public_port: Option<u16>,
}

async fn start(dir: &Path, opts: Options<'_>) -> Running {
    let snaps = dir.join("snapshots");
    let mut config = Config::new(&snaps);
    config.clicks.enabled = false;
    config.clicks.spool_dir = dir.join("click-spool");
    config.feed_wait = Duration::from_millis(300);
    if let Some(url) = opts.control {
        config = config.with_control(url, TOKEN).unwrap();
    }
    if let Some(leaf) = opts.files {
        let cert = dir.join("default-cert.pem");
        let key = dir.join("default-key.pem");
        std::fs::write(&cert, &leaf.chain_pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        config.tls.cert_files = Some((cert, key));
    }
    config.tls.https_public_port = opts.https_public_port;
    let listeners = Listeners {
        proxy: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listeners.proxy.local_addr().unwrap();
    let admin = listeners.admin.local_addr().unwrap();
    let https = tls.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(sling_proxy::run_with_tls_listener(
        config,
        listeners,
        Some(tls),
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        http,
        https,
        admin,
        stop,
        task,
    }
}

impl Running {
    async fn shutdown(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("proxy did not shut down")
            .unwrap()
            .unwrap();
    }

    async fn metrics(&self) -> String {
        plain_client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn client_config(ca: &Ca, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    client_config_with(ca, alpn, rustls::DEFAULT_VERSIONS)
}

fn client_config_with(
    ca: &Ca,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(ca.roots())
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Connects and handshakes with `sni` (an IP address sends no SNI). Bounded: a hang fails.
async fn connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(
        Duration::from_secs(10),
        TlsConnector::from(config.clone()).connect(name, tcp),
    )
    .await
    .expect("handshake neither finished nor failed within 10 s")
}

fn served_leaf(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// Retries a handshake with `sni` until the proxy serves `want` (it follows the control plane
/// asynchronously).
async fn wait_for_leaf(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    sni: &str,
    want: &CertificateDer<'_>,
) {
    let deadline = Instant::now() + PICKUP;
    loop {
        match connect(addr, config, sni).await {
            Ok(tls) if served_leaf(&tls) == *want => return,
            other => assert!(
                Instant::now() < deadline,
                "{sni}: never served the expected certificate; last: {:?}",
                other.map(|t| served_leaf(&t))
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP connection over TLS, HTTP/2 or HTTP/1.1 per the negotiated ALPN.
enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

struct Answer {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Conn {
    async fn open(tls: TlsStream<TcpStream>) -> Conn {
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Conn::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Conn::H1(send)
        }
    }

    async fn get(&mut self, host: &str, path: &str) -> Answer {
        let resp = match self {
            Conn::H1(send) => {
                let req = Request::get(path)
                    .header("host", host)
                    .body(Empty::new())
                    .unwrap();
                send.send_request(req).await.unwrap()
            }
            Conn::H2(send) => {
                let req = Request::get(format!("https://{host}{path}"))
                    .body(Empty::new())
                    .unwrap();
                send.send_request(req).await.unwrap()
            }
        };
        let (parts, body) = resp.into_parts();
        Answer {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }
}

async fn https_get(addr: SocketAddr, config: &Arc<ClientConfig>, host: &str, path: &str) -> Answer {
    let tls = connect(addr, config, host).await.unwrap();
    Conn::open(tls).await.get(host, path).await
}

fn state(certs: Vec<CertEntry>, well_known: Vec<WellKnownEntry>) -> TlsState {
    TlsState {
        seq: 0,
        certs,
        well_known,
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sni_picks_the_certificate_of_each_host_and_the_file_cert_without_sni() {
    let ca = Ca::new();
    let a = ca.issue(&["a.example"]);
    let b = ca.issue(&["b.example"]);
    let default = ca.issue(&["localhost", "127.0.0.1"]);
    let control = ControlStub::start(Some(state(
        vec![entry("a.example", &a, false), entry("B.Example", &b, false)],
        vec![],
    )))
    .await;
    let dir = snapshot_dir();
    let url = control.url();
    let proxy = start(
        dir.path(),
        Options {
            control: Some(&url),
            files: Some(&default),
            ..Options::default()
        },
    )
    .await;
    let config = client_config(&ca, &[b"http/1.1"]);

    wait_for_leaf(proxy.https, &config, "a.example", &a.der).await;
    wait_for_leaf(proxy.https, &config, "b.example", &b.der).await;
    let localhost = connect(proxy.https, &config, "localhost").await.unwrap();
    assert_eq!(served_leaf(&localhost), default.der);
    // An IP address sends no SNI: the file certificate answers.
    let by_ip = connect(proxy.https, &config, "127.0.0.1").await.unwrap();
    assert_eq!(served_leaf(&by_ip), default.der);

    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("sling_proxy_tls_certificates 3"),
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn alpn_h2_and_http1_both_get_the_redirect() {
    let ca = Ca::new();
    let default = ca.issue(&["localhost"]);
    let dir = snapshot_dir();
    let proxy = start(
        dir.path(),
        Options {
            files: Some(&default),
            ..Options::default()
        },
    )
    .await;
    for (alpn, version) in [
        (&b"h2"[..], Version::HTTP_2),
        (&b"http/1.1"[..], Version::HTTP_11),
    ] {
        let config = client_config(&ca, &[alpn]);
        let tls = connect(proxy.https, &config, "localhost").await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let mut conn = Conn::open(tls).await;
        for _ in 0..3 {
            let answer = conn.get("localhost", "/abc?x=1").await;
            assert_eq!(answer.version, version);
            assert_eq!(answer.status, 302);
            assert_eq!(answer.headers["location"], "https://example.com/a?x=1");
        }
    }
    // A client offering both gets h2 (the server's preference), and AES-128-GCM although
    // rustls' client lists AES-256-GCM first.
    let config = client_config(&ca, &[b"http/1.1", b"h2"]);
    let tls = connect(proxy.https, &config, "localhost").await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        tls.get_ref().1.negotiated_cipher_suite().unwrap().suite(),
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn certificates_added_and_replaced_through_the_feed_without_restart() {
    let ca = Ca::new();
    let first = ca.issue(&["c.example"]);
    let second = ca.issue(&["c.example"]);
    let control = ControlStub::start(Some(state(vec![], vec![]))).await;
    let dir = snapshot_dir();
    let url = control.url();
    let proxy = start(
        dir.path(),
        Options {
            control: Some(&url),
            ..Options::default()
        },
    )
    .await;
    let config = client_config(&ca, &[b"http/1.1"]);
    // Wait until the proxy has fetched the (empty) state at least once.
    let deadline = Instant::now() + PICKUP;
    while control.tls_fetches() == 0 {
        assert!(
            Instant::now() < deadline,
            "the proxy never fetched the TLS state"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(connect(proxy.https, &config, "c.example").await.is_err());

    control.publish(state(vec![entry("c.example", &first, false)], vec![]));
    wait_for_leaf(proxy.https, &config, "c.example", &first.der).await;

    // A keep-alive connection made with the first certificate...
    let tls = connect(proxy.https, &config, "c.example").await.unwrap();
    assert_eq!(served_leaf(&tls), first.der);
    let mut kept = Conn::open(tls).await;
    assert_eq!(kept.get("c.example", "/abc").await.status, 302);

    // ...keeps working after a renewal, while new handshakes get the new certificate.
    control.publish(state(vec![entry("c.example", &second, false)], vec![]));
    wait_for_leaf(proxy.https, &config, "c.example", &second.der).await;
    for _ in 0..3 {
        let answer = kept.get("c.example", "/abc").await;
        assert_eq!(answer.status, 302);
        assert_eq!(answer.headers["location"], "https://example.com/a");
    }
    let metrics = proxy.metrics().await;
    assert!(metrics.contains("sling_proxy_tls_state_seq 3"), "{metrics}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_feed_reset_refetches_the_tls_state() {
    let ca = Ca::new();
    let before = ca.issue(&["r.example"]);
    let after = ca.issue(&["r.example"]);
    let control = ControlStub::start(Some(state(
        vec![entry("r.example", &before, false)],
        vec![],
    )))
    .await;
    let dir = snapshot_dir();
    let url = control.url();
    let proxy = start(
        dir.path(),
        Options {
            control: Some(&url),
            ..Options::default()
        },
    )
    .await;
    let config = client_config(&ca, &[b"http/1.1"]);
    wait_for_leaf(proxy.https, &config, "r.example", &before.der).await;

    // No `TlsChanged` reaches the proxy: only the reset can make it look again.
    control.reset_with(state(vec![entry("r.example", &after, false)], vec![]));
    wait_for_leaf(proxy.https, &config, "r.example", &after.der).await;
    assert_eq!(
        https_get(proxy.https, &config, "r.example", "/abc")
            .await
            .status,
        302
    );
    let metrics = proxy.metrics().await;
    assert!(metrics.contains("sling_proxy_snapshot_seq 6"), "{metrics}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn unknown_name_gets_an_alert_and_the_proxy_keeps_serving() {
    let ca = Ca::new();
    let default = ca.issue(&["localhost"]);
    let dir = snapshot_dir();
    let proxy = start(
        dir.path(),
        Options {
            files: Some(&default),
            ..Options::default()
        },
    )
    .await;
    let config = client_config(&ca, &[b"http/1.1"]);
    for _ in 0..3 {
        let error = connect(proxy.https, &config, "nobody.example")
            .await
            .expect_err("a handshake for an unknown name must fail");
        let rustls_error = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .unwrap_or_else(|| panic!("not a TLS alert: {error:?}"));
        assert!(
            matches!(rustls_error, rustls::Error::AlertReceived(_)),
            "{rustls_error:?}"
        );
    }
    let answer = https_get(proxy.https, &config, "localhost", "/abc").await;
    assert_eq!(answer.status, 302);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("sling_proxy_tls_handshakes_total{result=\"unknown_name\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sling_proxy_tls_handshakes_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn garbage_instead_of_a_client_hello_is_closed_and_the_proxy_keeps_serving() {
    let ca = Ca::new();
    let default = ca.issue(&["localhost"]);
    let dir = snapshot_dir();
    let proxy = start(
        dir.path(),
        Options {
            files: Some(&default),
            ..Options::default()
        },
    )
    .await;
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff][..],
        &[0u8; 4096][..],
    ] {
        let mut tcp = TcpStream::connect(proxy.https).await.unwrap();
        tcp.write_all(garbage).await.unwrap();
        // The proxy answers with at most an alert and closes: the read reaches the end (or a
        // reset) instead of hanging.
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
            .await
            .expect("the connection was not closed");
        if read.is_ok() {
            assert!(buf.len() < 64, "more than an alert came back: {buf:?}");
        }
    }
    let config = client_config(&ca, &[b"h2"]);
    assert_eq!(
        https_get(proxy.https, &config, "localhost", "/abc")
            .await
            .status,
        302
    );
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("sling_proxy_tls_handshakes_total{result=\"failed\"} 3"),
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn sessions_resume_over_tls13_tickets_and_tls12() {
    let ca = Ca::new();
    let default = ca.issue(&["localhost"]);
    let dir = snapshot_dir();
    let proxy = start(
        dir.path(),
        Options {
            files: Some(&default),
            ..Options::default()
        },
    )
    .await;
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        // One config, so one client session store shared by both connections.
        let config = client_config_with(&ca, &[b"http/1.1"], versions);
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let tls = connect(proxy.https, &config, "localhost").await.unwrap();
            kinds.push(tls.get_ref().1.handshake_kind().unwrap());
            // Reading the answer also reads the TLS 1.3 tickets sent after the handshake.
            let answer = Conn::open(tls).await.get("localhost", "/abc").await;
            assert_eq!(answer.status, 302);
        }
        assert_eq!(
            kinds,
            [HandshakeKind::Full, HandshakeKind::Resumed],
            "{versions:?}"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn well_known_answers_on_both_listeners_and_https_redirects_per_domain() {
    let ca = Ca::new();
    let secure = ca.issue(&["secure.example"]);
    let plain = ca.issue(&["plain.example"]);
    let control = ControlStub::start(Some(state(
        vec![
            entry("secure.example", &secure, true),
            entry("plain.example", &plain, false),
        ],
        vec![
            WellKnownEntry {
                host: "secure.example".into(),
                path: "/.well-known/acme-challenge/tok1".into(),
                body: "tok1.thumbprint".into(),
            },
            WellKnownEntry {
                host: "plain.example".into(),
                path: "/.well-known/sling-verify/v1".into(),
                body: "v1".into(),
            },
        ],
    )))
    .await;
    let dir = snapshot_dir();
    let url = control.url();
    let proxy = start(
        dir.path(),
        Options {
            control: Some(&url),
            https_public_port: Some(8443),
            ..Options::default()
        },
    )
    .await;
    let config = client_config(&ca, &[b"http/1.1"]);
    wait_for_leaf(proxy.https, &config, "secure.example", &secure.der).await;
    let http = plain_client();
    let get = |host: &'static str, path: &'static str| {
        http.get(format!("http://{}{path}", proxy.http))
            .header("host", host)
            .send()
    };

    // The challenge over plain HTTP, with a port and odd case in Host: answered, not redirected.
    let resp = get("Secure.Example:80", "/.well-known/acme-challenge/tok1")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.text().await.unwrap(), "tok1.thumbprint");
    // Everything else on that host goes to HTTPS, path, query and public port kept.
    let resp = get("secure.example", "/abc?utm=x").await.unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        "https://secure.example:8443/abc?utm=x"
    );
    let resp = get("secure.example", "/.well-known/acme-challenge/other")
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    // A host without https_redirect is served over plain HTTP as before.
    assert_eq!(get("plain.example", "/abc").await.unwrap().status(), 302);
    let resp = get("plain.example", "/.well-known/sling-verify/v1")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "v1");
    // A token belongs to its host only.
    assert_eq!(
        get("plain.example", "/.well-known/acme-challenge/tok1")
            .await
            .unwrap()
            .status(),
        404
    );

    // Over HTTPS: the same answer, and no redirect loop.
    let answer = https_get(
        proxy.https,
        &config,
        "secure.example",
        "/.well-known/acme-challenge/tok1",
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "tok1.thumbprint");
    let answer = https_get(proxy.https, &config, "secure.example", "/abc").await;
    assert_eq!(answer.status, 302);
    assert_eq!(answer.headers["location"], "https://example.com/a");
    proxy.shutdown().await;
}

#[tokio::test]
async fn bad_certificates_are_skipped_without_evicting_the_others() {
    let ca = Ca::new();
    let good = ca.issue(&["good.example"]);
    let other = ca.issue(&["other.example"]);
    let control = ControlStub::start(Some(state(
        vec![
            entry("good.example", &good, true),
            CertEntry {
                chain_pem: "-----BEGIN CERTIFICATE-----\nnot base64\n".into(),
                ..entry("garbage.example", &other, true)
            },
            // A certificate with somebody else's key.
            CertEntry {
                key_pem: good.key_pem.clone(),
                ..entry("other.example", &other, true)
            },
        ],
        vec![],
    )))
    .await;
    let dir = snapshot_dir();
    let url = control.url();
    let proxy = start(
        dir.path(),
        Options {
            control: Some(&url),
            ..Options::default()
        },
    )
    .await;
    let config = client_config(&ca, &[b"http/1.1"]);
    wait_for_leaf(proxy.https, &config, "good.example", &good.der).await;
    assert!(
        connect(proxy.https, &config, "other.example")
            .await
            .is_err()
    );
    assert!(
        connect(proxy.https, &config, "garbage.example")
            .await
            .is_err()
    );
    // No HTTPS redirect for a host whose certificate cannot be served.
    let resp = plain_client()
        .get(format!("http://{}/abc", proxy.http))
        .header("host", "other.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("sling_proxy_tls_rejected_certificates 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sling_proxy_tls_certificates 1"),
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_control_plane_without_tls_state_leaves_the_file_certificate_serving() {
    let ca = Ca::new();
    let default = ca.issue(&["localhost"]);
    let control = ControlStub::start(None).await;
    let dir = snapshot_dir();
    let url = control.url();
    let proxy = start(
        dir.path(),
        Options {
            control: Some(&url),
            files: Some(&default),
            ..Options::default()
        },
    )
    .await;
    let deadline = Instant::now() + PICKUP;
    while control.tls_fetches() == 0 {
        assert!(
            Instant::now() < deadline,
            "the proxy never asked for the TLS state"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let config = client_config(&ca, &[b"h2"]);
    let answer = https_get(proxy.https, &config, "localhost", "/abc").await;
    assert_eq!(answer.status, 302);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("sling_proxy_tls_state_errors_total 0"),
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn cached_state_serves_https_when_the_control_plane_is_down_at_start() {
    let ca = Ca::new();
    let cached = ca.issue(&["cached.example"]);
    let control = ControlStub::start(Some(state(
        vec![entry("cached.example", &cached, true)],
        vec![WellKnownEntry {
            host: "cached.example".into(),
            path: "/.well-known/sling-verify/t".into(),
            body: "t".into(),
        }],
    )))
    .await;
    let dir = snapshot_dir();
    let url = control.url();
    let proxy = start(
        dir.path(),
        Options {
            control: Some(&url),
            ..Options::default()
        },
    )
    .await;
    let config = client_config(&ca, &[b"http/1.1"]);
    wait_for_leaf(proxy.https, &config, "cached.example", &cached.der).await;
    proxy.shutdown().await;

    let cache: PathBuf = dir.path().join("snapshots").join("tls-state.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cache).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the cache holds private keys");
    let saved: TlsState = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(saved.certs.len(), 1);

    control.stop();
    let proxy = start(
        dir.path(),
        Options {
            control: Some(&url),
            ..Options::default()
        },
    )
    .await;
    // Served from the cache at once: no retry loop needed.
    let tls = connect(proxy.https, &config, "cached.example")
        .await
        .unwrap();
    assert_eq!(served_leaf(&tls), cached.der);
    let answer = Conn::open(tls).await.get("cached.example", "/abc").await;
    assert_eq!(answer.status, 302);
    let resp = plain_client()
        .get(format!("http://{}/.well-known/sling-verify/t", proxy.http))
        .header("host", "cached.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    proxy.shutdown().await;
}
