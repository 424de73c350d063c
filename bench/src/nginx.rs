//! nginx as the reference: Debian's nginx with a configuration the bench writes, serving the same
//! links as a `map $uri $dest` and `return 302 $dest`.
//!
//! The configuration is chosen to do the same work as sling: one worker on the server core, a
//! buffered access log (sling's proxy does not log each request yet — the report says so),
//! unlimited keep-alive (nginx's default closes a connection after 1,000 requests, which sling
//! does not do), and the same `Cache-Control` header sling sends. One difference stays: nginx adds
//! a small HTML body to its 302; the report shows bytes per response for both sides.
//!
//! With [`TlsFiles`] the same server also listens with TLS (`ssl_protocols TLSv1.2 TLSv1.3`,
//! HTTP/2 by ALPN, a shared session cache and tickets — the usual production settings), with the
//! cipher suites sling-proxy serves in sling's order, so both negotiate the same suite.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::procs::{self, Proc};

pub struct Nginx {
    pub proc: Proc,
    pub addr: String,
    /// `127.0.0.1:PORT` of the TLS listener, when started with [`TlsFiles`].
    pub tls_addr: Option<String>,
    pub access_log: PathBuf,
}

/// The certificate chain and key nginx serves on its TLS port.
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    pub port: u16,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Writes `nginx.conf` into `dir` for a map of `links` entries in `map_path`, listening on `port`
/// (and with TLS on `tls.port`).
pub fn write_config(
    dir: &Path,
    map_path: &Path,
    links: u64,
    port: u16,
    tls: Option<TlsFiles<'_>>,
) -> anyhow::Result<PathBuf> {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let d = dir.display();
    let t = tmp.display();
    // nginx builds the map's hash at start: above 10,000 it tries the last 1,000 table sizes up
    // to map_hash_max_size, each try a pass over every key, until no bucket overflows
    // map_hash_bucket_size. With 4 slots per key and room for 10 keys per bucket (24 bytes
    // each) the first try succeeds even at 10M keys; with tighter settings a 10M map takes many
    // minutes or fails ("could not build map_hash"). Buckets are allocated at their real size, so
    // the generous limits cost little memory.
    let max_size = (links * 4).max(2048);
    // nginx 1.22 (Debian 12) enables HTTP/2 on the listen line (`http2 on;` came in 1.25.1).
    let tls_listen = match tls {
        None => String::new(),
        Some(t) => format!(
            "listen 127.0.0.1:{port} ssl http2 backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        # The suites and order sling-proxy serves (AES-128-GCM first, server's choice).
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 1h;",
            port = t.port,
            cert = t.cert.display(),
            key = t.key.display(),
        ),
    };
    let conf = format!(
        r#"# Written by sling-bench; started with: nginx -p {d} -c {d}/nginx.conf -e {d}/error.log
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log {d}/access.log combined buffer=64k flush=1s;
    client_body_temp_path {t}/client_body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 75s;
    server_tokens off;
    default_type text/html;

    map_hash_max_size {max_size};
    map_hash_bucket_size 256;
    map $uri $dest {{
        default "";
        include {map};
    }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        {tls_listen}
        server_name localhost;
        location / {{
            if ($dest = "") {{
                return 404;
            }}
            add_header Cache-Control "private, max-age=90" always;
            return 302 $dest;
        }}
    }}
}}
"#,
        map = map_path.display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Starts nginx on `pin` with the configuration in `dir` and waits until `probe_path` answers 302.
/// Loading a large map takes a while: the wait allows for it.
pub async fn start(
    nginx_bin: &Path,
    pin: &[String],
    dir: &Path,
    map_path: &Path,
    links: u64,
    probe_path: &str,
) -> anyhow::Result<Nginx> {
    start_with_tls(nginx_bin, pin, dir, map_path, links, probe_path, None).await
}

/// [`start`], also serving TLS with `tls` (its `port` is ignored: a free one is picked).
pub async fn start_with_tls(
    nginx_bin: &Path,
    pin: &[String],
    dir: &Path,
    map_path: &Path,
    links: u64,
    probe_path: &str,
    tls: Option<TlsFiles<'_>>,
) -> anyhow::Result<Nginx> {
    let port = procs::free_port()?;
    let tls = match tls {
        Some(t) => {
            let mut tls_port = procs::free_port()?;
            while tls_port == port {
                tls_port = procs::free_port()?;
            }
            Some(TlsFiles {
                port: tls_port,
                ..t
            })
        }
        None => None,
    };
    let conf = write_config(dir, map_path, links, port, tls)?;
    let args = [
        "-p".to_owned(),
        dir.display().to_string(),
        "-c".to_owned(),
        conf.display().to_string(),
        "-e".to_owned(),
        dir.join("error.log").display().to_string(),
    ];
    let mut proc = Proc::spawn("nginx", pin, nginx_bin, &args, &[], dir)?;
    let addr = format!("127.0.0.1:{port}");
    let client = procs::http_client()?;
    let url = format!("http://{addr}{probe_path}");
    // nginx checks every map key for duplicates against a fixed-size table of earlier keys, so
    // loading a map grows faster than linearly: about 9 minutes for 10M keys on a 2-core EPYC.
    if links >= 2_000_000 {
        eprintln!(
            "nginx is loading a {links}-entry map: this takes minutes (about 9 for 10M keys)…"
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120 + links / 5_000);
    loop {
        if let Ok(resp) = client.get(&url).send().await {
            anyhow::ensure!(
                resp.status() == reqwest::StatusCode::FOUND,
                "nginx answered {} for {probe_path}: is another server on port {port}?",
                resp.status()
            );
            break;
        }
        if let Err(e) = proc.ensure_running() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            return Err(e.context(format!("nginx error.log:\n{log}")));
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "nginx did not answer on {addr} in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Nginx {
        proc,
        addr,
        tls_addr: tls.map(|t| format!("127.0.0.1:{}", t.port)),
        access_log: dir.join("access.log"),
    })
}

/// Lines in the access log (nginx flushes its buffer at least every second and on exit).
pub fn access_log_lines(path: &Path) -> u64 {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0;
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    lines
}
