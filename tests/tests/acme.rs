//! Certificates from a real ACME CA (Debian's pebble) through the real binaries: a custom domain
//! is added and verified (TXT record in pebble-challtestsrv), the control plane orders a
//! certificate, pebble validates HTTP-01 against the proxy's own answer, and the proxy serves
//! the certificate over HTTP/2 and HTTP/1.1; a forced renewal swaps it under a keep-alive load.
//! Then the failures: the CA down (the order waits, then succeeds), a challenge the CA rejects,
//! a host that does not reach the proxies, a domain deleted mid-order, an unknown SNI name.
//!
//! Skipped with a message when pebble is not installed, unless `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{Value, json};
use sling_e2e::pebble::{self, ChallTestSrv, EdgeProxy, Pebble, PebbleOptions};
use sling_e2e::{
    Api, Backend, ControlOptions, ControlPlane, TestEnv, free_port, unique_destination,
};
use tokio_rustls::TlsConnector;

/// Issuance on a loaded 2-core machine in a debug build: account, order, validation, finalize.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------

/// Files of the test CA that signs pebble's HTTPS listener certificate.
struct ListenerCerts {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn listener_certs(dir: &Path) -> ListenerCerts {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "sling e2e pebble listener CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let files = ListenerCerts {
        ca: dir.join("listener-ca.pem"),
        cert: dir.join("listener.pem"),
        key: dir.join("listener.key"),
    };
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.cert, leaf.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}

/// A control plane with ACME on, a proxy with HTTPS, challtestsrv, and (optionally) pebble.
struct Stack {
    env: TestEnv,
    certs: ListenerCerts,
    dns: ChallTestSrv,
    control: ControlPlane,
    proxy: EdgeProxy,
    pebble_opts: PebbleOptions,
    pebble: Option<Pebble>,
    api: Api,
}

struct StackOptions {
    start_pebble: bool,
    /// Where pebble sends its HTTP-01 validation; default the proxy's port.
    pebble_http_port: Option<u16>,
    extra_args: Vec<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            start_pebble: true,
            pebble_http_port: None,
            extra_args: Vec::new(),
        }
    }
}

impl Stack {
    async fn start(opts: StackOptions) -> Option<Stack> {
        if !pebble::available() {
            return None;
        }
        let env = TestEnv::new(Backend::Sqlite).await?;
        let certs = listener_certs(&env.dir("pebble-certs"));
        let dns = ChallTestSrv::start(env.root()).await.unwrap();
        let http_port = free_port();
        let mut pebble_opts = PebbleOptions::new(
            certs.cert.clone(),
            certs.key.clone(),
            opts.pebble_http_port.unwrap_or(http_port),
            0,
            dns.dns,
        );
        let mut extra_args: Vec<String> = [
            "--acme-directory",
            &pebble_opts.directory_url(),
            "--acme-ca-cert",
            &certs.ca.display().to_string(),
            "--acme-contact",
            "mailto:ops@acme.test",
            "--acme-poll-ms",
            "200",
            "--acme-retry-ms",
            "300",
            "--acme-retry-max-ms",
            "1500",
            "--dns-resolver",
            &dns.dns.to_string(),
            "--verify-http-port",
            &http_port.to_string(),
            "--allow-private-verify",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        extra_args.extend(opts.extra_args);
        let control = env
            .start_control(ControlOptions {
                extra_args,
                ..ControlOptions::default()
            })
            .await;
        let proxy = EdgeProxy::start(&env, &control.url, http_port)
            .await
            .unwrap();
        pebble_opts.tls_port = proxy.tls.port();
        let pebble = if opts.start_pebble {
            Some(
                Pebble::start(&pebble_opts, &env.dir("pebble"))
                    .await
                    .unwrap(),
            )
        } else {
            None
        };
        let api = control.api();
        Some(Stack {
            env,
            certs,
            dns,
            control,
            proxy,
            pebble_opts,
            pebble,
            api,
        })
    }

    async fn start_pebble(&mut self) {
        self.pebble = Some(
            Pebble::start(&self.pebble_opts, &self.env.dir("pebble"))
                .await
                .unwrap(),
        );
    }

    /// Adds `host`, publishes its TXT record and verifies it; returns the domain id.
    async fn add_verified_domain(&self, host: &str) -> String {
        let r = self
            .api
            .call(
                reqwest::Method::POST,
                "/domains",
                Some(json!({"host": host})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let d = r.data();
        let id = d["id"].as_str().unwrap().to_owned();
        let txt = d["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|rec| rec["type"] == "TXT")
            .unwrap_or_else(|| panic!("no TXT record in {d}"));
        self.dns
            .set_txt(
                txt["name"].as_str().unwrap(),
                txt["value"].as_str().unwrap(),
            )
            .await
            .unwrap();
        let r = self.verify(&id).await;
        assert_eq!(r["verified"], true, "{r}");
        id
    }

    async fn verify(&self, id: &str) -> Value {
        let r = self
            .api
            .call(
                reqwest::Method::POST,
                &format!("/domains/{id}/verify"),
                None,
            )
            .await;
        r.data().clone()
    }

    async fn domain(&self, id: &str) -> Value {
        self.api
            .call(reqwest::Method::GET, &format!("/domains/{id}"), None)
            .await
            .data()
            .clone()
    }

    async fn certificate(&self, id: &str) -> Value {
        self.api
            .call(
                reqwest::Method::GET,
                &format!("/domains/{id}/certificate"),
                None,
            )
            .await
            .data()
            .clone()
    }

    /// Polls the certificate view until `pred` holds; panics with the last view and the
    /// control plane's log after `timeout`.
    async fn wait_certificate(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let cert = self.certificate(id).await;
            if pred(&cert) {
                return cert;
            }
            if Instant::now() >= deadline {
                panic!(
                    "certificate of {id} never became {what} within {timeout:?}; last: {cert}\n\
                     domain: {}\n{}",
                    self.domain(id).await,
                    self.control.process.report()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// pebble's root, written to a file for curl.
    async fn root_file(&self) -> PathBuf {
        let root = self
            .pebble
            .as_ref()
            .unwrap()
            .root_pem(&self.certs.ca)
            .await
            .unwrap();
        let path = self.env.dir("pebble-root").join("root.pem");
        std::fs::write(&path, root).unwrap();
        path
    }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// `curl --resolve host:port:127.0.0.1 --cacert root` with `version_flag` (`--http2`,
/// `--http1.1`): (status, HTTP version, Location).
async fn curl(
    root: &Path,
    host: &str,
    tls: SocketAddr,
    path: &str,
    version_flag: &str,
) -> (u16, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "10", version_flag])
        .arg("--resolve")
        .arg(format!("{host}:{}:127.0.0.1", tls.port()))
        .arg("--cacert")
        .arg(root)
        .args(["-w", "%{http_code} %{http_version} %{redirect_url}"])
        .arg(format!("https://{host}:{}{path}", tls.port()))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.splitn(3, ' ');
    let status = parts.next().unwrap_or("").parse().unwrap_or(0);
    let version = parts.next().unwrap_or("").to_owned();
    let location = parts.next().unwrap_or("").to_owned();
    assert!(
        status != 0,
        "curl {version_flag} https://{host}{path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (status, version, location)
}

fn client_config(root_pem: &Path) -> Arc<ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS handshake for `host` on `addr`: the leaf the server presented.
async fn handshake(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    host: &str,
) -> std::io::Result<(
    CertificateDer<'static>,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let tls = tokio::time::timeout(
        Duration::from_secs(10),
        TlsConnector::from(config.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))??;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok((leaf, tls))
}

fn serial_of(der: &CertificateDer<'_>) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    cert.raw_serial_as_string()
}

/// Keep-alive load: GET `path` over one HTTP/1.1 connection until `stop`, reconnecting never.
/// Returns (requests that got the redirect, anything else).
async fn keep_alive_load(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    host: String,
    path: String,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
) -> (u64, u64, CertificateDer<'static>) {
    let (leaf, tls) = handshake(&config, addr, &host).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (mut ok, mut errors) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let req = hyper::Request::get(&path)
            .header(hyper::header::HOST, &host)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        match sender.send_request(req).await {
            Ok(resp) if resp.status().is_redirection() => {
                let _ = resp.into_body().collect().await;
                ok += 1;
                served.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) | Err(_) => errors += 1,
        }
    }
    (ok, errors, leaf)
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// The whole path: verify, issue through the proxy's HTTP-01 answer, serve over h2 and
/// HTTP/1.1, renew under load without an error, unknown names refused cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_issues_serves_and_renews_under_load() {
    let Some(stack) = Stack::start(StackOptions::default()).await else {
        return;
    };
    let host = "shop.acme.test";
    // Before its ownership is proven there is no order: no TXT record, and the host does not
    // reach the proxies (which would answer the HTTP token) → pending.
    stack
        .dns
        .set_a("early.acme.test", "127.0.0.2")
        .await
        .unwrap();
    let r = stack
        .api
        .call(
            reqwest::Method::POST,
            "/domains",
            Some(json!({"host": "early.acme.test"})),
        )
        .await;
    let early = r.data()["id"].as_str().unwrap().to_owned();
    let v = stack.verify(&early).await;
    assert_eq!(
        (v["verified"].clone(), v["status"].clone()),
        (json!(false), json!("pending")),
        "{v}"
    );
    assert_eq!(stack.certificate(&early).await["status"], "none");

    let started = Instant::now();
    let id = stack.add_verified_domain(host).await;
    let cert = stack
        .wait_certificate(&id, "active", ISSUE_TIMEOUT, |c| c["status"] == "active")
        .await;
    let issued_in = started.elapsed();
    assert!(
        cert["issuer"].as_str().unwrap().contains("Pebble"),
        "{cert}"
    );
    let first_serial = cert["serial"].as_str().unwrap().to_owned();
    let d = stack.domain(&id).await;
    assert_eq!(d["status"], "active", "{d}");
    assert_eq!(d["failureReason"], Value::Null, "{d}");

    let dest = unique_destination("acme");
    let r = stack
        .api
        .call(
            reqwest::Method::POST,
            "/links",
            Some(json!({"destinationUrl": dest, "domain": host, "slug": "deal"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let root = stack.root_file().await;
    // The proxy learns of the certificate (TLS state) and the link (feed) within a long poll.
    let mut answers = Vec::new();
    let served = sling_e2e::wait_until(Duration::from_secs(20), || {
        let root = root.clone();
        let tls = stack.proxy.tls;
        async move {
            let a = curl(&root, host, tls, "/deal", "--http2").await;
            (300..400).contains(&a.0)
        }
    })
    .await;
    for flag in ["--http2", "--http1.1"] {
        answers.push(curl(&root, host, stack.proxy.tls, "/deal", flag).await);
    }
    assert!(
        served,
        "never served over TLS: {answers:?}\n{}",
        stack.proxy.process.report()
    );
    assert_eq!(answers[0].1, "2", "{answers:?}");
    assert_eq!(answers[1].1, "1.1", "{answers:?}");
    for (status, _, location) in &answers {
        assert!((300..400).contains(status), "{answers:?}");
        assert_eq!(location, &dest);
    }

    // An unknown name gets a clean TLS failure, neither a hang nor some other certificate.
    let config = client_config(&root);
    let unknown = handshake(&config, stack.proxy.tls, "unknown.acme.test").await;
    assert!(
        unknown.is_err(),
        "a handshake for an unknown name succeeded"
    );

    // Renewal under a keep-alive load.
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn(keep_alive_load(
        config.clone(),
        stack.proxy.tls,
        host.to_owned(),
        "/deal".to_owned(),
        stop.clone(),
        counter.clone(),
    ));
    assert!(
        sling_e2e::wait_until(Duration::from_secs(10), || async {
            counter.load(Ordering::Relaxed) > 20
        })
        .await,
        "the load never got going"
    );
    let renew_started = Instant::now();
    let r = stack
        .api
        .call(
            reqwest::Method::POST,
            &format!("/domains/{id}/certificate/renew"),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let renewed = stack
        .wait_certificate(&id, "renewed", ISSUE_TIMEOUT, |c| {
            c["status"] == "active" && c["serial"].as_str() != Some(first_serial.as_str())
        })
        .await;
    let new_serial = renewed["serial"].as_str().unwrap().to_owned();
    let during_renewal = counter.load(Ordering::Relaxed);
    // A new handshake gets the new certificate once the proxies refetched the TLS state.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last_serial;
    let swapped = loop {
        let (leaf, _) = handshake(&config, stack.proxy.tls, host).await.unwrap();
        last_serial = serial_of(&leaf);
        if last_serial == new_serial {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let swapped_in = renew_started.elapsed();
    assert!(
        swapped,
        "new handshakes still get {last_serial}, want {new_serial}"
    );
    // Let the old connection go on for a bit after the swap.
    let before = counter.load(Ordering::Relaxed);
    assert!(
        sling_e2e::wait_until(Duration::from_secs(10), || async {
            counter.load(Ordering::Relaxed) > before + 20
        })
        .await,
        "the keep-alive connection stalled after the swap"
    );
    stop.store(true, Ordering::Relaxed);
    let (ok, errors, old_leaf) = load.await.unwrap();
    assert_eq!(serial_of(&old_leaf), first_serial);
    assert_eq!(errors, 0, "the load saw errors ({ok} ok)");
    eprintln!(
        "acme: issued in {issued_in:?}; renewal served on new handshakes {swapped_in:?} after \
         the request; keep-alive load: {ok} redirects, {errors} errors ({during_renewal} by the \
         time the renewal was stored); serials {first_serial} -> {new_serial}"
    );
}

/// The CA is down when the domain is verified: the order waits with backoff, counting no
/// failure, and succeeds once the CA is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_waits_for_a_ca_that_is_down() {
    let Some(mut stack) = Stack::start(StackOptions {
        start_pebble: false,
        ..StackOptions::default()
    })
    .await
    else {
        return;
    };
    let id = stack.add_verified_domain("later.acme.test").await;
    let waiting = stack
        .wait_certificate(&id, "retrying", Duration::from_secs(30), |c| {
            c["order"]["attempts"].as_i64().unwrap_or(0) >= 2
        })
        .await;
    assert_eq!(waiting["status"], "issuing", "{waiting}");
    assert_eq!(waiting["order"]["state"], "due", "{waiting}");
    let d = stack.domain(&id).await;
    assert_eq!(d["status"], "issuing", "{d}");
    assert!(
        d["failureReason"].as_str().is_some_and(|r| !r.is_empty()),
        "{d}"
    );

    stack.start_pebble().await;
    let cert = stack
        .wait_certificate(&id, "active", ISSUE_TIMEOUT, |c| c["status"] == "active")
        .await;
    assert!(cert["serial"].as_str().is_some(), "{cert}");
    assert_eq!(stack.domain(&id).await["failureReason"], Value::Null);
}

/// pebble validates HTTP-01 on a port where nothing answers, while the self-check (through the
/// proxy) passes: the CA marks the challenge invalid; after `--acme-max-attempts` the order and
/// the domain are failed with the CA's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_challenge_the_ca_rejects_fails_the_domain() {
    let Some(stack) = Stack::start(StackOptions {
        pebble_http_port: Some(free_port()),
        extra_args: vec!["--acme-max-attempts".into(), "2".into()],
        ..StackOptions::default()
    })
    .await
    else {
        return;
    };
    let id = stack.add_verified_domain("rejected.acme.test").await;
    let cert = stack
        .wait_certificate(&id, "failed", ISSUE_TIMEOUT, |c| c["status"] == "failed")
        .await;
    let reason = cert["order"]["lastError"].as_str().unwrap();
    // pebble's own words: it could not connect for HTTP-01.
    assert!(
        reason.contains("validating the challenge") && reason.contains("connection"),
        "{reason}"
    );
    let d = stack.domain(&id).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["failureReason"].as_str(), Some(reason), "{d}");
    // Asking again starts over (and fails again the same way: still no certificate).
    let r = stack
        .api
        .call(
            reqwest::Method::POST,
            &format!("/domains/{id}/certificate/renew"),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.data()["order"]["state"], "due", "{}", r.body);
}

/// The host resolves to an address where no proxy listens: the self-check fails before the CA
/// is bothered, and the domain ends up failed with that reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_host_not_pointing_at_the_proxies_fails_the_domain() {
    let Some(stack) = Stack::start(StackOptions {
        extra_args: vec!["--acme-max-attempts".into(), "1".into()],
        ..StackOptions::default()
    })
    .await
    else {
        return;
    };
    let host = "elsewhere.acme.test";
    stack.dns.set_a(host, "127.0.0.2").await.unwrap();
    let id = stack.add_verified_domain(host).await;
    let cert = stack
        .wait_certificate(&id, "failed", ISSUE_TIMEOUT, |c| c["status"] == "failed")
        .await;
    let reason = cert["order"]["lastError"].as_str().unwrap();
    assert!(reason.contains("self-check"), "{reason}");
    assert_eq!(stack.domain(&id).await["status"], "failed");
}

/// The domain is deleted while its order runs (the self-check is still waiting for an answer
/// that cannot come): nothing is stored, nothing panics, and the next domain is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_domain_deleted_mid_order_stores_nothing() {
    let Some(stack) = Stack::start(StackOptions::default()).await else {
        return;
    };
    let host = "doomed.acme.test";
    stack.dns.set_a(host, "127.0.0.2").await.unwrap();
    let id = stack.add_verified_domain(host).await;
    // Mid-order: the challenge answer is published (the worker now self-checks it).
    let client = sling_e2e::http_client();
    let published =
        sling_e2e::wait_until(Duration::from_secs(30), || async {
            let state: Value = client
                .get(format!("{}/internal/v1/tls", stack.control.url))
                .bearer_auth(sling_e2e::FLEET_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            state["wellKnown"].as_array().unwrap().iter().any(|w| {
                w["host"] == host && w["path"].as_str().unwrap().contains("acme-challenge")
            })
        })
        .await;
    assert!(published, "the challenge answer was never published");
    let r = stack
        .api
        .call(reqwest::Method::DELETE, &format!("/domains/{id}"), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);

    // The worker carries on with other domains.
    let next = stack.add_verified_domain("survivor.acme.test").await;
    stack
        .wait_certificate(&next, "active", ISSUE_TIMEOUT, |c| c["status"] == "active")
        .await;
    let r = stack
        .api
        .call(
            reqwest::Method::GET,
            &format!("/domains/{id}/certificate"),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let state: Value = client
        .get(format!("{}/internal/v1/tls", stack.control.url))
        .bearer_auth(sling_e2e::FLEET_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hosts: Vec<&str> = state["certs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["survivor.acme.test"]);
    assert!(
        !state["wellKnown"].to_string().contains(host),
        "answers for the deleted domain remain: {}",
        state["wellKnown"]
    );
    assert!(!stack.control.process.stderr().contains("panicked"));
}
