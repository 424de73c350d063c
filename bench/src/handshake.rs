//! Full TLS handshakes per second: `C` tasks, each in a loop of connect → full handshake (no
//! session store, so nothing is ever resumed) → one `GET` with `Connection: close` → read the
//! answer to the server's close. wrk cannot do this: with `Connection: close` it reconnects on the
//! same OpenSSL object, which keeps the last session and resumes it.
//!
//! The client checks nothing about the certificate (like wrk): verifying a chain and the server's
//! signature costs a P-256 client more than signing costs the server, and the client has one
//! core like the server. It runs as a child process of the harness (`handshake-worker`, hidden)
//! on a single-threaded runtime, pinned with taskset to the load generator's core.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::cli::HandshakeArgs;
use crate::openloop::Percentiles;

const MARKER: &str = "SLING_BENCH_HANDSHAKES ";

/// What one worker run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandshakeSummary {
    /// Connections (handshake + one redirect) completed in the measured window.
    pub handshakes: u64,
    pub duration_us: u64,
    /// Failed handshakes, I/O errors, timeouts and non-3xx answers.
    pub errors: u64,
    /// Handshakes the server resumed: must be 0 (the client keeps no sessions).
    pub resumed: u64,
    /// Negotiated protocol and cipher suite of the last connection.
    pub protocol: String,
    pub cipher_suite: String,
    /// Connect → end of the answer.
    pub latency: Percentiles,
}

impl HandshakeSummary {
    pub fn rate(&self) -> f64 {
        self.handshakes as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }
}

/// Runs the worker under `pin` and returns its summary.
pub async fn run(pin: &[String], args: &HandshakeArgs) -> anyhow::Result<HandshakeSummary> {
    let me = std::env::current_exe().context("locating the bench executable")?;
    let mut cmd = match pin.split_first() {
        Some((first, rest)) => {
            let mut c = tokio::process::Command::new(first);
            c.args(rest).arg(&me);
            c
        }
        None => tokio::process::Command::new(&me),
    };
    cmd.arg("handshake-worker")
        .args(["--target", &args.target, "--sni", &args.sni, "--slugs"])
        .arg(&args.slugs)
        .args([
            "--concurrency",
            &args.concurrency.to_string(),
            "--duration",
            &args.duration.to_string(),
            "--warmup",
            &args.warmup.to_string(),
            "--seed",
            &args.seed.to_string(),
            "--timeout-ms",
            &args.timeout_ms.to_string(),
        ])
        .kill_on_drop(true);
    if args.tls12 {
        cmd.arg("--tls12");
    }
    let out = cmd.output().await.context("running the handshake worker")?;
    crate::procs::printed_summary(&out, MARKER, "the handshake worker")
}

/// Entry point of `sling-bench handshake-worker`.
pub fn worker_main(args: &HandshakeArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.slugs)
        .with_context(|| format!("reading {}", args.slugs.display()))?;
    let requests: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| request(&args.sni, &format!("/{l}")))
        .collect();
    anyhow::ensure!(
        !requests.is_empty(),
        "{} has no slugs",
        args.slugs.display()
    );
    anyhow::ensure!(args.concurrency > 0, "concurrency must be positive");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = rt.block_on(drive(args, Arc::new(requests)))?;
    println!("{MARKER}{}", serde_json::to_string(&summary)?);
    Ok(())
}

fn request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A client that offers `http/1.1`, keeps no sessions and accepts any certificate.
pub fn client_config(tls12: bool) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// One connection: handshake, one request, the whole answer. Returns the answer's status line
/// and headers (lossy), and whether the handshake was resumed.
pub async fn one_request(
    connector: &TlsConnector,
    target: &str,
    name: &ServerName<'static>,
    request: &[u8],
) -> anyhow::Result<(String, bool, String, String)> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name.clone(), tcp).await?;
    let conn = tls.get_ref().1;
    let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
    let protocol = conn
        .protocol_version()
        .map_or_else(String::new, |v| format!("{v:?}"));
    let suite = conn
        .negotiated_cipher_suite()
        .map_or_else(String::new, |s| format!("{:?}", s.suite()));
    tls.write_all(request).await?;
    let mut answer = Vec::with_capacity(512);
    // The server closes after answering (`Connection: close`); one that closes without
    // close_notify ends the read with UnexpectedEof, which is fine once the answer is in.
    match tls.read_to_end(&mut answer).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..head_end]).into_owned();
    Ok((head, resumed, protocol, suite))
}

/// The status code of a response head.
pub fn status_of(head: &str) -> Option<u16> {
    head.split(' ').nth(1)?.parse().ok()
}

/// A header's value from a response head.
pub fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

struct Tally {
    latency: Histogram<u64>,
    handshakes: u64,
    errors: u64,
    resumed: u64,
    protocol: String,
    cipher_suite: String,
}

async fn drive(
    args: &HandshakeArgs,
    requests: Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<HandshakeSummary> {
    let connector = TlsConnector::from(client_config(args.tls12)?);
    let name = ServerName::try_from(args.sni.clone()).context("--sni")?;
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut tasks = Vec::new();
    for c in 0..u64::from(args.concurrency) {
        let (connector, name, requests) = (connector.clone(), name.clone(), requests.clone());
        let target = args.target.clone();
        let seed = args.seed.wrapping_mul(31).wrapping_add(c);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut t = Tally {
                latency: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?,
                handshakes: 0,
                errors: 0,
                resumed: 0,
                protocol: String::new(),
                cipher_suite: String::new(),
            };
            tokio::time::sleep_until(start).await;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let req = &requests[rng.random_range(0..requests.len())];
                let outcome =
                    tokio::time::timeout(timeout, one_request(&connector, &target, &name, req))
                        .await;
                let done = Instant::now();
                if began < measure_from || done > end {
                    continue;
                }
                match outcome {
                    Ok(Ok((head, resumed, protocol, suite)))
                        if status_of(&head).is_some_and(|s| (300..400).contains(&s)) =>
                    {
                        t.handshakes += 1;
                        t.resumed += u64::from(resumed);
                        t.protocol = protocol;
                        t.cipher_suite = suite;
                        t.latency
                            .saturating_record((done - began).as_micros().max(1) as u64);
                    }
                    _ => t.errors += 1,
                }
            }
            Ok::<_, anyhow::Error>(t)
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut handshakes, mut errors, mut resumed) = (0, 0, 0);
    let (mut protocol, mut cipher_suite) = (String::new(), String::new());
    for task in tasks {
        let t = task.await.context("handshake task panicked")??;
        latency.add(&t.latency)?;
        handshakes += t.handshakes;
        errors += t.errors;
        resumed += t.resumed;
        if !t.protocol.is_empty() {
            protocol = t.protocol;
            cipher_suite = t.cipher_suite;
        }
    }
    Ok(HandshakeSummary {
        handshakes,
        duration_us: args.duration * 1_000_000,
        errors,
        resumed,
        protocol,
        cipher_suite,
        latency: Percentiles::of(&latency),
    })
}

/// The bench measures the servers, not certificate checking: every certificate and signature is
/// accepted without looking (wrk does the same with OpenSSL's `SSL_VERIFY_NONE`).
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_status_and_headers_of_a_response_head() {
        let head = "HTTP/1.1 302 Found\r\nlocation: https://example.com/l/1\r\nContent-Length: 0";
        assert_eq!(status_of(head), Some(302));
        assert_eq!(header_of(head, "Location"), Some("https://example.com/l/1"));
        assert_eq!(header_of(head, "cache-control"), None);
        assert_eq!(status_of("garbage"), None);
    }
}
