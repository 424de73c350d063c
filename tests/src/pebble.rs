//! A real ACME CA for the certificate tests: Debian's `pebble` and `pebble-challtestsrv` (its
//! mock DNS server), started per test on free loopback ports.
//!
//! The package ships no certificates or configuration, so the test hands [`Pebble::start`] a
//! listener certificate and key it made (signed by a test CA the control plane is told to trust
//! with `--acme-ca-cert`), and this module writes pebble's JSON configuration. Pebble validates
//! HTTP-01 on `http_port` of whatever address challtestsrv resolves the name to (127.0.0.1 by
//! default), so pointing `http_port` at a proxy makes the proxy's answers the ones that count.
//!
//! Without the binaries a test is skipped with a message, unless `CI=true`, where it fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::free_port;

pub const PEBBLE: &str = "/usr/bin/pebble";
pub const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";

/// True when pebble can run here; otherwise prints why and returns false (outside CI) or
/// panics (`CI=true`: a missing pebble must not pass as a skipped test).
pub fn available() -> bool {
    let present = Path::new(PEBBLE).is_file() && Path::new(CHALLTESTSRV).is_file();
    if !present {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !in_ci,
            "{PEBBLE} and {CHALLTESTSRV} are required in CI (apt-get install pebble)"
        );
        eprintln!("SKIP: pebble is not installed (apt-get install pebble)");
    }
    present
}

/// Waits until something accepts TCP connections on `addr`.
async fn wait_for_port(addr: SocketAddr, what: &str, child: &mut Child) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{what} exited with {status} before listening on {addr}");
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what} did not listen on {addr} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .with_context(|| format!("creating {name}.log"))
}

/// `pebble-challtestsrv`: a DNS server answering every A query with 127.0.0.1 (no AAAA), whose
/// TXT and A records the test sets through its management API.
pub struct ChallTestSrv {
    _child: Child,
    /// Where pebble and the control plane send DNS queries.
    pub dns: SocketAddr,
    management: String,
    client: reqwest::Client,
}

impl ChallTestSrv {
    pub async fn start(log_dir: &Path) -> anyhow::Result<ChallTestSrv> {
        let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let management = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut child = Command::new(CHALLTESTSRV)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &dns.to_string()])
            .args(["-management", &management.to_string()])
            // Its own challenge servers would take fixed ports; the proxies answer instead.
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdin(Stdio::null())
            .stdout(log_file(log_dir, "challtestsrv")?)
            .stderr(log_file(log_dir, "challtestsrv")?)
            .kill_on_drop(true)
            .spawn()
            .context("starting pebble-challtestsrv")?;
        wait_for_port(management, "pebble-challtestsrv", &mut child).await?;
        Ok(ChallTestSrv {
            _child: child,
            dns,
            management: format!("http://{management}"),
            client: reqwest::Client::builder().no_proxy().build()?,
        })
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
        let resp = self
            .client
            .post(format!("{}{path}", self.management))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "challtestsrv {path}: {}",
            resp.status()
        );
        Ok(())
    }

    /// Sets the TXT record at `name` (replacing any).
    pub async fn set_txt(&self, name: &str, value: &str) -> anyhow::Result<()> {
        self.clear_txt(name).await?;
        self.post("/set-txt", json!({"host": fqdn(name), "value": value}))
            .await
    }

    pub async fn clear_txt(&self, name: &str) -> anyhow::Result<()> {
        self.post("/clear-txt", json!({"host": fqdn(name)})).await
    }

    /// Answers A queries for `name` with `ip` instead of the default 127.0.0.1.
    pub async fn set_a(&self, name: &str, ip: &str) -> anyhow::Result<()> {
        self.post("/clear-a", json!({"host": fqdn(name)})).await?;
        self.post("/add-a", json!({"host": fqdn(name), "addresses": [ip]}))
            .await
    }
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// What pebble needs to know at start.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// Its HTTPS listener (the ACME directory lives at `https://{listen}/dir`).
    pub listen: SocketAddr,
    pub management: SocketAddr,
    /// PEM files of the listener certificate (for 127.0.0.1) and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The port HTTP-01 validation connects to (a proxy's plain HTTP port).
    pub http_port: u16,
    /// The port TLS-ALPN-01 validation would connect to.
    pub tls_port: u16,
    /// challtestsrv's DNS address.
    pub dns: SocketAddr,
}

impl PebbleOptions {
    /// Options on two fresh ports.
    pub fn new(
        cert: PathBuf,
        key: PathBuf,
        http_port: u16,
        tls_port: u16,
        dns: SocketAddr,
    ) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            management: SocketAddr::from(([127, 0, 0, 1], free_port())),
            cert,
            key,
            http_port,
            tls_port,
            dns,
        }
    }

    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.listen)
    }
}

/// A running pebble.
pub struct Pebble {
    child: Child,
    pub opts: PebbleOptions,
}

impl Pebble {
    /// Starts pebble without artificial validation sleeps, without rejected nonces and without
    /// reusing authorizations (every order answers its own HTTP-01 challenge).
    pub async fn start(opts: &PebbleOptions, dir: &Path) -> anyhow::Result<Pebble> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("pebble-config.json");
        let body = json!({"pebble": {
            "listenAddress": opts.listen.to_string(),
            "managementListenAddress": opts.management.to_string(),
            "certificate": opts.cert.display().to_string(),
            "privateKey": opts.key.display().to_string(),
            "httpPort": opts.http_port,
            "tlsPort": opts.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(&config, serde_json::to_vec_pretty(&body)?)?;
        let mut child = Command::new(PEBBLE)
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", &opts.dns.to_string()])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_file(dir, "pebble")?)
            .stderr(log_file(dir, "pebble")?)
            .kill_on_drop(true)
            .spawn()
            .context("starting pebble")?;
        let started = match wait_for_port(opts.listen, "pebble", &mut child).await {
            Ok(()) => wait_for_port(opts.management, "pebble management", &mut child).await,
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            let log = std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            anyhow::bail!(
                "{e}; pebble.log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(Pebble {
            child,
            opts: opts.clone(),
        })
    }

    /// The root that signs pebble's certificates (random per run), PEM, from its management
    /// interface; `ca_cert` is what its HTTPS listener is signed by.
    pub async fn root_pem(&self, ca_cert: &Path) -> anyhow::Result<String> {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(ca_cert)
            .arg(format!("https://{}/roots/0", self.opts.management))
            .stdin(Stdio::null())
            .output()
            .await
            .context("running curl")?;
        anyhow::ensure!(
            out.status.success(),
            "GET /roots/0: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Kills pebble (its state, accounts and orders, is gone with it).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A `sling-proxy` whose plain HTTP port is fixed in advance (pebble's `httpPort` and the
/// control plane's `--verify-http-port` must name it before the proxy exists), with HTTPS on a
/// free port.
pub struct EdgeProxy {
    pub process: crate::Process,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub http_port: u16,
    /// The HTTPS listener.
    pub tls: SocketAddr,
}

impl EdgeProxy {
    pub async fn start(
        env: &crate::TestEnv,
        control_url: &str,
        http_port: u16,
    ) -> anyhow::Result<EdgeProxy> {
        let dir = env.dir(&format!("edge-proxy-{http_port}"));
        let args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{http_port}"),
            "--admin-listen".into(),
            "127.0.0.1:0".into(),
            "--tls-listen".into(),
            "127.0.0.1:0".into(),
            "--snapshot-dir".into(),
            dir.display().to_string(),
            "--fleet-token".into(),
            crate::FLEET_TOKEN.into(),
            "--default-domain".into(),
            "localhost".into(),
            "--control-url".into(),
            control_url.into(),
        ];
        let (process, urls) = crate::Process::spawn(
            "sling-proxy",
            &crate::binary("sling-proxy"),
            &args,
            env.root(),
            &["proxy", "admin", "tls"],
        )
        .await;
        let tls = urls["tls"]
            .strip_prefix("https://")
            .context("tls listener is https://")?
            .parse()?;
        Ok(EdgeProxy {
            process,
            url: urls["proxy"].clone(),
            http_port,
            tls,
        })
    }
}
