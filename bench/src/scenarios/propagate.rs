//! `propagate`: how long after `POST /api/v1/links` answers does the proxy redirect the new slug?
//!
//! Runs `sling serve` (SQLite) and a `sling-proxy` following it, creates `--links` links one after
//! another, and after each successful create polls `GET /{slug}` on the proxy (keep-alive, no
//! pause between polls) until it answers a redirect. The path measured is the write path of the
//! architecture: transaction → change feed → the proxy's long poll wakes → overlay.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::secs;
use crate::cli::PropagateArgs;
use crate::env;
use crate::procs;
use crate::report::{self, RunDir, Scratch, md_table};
use crate::sling::{self, Source};
use crate::stats::quantile_sorted;
use crate::svg;

#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Dist {
    count: usize,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    mean_ms: Option<f64>,
}

impl Dist {
    fn of(values: &mut [f64]) -> Dist {
        values.sort_by(f64::total_cmp);
        let q = |p| quantile_sorted(values, p);
        Dist {
            count: values.len(),
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            max_ms: values.last().copied(),
            mean_ms: (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64),
        }
    }
}

pub async fn run(args: PropagateArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let server_pin = env::pin(c, c.server_cpu)?;
    let client_pin = env::pin(c, c.client_cpu)?;
    anyhow::ensure!(args.links >= 1, "--links must be at least 1");
    let bins = env::binaries(c, true)?;
    let run = RunDir::create(c, "propagate")?;
    let scratch = Scratch::new(c, "propagate")?;
    let work = scratch.path().to_path_buf();

    eprintln!("starting sling serve and sling-proxy…");
    let control = sling::start_control(
        &bins.control,
        &client_pin,
        &work.join("control-data"),
        &[],
        &run.logs,
    )
    .await?;
    let mut proxy = sling::start_proxy(
        &bins.proxy,
        &server_pin,
        Source::Follow {
            snapshot_dir: &work.join("proxy-snapshots"),
            control_url: &control.url,
            fleet_token: &control.fleet_token,
        },
        &run.logs,
        secs(60),
    )
    .await?;
    let client = procs::http_client()?;
    let api = control.api();
    let timeout = Duration::from_millis(args.timeout_ms);

    let mut ack_to_redirect = Vec::new();
    let mut send_to_redirect = Vec::new();
    let mut create = Vec::new();
    let mut polls_total = 0u64;
    let mut timed_out = Vec::new();
    let mut wrong_location = 0u64;
    for i in 0..args.links {
        let dest = format!("https://example.com/p/{i}");
        let sent = Instant::now();
        let slug = sling::create_link(&client, &api, &dest).await?;
        let acked = Instant::now();
        let url = format!("http://{}/{slug}", proxy.addr);
        loop {
            polls_total += 1;
            let resp = client
                .get(&url)
                .header(reqwest::header::HOST, "localhost")
                .send()
                .await;
            let now = Instant::now();
            if let Ok(resp) = resp
                && resp.status().is_redirection()
            {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok());
                if location != Some(dest.as_str()) {
                    wrong_location += 1;
                }
                ack_to_redirect.push((now - acked).as_secs_f64() * 1e3);
                send_to_redirect.push((now - sent).as_secs_f64() * 1e3);
                create.push((acked - sent).as_secs_f64() * 1e3);
                break;
            }
            if now - acked > timeout {
                timed_out.push(slug.clone());
                break;
            }
        }
        if (i + 1) % 250 == 0 {
            proxy.proc.ensure_running()?;
            eprintln!("  {}/{}", i + 1, args.links);
        }
    }
    proxy.proc.stop(secs(15));
    drop(control);

    let curve: Vec<(f64, f64)> = {
        let mut v = ack_to_redirect.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        v.iter()
            .enumerate()
            .map(|(i, ms)| ((i + 1) as f64 / n * 100.0, *ms))
            .collect()
    };
    let ack = Dist::of(&mut ack_to_redirect);
    let send = Dist::of(&mut send_to_redirect);
    let api = Dist::of(&mut create);
    let target_met = timed_out.is_empty() && ack.p99_ms.is_some_and(|p| p < 100.0);
    let config = json!({ "links": args.links, "timeoutMs": args.timeout_ms, "seed": c.seed });
    let results = json!({
        "ackToFirstRedirect": ack,
        "requestToFirstRedirect": send,
        "createLatency": api,
        "pollsPerLink": polls_total as f64 / args.links as f64,
        "timedOut": timed_out,
        "wrongLocation": wrong_location,
        "targets": { "p99Under100ms": target_met },
    });
    let machine = env::machine();
    run.write_json(&run.envelope(c, config, results))?;

    let f = |v: Option<f64>| v.map_or_else(|| "–".into(), |x| format!("{x:.2}"));
    let row = |name: &str, d: &Dist| {
        vec![
            name.to_owned(),
            d.count.to_string(),
            f(d.p50_ms),
            f(d.p90_ms),
            f(d.p99_ms),
            f(d.max_ms),
        ]
    };
    let mut md = report::md_header(
        &format!("propagate: create → first redirect, {} links", args.links),
        &machine,
        c,
        &report::command_line(),
    );
    md.push_str(&format!(
        "## Summary\n\n\
         - Create acknowledged → first redirect from the proxy: p50 **{} ms**, p99 **{} ms**, max **{} ms** \
           over {} links — target p99 < 100 ms: {}.\n\
         - Timed out (no redirect within {} ms): {}; redirects with a wrong `Location`: {wrong_location}.\n\n",
        f(ack.p50_ms),
        f(ack.p99_ms),
        f(ack.max_ms),
        ack.count,
        if target_met { "met" } else { "**missed**" },
        args.timeout_ms,
        timed_out.len(),
    ));
    md.push_str(&md_table(
        &["measured", "links", "p50 ms", "p90 ms", "p99 ms", "max ms"],
        &[
            row("create acknowledged → first 3xx", &ack),
            row("create sent → first 3xx", &send),
            row("POST /api/v1/links itself", &api),
        ],
    ));
    md.push_str(&format!(
        "## Method\n\n\
         - `sling serve` (SQLite, defaults) on CPU {cc} and `sling-proxy --control-url …` on CPU {sc}; links are \
           created one at a time (`POST /api/v1/links` with the admin key), and after each create the bench polls \
           `GET /{{slug}}` (Host: localhost, keep-alive, no pause; {polls:.1} polls per link on average) until a 3xx.\n\
         - The time includes one poll's round trip, so it is an upper bound by about 0.1 ms.\n\n\
         ![latency](latency.svg)\n",
        cc = c.client_cpu,
        sc = c.server_cpu,
        polls = polls_total as f64 / args.links as f64,
    ));
    run.write_md(&md)?;
    run.write_file(
        "latency.svg",
        &svg::lines(
            "Create acknowledged → first redirect",
            "percentile of links",
            "milliseconds",
            &[("sling".into(), curve)],
        ),
    )?;
    Ok(())
}
