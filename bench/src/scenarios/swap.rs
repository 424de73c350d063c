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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::{await_redirects, cpu_share, secs};
use crate::cgroup;
use crate::cli::{ControlPriority, SwapArgs};
use crate::data::write_lines;
use crate::env;
use crate::openloop::{self, OpenLoopSummary};
use crate::procs;
use crate::report::{self, RunDir, Scratch, md_table, ms, ratio};
use crate::sling::{self, Api, Source};
use crate::stats::median;
use crate::svg::{self, Series};
use crate::wrk::{self, WrkRun, WrkSummary};

/// What the writer and the swap counter saw during one run (warm-up included).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChurnSeen {
    links_created: u64,
    create_errors: u64,
    /// Times the proxy's served snapshot sequence was seen to change (its `/metrics` polled every
    /// 25 ms).
    swaps_observed: u64,
    /// How long the counter watched, in seconds.
    watched_secs: f64,
    /// Change of every proxy metric whose name mentions "snapshot".
    proxy_snapshot_metrics_delta: BTreeMap<String, f64>,
    /// Bytes the proxy had sent to storage during the run ([`procs::storage_write_bytes`]): what
    /// keeping its downloaded snapshots on disk costs.
    proxy_storage_write_bytes: Option<u64>,
    /// Device interrupts the server core handled during the run ([`procs::device_interrupts`]);
    /// `None` unpinned.
    server_core_device_interrupts: Option<u64>,
}

/// A closed-loop (wrk) run.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SwapRun {
    pair: usize,
    swapping: bool,
    requests_per_sec: f64,
    errors: u64,
    server_cpu: f64,
    churn: ChurnSeen,
    wrk: WrkSummary,
}

/// An open-loop run at a fixed rate.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OpenSwapRun {
    pair: usize,
    swapping: bool,
    server_cpu: f64,
    churn: ChurnSeen,
    summary: OpenLoopSummary,
}

pub async fn run(args: SwapArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let wrk_bin = env::find_tool(&env::WRK)?;
    let server_pin = env::pin(c, c.server_cpu)?;
    let client_pin = env::pin(c, c.client_cpu)?;
    // The writer runs in the harness: on the client core with wrk and the control plane.
    env::pin_self(c, c.client_cpu)?;
    anyhow::ensure!(args.pairs >= 1, "--pairs must be at least 1");
    anyhow::ensure!(args.links >= 1, "--links must be at least 1");
    let bins = env::binaries(c, true)?;
    let run = RunDir::create(c, "swap")?;
    let scratch = Scratch::new(c, "swap")?;
    let work = scratch.path().to_path_buf();

    eprintln!("starting sling serve…");
    let control = sling::start_control(
        &bins.control,
        &env::control_pin(args.control_priority, &client_pin)?,
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
    // Kept until the end of the run; dropping it moves the control plane out and removes it.
    let idle_group = match (args.control_priority, args.no_idle_cgroup) {
        (ControlPriority::Idle, false) => {
            let placed = cgroup::IdleGroup::create(&format!("sling-bench-{}", std::process::id()))
                .and_then(|g| g.add(control.pid()).map(|()| g));
            if let Err(why) = &placed {
                eprintln!("control plane: SCHED_IDLE only ({why})");
            }
            Some(placed)
        }
        _ => None,
    };
    let cgroup_label = match &idle_group {
        Some(Ok(g)) => format!(
            "; it is also in the cgroup `{}` with `cpu.idle = 1`",
            g.path().display()
        ),
        Some(Err(why)) => format!("; no idle cgroup ({why})"),
        None => String::new(),
    };
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
    let mut proxy = sling::start_proxy_with(
        &bins.proxy,
        &server_pin,
        Source::Follow {
            snapshot_dir: &proxy_snaps,
            control_url: &control.url,
            fleet_token: &control.fleet_token,
        },
        &["--clicks".into(), args.clicks.name().into()],
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
    let proxy_pid = proxy.proc.pid();
    let churn = |swapping: bool, pair: usize| {
        Churn::start(
            &client,
            &api,
            &admin,
            swapping.then(|| Duration::from_millis(args.write_interval_ms)),
            pair,
            proxy_pid,
            (!c.no_pin).then_some(c.server_cpu),
        )
    };
    // Let the last published snapshot land before the next quiet run.
    let settle = Duration::from_millis(args.swap_interval_ms * 3 + 300);

    let mut runs = Vec::new();
    for pair in 0..args.pairs {
        for swapping in [false, true] {
            let churning = churn(swapping, pair).await;
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
            let result = match w.warm_up(secs(args.load.duration)).await {
                Ok(_) => cpu_share(proxy.proc.pid(), w.run()).await,
                Err(e) => Err(e),
            };
            let seen = churning.finish(&client, &admin).await;
            let (summary, cpu) = result?;
            seen.print(
                "",
                pair,
                swapping,
                summary.rps(),
                summary.p99_us,
                summary.errors(),
            );
            runs.push(SwapRun {
                pair,
                swapping,
                requests_per_sec: summary.rps(),
                errors: summary.errors(),
                server_cpu: cpu,
                churn: seen,
                wrk: summary,
            });
            proxy.proc.ensure_running()?;
            tokio::time::sleep(settle).await;
        }
    }

    let quiet_rps: Vec<f64> = runs
        .iter()
        .filter(|r| !r.swapping)
        .map(|r| r.requests_per_sec)
        .collect();
    let rate = args
        .rate
        .unwrap_or_else(|| (median(&quiet_rps).unwrap_or(10_000.0) / 4.0).round() as u64);
    let mut open = Vec::new();
    for pair in 0..args.pairs {
        for swapping in [false, true] {
            let churning = churn(swapping, pair).await;
            let ol = args.load.open_loop(
                proxy.addr.clone(),
                sample_path.clone(),
                rate,
                c.seed + pair as u64,
            );
            let result = cpu_share(proxy.proc.pid(), openloop::run(&client_pin, &ol)).await;
            let seen = churning.finish(&client, &admin).await;
            let (summary, cpu) = result?;
            seen.print(
                "open loop ",
                pair,
                swapping,
                summary.achieved_rate,
                summary.latency.p99_us,
                summary.errors(),
            );
            open.push(OpenSwapRun {
                pair,
                swapping,
                server_cpu: cpu,
                churn: seen,
                summary,
            });
            proxy.proc.ensure_running()?;
            tokio::time::sleep(settle).await;
        }
    }
    proxy.proc.stop(secs(15));
    drop(control);

    // Per-pair p99 ratios, swapping over quiet, for either load.
    let closed_p99 = |swapping: bool| -> Vec<f64> {
        runs.iter()
            .filter(|r| r.swapping == swapping)
            .map(|r| r.wrk.p99_us as f64)
            .collect()
    };
    let open_p99 = |swapping: bool| -> Vec<f64> {
        open.iter()
            .filter(|r| r.swapping == swapping)
            .map(|r| r.summary.latency.p99_us as f64)
            .collect()
    };
    let ratios = |p99: &dyn Fn(bool) -> Vec<f64>| -> Vec<f64> {
        p99(true)
            .iter()
            .zip(p99(false))
            .map(|(s, q)| s / q)
            .collect()
    };
    let (closed_ratios, open_ratios) = (ratios(&closed_p99), ratios(&open_p99));
    let (closed_median, open_median) = (median(&closed_ratios), median(&open_ratios));
    let swap_errors: u64 = runs
        .iter()
        .filter(|r| r.swapping)
        .map(|r| r.errors)
        .sum::<u64>()
        + open
            .iter()
            .filter(|r| r.swapping)
            .map(|r| r.summary.errors())
            .sum::<u64>();
    // Swaps seen and seconds watched over the swap runs of either load.
    let interval = |churned: Vec<&ChurnSeen>| {
        let swaps: u64 = churned.iter().map(|c| c.swaps_observed).sum();
        let watched: f64 = churned.iter().map(|c| c.watched_secs).sum();
        (
            swaps,
            watched,
            (swaps > 0).then(|| watched * 1000.0 / swaps as f64),
        )
    };
    let (closed_swaps, closed_watched, closed_interval) = interval(
        runs.iter()
            .filter(|r| r.swapping)
            .map(|r| &r.churn)
            .collect(),
    );
    let (open_swaps, open_watched, open_interval) = interval(
        open.iter()
            .filter(|r| r.swapping)
            .map(|r| &r.churn)
            .collect(),
    );
    let config = json!({
        "links": args.links,
        "pairs": args.pairs,
        "swapIntervalMs": args.swap_interval_ms,
        "writeIntervalMs": args.write_interval_ms,
        "clicks": args.clicks,
        "controlPriority": args.control_priority,
        "controlIdleCgroup": match &idle_group {
            Some(Ok(g)) => json!(g.path().display().to_string()),
            Some(Err(why)) => json!({ "unavailable": why }),
            None => json!(null),
        },
        "openLoopRate": rate,
        "connections": args.load.connections,
        "wrkThreads": args.load.threads,
        "durationSecs": args.load.duration,
        "warmupSecs": args.load.warmup,
        "seed": c.seed,
    });
    let results = json!({
        "generator": "wrk (Debian), closed loop; then the sling-bench open-loop worker at a fixed rate; random slugs from the seeded links",
        "runs": runs,
        "openLoopRuns": open,
        "closedLoopP99RatioPerPair": closed_ratios,
        "closedLoopMedianP99Ratio": closed_median,
        "openLoopP99RatioPerPair": open_ratios,
        "openLoopMedianP99Ratio": open_median,
        "errorsDuringSwaps": swap_errors,
        "openLoopSwapsObserved": open_swaps,
        "openLoopMeanSwapIntervalMs": open_interval,
        "closedLoopSwapsObserved": closed_swaps,
        "closedLoopMeanSwapIntervalMs": closed_interval,
        "targets": {
            "zeroErrors": swap_errors == 0,
            "p99Within20Percent": open_median.map(|r| r <= 1.2),
            "swapEveryInterval": open_interval.map(|v| v <= args.swap_interval_ms as f64 * 1.25),
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
    let med = |p99: &dyn Fn(bool) -> Vec<f64>, s: bool| ms(median(&p99(s)).unwrap_or(f64::NAN));
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let priority_label = match args.control_priority {
        ControlPriority::Idle => "idle (SCHED_IDLE)",
        ControlPriority::Normal => "normal",
    };
    let verdict = |r: Option<f64>| match r {
        Some(r) if r <= 1.2 => "met",
        Some(_) => "**missed**",
        None => "–",
    };
    md.push_str(&format!(
        "## Summary\n\n\
         - Errors during swap runs: **{swap_errors}** (target 0: {}).\n\
         - Open loop at {rate} req/s (latency from intended send time): p99 with swaps {} ms vs quiet {} ms \
           (medians); ratio swap/quiet per pair {}, **median {}**; target ≤ 1.2: {}.\n\
         - Closed loop (wrk, as fast as it goes): p99 with swaps {} ms vs quiet {} ms; ratio per pair {}, \
           median {} (see the caveats: here wrk shares its core with the control plane's publishing).\n\
         - Snapshots swapped in (seen on the proxy's `/metrics`), interval asked {} ms: open-loop swap runs \
           {open_swaps} in {open_watched:.0} s, **one every {} ms**; closed-loop swap runs {closed_swaps} in \
           {closed_watched:.0} s, one every {} ms (wrk leaves the control plane, at {priority_label} \
           priority, little CPU).\n\n",
        if swap_errors == 0 { "met" } else { "**missed**" },
        med(&open_p99, true),
        med(&open_p99, false),
        list(&open_ratios),
        ratio(open_median),
        verdict(open_median),
        med(&closed_p99, true),
        med(&closed_p99, false),
        list(&closed_ratios),
        ratio(closed_median),
        args.swap_interval_ms,
        open_interval.map_or("–".to_owned(), |v| format!("{v:.0}")),
        closed_interval.map_or("–".to_owned(), |v| format!("{v:.0}")),
    ));
    let churn_cells = |c: &ChurnSeen| {
        [
            format!("{} ({} failed)", c.links_created, c.create_errors),
            c.swaps_observed.to_string(),
            c.proxy_storage_write_bytes
                .map_or("–".to_owned(), |b| format!("{:.1}", b as f64 / 1048576.0)),
            c.server_core_device_interrupts
                .map_or("–".to_owned(), |n| n.to_string()),
            report::metrics_delta_cell(&c.proxy_snapshot_metrics_delta),
        ]
    };
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let mut row = vec![
                (r.pair + 1).to_string(),
                mode(r.swapping).into(),
                format!("{:.0}", r.requests_per_sec),
                ms(r.wrk.p50_us as f64),
                ms(r.wrk.p99_us as f64),
                ms(r.wrk.p999_us as f64),
                r.errors.to_string(),
                format!("{:.0}%", r.server_cpu * 100.0),
            ];
            row.extend(churn_cells(&r.churn));
            row
        })
        .collect();
    let churn_headers = [
        "links created",
        "swaps seen",
        "proxy disk writes MiB",
        "server core device interrupts",
        "proxy snapshot metrics (change)",
    ];
    let with_churn = |h: &[&'static str]| -> Vec<&'static str> {
        h.iter().copied().chain(churn_headers).collect()
    };
    md.push_str("## Closed loop (wrk)\n\n");
    md.push_str(&md_table(
        &with_churn(&[
            "pair",
            "mode",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "errors",
            "proxy CPU",
        ]),
        &rows,
    ));
    let rows: Vec<Vec<String>> = open
        .iter()
        .map(|r| {
            let mut row = vec![(r.pair + 1).to_string(), mode(r.swapping).into()];
            row.extend(r.summary.cells());
            row.push(format!("{:.0}%", r.server_cpu * 100.0));
            row.extend(churn_cells(&r.churn));
            row
        })
        .collect();
    md.push_str("## Open loop (fixed rate)\n\n");
    md.push_str(&md_table(
        &with_churn(
            &[
                &["pair", "mode"][..],
                &OpenLoopSummary::CELLS,
                &["proxy CPU"],
            ]
            .concat(),
        ),
        &rows,
    ));
    md.push_str(&format!(
        "## Method and caveats\n\n\
         - {links} links created through `POST /api/v1/links/bulk` before the load; the load picks from them at random.\n\
         - `sling serve` publishes a snapshot (the previous body, kept in memory, plus the feed since it) every {iv} ms when anything \
           changed; during swap runs a writer starts a link create every {wi} ms (up to 16 in flight), so each \
           interval has something to publish. The proxy follows the feed (overlay) and downloads, verifies and swaps \
           in each snapshot while serving. Swaps are counted from the writer's start, warm-up included.\n\
         - The proxy is alone on the server core; wrk (or the open-loop worker), the control plane and the writer (the \
           harness pins all its own threads there) \
           share the other core, the control plane at {priority} priority (`--control-priority`){cgroup_label}. In closed loop \
           wrk needs that whole core, so whatever the control plane gets there (publishing every {iv} ms, serving \
           each file to the proxy, the creates) delays wrk itself: proxy CPU falls during swap runs while wrk's \
           p99 rises. The open-loop runs, at a quarter of the quiet closed-loop rate (`--rate`), leave the client core room, and \
           measure latency from each request's intended send time; the target is judged on them.\n\
         - The proxy's click tracking: {clicks} (`--clicks`; with it on, the control plane also ingests every \
           redirect into SQLite on the shared core, and its writes, the swaps' cause, slow down).\n\
         - Errors are wrk socket errors plus responses with status ≥ 400 (wrk), or any non-3xx answer and any \
           failed request (open loop).\n\
         - Proxy disk writes: what the proxy process had sent to storage during the run, `write_bytes` less \
           `cancelled_write_bytes` of `/proc/PID/io` (a downloaded file deleted before writeback costs nothing).\n\
         - Server core device interrupts: the server core's column of the numbered lines of `/proc/interrupts` \
           over the run. Some VMs route the disk's interrupts to one core, so any process's disk writes \
           (the control plane's too) interrupt the proxy there.\n\n\
         ![p99](p99.svg)\n",
        links = args.links,
        iv = args.swap_interval_ms,
        wi = args.write_interval_ms,
        clicks = args.clicks.name(),
        priority = priority_label,
        cgroup_label = cgroup_label,
    ));
    run.write_md(&md)?;
    let groups: Vec<String> = (1..=args.pairs).map(|p| format!("pair {p}")).collect();
    let series = |p99: &dyn Fn(bool) -> Vec<f64>, swapping: bool, name: &str| Series {
        name: name.into(),
        values: p99(swapping).iter().map(|v| v / 1000.0).collect(),
    };
    run.write_file(
        "p99.svg",
        &svg::grouped_bars(
            "p99 latency, quiet vs swapping a snapshot every interval",
            "milliseconds",
            &groups,
            &[
                series(&open_p99, false, "open loop, quiet"),
                series(&open_p99, true, "open loop, swapping"),
                series(&closed_p99, false, "wrk, quiet"),
                series(&closed_p99, true, "wrk, swapping"),
            ],
        ),
    )?;
    Ok(())
}

impl ChurnSeen {
    /// The progress line of one run (`load` names it: empty for wrk, "open loop " otherwise).
    fn print(&self, load: &str, pair: usize, swapping: bool, rps: f64, p99_us: u64, errors: u64) {
        eprintln!(
            "{load}pair {} {:9}: {rps:>9.0} req/s  p99 {} ms  errors {errors}  links created {}  swaps {}",
            pair + 1,
            mode(swapping),
            ms(p99_us as f64),
            self.links_created,
            self.swaps_observed,
        );
    }
}

fn mode(swapping: bool) -> &'static str {
    if swapping { "swapping" } else { "quiet" }
}

/// The writer (only when swapping) and the swap counter of one run.
struct Churn {
    writer: Option<tokio::task::JoinHandle<()>>,
    stop_watch: tokio::sync::oneshot::Sender<()>,
    watcher: tokio::task::JoinHandle<u64>,
    created: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    started: Instant,
    before: BTreeMap<String, f64>,
    proxy_pid: u32,
    written_before: Option<u64>,
    /// The server core and its device interrupt count at the start.
    interrupts_before: Option<(usize, u64)>,
}

impl Churn {
    /// Starts counting swaps, and writing every `write_every` when it is given.
    async fn start(
        client: &reqwest::Client,
        api: &Api,
        admin: &str,
        write_every: Option<Duration>,
        pair: usize,
        proxy_pid: u32,
        server_cpu: Option<usize>,
    ) -> Self {
        let before = sling::metrics(client, admin, "snapshot").await;
        let written_before = procs::storage_write_bytes(proxy_pid);
        let interrupts_before =
            server_cpu.and_then(|cpu| Some((cpu, procs::device_interrupts(cpu)?)));
        let created = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let writer = write_every.map(|every| {
            tokio::spawn(writer(
                client.clone(),
                api.clone(),
                every,
                created.clone(),
                failed.clone(),
                pair,
            ))
        });
        let (stop_watch, watching) = tokio::sync::oneshot::channel();
        let watcher = tokio::spawn(count_swaps(client.clone(), admin.to_owned(), watching));
        Self {
            writer,
            stop_watch,
            watcher,
            created,
            failed,
            started: Instant::now(),
            before,
            proxy_pid,
            written_before,
            interrupts_before,
        }
    }

    async fn finish(self, client: &reqwest::Client, admin: &str) -> ChurnSeen {
        let _ = self.stop_watch.send(());
        let swaps_observed = self.watcher.await.unwrap_or(0);
        let watched_secs = self.started.elapsed().as_secs_f64();
        if let Some(h) = self.writer {
            h.abort();
        }
        let after = sling::metrics(client, admin, "snapshot").await;
        let proxy_storage_write_bytes = procs::storage_write_bytes(self.proxy_pid)
            .zip(self.written_before)
            .map(|(after, before)| after.saturating_sub(before));
        let server_core_device_interrupts = self
            .interrupts_before
            .and_then(|(cpu, before)| Some(procs::device_interrupts(cpu)?.saturating_sub(before)));
        let proxy_snapshot_metrics_delta = after
            .iter()
            .filter_map(|(k, v)| {
                let d = v - self.before.get(k).copied().unwrap_or(0.0);
                (d != 0.0 && !k.contains("age_seconds")).then(|| (k.clone(), d))
            })
            .collect();
        ChurnSeen {
            links_created: self.created.load(Ordering::Relaxed),
            create_errors: self.failed.load(Ordering::Relaxed),
            swaps_observed,
            watched_secs,
            proxy_snapshot_metrics_delta,
            proxy_storage_write_bytes,
            server_core_device_interrupts,
        }
    }
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
