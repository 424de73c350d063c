//! `swap`: redirect load against sling while new snapshots keep arriving, against the same load
//! without them.
//!
//! A standalone proxy never changes its snapshot, so this scenario runs the real control plane
//! (`sling serve` on SQLite, `--snapshot-interval-ms 100`) and a proxy following it. `--links`
//! links are created through the API first (`POST /api/v1/links/bulk`); the load picks from
//! them. Then pairs of runs: one quiet, one with a writer starting a link create every
//! `--write-interval-ms` (several in flight when creates are slow), so every interval has a
//! change and the control plane publishes a new snapshot each time, which the proxy downloads,
//! verifies, maps and swaps in under load.
//!
//! Core split: the proxy alone on the server core; wrk, the control plane and the writer share
//! the other one (the writer is light; publishing costs the control plane some CPU there).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::{await_redirects, cpu_share, secs};
use crate::cli::SwapArgs;
use crate::data::write_lines;
use crate::env;
use crate::procs;
use crate::report::{self, RunDir, Scratch, md_table, ms, ratio};
use crate::sling::{self, Api, Source};
use crate::stats::median;
use crate::svg::{self, Series};
use crate::wrk::{self, WrkRun, WrkSummary};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SwapRun {
    pair: usize,
    swapping: bool,
    requests_per_sec: f64,
    errors: u64,
    server_cpu: f64,
    links_created: u64,
    create_errors: u64,
    /// Times the proxy's served snapshot sequence was seen to change (its `/metrics` polled every
    /// 25 ms during the measured run).
    swaps_observed: u64,
    /// Change of every proxy metric whose name mentions "snapshot".
    proxy_snapshot_metrics_delta: std::collections::BTreeMap<String, f64>,
    wrk: WrkSummary,
}

pub async fn run(args: SwapArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let wrk_bin = env::find_tool(&env::WRK)?;
    let server_pin = env::pin(c, c.server_cpu)?;
    let client_pin = env::pin(c, c.client_cpu)?;
    anyhow::ensure!(args.pairs >= 1, "--pairs must be at least 1");
    anyhow::ensure!(args.links >= 1, "--links must be at least 1");
    let bins = env::binaries(c, true)?;
    let run = RunDir::create(c, "swap")?;
    let scratch = Scratch::new(c, "swap")?;
    let work = scratch.path().to_path_buf();

    eprintln!("starting sling serve…");
    let control = sling::start_control(
        &bins.control,
        &client_pin,
        &work.join("control-data"),
        &[
            "--snapshot-interval-ms".into(),
            args.swap_interval_ms.to_string(),
            // Publish on the interval only, never on a change count.
            "--snapshot-after-changes".into(),
            "1000000000".into(),
        ],
        &run.logs,
    )
    .await?;
    let client = procs::http_client()?;
    let api = control.api();

    eprintln!("creating {} links through the API…", args.links);
    let destinations: Vec<String> = (0..args.links)
        .map(|i| format!("https://example.com/s/{i}"))
        .collect();
    let slugs = sling::create_links_bulk(&client, &api, &destinations).await?;
    let created: Vec<(String, String)> = slugs.into_iter().zip(destinations).collect();
    let sample: Vec<(String, String)> = created
        .iter()
        .take(args.load.sample.max(1))
        .cloned()
        .collect();
    let sample_path = work.join("sample.txt");
    write_lines(&sample_path, sample.iter().map(|(s, _)| s.clone()))?;

    eprintln!("starting sling-proxy following the control plane…");
    let proxy_snaps = work.join("proxy-snapshots");
    let mut proxy = sling::start_proxy(
        &bins.proxy,
        &server_pin,
        Source::Follow {
            snapshot_dir: &proxy_snaps,
            control_url: &control.url,
            fleet_token: &control.fleet_token,
        },
        &run.logs,
        secs(60),
    )
    .await?;
    // Wait until the proxy redirects the sample (through its overlay or a snapshot), then a few
    // intervals more so the quiet runs start from a snapshot holding every seeded link.
    let check: Vec<(String, String)> = sample.iter().rev().take(20).cloned().collect();
    await_redirects(&client, &mut proxy, &check, secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(args.swap_interval_ms * 5 + 500)).await;

    let script = wrk::write_script(&work)?;
    let admin = format!("http://{}", proxy.admin);
    let mut runs = Vec::new();
    for pair in 0..args.pairs {
        for swapping in [false, true] {
            let before = sling::metrics(&client, &admin, "snapshot").await;
            let created = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            let writer = swapping.then(|| {
                tokio::spawn(writer(
                    client.clone(),
                    api.clone(),
                    Duration::from_millis(args.write_interval_ms),
                    created.clone(),
                    failed.clone(),
                    pair,
                ))
            });
            let mut w = WrkRun {
                wrk: &wrk_bin,
                pin: &client_pin,
                script: &script,
                slugs: &sample_path,
                target: &proxy.addr,
                threads: args.load.threads,
                connections: args.load.connections,
                duration: secs(args.load.warmup),
                seed: c.seed + pair as u64,
            };
            w.warm_up(secs(args.load.duration)).await?;
            let (stop_watch, watching) = tokio::sync::oneshot::channel();
            let watcher = tokio::spawn(count_swaps(client.clone(), admin.clone(), watching));
            let result = cpu_share(proxy.proc.pid(), w.run()).await;
            let _ = stop_watch.send(());
            let swaps_observed = watcher.await.unwrap_or(0);
            if let Some(h) = writer {
                h.abort();
            }
            let (summary, cpu) = result?;
            let after = sling::metrics(&client, &admin, "snapshot").await;
            let delta = after
                .iter()
                .filter_map(|(k, v)| {
                    let d = v - before.get(k).copied().unwrap_or(0.0);
                    (d != 0.0 && !k.contains("age_seconds")).then(|| (k.clone(), d))
                })
                .collect();
            eprintln!(
                "pair {} {:9}: {:>9.0} req/s  p99 {} ms  errors {}  links created {}  swaps {swaps_observed}",
                pair + 1,
                if swapping { "swapping" } else { "quiet" },
                summary.rps(),
                ms(summary.p99_us as f64),
                summary.errors(),
                created.load(Ordering::Relaxed)
            );
            runs.push(SwapRun {
                pair,
                swapping,
                requests_per_sec: summary.rps(),
                errors: summary.errors(),
                server_cpu: cpu,
                links_created: created.load(Ordering::Relaxed),
                create_errors: failed.load(Ordering::Relaxed),
                swaps_observed,
                proxy_snapshot_metrics_delta: delta,
                wrk: summary,
            });
            proxy.proc.ensure_running()?;
            // Let the last published snapshot land before the next quiet run.
            tokio::time::sleep(Duration::from_millis(args.swap_interval_ms * 3 + 300)).await;
        }
    }
    proxy.proc.stop(secs(15));
    drop(control);

    let p99 = |swapping: bool| -> Vec<f64> {
        runs.iter()
            .filter(|r| r.swapping == swapping)
            .map(|r| r.wrk.p99_us as f64)
            .collect()
    };
    let p99_ratios: Vec<f64> = p99(true)
        .iter()
        .zip(p99(false))
        .map(|(s, q)| s / q)
        .collect();
    let median_ratio = median(&p99_ratios);
    let swap_errors: u64 = runs.iter().filter(|r| r.swapping).map(|r| r.errors).sum();
    let config = json!({
        "links": args.links,
        "pairs": args.pairs,
        "swapIntervalMs": args.swap_interval_ms,
        "writeIntervalMs": args.write_interval_ms,
        "connections": args.load.connections,
        "wrkThreads": args.load.threads,
        "durationSecs": args.load.duration,
        "warmupSecs": args.load.warmup,
        "seed": c.seed,
    });
    let results = json!({
        "generator": "wrk (Debian), closed loop, random slugs from the seeded links",
        "runs": runs,
        "p99RatioSwapOverQuietPerPair": p99_ratios,
        "medianP99Ratio": median_ratio,
        "errorsDuringSwaps": swap_errors,
        "targets": {
            "zeroErrors": swap_errors == 0,
            "p99Within20Percent": median_ratio.map(|r| r <= 1.2),
        },
    });
    let machine = env::machine();
    run.write_json(&run.envelope(c, config, results))?;

    let mut md = report::md_header(
        "swap: redirects while snapshots are swapped in",
        &machine,
        c,
        &report::command_line(),
    );
    let med_p99 = |s: bool| median(&p99(s)).unwrap_or(f64::NAN);
    md.push_str(&format!(
        "## Summary\n\n\
         - Errors during swap runs: **{swap_errors}** (target 0: {}).\n\
         - p99 with swaps {} ms vs quiet {} ms (medians); p99 ratio swap/quiet per pair {}, **median {}** — \
           target ≤ 1.2: {}.\n\
         - Snapshots swapped in during the measured swap runs (seen on the proxy's `/metrics`): {}.\n\n",
        if swap_errors == 0 { "met" } else { "**missed**" },
        ms(med_p99(true)),
        ms(med_p99(false)),
        p99_ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        ratio(median_ratio),
        match median_ratio {
            Some(r) if r <= 1.2 => "met".to_owned(),
            Some(_) => "**missed**".to_owned(),
            None => "–".to_owned(),
        },
        runs.iter()
            .filter(|r| r.swapping)
            .map(|r| r.swaps_observed.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    ));
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                (r.pair + 1).to_string(),
                if r.swapping { "swapping" } else { "quiet" }.into(),
                format!("{:.0}", r.requests_per_sec),
                ms(r.wrk.p50_us as f64),
                ms(r.wrk.p99_us as f64),
                ms(r.wrk.p999_us as f64),
                r.errors.to_string(),
                format!("{} ({} failed)", r.links_created, r.create_errors),
                r.swaps_observed.to_string(),
                report::metrics_delta_cell(&r.proxy_snapshot_metrics_delta),
            ]
        })
        .collect();
    md.push_str("## Runs (wrk, closed loop)\n\n");
    md.push_str(&md_table(
        &[
            "pair",
            "mode",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "errors",
            "links created",
            "swaps seen",
            "proxy snapshot metrics (change)",
        ],
        &rows,
    ));
    md.push_str(&format!(
        "## Method and caveats\n\n\
         - {links} links created through `POST /api/v1/links/bulk` before the load; the load picks from them at random.\n\
         - `sling serve` publishes a snapshot (the previous one plus the feed since it) every {iv} ms when anything changed; during swap runs a writer \
           starts a link create every {wi} ms (up to 16 in flight), so each interval publishes one. The proxy follows the feed \
           (overlay) and downloads, verifies and swaps in each snapshot while serving.\n\
         - The proxy is alone on the server core; wrk, the control plane and the writer share the other core, so \
           snapshot publishing also takes CPU from the load generator in swap runs (req/s is not the point here).\n\
         - Errors are wrk socket errors plus responses with status ≥ 400.\n\n\
         ![p99](p99.svg)\n",
        links = args.links,
        iv = args.swap_interval_ms,
        wi = args.write_interval_ms,
    ));
    run.write_md(&md)?;
    let groups: Vec<String> = (1..=args.pairs).map(|p| format!("pair {p}")).collect();
    let series = |swapping: bool, name: &str| Series {
        name: name.into(),
        values: p99(swapping).iter().map(|v| v / 1000.0).collect(),
    };
    run.write_file(
        "p99.svg",
        &svg::grouped_bars(
            "p99 latency, quiet vs swapping a snapshot every interval",
            "milliseconds",
            &groups,
            &[series(false, "quiet"), series(true, "swapping")],
        ),
    )?;
    Ok(())
}

/// Most creates the writer keeps in flight.
const MAX_IN_FLIGHT: usize = 16;

/// Starts a link create every `interval` until aborted, without waiting for the previous one
/// (up to [`MAX_IN_FLIGHT`]), so a create slowed by the loaded core does not leave an interval
/// without a change. Aborting drops the set, which cancels what is still in flight.
async fn writer(
    client: reqwest::Client,
    api: Api,
    interval: Duration,
    created: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    pair: usize,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut i = 0u64;
    loop {
        tick.tick().await;
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= MAX_IN_FLIGHT {
            continue;
        }
        i += 1;
        let dest = format!("https://example.com/w/{pair}/{i}");
        let (client, api, created, failed) =
            (client.clone(), api.clone(), created.clone(), failed.clone());
        in_flight.spawn(async move {
            match sling::create_link(&client, &api, &dest).await {
                Ok(_) => created.fetch_add(1, Ordering::Relaxed),
                Err(_) => failed.fetch_add(1, Ordering::Relaxed),
            };
        });
    }
}

/// Polls the proxy's snapshot-sequence gauge every 25 ms until `stop` fires; returns how many
/// times it changed.
async fn count_swaps(
    client: reqwest::Client,
    admin: String,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> u64 {
    let mut last: Option<f64> = None;
    let mut changes = 0;
    loop {
        let seq = sling::metrics(&client, &admin, "snapshot_seq")
            .await
            .into_values()
            .next();
        if let (Some(prev), Some(now)) = (last, seq)
            && prev != now
        {
            changes += 1;
        }
        last = seq.or(last);
        tokio::select! {
            _ = &mut stop => return changes,
            _ = tokio::time::sleep(Duration::from_millis(25)) => {}
        }
    }
}
