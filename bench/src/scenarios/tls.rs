//! `tls`: sling against nginx over HTTPS, both serving one certificate made for the run.
//!
//! 1. Generate `--links` links (sling snapshot, nginx map, a sample) and one ECDSA P-256
//!    certificate for `bench.sling.test` (and 127.0.0.1) with rcgen.
//! 2. Start `sling-proxy --tls-listen … --tls-cert … --tls-key …` and nginx with the same files
//!    (`ssl_protocols TLSv1.2 TLSv1.3`, HTTP/2 by ALPN, keep-alive, `return 302`), both pinned
//!    to the server core; check both redirect sample slugs over HTTP and HTTPS.
//! 3. Full handshakes: the harness's handshake worker (a new connection, a full handshake and one
//!    redirect per request, no session reuse), sling then nginx, `--pairs` times.
//! 4. Keep-alive: wrk over HTTPS (HTTP/1.1, `--connections` connections), sling then nginx,
//!    `--pairs` times. The ratio sling/nginx is taken per pair; medians are the headline.

use std::path::Path;

use anyhow::Context;
use rustls::pki_types::ServerName;
use serde::Serialize;
use serde_json::json;

use super::{cpu_share, preflight, secs};
use crate::cli::{HandshakeArgs, TlsArgs};
use crate::data::LinkSet;
use crate::env;
use crate::handshake::{self, HandshakeSummary};
use crate::nginx::{self, TlsFiles};
use crate::procs;
use crate::report::{self, RunDir, Scratch, md_table, ms, ratio};
use crate::sling::{self, Source};
use crate::stats::median;
use crate::svg::{self, Series};
use crate::wrk::{self, WrkRun, WrkSummary};

use super::Side;

/// The name both servers' certificate is for; the handshake client sends it as SNI and Host.
const SNI: &str = "bench.sling.test";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HandshakeRun {
    pair: usize,
    side: Side,
    /// `TLSv1_3` or `TLSv1_2` (what the client offered).
    offered: &'static str,
    handshakes_per_sec: f64,
    server_cpu: f64,
    /// Handshakes per second of server CPU: comparable even when the client limited the run.
    per_cpu_second: f64,
    summary: HandshakeSummary,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct KeepAliveRun {
    pair: usize,
    side: Side,
    requests_per_sec: f64,
    errors: u64,
    server_cpu: f64,
    /// Requests per second of server CPU.
    per_cpu_second: f64,
    wrk: WrkSummary,
}

pub async fn run(args: TlsArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let wrk_bin = env::find_tool(&env::WRK)?;
    let nginx_bin = env::find_tool(&env::NGINX)?;
    let server_pin = env::pin(c, c.server_cpu)?;
    let client_pin = env::pin(c, c.client_cpu)?;
    anyhow::ensure!(args.pairs >= 1, "--pairs must be at least 1");
    let bins = env::binaries(c, false)?;
    let run = RunDir::create(c, "tls")?;
    let scratch = Scratch::new(c, "tls")?;
    let work = scratch.path().to_path_buf();

    // 1. Data and the certificate.
    let (snap_dir, nginx_dir, tls_dir) =
        (work.join("snapshots"), work.join("nginx"), work.join("tls"));
    std::fs::create_dir_all(&nginx_dir)?;
    std::fs::create_dir_all(&tls_dir)?;
    let map_path = nginx_dir.join("links.map");
    let sample_path = work.join("sample.txt");
    let set = LinkSet::generate(args.links, c.seed)?;
    set.write_snapshot(&snap_dir, 1)?;
    set.write_nginx_map(&map_path)?;
    let sample = set.write_sample(&sample_path, args.load.sample, c.seed)?;
    let expected: Vec<(String, String)> = sample
        .iter()
        .take(20)
        .map(|&i| (set.slug(i), LinkSet::destination(i)))
        .collect();
    let (cert_path, key_path) = write_certificate(&tls_dir)?;

    // 2. Servers.
    eprintln!("starting sling-proxy and nginx with TLS…");
    let mut proxy_args: Vec<String> = vec![
        "--tls-listen".into(),
        "127.0.0.1:0".into(),
        "--tls-cert".into(),
        cert_path.display().to_string(),
        "--tls-key".into(),
        key_path.display().to_string(),
        "--default-domain".into(),
        SNI.into(),
    ];
    if !args.clicks_on {
        proxy_args.extend(["--clicks".into(), "off".into()]);
    }
    let mut proxy = sling::start_proxy_with(
        &bins.proxy,
        &server_pin,
        Source::Standalone {
            snapshot_dir: &snap_dir,
        },
        &proxy_args,
        &run.logs,
        secs(60),
    )
    .await?;
    let probe = format!("/{}", expected.first().map_or("x", |e| e.0.as_str()));
    let mut ngx = nginx::start_with_tls(
        &nginx_bin,
        &server_pin,
        &nginx_dir,
        &map_path,
        args.links,
        &probe,
        Some(TlsFiles {
            port: 0,
            cert: &cert_path,
            key: &key_path,
        }),
    )
    .await?;
    let sling_tls = proxy
        .tls
        .clone()
        .context("sling-proxy printed no tls= line")?;
    let nginx_tls = ngx.tls_addr.clone().context("nginx has no TLS port")?;
    let client = procs::http_client()?;
    preflight(&client, "sling", &proxy.addr, &expected).await?;
    preflight(&client, "nginx", &ngx.addr, &expected).await?;
    let mut negotiated = serde_json::Map::new();
    for (side, target) in [(Side::Sling, &sling_tls), (Side::Nginx, &nginx_tls)] {
        let info = tls_preflight(side, target, &expected).await?;
        negotiated.insert(side.name().into(), json!(info));
    }

    // 3. Full handshakes.
    let (sling_pid, nginx_pid) = (proxy.proc.pid(), ngx.proc.pid());
    let targets = |side: Side| match side {
        Side::Sling => (sling_tls.clone(), sling_pid),
        Side::Nginx => (nginx_tls.clone(), nginx_pid),
    };
    let sides = [Side::Sling, Side::Nginx];
    let mut versions = vec![false];
    if args.tls12 {
        versions.push(true);
    }
    let mut handshakes = Vec::new();
    for &tls12 in &versions {
        for pair in 0..args.pairs {
            for side in sides {
                let (target, pid) = targets(side);
                let hs = HandshakeArgs {
                    target,
                    sni: SNI.into(),
                    slugs: sample_path.clone(),
                    concurrency: args.handshake_concurrency,
                    duration: args.load.duration,
                    warmup: args.load.warmup,
                    seed: c.seed + pair as u64,
                    timeout_ms: 5_000,
                    tls12,
                };
                let (summary, cpu) = cpu_share(pid, handshake::run(&client_pin, &hs)).await?;
                let offered = if tls12 { "TLSv1_2" } else { "TLSv1_3" };
                eprintln!(
                    "handshakes {offered} pair {} {:5}: {:>8.0}/s  p99 {} ms  errors {}  resumed {}  server CPU {:.0}%",
                    pair + 1,
                    side.name(),
                    summary.rate(),
                    ms(summary.latency.p99_us as f64),
                    summary.errors,
                    summary.resumed,
                    cpu * 100.0
                );
                handshakes.push(HandshakeRun {
                    pair,
                    side,
                    offered,
                    handshakes_per_sec: summary.rate(),
                    server_cpu: cpu,
                    per_cpu_second: summary.rate() / cpu.max(1e-9),
                    summary,
                });
            }
            proxy.proc.ensure_running()?;
            ngx.proc.ensure_running()?;
        }
    }

    // 4. Keep-alive redirects over HTTPS.
    let script = wrk::write_script(&work)?;
    let mut keepalive = Vec::new();
    for pair in 0..args.pairs {
        for side in sides {
            let (target, pid) = targets(side);
            let url = format!("https://{target}");
            let mut w = WrkRun {
                wrk: &wrk_bin,
                pin: &client_pin,
                script: &script,
                slugs: &sample_path,
                target: &url,
                threads: args.load.threads,
                connections: args.load.connections,
                duration: secs(args.load.warmup),
                seed: c.seed + pair as u64,
            };
            w.warm_up(secs(args.load.duration)).await?;
            let (summary, cpu) = cpu_share(pid, w.run()).await?;
            eprintln!(
                "keep-alive pair {} {:5}: {:>9.0} req/s  p99 {} ms  errors {}  server CPU {:.0}%",
                pair + 1,
                side.name(),
                summary.rps(),
                ms(summary.p99_us as f64),
                summary.errors(),
                cpu * 100.0
            );
            keepalive.push(KeepAliveRun {
                pair,
                side,
                requests_per_sec: summary.rps(),
                errors: summary.errors(),
                server_cpu: cpu,
                per_cpu_second: summary.rps() / cpu.max(1e-9),
                wrk: summary,
            });
        }
        proxy.proc.ensure_running()?;
        ngx.proc.ensure_running()?;
    }
    let sling_metrics = client
        .get(format!("http://{}/metrics", proxy.admin))
        .send()
        .await
        .ok();
    let sling_handshake_counts = match sling_metrics {
        Some(resp) => resp
            .text()
            .await
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("sling_proxy_tls_handshakes_total"))
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        None => Vec::new(),
    };
    proxy.proc.stop(secs(15));
    ngx.proc.stop(secs(15));

    // Report.
    let hs_ratios = |offered: &str| -> Vec<f64> {
        ratios(
            handshakes
                .iter()
                .filter(|r| r.offered == offered)
                .map(|r| (r.pair, r.side, r.handshakes_per_sec)),
        )
    };
    let ka_ratios = ratios(
        keepalive
            .iter()
            .map(|r| (r.pair, r.side, r.requests_per_sec)),
    );
    let hs13 = hs_ratios("TLSv1_3");
    let hs12 = hs_ratios("TLSv1_2");
    let hs13_cpu = ratios(
        handshakes
            .iter()
            .filter(|r| r.offered == "TLSv1_3")
            .map(|r| (r.pair, r.side, r.per_cpu_second)),
    );
    let ka_cpu = ratios(keepalive.iter().map(|r| (r.pair, r.side, r.per_cpu_second)));
    let config = json!({
        "links": args.links,
        "pairs": args.pairs,
        "handshakeConcurrency": args.handshake_concurrency,
        "keepAliveConnections": args.load.connections,
        "wrkThreads": args.load.threads,
        "durationSecs": args.load.duration,
        "warmupSecs": args.load.warmup,
        "sample": args.load.sample,
        "seed": c.seed,
        "slingClicks": args.clicks_on,
        "certificate": "ECDSA P-256 (rcgen), self-signed, for bench.sling.test and 127.0.0.1",
    });
    let results = json!({
        "negotiated": negotiated,
        "handshakes": {
            "generator": "sling-bench handshake worker (tokio-rustls client, no session store, no certificate checks, one GET with Connection: close per connection)",
            "runs": handshakes,
            "ratioPerPairTls13": hs13,
            "medianRatioTls13": median(&hs13),
            "ratioPerPairTls12": hs12,
            "medianRatioTls12": median(&hs12),
            "perCpuSecondRatioPerPairTls13": hs13_cpu,
            "perCpuSecondMedianRatioTls13": median(&hs13_cpu),
        },
        "keepAlive": {
            "generator": "wrk (Debian, OpenSSL) over HTTPS, HTTP/1.1, Lua script picking random slugs",
            "runs": keepalive,
            "ratioPerPair": ka_ratios,
            "medianRatio": median(&ka_ratios),
            "perCpuSecondRatioPerPair": ka_cpu,
            "perCpuSecondMedianRatio": median(&ka_cpu),
        },
        "slingHandshakeCounters": sling_handshake_counts,
        "targets": {
            "handshakesMedianRatioAtLeast1": median(&hs13).map(|r| r >= 1.0),
            "keepAliveMedianRatioAtLeast1": median(&ka_ratios).map(|r| r >= 1.0),
        },
    });
    let machine = env::machine();
    let report = run.envelope(c, config, results);
    run.write_json(&report)?;

    let mut md = report::md_header(
        "tls: sling vs nginx over HTTPS, same certificate",
        &machine,
        c,
        &report::command_line(),
    );
    md.push_str("## Summary\n\n");
    let median_of = |f: &dyn Fn(Side) -> Vec<f64>, side: Side| median(&f(side));
    let hs_rates = |offered: &'static str| {
        let handshakes = &handshakes;
        move |side: Side| -> Vec<f64> {
            handshakes
                .iter()
                .filter(|r| r.offered == offered && r.side == side)
                .map(|r| r.handshakes_per_sec)
                .collect()
        }
    };
    let ka_rates = |side: Side| -> Vec<f64> {
        keepalive
            .iter()
            .filter(|r| r.side == side)
            .map(|r| r.requests_per_sec)
            .collect()
    };
    let mut lines = vec![(
        "Full TLS 1.3 handshakes (new connection + one redirect each, no resumption)",
        "handshakes/s",
        median_of(&hs_rates("TLSv1_3"), Side::Sling),
        median_of(&hs_rates("TLSv1_3"), Side::Nginx),
        hs13.clone(),
    )];
    if args.tls12 {
        lines.push((
            "Full TLS 1.2 handshakes",
            "handshakes/s",
            median_of(&hs_rates("TLSv1_2"), Side::Sling),
            median_of(&hs_rates("TLSv1_2"), Side::Nginx),
            hs12.clone(),
        ));
    }
    lines.push((
        "HTTPS redirects on keep-alive connections (wrk)",
        "req/s",
        median_of(&ka_rates, Side::Sling),
        median_of(&ka_rates, Side::Nginx),
        ka_ratios.clone(),
    ));
    for (what, unit, s, n, per_pair) in &lines {
        let m = median(per_pair);
        md.push_str(&format!(
            "- {what}: sling **{:.0} {unit}**, nginx **{:.0} {unit}** (medians of {} runs); ratio sling/nginx per pair {}; \
             **median {}** — target ≥ 1.0: {}.\n",
            s.unwrap_or(f64::NAN),
            n.unwrap_or(f64::NAN),
            args.pairs,
            per_pair
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
            ratio(m),
            match m {
                Some(r) if r >= 1.0 => "met".to_owned(),
                Some(r) => format!("**missed by {:.1}%**", (1.0 - r) * 100.0),
                None => "–".to_owned(),
            }
        ));
    }
    md.push_str(&format!(
        "- Per second of server CPU (comparable even where the load generator could not saturate the server): \
         full handshakes ratio sling/nginx **median {}** (per pair {}); keep-alive redirects **median {}** (per pair {}).\n",
        ratio(median(&hs13_cpu)),
        hs13_cpu.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", "),
        ratio(median(&ka_cpu)),
        ka_cpu.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", "),
    ));
    let resumed: u64 = handshakes.iter().map(|r| r.summary.resumed).sum();
    let errors: u64 = handshakes.iter().map(|r| r.summary.errors).sum::<u64>()
        + keepalive.iter().map(|r| r.errors).sum::<u64>();
    md.push_str(&format!(
        "- Resumed handshakes in the handshake runs: {resumed} (must be 0). Errors over all runs: {errors}.\n"
    ));
    let unsaturated: Vec<String> = handshakes
        .iter()
        .map(|r| (r.pair, r.side, r.server_cpu, "handshakes"))
        .chain(
            keepalive
                .iter()
                .map(|r| (r.pair, r.side, r.server_cpu, "keep-alive")),
        )
        .filter(|(_, _, cpu, _)| *cpu < 0.9)
        .map(|(pair, side, cpu, what)| {
            format!(
                "{what} pair {} {} ({:.0}%)",
                pair + 1,
                side.name(),
                cpu * 100.0
            )
        })
        .collect();
    if !unsaturated.is_empty() {
        md.push_str(&format!(
            "- **Warning:** the server's core was less than 90% busy in {}: the load generator, not the server, \
             limited those runs.\n",
            unsaturated.join(", ")
        ));
    }
    md.push_str("\n## Negotiated\n\n");
    md.push_str(&md_table(
        &["side", "protocol", "cipher suite", "ALPN offered"],
        &[Side::Sling, Side::Nginx]
            .iter()
            .map(|side| {
                let n = &negotiated[side.name()];
                vec![
                    side.name().into(),
                    n["protocol"].as_str().unwrap_or("?").into(),
                    n["cipherSuite"].as_str().unwrap_or("?").into(),
                    "http/1.1".into(),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    md.push_str("\n## Full handshakes (handshake worker)\n\n");
    md.push_str(&md_table(
        &[
            "pair",
            "side",
            "offered",
            "handshakes/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "resumed",
            "server CPU",
            "per CPU-second",
        ],
        &handshakes
            .iter()
            .map(|r| {
                vec![
                    (r.pair + 1).to_string(),
                    r.side.name().into(),
                    r.offered.into(),
                    format!("{:.0}", r.handshakes_per_sec),
                    ms(r.summary.latency.p50_us as f64),
                    ms(r.summary.latency.p99_us as f64),
                    r.summary.errors.to_string(),
                    r.summary.resumed.to_string(),
                    format!("{:.0}%", r.server_cpu * 100.0),
                    format!("{:.0}", r.per_cpu_second),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    md.push_str("\n## Keep-alive (wrk over HTTPS)\n\n");
    md.push_str(&md_table(
        &[
            "pair",
            "side",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "bytes/response",
            "server CPU",
            "per CPU-second",
        ],
        &keepalive
            .iter()
            .map(|r| {
                vec![
                    (r.pair + 1).to_string(),
                    r.side.name().into(),
                    format!("{:.0}", r.requests_per_sec),
                    ms(r.wrk.p50_us as f64),
                    ms(r.wrk.p99_us as f64),
                    r.errors.to_string(),
                    format!("{:.0}", r.wrk.bytes_per_response()),
                    format!("{:.0}%", r.server_cpu * 100.0),
                    format!("{:.0}", r.per_cpu_second),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    md.push_str(&format!(
        "\n## Method and caveats\n\n\
         - Both servers serve the same ECDSA P-256 certificate and key files; each is pinned to the server core \
           (sling: one tokio worker; nginx: one worker), and the load generators to the other core.\n\
         - Full handshakes: {conc} concurrent connections from the harness's handshake worker (tokio-rustls with \
           ring, X25519 first, no session store); each connection does a full handshake with SNI `{SNI}`, sends one \
           `GET /slug` with `Connection: close` and reads the answer until the server closes. The client checks no \
           certificate (as wrk does), so it does less crypto per handshake than the server (two X25519 \
           operations, no signature). wrk is not \
           used here: with `Connection: close` it reconnects on the same OpenSSL object, which keeps the previous \
           session and resumes it.\n\
         - Keep-alive: wrk (OpenSSL, no ALPN, so HTTP/1.1 on both sides), {conns} connections, {threads} thread(s), \
           {dur} s after {warm} s of warm-up, random slugs from a sample of {sample} of the {links} links.\n\
         - sling's click tracking is {clicks} (`redirect` and `clicks` measure the click path); nginx keeps its \
           buffered access log, as in `redirect`.\n\
         - nginx: `ssl_protocols TLSv1.2 TLSv1.3`, `listen … ssl http2` (nginx 1.22 has no `http2 on`), \
           `ssl_session_cache shared:SSL:10m`, tickets on (default), keep-alive unlimited, and sling's cipher suites \
           in sling's order with `ssl_prefer_server_ciphers on` (AES-128-GCM first: sling-proxy picks it over a \
           client's preference for AES-256-GCM-SHA384, whose SHA-384 key schedule is slow on this CPU), so both \
           negotiate the same suite. sling: session cache and ticket key on (rustls defaults otherwise). Both send \
           TLS 1.3 session tickets after each handshake.\n\n",
        conc = args.handshake_concurrency,
        conns = args.load.connections,
        threads = args.load.threads,
        dur = args.load.duration,
        warm = args.load.warmup,
        sample = args.load.sample.min(args.links as usize),
        links = args.links,
        clicks = if args.clicks_on { "on" } else { "off" },
    ));
    md.push_str("![handshakes](handshakes.svg)\n\n![keep-alive](keepalive.svg)\n");
    run.write_md(&md)?;

    let groups: Vec<String> = (1..=args.pairs).map(|p| format!("pair {p}")).collect();
    let per_pair = |side: Side, values: &dyn Fn(usize, Side) -> Option<f64>| Series {
        name: side.name().into(),
        values: (0..args.pairs)
            .map(|p| values(p, side).unwrap_or(f64::NAN))
            .collect(),
    };
    let hs_value = |p: usize, side: Side| {
        handshakes
            .iter()
            .find(|r| r.pair == p && r.side == side && r.offered == "TLSv1_3")
            .map(|r| r.handshakes_per_sec)
    };
    let ka_value = |p: usize, side: Side| {
        keepalive
            .iter()
            .find(|r| r.pair == p && r.side == side)
            .map(|r| r.requests_per_sec)
    };
    run.write_file(
        "handshakes.svg",
        &svg::grouped_bars(
            "Full TLS 1.3 handshakes (one redirect each)",
            "handshakes/s",
            &groups,
            &[
                per_pair(Side::Sling, &hs_value),
                per_pair(Side::Nginx, &hs_value),
            ],
        ),
    )?;
    run.write_file(
        "keepalive.svg",
        &svg::grouped_bars(
            "HTTPS redirects on keep-alive connections (wrk)",
            "requests/s",
            &groups,
            &[
                per_pair(Side::Sling, &ka_value),
                per_pair(Side::Nginx, &ka_value),
            ],
        ),
    )?;
    Ok(())
}

/// sling/nginx per pair, from (pair, side, value) rows.
fn ratios(rows: impl Iterator<Item = (usize, Side, f64)>) -> Vec<f64> {
    let rows: Vec<_> = rows.collect();
    let pairs = rows.iter().map(|r| r.0).max().map_or(0, |p| p + 1);
    (0..pairs)
        .filter_map(|p| {
            let of = |side: Side| rows.iter().find(|r| r.0 == p && r.1 == side).map(|r| r.2);
            Some(of(Side::Sling)? / of(Side::Nginx)?)
        })
        .collect()
}

/// Writes `cert.pem` (self-signed, ECDSA P-256) and `key.pem` (PKCS#8) into `dir`.
fn write_certificate(dir: &Path) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let key = rcgen::KeyPair::generate().context("generating the certificate key")?;
    let params = rcgen::CertificateParams::new(vec![SNI.to_owned(), "127.0.0.1".to_owned()])
        .context("certificate parameters")?;
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    Ok((cert_path, key_path))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Negotiated {
    protocol: String,
    cipher_suite: String,
}

/// Checks that `target` redirects sample slugs over TLS with the right `Location`, and reports
/// what the handshake negotiated.
async fn tls_preflight(
    side: Side,
    target: &str,
    expected: &[(String, String)],
) -> anyhow::Result<Negotiated> {
    let connector = tokio_rustls::TlsConnector::from(handshake::client_config(false)?);
    let name = ServerName::try_from(SNI.to_owned())?;
    let mut negotiated = None;
    for (slug, destination) in expected {
        let request = format!("GET /{slug} HTTP/1.1\r\nHost: {SNI}\r\nConnection: close\r\n\r\n");
        let (head, resumed, protocol, suite) =
            handshake::one_request(&connector, target, &name, request.as_bytes())
                .await
                .with_context(|| format!("TLS preflight against {}", side.name()))?;
        let status = handshake::status_of(&head);
        let location = handshake::header_of(&head, "location");
        anyhow::ensure!(
            status.is_some_and(|s| (300..400).contains(&s)) && location == Some(destination),
            "TLS preflight: {} answered {head:?} for /{slug}, expected a redirect to {destination}",
            side.name()
        );
        anyhow::ensure!(!resumed, "TLS preflight: a session was resumed");
        negotiated = Some(Negotiated {
            protocol,
            cipher_suite: suite,
        });
    }
    negotiated.context("no sample slugs")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ratios_pair_sling_with_nginx() {
        let rows = [
            (0, Side::Sling, 110.0),
            (0, Side::Nginx, 100.0),
            (1, Side::Nginx, 200.0),
            (1, Side::Sling, 100.0),
            (2, Side::Sling, 1.0),
        ];
        assert_eq!(ratios(rows.into_iter()), [1.1, 0.5]);
    }

    #[test]
    fn nginx_config_serves_the_certificate_with_tls_12_and_13() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_certificate(dir.path()).unwrap();
        let map = dir.path().join("links.map");
        std::fs::write(&map, "/abc https://example.com/;\n").unwrap();
        let conf = nginx::write_config(
            dir.path(),
            &map,
            1,
            8080,
            Some(TlsFiles {
                port: 8443,
                cert: &cert,
                key: &key,
            }),
        )
        .unwrap();
        let text = std::fs::read_to_string(conf).unwrap();
        assert!(text.contains("listen 127.0.0.1:8443 ssl http2"), "{text}");
        assert!(text.contains("ssl_protocols TLSv1.2 TLSv1.3;"), "{text}");
        assert!(text.contains(&format!("ssl_certificate {};", cert.display())));
        assert!(
            std::fs::read_to_string(key)
                .unwrap()
                .contains("PRIVATE KEY")
        );
    }
}
