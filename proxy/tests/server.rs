//! The proxy over real sockets: started on port 0 in-process (as `sling up` embeds it) and as the
//! real binary, answering over HTTP/1.1 and cleartext HTTP/2, following a fake control plane, and
//! shutting down gracefully.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sling_proxy::{Config, Listeners};
use sling_shared::feed::{Change, ChangeOp, FeedPage};
use sling_shared::link::{BIO_PAGE_CSP, BioPage, LinkRecord};
use sling_shared::snapshot::{SnapshotBody, encode, list_files, write_atomic};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn write_snapshot(dir: &Path, seq: u64, slug: &str, dest: &str) {
    let mut body = SnapshotBody::new("localhost");
    body.insert_link("localhost", slug, LinkRecord::plain("l1", dest));
    write_atomic(dir, seq, &encode(&body, seq, 0).unwrap()).unwrap();
}

/// `Config::new` with the click spool kept inside the test's directory (the default, beside the
/// snapshot dir, would be the shared temp dir).
fn config(dir: &Path) -> Config {
    let mut config = Config::new(dir);
    config.clicks.spool_dir = dir.join("click-spool");
    config
}

fn client(h2: bool) -> reqwest::Client {
    let b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10));
    let b = if h2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    b.build().unwrap()
}

/// A proxy running in this process; dropping the handle's sender shuts it down.
struct Running {
    proxy: SocketAddr,
    admin: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(config: Config) -> Running {
    let listeners = Listeners {
        proxy: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let proxy = listeners.proxy.local_addr().unwrap();
    let admin = listeners.admin.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(sling_proxy::run_with_listeners(
        config,
        listeners,
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        proxy,
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
}

#[tokio::test]
async fn serves_redirects_over_http1_and_h2c() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 4, "abc", "https://example.com/a?x=1");
    let running = start(config(dir.path())).await;

    for h2 in [false, true] {
        let c = client(h2);
        let resp = c
            .get(format!("http://{}/abc?y=2", running.proxy))
            .send()
            .await
            .unwrap();
        let want = if h2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(resp.version(), want);
        assert_eq!(resp.status(), 302);
        assert_eq!(resp.headers()["location"], "https://example.com/a?x=1&y=2");
        assert_eq!(resp.headers()["cache-control"], "private, max-age=90");
        assert!(resp.bytes().await.unwrap().is_empty());

        let head = c
            .head(format!("http://{}/abc", running.proxy))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 302);
        // A page's HEAD has its headers and no body, on HTTP/2 too (a body resets the stream).
        let head = c
            .head(format!("http://{}/nope", running.proxy))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 404);
        assert_eq!(head.headers()["content-type"], "text/html; charset=utf-8");
        let len: usize = head.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(len > 0);
        assert!(head.bytes().await.unwrap().is_empty());

        let missing = c
            .get(format!("http://{}/nope", running.proxy))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        assert_eq!(
            missing.headers()["content-type"],
            "text/html; charset=utf-8"
        );
        assert!(missing.text().await.unwrap().contains("<html lang=\"en\">"));

        let post = c
            .post(format!("http://{}/abc", running.proxy))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), 405);
        assert_eq!(post.headers()["allow"], "GET, HEAD");
    }

    // An unknown Host header falls back to the default domain.
    let resp = client(false)
        .get(format!("http://{}/abc", running.proxy))
        .header("host", "Unknown.Example:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);

    let admin = client(false);
    let get = |path: &str| admin.get(format!("http://{}{path}", running.admin)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sling_proxy_snapshot_seq 4"), "{metrics}");
    assert!(
        metrics.contains("sling_proxy_snapshot_links 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sling_proxy_requests_total{class=\"3xx\"} 5"),
        "{metrics}"
    );

    running.shutdown().await;
}

/// Every click the proxy recorded, from the spool it flushes to at shutdown (no control plane).
fn spooled_clicks(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .flat_map(|batch| {
            batch
                .match_indices("\"linkId\":\"")
                .map(|(at, m)| {
                    let rest = &batch[at + m.len()..];
                    rest[..rest.find('"').unwrap()].to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn serves_bio_pages_as_published_and_records_each_get_as_a_view() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let html = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                <title>Jane \u{2728}</title><style>h1{color:#123}</style></head>\
                <body><h1>Jane \u{2728}</h1><a href=\"https://example.com/\">site</a></body></html>\n";
    let dir = tempfile::tempdir().unwrap();
    let mut body = SnapshotBody::new("localhost");
    body.insert_link(
        "localhost",
        "abc",
        LinkRecord::plain("l1", "https://example.com/a"),
    );
    body.apply(&ChangeOp::UpsertBioPage {
        host: "localhost".into(),
        handle: "jane".into(),
        page: Box::new(BioPage {
            id: "gal_1".into(),
            html: html.into(),
        }),
    });
    write_atomic(dir.path(), 7, &encode(&body, 7, 0).unwrap()).unwrap();
    let running = start(config(dir.path())).await;
    let proxy = running.proxy;

    let assert_page_headers = |resp: &reqwest::Response| {
        let h = resp.headers();
        assert_eq!(resp.status(), 200);
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["content-security-policy"], BIO_PAGE_CSP);
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
        assert_eq!(h["cache-control"], "no-cache");
        assert!(h.get("location").is_none());
        assert!(h.get("set-cookie").is_none());
    };
    for h2 in [false, true] {
        let c = client(h2);
        for target in ["/@jane", "/@jane/?utm_source=x&qr=1"] {
            let resp = c
                .get(format!("http://{proxy}{target}"))
                .send()
                .await
                .unwrap();
            assert_page_headers(&resp);
            assert_eq!(resp.headers()["content-length"], html.len().to_string());
            assert_eq!(resp.bytes().await.unwrap(), html.as_bytes(), "{target}");
        }
        let head = c
            .head(format!("http://{proxy}/@jane"))
            .send()
            .await
            .unwrap();
        assert_page_headers(&head);
        assert_eq!(head.headers()["content-length"], html.len().to_string());
        assert!(head.bytes().await.unwrap().is_empty());

        let status = |method: reqwest::Method, target: &'static str| {
            let c = c.clone();
            async move {
                c.request(method, format!("http://{proxy}{target}"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };
        assert_eq!(status(reqwest::Method::GET, "/@nobody").await, 404);
        assert_eq!(status(reqwest::Method::GET, "/jane").await, 404);
        assert_eq!(status(reqwest::Method::POST, "/@jane").await, 405);
    }

    // On the wire, HEAD has the page's headers and length and nothing after them.
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(b"HEAD /@jane HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("\r\ncontent-length: {}\r\n", html.len())),
        "{head}"
    );
    assert_eq!(rest, "", "HEAD sent a body");

    // One redirect, so the spool shows that clicks are recorded at all.
    let resp = client(false)
        .get(format!("http://{proxy}/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);

    let metrics = client(false)
        .get(format!("http://{}/metrics", running.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Four GETs and two HEADs over the clients, one raw HEAD.
    assert!(
        metrics.contains("sling_proxy_requests_total{class=\"2xx\"} 7"),
        "{metrics}"
    );
    running.shutdown().await;
    // Each GET of the page is a view under the gallery's id; HEADs, 404s and 405s are not.
    let mut spooled = spooled_clicks(&dir.path().join("click-spool"));
    spooled.sort();
    assert_eq!(spooled, ["gal_1", "gal_1", "gal_1", "gal_1", "l1"]);
}

#[tokio::test]
async fn without_a_snapshot_or_control_plane_it_serves_pages_but_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(config(&dir.path().join("missing"))).await;
    let c = client(false);
    let root = c
        .get(format!("http://{}/", running.proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 200);
    let ready = c
        .get(format!("http://{}/readyz", running.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    running.shutdown().await;
}

/// A control plane that knows one snapshot (sequence 3) and one later change (sequence 5), and
/// hands out a corrupt copy of the snapshot the first time it is asked.
async fn fake_control_plane() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let snapshot_requests = Arc::new(AtomicUsize::new(0));
    let mut body = SnapshotBody::new("localhost");
    body.insert_link(
        "localhost",
        "snap",
        LinkRecord::plain("s", "https://example.com/snap"),
    );
    let good = Bytes::from(encode(&body, 3, 0).unwrap());
    let counter = snapshot_requests.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let good = good.clone();
            let counter = counter.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let good = good.clone();
                let counter = counter.clone();
                async move { Ok::<_, Infallible>(fake_answer(&req, &good, &counter).await) }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, snapshot_requests)
}

async fn fake_answer(
    req: &Request<hyper::body::Incoming>,
    good: &Bytes,
    snapshot_requests: &AtomicUsize,
) -> Response<Full<Bytes>> {
    let reply = |status: u16, body: Bytes| {
        Response::builder()
            .status(status)
            .header("x-sling-snapshot-seq", "3")
            .body(Full::new(body))
            .unwrap()
    };
    if req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some("Bearer secret")
    {
        return reply(401, Bytes::new());
    }
    let query = req.uri().query().unwrap_or("");
    let param = |name: &str| -> u64 {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    match req.uri().path() {
        "/internal/v1/feed" => {
            let after = param("after");
            let changes: Vec<Change> = [Change {
                seq: 5,
                op: ChangeOp::UpsertLink {
                    host: "localhost".into(),
                    slug: "live".into(),
                    link: Box::new(LinkRecord::plain("v", "https://example.com/live")),
                },
            }]
            .into_iter()
            .filter(|c| c.seq > after)
            .collect();
            if changes.is_empty() {
                // A short stand-in for the long poll.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let page = FeedPage {
                changes,
                head_seq: 5,
                snapshot_seq: 3,
                reset: false,
            };
            reply(200, Bytes::from(serde_json::to_vec(&page).unwrap()))
        }
        "/internal/v1/snapshot" if param("newer_than") >= 3 => reply(304, Bytes::new()),
        "/internal/v1/snapshot" => {
            if snapshot_requests.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut corrupt = good.to_vec();
                let at = corrupt.len() - 9;
                corrupt[at] ^= 0x10;
                reply(200, Bytes::from(corrupt))
            } else {
                reply(200, good.clone())
            }
        }
        _ => reply(404, Bytes::new()),
    }
}

#[tokio::test]
async fn follows_the_control_plane_and_refuses_a_corrupt_snapshot() {
    let (control, snapshot_requests) = fake_control_plane().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path())
        .with_control(&format!("http://{control}"), "secret")
        .unwrap();
    config.feed_wait = Duration::from_millis(100);
    let running = start(config).await;
    let c = client(false);

    let location = |slug: &'static str| {
        let c = c.clone();
        let proxy = running.proxy;
        async move {
            let resp = c
                .get(format!("http://{proxy}/{slug}"))
                .send()
                .await
                .unwrap();
            resp.headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    let mut waited = Duration::ZERO;
    while location("snap").await.is_none() || location("live").await.is_none() {
        assert!(
            waited < Duration::from_secs(15),
            "proxy never caught up with the control plane"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    assert_eq!(location("snap").await.unwrap(), "https://example.com/snap");
    assert_eq!(location("live").await.unwrap(), "https://example.com/live");
    assert!(snapshot_requests.load(Ordering::SeqCst) >= 2);

    // Only the good snapshot was ever given its final name.
    let files: Vec<u64> = list_files(dir.path())
        .unwrap()
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(files, vec![3]);

    let admin = |path: &'static str| {
        let c = c.clone();
        let admin = running.admin;
        async move { c.get(format!("http://{admin}{path}")).send().await.unwrap() }
    };
    assert_eq!(admin("/readyz").await.status(), 200);
    let metrics = admin("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("sling_proxy_snapshot_seq 3"), "{metrics}");
    assert!(
        metrics.contains("sling_proxy_feed_applied_seq 5"),
        "{metrics}"
    );
    assert!(metrics.contains("sling_proxy_feed_lag 0"), "{metrics}");
    assert!(
        !metrics.contains("sling_proxy_feed_errors_total 0"),
        "{metrics}"
    );

    running.shutdown().await;
}

#[tokio::test]
async fn binary_prints_listening_lines_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), 1, "bin", "https://example.com/bin");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sling-proxy"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--snapshot-dir")
        .arg(dir.path())
        .arg("--spool-dir")
        .arg(dir.path().join("click-spool"))
        .env_remove("SLING_CONTROL_URL")
        .env_remove("SLING_DEFAULT_DOMAIN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addrs = Vec::new();
    for name in ["proxy", "admin"] {
        let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let prefix = format!("listening {name}=http://");
        let rest = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line}"));
        addrs.push(rest.parse::<SocketAddr>().unwrap());
    }
    let (proxy, admin) = (addrs[0], addrs[1]);

    let resp = client(true)
        .get(format!("http://{proxy}/bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], "https://example.com/bin");
    let health = client(false)
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");

    // No control plane: the one click was flushed to the spool before the process exited.
    let spooled: Vec<_> = std::fs::read_dir(dir.path().join("click-spool"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    assert!(spooled[0].contains("\"linkId\":\"l1\""), "{spooled:?}");
}

#[test]
fn help_lists_every_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sling-proxy"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--admin-listen",
        "--control-url",
        "--snapshot-dir",
        "--fleet-token",
        "--default-domain",
        "--log-format",
        "--feed-wait-ms",
        "--clicks",
        "--spool-dir",
        "--trusted-proxies",
        "--geoip-db",
        "--tor-geoip-dir",
        "--country-header",
        "--click-batch-size",
        "--click-batch-ms",
        "--click-channel-capacity",
        "--proxy-id",
        "SLING_PROXY_LISTEN",
        "SLING_FLEET_TOKEN",
        "SLING_SPOOL_DIR",
        "SLING_TRUSTED_PROXIES",
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
}
