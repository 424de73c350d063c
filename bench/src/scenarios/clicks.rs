//! `clicks`: what click tracking costs the proxy, and how fast the control plane ingests clicks.
//!
//! 1. Throughput, clicks on vs off. `sling serve` (SQLite, or Postgres with `--throughput-db`)
//!    gets `--links` links through `POST /api/v1/links/bulk`; two proxies follow it, one with
//!    `--clicks on` (shipping real batches to the control plane), one with `--clicks off`, both
//!    pinned to the server core (only the one under load is busy). wrk runs against them
//!    alternately (on, off, on, off, …); the ratio on/off is taken per pair. After each run the
//!    control plane's `click_events_ingested` counter is awaited until it has taken every click
//!    the proxy served (delivered/served in the report).
//! 2. Ingest. For each of `--ingest-dbs` and each of `--ingest-cases` (batch size; event times
//!    recent, as a proxy stamps them, or spread over the last hour), a fresh `sling serve` (the
//!    server under test, on the server core) and `--ingest-links` links; `--senders` tasks POST
//!    pre-built `ClickBatch` bodies (each with a new batch id) to `/internal/v1/clicks` with the
//!    fleet token, closed loop. Events/s and batch latency.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use sling_shared::clicks::{CLICKS_PATH, ClickEvent, IngestReceipt, MAX_BATCH_EVENTS};

use super::{await_redirects, cpu_share, secs};
use crate::cli::{Backend, ClicksArgs, ControlPriority};
use crate::closedloop::{self, ClosedLoopSummary};
use crate::data::write_lines;
use crate::db::{self, ControlOn};
use crate::env;
use crate::procs;
use crate::report::{self, RunDir, Scratch, md_table, ms, ratio};
use crate::sling::{self, Source};
use crate::stats::median;
use crate::svg::{self, Series};
use crate::wrk::{self, WrkRun, WrkSummary};

/// The control plane's counter of stored click events (a substring of its metric name).
const INGESTED: &str = "click_events_ingested";
const UNKNOWN: &str = "click_events_unknown_link";
/// Throughput target: clicks on at most 5% below clicks off.
const MIN_RATIO: f64 = 0.95;
/// Ingest target into Postgres.
const MIN_EVENTS_PER_SEC: f64 = 100_000.0;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThroughputRun {
    pair: usize,
    clicks: bool,
    requests_per_sec: f64,
    errors: u64,
    server_cpu: f64,
    /// The proxy's CPU time per redirect, in microseconds: its own cost, whatever share of the
    /// machine the load generator and the control plane took.
    proxy_cpu_us_per_request: f64,
    /// Control-plane CPU during the measured run (it shares the load generator's core).
    control_cpu: f64,
    /// Redirects served in warm-up + measured run (wrk's counts).
    served: u64,
    /// Change of the control plane's ingested-events counter from before the warm-up until the
    /// clicks stopped arriving.
    delivered: u64,
    /// Milliseconds after the run until the last click arrived.
    delivery_wait_ms: f64,
    /// Change of every proxy metric whose name mentions "click".
    proxy_click_metrics_delta: BTreeMap<String, f64>,
    wrk: WrkSummary,
}

/// Event times of an ingest case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
enum Times {
    /// The last two seconds: what a proxy sends (it stamps clicks on arrival and ships every
    /// 250 ms), so a batch touches one or two 15-minute rollup buckets.
    Recent,
    /// Random over the last hour: five buckets per link, little for rollups to aggregate.
    Hour,
}

impl Times {
    fn name(self) -> &'static str {
        match self {
            Times::Recent => "recent",
            Times::Hour => "hour",
        }
    }
    fn span_ms(self) -> i64 {
        match self {
            Times::Recent => 2_000,
            Times::Hour => 3_600_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
struct IngestCase {
    times: Times,
    batch_events: usize,
    senders: u32,
}

/// `TIMES:EVENTS[:SENDERS]`, senders defaulting to `--senders`.
fn parse_cases(raw: &[String], default_senders: u32) -> anyhow::Result<Vec<IngestCase>> {
    raw.iter()
        .map(|c| {
            let mut parts = c.splitn(3, ':');
            let (Some(t), Some(n)) = (parts.next(), parts.next()) else {
                anyhow::bail!("--ingest-cases: {c:?} is not TIMES:EVENTS[:SENDERS]");
            };
            let senders =
                match parts.next() {
                    None => default_senders,
                    Some(k) => k.parse().ok().filter(|&k| k >= 1).with_context(|| {
                        format!("--ingest-cases: {k:?} is not a number of senders")
                    })?,
                };
            let times = match t {
                "recent" => Times::Recent,
                "hour" => Times::Hour,
                _ => anyhow::bail!("--ingest-cases: times {t:?} is not recent or hour"),
            };
            let batch_events: usize = n
                .parse()
                .with_context(|| format!("--ingest-cases: {n:?} is not a number of events"))?;
            anyhow::ensure!(
                (1..=MAX_BATCH_EVENTS).contains(&batch_events),
                "--ingest-cases: events per batch must be between 1 and {MAX_BATCH_EVENTS}"
            );
            Ok(IngestCase {
                times,
                batch_events,
                senders,
            })
        })
        .collect()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IngestRun {
    backend: Backend,
    database: Option<String>,
    times: Times,
    batch_events: usize,
    senders: u32,
    events_per_sec: f64,
    batches: ClosedLoopSummary,
    /// Change of the control plane's ingested-events counter over warm-up + measured run.
    ingested_delta: u64,
    unknown_link_delta: u64,
    control_cpu: f64,
}

pub async fn run(args: ClicksArgs) -> anyhow::Result<()> {
    let c = &args.common;
    anyhow::ensure!(args.pairs >= 1, "--pairs must be at least 1");
    anyhow::ensure!(
        args.links >= 1 && args.ingest_links >= 1,
        "--links and --ingest-links must be at least 1"
    );
    let cases = parse_cases(&args.ingest_cases, args.senders)?;
    let wrk_bin = env::find_tool(&env::WRK)?;
    let server_pin = env::pin(c, c.server_cpu)?;
    let client_pin = env::pin(c, c.client_cpu)?;
    let bins = env::binaries(c, true)?;
    let run = RunDir::create(c, "clicks")?;
    let scratch = Scratch::new(c, "clicks")?;
    let work = scratch.path().to_path_buf();
    let client = procs::http_client()?;

    let mut throughput = Vec::new();
    let mut throughput_db = None;
    if !args.no_throughput {
        let control_pin = env::control_pin(args.control_priority, &client_pin)?;
        let control = db::start_control_on(
            args.throughput_db,
            &args.postgres,
            &bins.control,
            &control_pin,
            &work.join("control-throughput"),
            &[],
            &run.logs,
        )
        .await?;
        throughput_db = Some(control.database());
        throughput = throughput_runs(
            &args,
            &bins,
            &control,
            &client,
            &wrk_bin,
            &server_pin,
            &client_pin,
            &work,
            &run,
        )
        .await?;
    }
    let mut ingest = Vec::new();
    if !args.no_ingest {
        for &backend in &args.ingest_dbs {
            for &case in &cases {
                ingest.push(
                    ingest_run(
                        &args,
                        &bins,
                        backend,
                        case,
                        &client,
                        &server_pin,
                        &work,
                        &run,
                    )
                    .await?,
                );
            }
        }
    }

    // Report.
    // One figure of the runs with clicks on (or off), in run order.
    let of_runs = |on: bool, figure: fn(&ThroughputRun) -> f64| -> Vec<f64> {
        throughput
            .iter()
            .filter(|r| r.clicks == on)
            .map(figure)
            .collect()
    };
    let rps = |on: bool| of_runs(on, |r| r.requests_per_sec);
    let cpu_us = |on: bool| of_runs(on, |r| r.proxy_cpu_us_per_request);
    let ratios: Vec<f64> = rps(true)
        .iter()
        .zip(rps(false))
        .map(|(a, b)| a / b)
        .collect();
    let median_ratio = median(&ratios);
    let (served, delivered) = throughput
        .iter()
        .filter(|r| r.clicks)
        .fold((0, 0), |(s, d), r| (s + r.served, d + r.delivered));
    let delivered_share = (served > 0).then(|| delivered as f64 / served as f64);
    // The target is judged on the first Postgres case (by default recent times, 5,000-event
    // batches, 16 senders: what a loaded fleet sends); every case is reported.
    let judged = ingest.iter().position(|r| r.backend == Backend::Postgres);
    let pg_rate = judged.and_then(|i| ingest.get(i)).map(|r| r.events_per_sec);
    let config = json!({
        "links": args.links,
        "pairs": args.pairs,
        "throughputDb": args.throughput_db,
        "controlPriority": args.control_priority,
        "clickBatchSize": args.click_batch_size,
        "connections": args.load.connections,
        "wrkThreads": args.load.threads,
        "durationSecs": args.load.duration,
        "warmupSecs": args.load.warmup,
        "sample": args.load.sample,
        "ingestDbs": args.ingest_dbs,
        "senders": args.senders,
        "ingestCases": cases,
        "ingestLinks": args.ingest_links,
        "seed": c.seed,
    });
    let results = json!({
        "throughput": {
            "generator": "wrk (Debian), closed loop, random slugs from the links created through the API",
            "database": throughput_db,
            "runs": throughput,
            "ratioOnOverOffPerPair": ratios,
            "medianRatio": median_ratio,
            "medianRps": { "on": median(&rps(true)), "off": median(&rps(false)) },
            "medianProxyCpuUsPerRequest": { "on": median(&cpu_us(true)), "off": median(&cpu_us(false)) },
            "clicksServed": served,
            "clicksDelivered": delivered,
            "deliveredOverServed": delivered_share,
        },
        "ingest": {
            "generator": "sling-bench closed loop (reqwest, one task per sender, HDR histogram)",
            "runs": ingest,
        },
        "targets": {
            "clicksOnAtMost5PercentSlower": median_ratio.map(|r| r >= MIN_RATIO),
            "allClicksDelivered": delivered_share.map(|d| d >= 1.0),
            "postgresIngestAtLeast100kEventsPerSec": pg_rate.map(|r| r >= MIN_EVENTS_PER_SEC),
        },
    });
    let machine = env::machine();
    run.write_json(&run.envelope(c, config, results))?;

    let mut md = report::md_header(
        "clicks: click tracking on vs off, control-plane ingest",
        &machine,
        c,
        &report::command_line(),
    );
    md.push_str("## Summary\n\n");
    if !throughput.is_empty() {
        let met = |ok: bool| if ok { "met" } else { "**missed**" };
        md.push_str(&format!(
            "- Proxy throughput (wrk, closed loop): clicks on **{:.0} req/s**, off **{:.0} req/s** (medians of {} runs); \
             ratio on/off per pair {}; **median {}** — target ≥ {MIN_RATIO}: {}.\n\
             - Clicks delivered to the control plane / redirects served in the clicks-on runs: {delivered} / {served} \
             (**{}**) — target all delivered: {}.\n",
            median(&rps(true)).unwrap_or(f64::NAN),
            median(&rps(false)).unwrap_or(f64::NAN),
            args.pairs,
            ratios
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
            ratio(median_ratio),
            median_ratio.map_or("–", |r| met(r >= MIN_RATIO)),
            ratio(delivered_share),
            delivered_share.map_or("–", |d| met(d >= 1.0)),
        ));
        if let (Some(on), Some(off)) = (median(&cpu_us(true)), median(&cpu_us(false))) {
            md.push_str(&format!(
                "- Proxy CPU per redirect (its own cost, whatever the load generator and the control plane \
                 took of the machine; each at the rate its run reached, and a core that is not saturated \
                 spends more per request on wake-ups): on {on:.2} µs, off {off:.2} µs (medians): \
                 {:+.1}% with tracking.\n",
                (on / off - 1.0) * 100.0
            ));
        }
    }
    for (i, r) in ingest.iter().enumerate() {
        md.push_str(&format!(
            "- Ingest into {} ({} times): **{:.0} events/s** ({:.1} batches/s of {} events, {} senders), batch latency p50 {} ms, \
             p99 {} ms, errors {}{}.\n",
            r.backend.name(),
            r.times.name(),
            r.events_per_sec,
            r.batches.requests_per_sec,
            r.batch_events,
            r.senders,
            ms(r.batches.latency.p50_us as f64),
            ms(r.batches.latency.p99_us as f64),
            r.batches.errors,
            if judged == Some(i) {
                format!(
                    " — target ≥ 100,000 events/s (judged on this, the first Postgres case): {}",
                    if r.events_per_sec >= MIN_EVENTS_PER_SEC {
                        "met"
                    } else {
                        "**missed**"
                    }
                )
            } else {
                String::new()
            }
        ));
    }
    md.push('\n');
    if !throughput.is_empty() {
        let rows: Vec<Vec<String>> = throughput
            .iter()
            .map(|r| {
                vec![
                    (r.pair + 1).to_string(),
                    if r.clicks { "on" } else { "off" }.into(),
                    format!("{:.0}", r.requests_per_sec),
                    ms(r.wrk.p50_us as f64),
                    ms(r.wrk.p99_us as f64),
                    r.errors.to_string(),
                    format!("{:.0}%", r.server_cpu * 100.0),
                    format!("{:.2}", r.proxy_cpu_us_per_request),
                    format!("{:.0}%", r.control_cpu * 100.0),
                    r.served.to_string(),
                    r.delivered.to_string(),
                    format!("{:.0}", r.delivery_wait_ms),
                    report::metrics_delta_cell(&r.proxy_click_metrics_delta),
                ]
            })
            .collect();
        md.push_str("## Proxy throughput, clicks on vs off (wrk)\n\n");
        md.push_str(&md_table(
            &[
                "pair",
                "clicks",
                "req/s",
                "p50 ms",
                "p99 ms",
                "errors",
                "proxy CPU",
                "proxy CPU µs/req",
                "control CPU",
                "served",
                "delivered",
                "delivery wait ms",
                "proxy click metrics (change)",
            ],
            &rows,
        ));
    }
    if !ingest.is_empty() {
        let rows: Vec<Vec<String>> = ingest
            .iter()
            .map(|r| {
                let l = &r.batches.latency;
                vec![
                    r.backend.name().into(),
                    r.times.name().into(),
                    r.batch_events.to_string(),
                    format!("{:.0}", r.events_per_sec),
                    format!("{:.1}", r.batches.requests_per_sec),
                    ms(l.p50_us as f64),
                    ms(l.p90_us as f64),
                    ms(l.p99_us as f64),
                    ms(l.max_us as f64),
                    r.batches.errors.to_string(),
                    r.ingested_delta.to_string(),
                    r.unknown_link_delta.to_string(),
                    format!("{:.0}%", r.control_cpu * 100.0),
                ]
            })
            .collect();
        md.push_str("## Control-plane ingest (POST /internal/v1/clicks)\n\n");
        md.push_str(&md_table(
            &[
                "database",
                "event times",
                "events/batch",
                "events/s",
                "batches/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "errors",
                "events ingested (counter)",
                "unknown-link events",
                "control CPU",
            ],
            &rows,
        ));
        if let Some(e) = ingest.iter().find_map(|r| r.batches.first_error.as_ref()) {
            md.push_str(&format!("First ingest error: `{e}`\n\n"));
        }
    }
    md.push_str(&format!(
        "## Method and caveats\n\n\
         - Throughput: {links} links created through `POST /api/v1/links/bulk` in `sling serve` ({db}); two \
           proxies follow it (`--clicks on` and `--clicks off`), both pinned to CPU {sc}, only the one under load \
           busy. wrk ({conns} connections, {threads} thread(s), {dur} s after {warm} s of warm-up) picks random \
           slugs; runs alternate on, off. The control plane shares CPU {cc} with wrk {prio}\n\
         - Delivered: the control plane's `sling_control_{INGESTED}` counter, from before a run's warm-up until \
           it stopped rising (or reached the served count), against wrk's completed requests (warm-up + run). \
           Requests still in flight when wrk stops may be served but not counted by wrk, so the share can \
           slightly exceed 1.\n\
         - Ingest: a fresh `sling serve` (and database) per database and case on CPU {sc} (Postgres itself is \
           not pinned), {il} links; each case's senders (`TIMES:EVENTS:SENDERS`; {senders} where a case names \
           none) each POST pre-built batches (random links, countries, \
           devices; event times `recent`: within two seconds of the run's start, as a proxy stamps them, or \
           `hour`: random over the last hour; a new batch id per request, so nothing is deduplicated) with the \
           fleet token and check the receipt; closed loop, {dur} s after {warm} s of warm-up. The senders run \
           inside the harness (not pinned). Dirty pages are flushed (`sync`) before each case, so \
           no case measures the writeback of the one before it.\n\n",
        links = args.links,
        db = args.throughput_db.name(),
        sc = c.server_cpu,
        cc = c.client_cpu,
        prio = match args.control_priority {
            ControlPriority::Idle => "at idle priority (`chrt --idle`, `--control-priority idle`): it \
                only gets what wrk leaves of that core, as if it ran on a host of its own, as it does in a \
                fleet. What it cannot take during a run the proxy spools and delivers afterwards (the \
                delivered column counts those too). Postgres, with `--throughput-db postgres`, is not pinned \
                or deprioritised.",
            ControlPriority::Normal => "at normal priority (`--control-priority normal`), so in clicks-on \
                runs its ingest work also takes CPU from the load generator (control CPU column).",
        },
        conns = args.load.connections,
        threads = args.load.threads,
        dur = args.load.duration,
        warm = args.load.warmup,
        il = args.ingest_links,
        senders = args.senders,
    ));
    md.push_str("![throughput](throughput.svg)\n\n![ingest](ingest.svg)\n");
    run.write_md(&md)?;

    let groups: Vec<String> = (1..=args.pairs).map(|p| format!("pair {p}")).collect();
    let series = |on: bool| Series {
        name: if on { "clicks on" } else { "clicks off" }.into(),
        values: rps(on),
    };
    run.write_file(
        "throughput.svg",
        &svg::grouped_bars(
            "Proxy throughput, click tracking on vs off (wrk)",
            "requests/s",
            &groups,
            &[series(true), series(false)],
        ),
    )?;
    let groups: Vec<String> = ingest
        .iter()
        .map(|r| {
            format!(
                "{} {} ×{} ({} senders)",
                r.backend.name(),
                r.times.name(),
                r.batch_events,
                r.senders
            )
        })
        .collect();
    run.write_file(
        "ingest.svg",
        &svg::grouped_bars(
            "Control-plane click ingest",
            "events/s",
            &groups,
            &[Series {
                name: "events/s".to_owned(),
                values: ingest.iter().map(|r| r.events_per_sec).collect(),
            }],
        ),
    )?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn throughput_runs(
    args: &ClicksArgs,
    bins: &env::Binaries,
    control: &ControlOn,
    client: &reqwest::Client,
    wrk_bin: &std::path::Path,
    server_pin: &[String],
    client_pin: &[String],
    work: &std::path::Path,
    run: &RunDir,
) -> anyhow::Result<Vec<ThroughputRun>> {
    let c = &args.common;
    let ctl = &control.control;
    let api = ctl.api();
    eprintln!("creating {} links through the API…", args.links);
    let destinations: Vec<String> = (0..args.links)
        .map(|i| format!("https://example.com/c/{i}"))
        .collect();
    let slugs = sling::create_links_bulk(client, &api, &destinations).await?;
    let created: Vec<(String, String)> = slugs.into_iter().zip(destinations).collect();
    let sample_path = work.join("sample.txt");
    write_lines(
        &sample_path,
        created
            .iter()
            .take(args.load.sample.max(1))
            .map(|(s, _)| s.clone()),
    )?;

    eprintln!("starting two proxies following the control plane (clicks on, clicks off)…");
    let mut proxies = Vec::new();
    for on in [true, false] {
        let name = if on { "on" } else { "off" };
        let mut extra = vec![
            "--clicks".to_owned(),
            name.to_owned(),
            "--spool-dir".to_owned(),
            work.join(format!("spool-{name}")).display().to_string(),
        ];
        if let Some(n) = args.click_batch_size {
            extra.extend(["--click-batch-size".into(), n.to_string()]);
        }
        let mut proxy = sling::start_proxy_with(
            &bins.proxy,
            server_pin,
            Source::Follow {
                snapshot_dir: &work.join(format!("proxy-{name}-snapshots")),
                control_url: &ctl.url,
                fleet_token: &ctl.fleet_token,
            },
            &extra,
            &run.logs,
            secs(60),
        )
        .await?;
        let check: Vec<(String, String)> = created.iter().rev().take(20).cloned().collect();
        await_redirects(client, &mut proxy, &check, secs(60)).await?;
        proxies.push((on, proxy));
    }
    let metrics_url = ctl.url.clone();
    let ingested = || async {
        sling::metrics(client, &metrics_url, INGESTED)
            .await
            .values()
            .sum::<f64>() as u64
    };
    let script = wrk::write_script(work)?;
    let mut runs = Vec::new();
    for pair in 0..args.pairs {
        for (on, proxy) in proxies.iter_mut() {
            let on = *on;
            // Let the clicks of earlier requests (preflight, the previous run) land first.
            settle(&ingested, Duration::from_millis(1000), u64::MAX).await;
            let before = ingested().await;
            let admin = format!("http://{}", proxy.admin);
            let proxy_before = sling::metrics(client, &admin, "click").await;
            let mut w = WrkRun {
                wrk: wrk_bin,
                pin: client_pin,
                script: &script,
                slugs: &sample_path,
                target: &proxy.addr,
                threads: args.load.threads,
                connections: args.load.connections,
                duration: secs(args.load.warmup),
                seed: c.seed + pair as u64,
            };
            let mut served = w.warm_up(secs(args.load.duration)).await?;
            let ctl_cpu_before = procs::tree_cpu_seconds(ctl.pid());
            let t = Instant::now();
            let (summary, cpu) = cpu_share(proxy.proc.pid(), w.run()).await?;
            let control_cpu = (procs::tree_cpu_seconds(ctl.pid()) - ctl_cpu_before)
                / t.elapsed().as_secs_f64().max(1e-9);
            served += summary.requests;
            let waited = Instant::now();
            let after = if on {
                // Long enough to outlast the proxy's retry backoff after a POST the busy control
                // plane did not answer in time (it then delivers from its spool).
                settle(&ingested, Duration::from_secs(15), before + served).await
            } else {
                ingested().await
            };
            let delivery_wait_ms = waited.elapsed().as_secs_f64() * 1e3;
            let proxy_after = sling::metrics(client, &admin, "click").await;
            let delta = proxy_after
                .iter()
                .filter_map(|(k, v)| {
                    let d = v - proxy_before.get(k).copied().unwrap_or(0.0);
                    (d != 0.0).then(|| (k.clone(), d))
                })
                .collect();
            let delivered = after.saturating_sub(before);
            eprintln!(
                "pair {} clicks {:3}: {:>9.0} req/s  p99 {} ms  errors {}  served {served}  delivered {delivered}",
                pair + 1,
                if on { "on" } else { "off" },
                summary.rps(),
                ms(summary.p99_us as f64),
                summary.errors(),
            );
            proxy.proc.ensure_running()?;
            runs.push(ThroughputRun {
                pair,
                clicks: on,
                requests_per_sec: summary.rps(),
                errors: summary.errors(),
                server_cpu: cpu,
                proxy_cpu_us_per_request: cpu * 1e6 / summary.rps().max(1e-9),
                control_cpu,
                served,
                delivered,
                delivery_wait_ms,
                proxy_click_metrics_delta: delta,
                wrk: summary,
            });
        }
    }
    for (_, mut p) in proxies {
        p.proc.stop(secs(15));
    }
    Ok(runs)
}

/// Polls `read` every 100 ms until it reaches `target` or has not changed for `quiet` (at most
/// 120 s); returns the last value.
async fn settle<F, Fut>(read: &F, quiet: Duration, target: u64) -> u64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let deadline = Instant::now() + secs(120);
    let mut last = read().await;
    let mut since = Instant::now();
    while last < target && since.elapsed() < quiet && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = read().await;
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

/// Flushes dirty pages before an ingest case. The throughput runs leave hundreds of megabytes of
/// spool files and SQLite pages behind; right after them the first Postgres case measured 79,654
/// events/s, against 146–153k alone and 145k after a `sync` (Postgres's commit flushes wait
/// behind that writeback, presumably).
async fn settle_disk() {
    match tokio::process::Command::new("sync").status().await {
        Ok(status) if status.success() => {}
        outcome => eprintln!("sync before an ingest case failed ({outcome:?}); measuring anyway"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn ingest_run(
    args: &ClicksArgs,
    bins: &env::Binaries,
    backend: Backend,
    case: IngestCase,
    client: &reqwest::Client,
    server_pin: &[String],
    work: &std::path::Path,
    run: &RunDir,
) -> anyhow::Result<IngestRun> {
    let c = &args.common;
    let name = format!(
        "{}-{}-{}",
        backend.name(),
        case.times.name(),
        case.batch_events
    );
    settle_disk().await;
    eprintln!("ingest {name}: starting sling serve…");
    let control = db::start_control_on(
        backend,
        &args.postgres,
        &bins.control,
        server_pin,
        &work.join(format!("control-ingest-{name}")),
        &[],
        &run.logs,
    )
    .await?;
    let ctl = &control.control;
    let destinations: Vec<String> = (0..args.ingest_links)
        .map(|i| format!("https://example.com/i/{i}"))
        .collect();
    let links = sling::create_links_bulk_ids(client, &ctl.api(), &destinations).await?;
    let ids: Vec<String> = links.into_iter().map(|l| l.id).collect();

    // Pre-built event arrays (JSON), rotated; each request wraps one in a new batch id.
    let mut rng = StdRng::seed_from_u64(c.seed);
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let countries = ["US", "DE", "FR", "GB", "JP", "BR", "IN"];
    let devices = ["desktop", "mobile", "tablet", "bot", "unknown"];
    let browsers = ["Chrome", "Firefox", "Safari", "Edge", "unknown"];
    let oses = ["Windows", "macOS", "iOS", "Android", "Linux"];
    let mut bodies = Vec::new();
    for _ in 0..8 {
        let events: Vec<ClickEvent> = (0..case.batch_events)
            .map(|_| {
                let device = devices[rng.random_range(0..devices.len())];
                ClickEvent {
                    link_id: ids[rng.random_range(0..ids.len())].clone(),
                    at_ms: now_ms - rng.random_range(0..case.times.span_ms()),
                    country: Some(countries[rng.random_range(0..countries.len())].into()),
                    device: device.into(),
                    browser: browsers[rng.random_range(0..browsers.len())].into(),
                    os: oses[rng.random_range(0..oses.len())].into(),
                    bot: device == "bot",
                    referrer_host: rng.random_bool(0.5).then(|| "news.example.org".into()),
                    visitor: format!("{:016x}", rng.random::<u64>()),
                    qr: rng.random_bool(0.05),
                }
            })
            .collect();
        bodies.push(serde_json::to_string(&events)?);
    }
    let bodies = Arc::new(bodies);
    let url = Arc::new(format!("{}{CLICKS_PATH}", ctl.url));
    let token = Arc::new(ctl.fleet_token.clone());
    let batch_events = case.batch_events;
    let run_id = std::process::id();
    let sender = client.clone();
    let send = move |s: u32, n: u64| {
        let (client, bodies, url, token) =
            (sender.clone(), bodies.clone(), url.clone(), token.clone());
        async move {
            let events = &bodies[(n as usize + s as usize) % bodies.len()];
            let body = format!(
                r#"{{"batchId":"bench-{run_id}-{s}-{n}","proxyId":"sling-bench","events":{events}}}"#
            );
            let resp = client
                .post(url.as_str())
                .bearer_auth(token.as_str())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await?;
            let status = resp.status();
            anyhow::ensure!(status.is_success(), "ingest answered {status}");
            let receipt: IngestReceipt = resp.json().await?;
            anyhow::ensure!(
                receipt.accepted && receipt.events == batch_events,
                "unexpected receipt {receipt:?}"
            );
            Ok(())
        }
    };
    let metrics = |needle: &'static str| {
        let url = ctl.url.clone();
        async move {
            sling::metrics(client, &url, needle)
                .await
                .values()
                .sum::<f64>() as u64
        }
    };
    let (ing0, unk0) = (metrics(INGESTED).await, metrics(UNKNOWN).await);
    eprintln!(
        "ingest {name}: {} senders × {} events per batch…",
        case.senders, case.batch_events
    );
    let cpu0 = procs::tree_cpu_seconds(ctl.pid());
    let t = Instant::now();
    let batches = closedloop::run(
        case.senders,
        secs(args.load.warmup),
        secs(args.load.duration),
        send,
    )
    .await?;
    let control_cpu =
        (procs::tree_cpu_seconds(ctl.pid()) - cpu0) / t.elapsed().as_secs_f64().max(1e-9);
    let events_per_sec = batches.requests_per_sec * case.batch_events as f64;
    let (ing1, unk1) = (metrics(INGESTED).await, metrics(UNKNOWN).await);
    eprintln!(
        "ingest {name}: {events_per_sec:.0} events/s, batch p50 {} ms p99 {} ms, errors {}",
        ms(batches.latency.p50_us as f64),
        ms(batches.latency.p99_us as f64),
        batches.errors
    );
    Ok(IngestRun {
        backend,
        database: control.database(),
        times: case.times,
        batch_events: case.batch_events,
        senders: case.senders,
        events_per_sec,
        batches,
        ingested_delta: ing1.saturating_sub(ing0),
        unknown_link_delta: unk1.saturating_sub(unk0),
        control_cpu,
    })
}
