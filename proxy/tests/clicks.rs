//! The click path: enrichment on real data and libraries, the shipper against a real HTTP ingest
//! server that fails on purpose, the spool across restarts, the overflow path, and a redirect
//! through the running proxy ending up as an enriched click.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sling_proxy::clicks::client_ip::TrustedProxies;
use sling_proxy::clicks::enrich::{Agent, EnrichCache, Enricher, day_salt, referrer_host};
use sling_proxy::clicks::geo::{Geo, TorGeoIp};
use sling_proxy::clicks::{Field, RawClick, start};
use sling_proxy::config::{ClicksConfig, ControlPlane};
use sling_proxy::metrics::Metrics;
use sling_proxy::{Config, Listeners};
use sling_shared::clicks::{ClickBatch, ClickEvent, IngestReceipt};

const TOKEN: &str = "fleet-secret";

// ---------------------------------------------------------------------------------------------
// Enrichment

fn enricher() -> Enricher {
    Enricher::new(Geo::None, TrustedProxies::default(), false, Some(TOKEN))
}

#[test]
fn tor_geoip_files_written_by_the_test() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("geoip"),
        "# tor geoip\n16777216,16777471,AU\n134744064,134744319,US\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("geoip6"),
        "2001:4860::,2001:4860:ffff:ffff:ffff:ffff:ffff:ffff,US\n2a01:4f8::,2a01:4f8:ffff:ffff:ffff:ffff:ffff:ffff,DE\n",
    )
    .unwrap();
    let geo = Geo::Tor(TorGeoIp::load(dir.path()).unwrap());
    let country = |ip: &str| geo.country(ip.parse().unwrap());
    assert_eq!(country("1.0.0.1").as_deref(), Some("AU"));
    assert_eq!(country("8.8.8.8").as_deref(), Some("US"));
    assert_eq!(country("9.9.9.9"), None);
    assert_eq!(country("2a01:4f8:1::1").as_deref(), Some("DE"));

    // Through the enricher, from the socket address.
    let e = Enricher::new(geo, TrustedProxies::default(), false, Some(TOKEN));
    let event = e.enrich(
        &RawClick::new("l", 0, "8.8.8.4".parse().unwrap()),
        &mut EnrichCache::default(),
    );
    assert_eq!(event.country.as_deref(), Some("US"));
}

#[test]
fn debian_tor_geoipdb_spot_check() {
    let dir = Path::new("/usr/share/tor");
    if !dir.join("geoip").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must install tor-geoipdb (apt-get install -y tor-geoipdb)"
        );
        eprintln!("skipping: /usr/share/tor/geoip is missing (apt-get install -y tor-geoipdb)");
        return;
    }
    let geo = Geo::Tor(TorGeoIp::load(dir).unwrap());
    let country = |ip: &str| geo.country(ip.parse().unwrap());
    // Google's public resolvers and a German publisher's long-held range.
    assert_eq!(country("8.8.8.8").as_deref(), Some("US"));
    assert_eq!(country("2001:4860:4860::8888").as_deref(), Some("US"));
    assert_eq!(country("193.99.144.80").as_deref(), Some("DE"));
    assert_eq!(country("127.0.0.1"), None);
}

#[test]
fn user_agents() {
    let e = enricher();
    #[track_caller]
    fn check(e: &Enricher, ua: &str, device: &str, browser: &str, os: &str, bot: bool) {
        let want = Agent {
            device: match device {
                "desktop" => "desktop",
                "mobile" => "mobile",
                "tablet" => "tablet",
                "bot" => "bot",
                _ => "unknown",
            },
            browser: browser.into(),
            os: os.into(),
            bot,
        };
        assert_eq!(e.agent(ua), want, "{ua}");
    }
    check(
        &e,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "mobile",
        "Safari",
        "iOS",
        false,
    );
    check(
        &e,
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        "mobile",
        "Chrome",
        "Android",
        false,
    );
    check(
        &e,
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "tablet",
        "Safari",
        "iOS",
        false,
    );
    check(
        &e,
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "tablet",
        "Chrome",
        "Android",
        false,
    );
    check(
        &e,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "desktop",
        "Chrome",
        "Windows",
        false,
    );
    check(
        &e,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
        "desktop",
        "Firefox",
        "macOS",
        false,
    );
    check(
        &e,
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "bot",
        "Googlebot",
        "unknown",
        true,
    );
    check(&e, "curl/8.5.0", "bot", "HTTP Library", "unknown", true);
    check(&e, "", "unknown", "unknown", "unknown", false);
}

#[test]
fn referrer_hosts() {
    assert_eq!(
        referrer_host("https://News.Example.COM/a?b=c").as_deref(),
        Some("news.example.com")
    );
    assert_eq!(referrer_host("http://t.co./x").as_deref(), Some("t.co"));
    assert_eq!(
        referrer_host("android-app://com.google.android.gm/").as_deref(),
        Some("com.google.android.gm")
    );
    assert_eq!(referrer_host("not a url"), None);
    assert_eq!(referrer_host("/relative/path"), None);
    assert_eq!(referrer_host(""), None);
}

fn visitor(e: &Enricher, ip: &str, ua: &str, at_ms: i64) -> String {
    let click = RawClick::new("l", at_ms, ip.parse().unwrap()).with(Field::UserAgent, Some(ua));
    e.enrich(&click, &mut EnrichCache::default()).visitor
}

#[test]
fn visitor_keys() {
    let e = enricher();
    let day = 1_717_200_000_000; // 2024-06-01T00:00:00Z
    let v = visitor(&e, "198.51.100.7", "UA", day + 1000);
    assert_eq!(v.len(), 32);
    assert!(!v.contains("198"), "no trace of the address");
    // Stable within the UTC day.
    assert_eq!(v, visitor(&e, "198.51.100.7", "UA", day + 86_399_999));
    // Different the next day, for another address, for another agent.
    assert_ne!(v, visitor(&e, "198.51.100.7", "UA", day + 86_400_000));
    assert_ne!(v, visitor(&e, "198.51.100.8", "UA", day + 1000));
    assert_ne!(v, visitor(&e, "198.51.100.7", "UA2", day + 1000));
    // Two proxies of one fleet agree without talking; another fleet does not.
    let other_proxy = enricher();
    assert_eq!(v, visitor(&other_proxy, "198.51.100.7", "UA", day + 5));
    let other_fleet = Enricher::new(Geo::None, TrustedProxies::default(), false, Some("x"));
    assert_ne!(v, visitor(&other_fleet, "198.51.100.7", "UA", day + 5));
    // The salt is HMAC(fleet token, "visitor-salt:" + date): changes at UTC midnight.
    assert_ne!(
        day_salt(TOKEN.as_bytes(), day - 1),
        day_salt(TOKEN.as_bytes(), day)
    );
}

#[test]
fn forwarding_headers_and_country_header_need_a_trusted_peer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("geoip"), "134744064,134744319,US\n").unwrap();
    let e = Enricher::new(
        Geo::Tor(TorGeoIp::load(dir.path()).unwrap()),
        TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]),
        true,
        Some(TOKEN),
    );
    let click = |peer: &str, xff: Option<&str>, cc: Option<&str>| {
        let c = RawClick::new("l", 0, peer.parse().unwrap())
            .with(Field::ForwardedFor, xff)
            .with(Field::CountryHeader, cc);
        e.enrich(&c, &mut EnrichCache::default())
    };
    let direct = click("8.8.8.1", None, None);
    // Behind a trusted balancer: the forwarded address is the visitor (same key, same country).
    let forwarded = click("10.0.0.1", Some("8.8.8.1"), None);
    assert_eq!(forwarded.visitor, direct.visitor);
    assert_eq!(forwarded.country.as_deref(), Some("US"));
    // The trusted CDN header wins over the database.
    assert_eq!(
        click("10.0.0.1", Some("8.8.8.1"), Some("de"))
            .country
            .as_deref(),
        Some("DE")
    );
    // An untrusted peer cannot claim another address or country.
    let spoofed = click("8.8.8.2", Some("8.8.8.1"), Some("FR"));
    assert_ne!(spoofed.visitor, direct.visitor);
    assert_eq!(spoofed.country.as_deref(), Some("US"));
}

// ---------------------------------------------------------------------------------------------
// A real HTTP ingest endpoint

#[derive(Default)]
struct IngestState {
    /// Answer 503 to this many requests first.
    fail_first: usize,
    /// Answer every request after this delay.
    delay: Duration,
    requests: usize,
    batches: HashMap<String, ClickBatch>,
    duplicates: usize,
}

#[derive(Clone)]
struct Ingest {
    addr: SocketAddr,
    state: Arc<Mutex<IngestState>>,
}

impl Ingest {
    /// Starts the server on its own runtime thread (the shipper under test is synchronous).
    fn start(fail_first: usize, delay: Duration) -> Ingest {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(IngestState {
            fail_first,
            delay,
            ..Default::default()
        }));
        let server_state = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let state = server_state.clone();
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(ingest(req, &state).await) }
                    });
                    tokio::spawn(async move {
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        Ingest { addr, state }
    }

    fn control(&self) -> ControlPlane {
        ControlPlane {
            url: format!("http://{}", self.addr),
            fleet_token: TOKEN.into(),
        }
    }

    /// Every event received, once per distinct batch id.
    fn events(&self) -> Vec<ClickEvent> {
        let s = self.state.lock().unwrap();
        s.batches.values().flat_map(|b| b.events.clone()).collect()
    }

    fn wait_for_events(&self, n: usize, within: Duration) -> Vec<ClickEvent> {
        let until = Instant::now() + within;
        loop {
            let events = self.events();
            if events.len() >= n || Instant::now() > until {
                return events;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn ingest(
    req: Request<hyper::body::Incoming>,
    state: &Mutex<IngestState>,
) -> Response<Full<Bytes>> {
    let reply = |status: u16, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    let path_ok = req.uri().path() == sling_shared::clicks::CLICKS_PATH;
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let delay = state.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    if !authorized || !path_ok {
        return reply(if authorized { 404 } else { 401 }, Vec::new());
    }
    let mut s = state.lock().unwrap();
    s.requests += 1;
    if s.requests <= s.fail_first {
        return reply(503, Vec::new());
    }
    let batch: ClickBatch = serde_json::from_slice(&body).unwrap();
    let accepted = !s.batches.contains_key(&batch.batch_id);
    if accepted {
        s.batches.insert(batch.batch_id.clone(), batch.clone());
    } else {
        s.duplicates += 1;
    }
    let receipt = IngestReceipt {
        batch_id: batch.batch_id,
        accepted,
        events: batch.events.len(),
    };
    reply(200, serde_json::to_vec(&receipt).unwrap())
}

// ---------------------------------------------------------------------------------------------
// The shipper

fn clicks_config(spool: &Path) -> ClicksConfig {
    let mut c = ClicksConfig::defaults_for(spool);
    c.spool_dir = spool.to_owned();
    c.tor_geoip_dir = None;
    c.batch_size = 100;
    c.batch_interval = Duration::from_millis(20);
    c.proxy_id = "test".into();
    c
}

fn click(i: usize) -> RawClick {
    let peer: IpAddr = format!("192.0.2.{}", i % 200).parse().unwrap();
    RawClick::new(&format!("link-{i}"), 1_717_200_000_000, peer).with(
        Field::UserAgent,
        Some("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"),
    )
}

/// Each of `0..n` exactly once.
#[track_caller]
fn assert_exactly_once(events: &[ClickEvent], n: usize) {
    let mut seen = HashSet::new();
    for e in events {
        assert!(seen.insert(e.link_id.clone()), "{} twice", e.link_id);
    }
    assert_eq!(seen.len(), n, "expected {n} distinct clicks");
    for i in 0..n {
        assert!(seen.contains(&format!("link-{i}")), "link-{i} missing");
    }
}

/// Events in the spool files.
fn spooled(dir: &Path) -> Vec<ClickEvent> {
    let mut events = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("batch-") && name.ends_with(".json") {
            let batch: ClickBatch = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            events.extend(batch.events);
        }
    }
    events
}

#[test]
fn failures_are_spooled_and_retried_until_every_click_is_delivered_once() {
    let ingest = Ingest::start(5, Duration::ZERO);
    let spool = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let (sink, shipper) = start(
        &clicks_config(spool.path()),
        Some(&ingest.control()),
        metrics.clicks.clone(),
    )
    .unwrap();
    for i in 0..3000 {
        sink.send(click(i));
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    let events = ingest.wait_for_events(3000, Duration::from_secs(60));
    assert_exactly_once(&events, 3000);
    assert!(shipper.shutdown(Duration::from_secs(20)));
    assert!(
        spooled(spool.path()).is_empty(),
        "delivered batches leave the spool"
    );
    assert!(ingest.state.lock().unwrap().requests > 5);
    let text = metrics.render(0);
    assert!(
        text.contains("sling_proxy_clicks_shipped_total 3000"),
        "{text}"
    );
    assert!(
        !text.contains("sling_proxy_click_ship_failures_total 0"),
        "{text}"
    );
    assert!(text.contains("sling_proxy_clicks_lost_total 0"), "{text}");
}

#[test]
fn the_spool_is_replayed_by_the_next_shipper() {
    let spool = tempfile::tempdir().unwrap();
    // A control plane that refuses everything.
    let down = Ingest::start(usize::MAX, Duration::ZERO);
    let (sink, shipper) = start(
        &clicks_config(spool.path()),
        Some(&down.control()),
        Metrics::new().clicks,
    )
    .unwrap();
    for i in 0..450 {
        sink.send(click(i));
    }
    assert!(shipper.shutdown(Duration::from_secs(20)));
    assert_exactly_once(&spooled(spool.path()), 450);
    assert!(down.events().is_empty());

    let up = Ingest::start(0, Duration::ZERO);
    let (_sink, shipper) = start(
        &clicks_config(spool.path()),
        Some(&up.control()),
        Metrics::new().clicks,
    )
    .unwrap();
    let events = up.wait_for_events(450, Duration::from_secs(30));
    assert_exactly_once(&events, 450);
    assert!(shipper.shutdown(Duration::from_secs(20)));
    assert!(spooled(spool.path()).is_empty());
    assert_eq!(up.state.lock().unwrap().duplicates, 0);
}

#[test]
fn a_full_channel_spools_instead_of_dropping_or_blocking() {
    let spool = tempfile::tempdir().unwrap();
    // A slow control plane: the shipper is stuck in a POST while clicks keep coming.
    let slow = Ingest::start(0, Duration::from_millis(300));
    let mut config = clicks_config(spool.path());
    config.channel_capacity = 8;
    let metrics = Metrics::new();
    let (sink, shipper) = start(&config, Some(&slow.control()), metrics.clicks.clone()).unwrap();
    let started = Instant::now();
    for i in 0..2000 {
        sink.send(click(i));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "send blocked for {elapsed:?}"
    );
    assert!(shipper.shutdown(Duration::from_secs(30)));
    let text = metrics.render(0);
    assert!(
        !text.contains("sling_proxy_clicks_overflowed_total 0"),
        "{text}"
    );
    let mut all = slow.events();
    all.extend(spooled(spool.path()));
    assert_exactly_once(&all, 2000);

    // And the spooled part reaches the control plane on the next start.
    let (_sink, shipper) = start(&config, Some(&slow.control()), Metrics::new().clicks).unwrap();
    let events = slow.wait_for_events(2000, Duration::from_secs(60));
    assert_exactly_once(&events, 2000);
    assert!(shipper.shutdown(Duration::from_secs(30)));
}

#[test]
fn a_slow_post_does_not_stop_the_channel_draining() {
    let spool = tempfile::tempdir().unwrap();
    // Each POST takes 400 ms; the channel holds 256 clicks, about 64 ms of this click rate.
    let slow = Ingest::start(0, Duration::from_millis(400));
    let mut config = clicks_config(spool.path());
    config.channel_capacity = 256;
    config.batch_size = 50;
    let metrics = Metrics::new();
    let (sink, shipper) = start(&config, Some(&slow.control()), metrics.clicks.clone()).unwrap();
    for i in 0..2000 {
        sink.send(click(i));
        std::thread::sleep(Duration::from_micros(250));
    }
    assert!(shipper.shutdown(Duration::from_secs(30)));
    let text = metrics.render(0);
    // The delivery thread waits on the POSTs; the shipper kept taking clicks meanwhile. A
    // shipper that waited on a POST itself would overflow ~1,300 clicks per POST (400 ms of
    // clicks less the channel's 64 ms); a few may still overflow when a loaded machine
    // deschedules the shipper for longer than 64 ms, which is why the bound is not zero.
    let overflowed: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("sling_proxy_clicks_overflowed_total ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no overflow counter: {text}"));
    assert!(overflowed < 300.0, "{overflowed} overflowed: {text}");
    let mut all = slow.events();
    all.extend(spooled(spool.path()));
    assert_exactly_once(&all, 2000);
}

#[test]
fn shutdown_flushes_a_partial_batch() {
    let spool = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(0, Duration::ZERO);
    let mut config = clicks_config(spool.path());
    config.batch_interval = Duration::from_secs(3600);
    config.batch_size = 1000;
    let (sink, shipper) = start(&config, Some(&ingest.control()), Metrics::new().clicks).unwrap();
    for i in 0..17 {
        sink.send(click(i));
    }
    assert!(shipper.shutdown(Duration::from_secs(20)));
    assert_exactly_once(&ingest.events(), 17);

    // Without a control plane they are kept in the spool.
    let spool = tempfile::tempdir().unwrap();
    let (sink, shipper) = start(&clicks_config(spool.path()), None, Metrics::new().clicks).unwrap();
    for i in 0..17 {
        sink.send(click(i));
    }
    assert!(shipper.shutdown(Duration::from_secs(20)));
    assert_exactly_once(&spooled(spool.path()), 17);
}

// ---------------------------------------------------------------------------------------------
// Through the running proxy

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_becomes_an_enriched_click() {
    use sling_shared::link::LinkRecord;
    use sling_shared::snapshot::{SnapshotBody, encode, write_atomic};

    let ingest = Ingest::start(0, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    let mut body = SnapshotBody::new("localhost");
    body.insert_link(
        "localhost",
        "abc",
        LinkRecord::plain("link-abc", "https://example.com/"),
    );
    write_atomic(&snapshots, 1, &encode(&body, 1, 0).unwrap()).unwrap();

    let mut config = Config::new(&snapshots)
        .with_control(&format!("http://{}", ingest.addr), TOKEN)
        .unwrap();
    config.clicks = clicks_config(&dir.path().join("click-spool"));
    config.clicks.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    config.clicks.country_header = Some(http::HeaderName::from_static("cf-ipcountry"));
    let listeners = Listeners {
        proxy: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let proxy = listeners.proxy.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sling_proxy::run_with_listeners(config, listeners, async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .get(format!("http://{proxy}/abc?qr=1"))
        .header("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
        .header("referer", "https://Mail.Example.org/inbox")
        .header("x-forwarded-for", "203.0.113.50")
        .header("cf-ipcountry", "NZ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    // Not clicks: HEAD, and a missing link.
    let head = client
        .head(format!("http://{proxy}/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 302);
    let missing = client
        .get(format!("http://{proxy}/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // `run` returned only after the click was flushed.
    let events = ingest.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.link_id, "link-abc");
    assert!(e.qr);
    assert_eq!(e.device, "mobile");
    assert_eq!(e.browser, "Safari");
    assert_eq!(e.os, "iOS");
    assert!(!e.bot);
    assert_eq!(e.referrer_host.as_deref(), Some("mail.example.org"));
    assert_eq!(e.country.as_deref(), Some("NZ"));
    assert_eq!(e.visitor.len(), 32);
}
