//! `redirect`: sling against nginx on the same N links.
//!
//! 1. Generate N slugs (seeded), write them as a sling snapshot, as an nginx map, and a sample of
//!    `--sample` of them for the load to pick from.
//! 2. Start `sling-proxy` on the snapshot and nginx on the map, both pinned to the server core,
//!    and check both answer the sample correctly.
//! 3. Closed loop: wrk against sling, then nginx, `--pairs` times (A B A B …), each measured run
//!    after its own warm-up. The ratio sling/nginx is taken per pair; its median is the headline.
//! 4. Open loop: the harness's fixed-rate generator at `--rate` (default half of nginx's median
//!    closed-loop rate), again A B A B.

use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use super::{cpu_share, preflight, secs};
use crate::cli::RedirectArgs;
use crate::data::LinkSet;
use crate::env;
use crate::nginx;
use crate::openloop::{self, OpenLoopSummary};
use crate::procs;
use crate::report::{self, RunDir, Scratch, md_table, ms, ratio};
use crate::sling::{self, Source};
use crate::stats::median;
use crate::svg::{self, Series};
use crate::wrk::{self, WrkRun, WrkSummary};

use super::Side;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClosedRun {
    pair: usize,
    side: Side,
    requests_per_sec: f64,
    errors: u64,
    /// Server CPU used during the run, in cores (1.0 = its core fully busy).
    server_cpu: f64,
    wrk: WrkSummary,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OpenRun {
    pair: usize,
    side: Side,
    server_cpu: f64,
    summary: OpenLoopSummary,
}

pub async fn run(args: RedirectArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let wrk_bin = env::find_tool(&env::WRK)?;
    let nginx_bin = env::find_tool(&env::NGINX)?;
    let server_pin = env::pin(c, c.server_cpu)?;
    let client_pin = env::pin(c, c.client_cpu)?;
    anyhow::ensure!(args.pairs >= 1, "--pairs must be at least 1");
    let bins = env::binaries(c, false)?;
    let run = RunDir::create(c, "redirect")?;
    let scratch = Scratch::new(c, "redirect")?;
    let work = scratch.path().to_path_buf();

    // 1. Data.
    eprintln!("generating {} links…", args.links);
    let (links, seed, sample_n) = (args.links, c.seed, args.load.sample);
    let (snap_dir, nginx_dir) = (work.join("snapshots"), work.join("nginx"));
    std::fs::create_dir_all(&nginx_dir)?;
    let map_path = nginx_dir.join("links.map");
    let sample_path = work.join("sample.txt");
    let (sd, mp, sp) = (snap_dir.clone(), map_path.clone(), sample_path.clone());
    let data = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let t = Instant::now();
        let set = LinkSet::generate(links, seed)?;
        let generate_ms = t.elapsed().as_secs_f64() * 1e3;
        eprintln!("writing the snapshot…");
        let build = set.write_snapshot(&sd, 1)?;
        eprintln!("writing the nginx map…");
        let t = Instant::now();
        set.write_nginx_map(&mp)?;
        let map_ms = t.elapsed().as_secs_f64() * 1e3;
        let sample = set.write_sample(&sp, sample_n, seed)?;
        let expected: Vec<(String, String)> = sample
            .iter()
            .take(20)
            .map(|&i| (set.slug(i), LinkSet::destination(i)))
            .collect();
        Ok((generate_ms, build, map_ms, expected))
    })
    .await
    .context("data builder panicked")??;
    let (generate_ms, build, map_ms, expected) = data;
    let map_bytes = std::fs::metadata(&map_path).map_or(0, |m| m.len());
    let harness_peak_kib = procs::own_peak_kib();

    // 2. Servers.
    eprintln!("starting sling-proxy and nginx…");
    let ready_timeout = secs(60 + args.links / 100_000);
    let mut proxy = sling::start_proxy(
        &bins.proxy,
        &server_pin,
        Source::Standalone {
            snapshot_dir: &snap_dir,
        },
        &run.logs,
        ready_timeout,
    )
    .await?;
    let nginx_started = Instant::now();
    let probe = format!("/{}", expected.first().map_or("x", |e| e.0.as_str()));
    let mut ngx = nginx::start(
        &nginx_bin,
        &server_pin,
        &nginx_dir,
        &map_path,
        args.links,
        &probe,
    )
    .await?;
    let nginx_ready_ms = nginx_started.elapsed().as_secs_f64() * 1e3;
    let client = procs::http_client()?;
    preflight(&client, "sling", &proxy.addr, &expected).await?;
    preflight(&client, "nginx", &ngx.addr, &expected).await?;

    // 3. Closed loop.
    let script = wrk::write_script(&work)?;
    let sides = [Side::Sling, Side::Nginx];
    let mut closed = Vec::new();
    for pair in 0..args.pairs {
        for side in sides {
            let (target, pid) = match side {
                Side::Sling => (proxy.addr.as_str(), proxy.proc.pid()),
                Side::Nginx => (ngx.addr.as_str(), ngx.proc.pid()),
            };
            let mut w = WrkRun {
                wrk: &wrk_bin,
                pin: &client_pin,
                script: &script,
                slugs: &sample_path,
                target,
                threads: args.load.threads,
                connections: args.load.connections,
                duration: secs(args.load.warmup),
                seed: c.seed + pair as u64,
            };
            w.warm_up(secs(args.load.duration)).await?;
            let (summary, cpu) = cpu_share(pid, w.run()).await?;
            eprintln!(
                "closed loop pair {} {:5}: {:>9.0} req/s  p99 {} ms  errors {}",
                pair + 1,
                side.name(),
                summary.rps(),
                ms(summary.p99_us as f64),
                summary.errors()
            );
            closed.push(ClosedRun {
                pair,
                side,
                requests_per_sec: summary.rps(),
                errors: summary.errors(),
                server_cpu: cpu,
                wrk: summary,
            });
        }
        proxy.proc.ensure_running()?;
        ngx.proc.ensure_running()?;
    }
    let rps = |side: Side| -> Vec<f64> {
        closed
            .iter()
            .filter(|r| r.side == side)
            .map(|r| r.requests_per_sec)
            .collect()
    };
    let ratios: Vec<f64> = rps(Side::Sling)
        .iter()
        .zip(rps(Side::Nginx))
        .map(|(s, n)| s / n)
        .collect();
    let median_ratio = median(&ratios);

    // 4. Open loop.
    let rate = args
        .rate
        .unwrap_or_else(|| (median(&rps(Side::Nginx)).unwrap_or(10_000.0) / 2.0).round() as u64);
    let mut open = Vec::new();
    if !args.no_open_loop {
        for pair in 0..args.pairs {
            for side in sides {
                let (target, pid) = match side {
                    Side::Sling => (proxy.addr.clone(), proxy.proc.pid()),
                    Side::Nginx => (ngx.addr.clone(), ngx.proc.pid()),
                };
                let ol =
                    args.load
                        .open_loop(target, sample_path.clone(), rate, c.seed + pair as u64);
                let (summary, cpu) = cpu_share(pid, openloop::run(&client_pin, &ol)).await?;
                eprintln!(
                    "open loop pair {} {:5}: {:>9.0} req/s  p99 {} ms  errors {}",
                    pair + 1,
                    side.name(),
                    summary.achieved_rate,
                    ms(summary.latency.p99_us as f64),
                    summary.errors()
                );
                open.push(OpenRun {
                    pair,
                    side,
                    server_cpu: cpu,
                    summary,
                });
            }
        }
    }

    // Stop both; nginx flushes its log buffer on exit.
    let proxy_start_to_ready_ms = proxy.start_to_ready.as_secs_f64() * 1e3;
    proxy.proc.stop(secs(15));
    ngx.proc.stop(secs(15));
    let nginx_log_lines = nginx::access_log_lines(&ngx.access_log);

    // Report.
    let config = json!({
        "links": args.links,
        "pairs": args.pairs,
        "connections": args.load.connections,
        "wrkThreads": args.load.threads,
        "durationSecs": args.load.duration,
        "warmupSecs": args.load.warmup,
        "sample": args.load.sample,
        "seed": c.seed,
        "openLoopRate": if args.no_open_loop { json!(null) } else { json!(rate) },
    });
    let results = json!({
        "data": {
            "generateMs": generate_ms,
            "snapshot": build,
            "nginxMapBytes": map_bytes,
            "nginxMapWriteMs": map_ms,
            "harnessPeakRssKiB": harness_peak_kib,
            "proxyStartToReadyMs": proxy_start_to_ready_ms,
            "nginxStartToReadyMs": nginx_ready_ms,
        },
        "closedLoop": {
            "generator": "wrk (Debian), Lua script picking random slugs from the sample",
            "runs": closed,
            "ratioPerPair": ratios,
            "medianRatio": median_ratio,
            "medianRps": { "sling": median(&rps(Side::Sling)), "nginx": median(&rps(Side::Nginx)) },
        },
        "openLoop": {
            "generator": "sling-bench open-loop worker (own HTTP/1.1 keep-alive client on httparse, nanosleep pacer, HDR histogram, latency from intended send time)",
            "rate": rate,
            "runs": open,
        },
        "nginxAccessLogLines": nginx_log_lines,
        "targets": {
            "closedLoopMedianRatioAtLeast1": median_ratio.map(|r| r >= 1.0),
            "openLoopP99NoHigherThanNginx": open_p99_target(&open),
        },
    });
    let machine = env::machine();
    let report = run.envelope(c, config, results);
    run.write_json(&report)?;

    let mut md = report::md_header(
        &format!("redirect: sling vs nginx, {} links", args.links),
        &machine,
        c,
        &report::command_line(),
    );
    md.push_str(&summary_md(
        &args,
        &closed,
        &ratios,
        median_ratio,
        &open,
        rate,
    ));
    md.push_str("## Data\n\n");
    md.push_str(&md_table(
        &["what", "value"],
        &[
            vec!["links".into(), args.links.to_string()],
            vec![
                "snapshot file".into(),
                format!("{:.1} MiB", build.bytes as f64 / 1048576.0),
            ],
            vec![
                "snapshot build (body + encode + write)".into(),
                format!(
                    "{:.0} ms ({:.0} + {:.0} + {:.0})",
                    build.total_ms, build.body_ms, build.encode_ms, build.write_ms
                ),
            ],
            vec![
                "nginx map file".into(),
                format!("{:.1} MiB", map_bytes as f64 / 1048576.0),
            ],
            vec![
                "sling-proxy spawn → /readyz 200".into(),
                format!("{proxy_start_to_ready_ms:.0} ms"),
            ],
            vec![
                "nginx spawn → first 302".into(),
                format!("{nginx_ready_ms:.0} ms"),
            ],
            vec![
                "bench peak RSS while building".into(),
                format!("{} MiB", report::mib(harness_peak_kib)),
            ],
        ],
    ));
    md.push_str(&closed_md(&closed));
    md.push_str(&open_md(&open));
    md.push_str(&format!(
        "## Method and caveats\n\n\
         - Same load generator, connections ({conns}), wrk threads ({threads}), duration ({dur} s after {warm} s of warm-up) \
           and core split for both sides; sides alternate A B A B so drift hits both.\n\
         - Each request picks a random slug from a sample of {sample} of the {links} links; the preflight check \
           verified both servers redirect sample slugs to the same destination and answer 404 for an unknown slug.\n\
         - Errors are socket errors plus responses with status ≥ 400 (wrk) or any non-3xx status (open loop).\n\
         - nginx: 1 worker, `map $uri $dest` + `return 302 $dest`, `Cache-Control` added to match sling, keep-alive \
           unlimited (nginx's default closes a connection every 1,000 requests; sling never does), access log on with \
           `buffer=64k flush=1s` ({log_lines} lines written). **sling's proxy does not log each request yet**, so \
           nginx does work here that sling does not.\n\
         - nginx's 302 carries a small HTML body; sling's is empty (see bytes/response).\n\
         - sling-proxy has no worker-thread flag: its tokio runtime sizes itself from the CPUs taskset allows (one), \
           and `TOKIO_WORKER_THREADS=1` is set too.\n\
         - Closed-loop latencies (wrk) suffer from coordinated omission; read latency from the open-loop table, \
           where it is measured from each request's intended send time. Its send lag column is the generator's \
           own wake-up delay (a pacer thread on `nanosleep`, tens of microseconds) plus queueing behind a slow answer on \
           the same connection, measured the same way on both sides.\n\n",
        conns = args.load.connections,
        threads = args.load.threads,
        dur = args.load.duration,
        warm = args.load.warmup,
        sample = args.load.sample,
        links = args.links,
        log_lines = nginx_log_lines,
    ));
    md.push_str("![throughput](throughput.svg)\n\n![latency](latency.svg)\n");
    run.write_md(&md)?;
    write_charts(&run, &closed, &open)?;
    Ok(())
}

fn median_of(runs: impl Iterator<Item = f64>) -> Option<f64> {
    median(&runs.collect::<Vec<_>>())
}

fn open_p99_target(open: &[OpenRun]) -> Option<bool> {
    let p99 = |side: Side| {
        median_of(
            open.iter()
                .filter(|r| r.side == side)
                .map(|r| r.summary.latency.p99_us as f64),
        )
    };
    Some(p99(Side::Sling)? <= p99(Side::Nginx)?)
}

fn summary_md(
    args: &RedirectArgs,
    closed: &[ClosedRun],
    ratios: &[f64],
    median_ratio: Option<f64>,
    open: &[OpenRun],
    rate: u64,
) -> String {
    let med = |side: Side| {
        median_of(
            closed
                .iter()
                .filter(|r| r.side == side)
                .map(|r| r.requests_per_sec),
        )
        .unwrap_or(f64::NAN)
    };
    let mut s = String::from("## Summary\n\n");
    s.push_str(&format!(
        "- Closed loop (wrk, max throughput): sling **{:.0} req/s**, nginx **{:.0} req/s** (medians of {} runs); \
         ratio sling/nginx per pair {}; **median {}** — target ≥ 1.0: {}.\n",
        med(Side::Sling),
        med(Side::Nginx),
        args.pairs,
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        ratio(median_ratio),
        match median_ratio {
            Some(r) if r >= 1.0 => "met".to_owned(),
            Some(r) => format!("**missed by {:.1}%**", (1.0 - r) * 100.0),
            None => "–".to_owned(),
        }
    ));
    if !open.is_empty() {
        let p = |side: Side, f: fn(&OpenLoopSummary) -> u64| {
            median_of(
                open.iter()
                    .filter(|r| r.side == side)
                    .map(|r| f(&r.summary) as f64),
            )
            .unwrap_or(f64::NAN)
        };
        let (sp, np) = (
            p(Side::Sling, |s| s.latency.p99_us),
            p(Side::Nginx, |s| s.latency.p99_us),
        );
        s.push_str(&format!(
            "- Open loop at {rate} req/s: p99 sling **{} ms**, nginx **{} ms** (p50 {} vs {} ms, p99.9 {} vs {} ms; medians) — \
             target sling p99 ≤ nginx p99: {}.\n",
            ms(sp),
            ms(np),
            ms(p(Side::Sling, |s| s.latency.p50_us)),
            ms(p(Side::Nginx, |s| s.latency.p50_us)),
            ms(p(Side::Sling, |s| s.latency.p999_us)),
            ms(p(Side::Nginx, |s| s.latency.p999_us)),
            if sp <= np {
                "met".to_owned()
            } else {
                format!("**missed (+{:.1}%)**", (sp / np - 1.0) * 100.0)
            }
        ));
    }
    let unsaturated: Vec<String> = closed
        .iter()
        .filter(|r| r.server_cpu < 0.9)
        .map(|r| {
            format!(
                "pair {} {} ({:.0}%)",
                r.pair + 1,
                r.side.name(),
                r.server_cpu * 100.0
            )
        })
        .collect();
    if !unsaturated.is_empty() {
        s.push_str(&format!(
            "- **Warning:** the server's core was less than 90% busy in closed-loop runs {}: the load generator \
             (or other work on the machine), not the server, limited throughput there, so those req/s understate \
             the server.\n",
            unsaturated.join(", ")
        ));
    }
    let errors: u64 = closed.iter().map(|r| r.errors).sum::<u64>()
        + open.iter().map(|r| r.summary.errors()).sum::<u64>();
    s.push_str(&format!("- Errors over all runs: {errors}.\n\n"));
    s
}

fn closed_md(closed: &[ClosedRun]) -> String {
    let rows: Vec<Vec<String>> = closed
        .iter()
        .map(|r| {
            vec![
                (r.pair + 1).to_string(),
                r.side.name().into(),
                format!("{:.0}", r.requests_per_sec),
                ms(r.wrk.p50_us as f64),
                ms(r.wrk.p99_us as f64),
                ms(r.wrk.p999_us as f64),
                r.errors.to_string(),
                format!("{:.0}", r.wrk.bytes_per_response()),
                format!("{:.0}%", r.server_cpu * 100.0),
            ]
        })
        .collect();
    let mut s = String::from("## Closed loop (wrk)\n\n");
    s.push_str(&md_table(
        &[
            "pair",
            "side",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "errors",
            "bytes/response",
            "server CPU",
        ],
        &rows,
    ));
    s
}

fn open_md(open: &[OpenRun]) -> String {
    if open.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = open
        .iter()
        .map(|r| {
            let mut row = vec![
                (r.pair + 1).to_string(),
                r.side.name().into(),
                r.summary.target_rate.to_string(),
            ];
            row.extend(r.summary.cells());
            row.push(format!("{:.0}%", r.server_cpu * 100.0));
            row
        })
        .collect();
    let mut s = String::from("## Open loop (fixed rate, latency from intended send time)\n\n");
    s.push_str(&md_table(
        &[
            &["pair", "side", "rate"][..],
            &OpenLoopSummary::CELLS,
            &["server CPU"],
        ]
        .concat(),
        &rows,
    ));
    s
}

fn write_charts(run: &RunDir, closed: &[ClosedRun], open: &[OpenRun]) -> anyhow::Result<()> {
    let pairs = closed.iter().map(|r| r.pair).max().map_or(0, |p| p + 1);
    let groups: Vec<String> = (1..=pairs).map(|p| format!("pair {p}")).collect();
    let series = |side: Side| Series {
        name: side.name().into(),
        values: (0..pairs)
            .map(|p| {
                closed
                    .iter()
                    .find(|r| r.pair == p && r.side == side)
                    .map_or(f64::NAN, |r| r.requests_per_sec)
            })
            .collect(),
    };
    run.write_file(
        "throughput.svg",
        &svg::grouped_bars(
            "Closed-loop throughput (wrk)",
            "requests/s",
            &groups,
            &[series(Side::Sling), series(Side::Nginx)],
        ),
    )?;
    let groups: Vec<String> = ["p50", "p99", "p99.9"].map(String::from).to_vec();
    let mut lat = Vec::new();
    for side in [Side::Sling, Side::Nginx] {
        let med = |f: fn(&WrkSummary) -> u64| {
            median_of(
                closed
                    .iter()
                    .filter(|r| r.side == side)
                    .map(|r| f(&r.wrk) as f64 / 1000.0),
            )
            .unwrap_or(f64::NAN)
        };
        lat.push(Series {
            name: format!("{} closed", side.name()),
            values: vec![med(|w| w.p50_us), med(|w| w.p99_us), med(|w| w.p999_us)],
        });
    }
    if !open.is_empty() {
        for side in [Side::Sling, Side::Nginx] {
            let med = |f: fn(&OpenLoopSummary) -> u64| {
                median_of(
                    open.iter()
                        .filter(|r| r.side == side)
                        .map(|r| f(&r.summary) as f64 / 1000.0),
                )
                .unwrap_or(f64::NAN)
            };
            lat.push(Series {
                name: format!("{} open", side.name()),
                values: vec![
                    med(|s| s.latency.p50_us),
                    med(|s| s.latency.p99_us),
                    med(|s| s.latency.p999_us),
                ],
            });
        }
    }
    run.write_file(
        "latency.svg",
        &svg::grouped_bars(
            "Latency, median over runs (open loop: from intended send time)",
            "milliseconds",
            &groups,
            &lat,
        ),
    )?;
    Ok(())
}
