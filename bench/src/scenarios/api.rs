//! `api`: latency and throughput of the links API on SQLite and on Postgres.
//!
//! For each of `--dbs`: a fresh `sling serve` (Postgres: a fresh database) pinned to the server
//! core, then two closed-loop runs of `--clients` concurrent clients with the admin key:
//! 1. create — `POST /api/v1/links` with a new destination each time;
//! 2. list — `GET /api/v1/links?page=P&perPage=N` over a random page P, once the team holds
//!    `--list-links` links (topped up with `POST /api/v1/links/bulk` after the create run).
//!
//! The admin team is on the unlimited plan, so rate limits never answer 429 here.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::{cpu_share, secs};
use crate::cli::{ApiArgs, Backend};
use crate::closedloop::{self, ClosedLoopSummary};
use crate::db;
use crate::env;
use crate::procs;
use crate::report::{self, RunDir, Scratch, md_table, ms};
use crate::sling::{self, Api};
use crate::svg::{self, Series};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BackendRuns {
    backend: Backend,
    database: Option<String>,
    create: ClosedLoopSummary,
    /// Links the team held during the list run.
    links_during_list: u64,
    list: ClosedLoopSummary,
    /// CPU of `sling serve` during each run, in cores.
    control_cpu_create: f64,
    control_cpu_list: f64,
}

pub async fn run(args: ApiArgs) -> anyhow::Result<()> {
    let c = &args.common;
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(
        (1..=100).contains(&args.per_page),
        "--per-page must be between 1 and 100"
    );
    let server_pin = env::pin(c, c.server_cpu)?;
    let bins = env::binaries(c, true)?;
    let run = RunDir::create(c, "api")?;
    let scratch = Scratch::new(c, "api")?;
    let work = scratch.path().to_path_buf();
    let client = procs::http_client()?;

    let mut results = Vec::new();
    for &backend in &args.dbs {
        eprintln!("{}: starting sling serve…", backend.name());
        let control = db::start_control_on(
            backend,
            &args.postgres,
            &bins.control,
            &server_pin,
            &work.join(format!("control-{}", backend.name())),
            &[],
            &run.logs,
        )
        .await?;
        let api = control.control.api();
        let pid = control.control.pid();

        let (create, control_cpu_create) = cpu_share(pid, create_run(&args, &client, &api)).await?;
        log(backend, "create", &create);

        let have = count_links(&client, &api).await?;
        if have < args.list_links {
            eprintln!(
                "{}: topping up to {} links…",
                backend.name(),
                args.list_links
            );
            let more: Vec<String> = (have..args.list_links)
                .map(|i| format!("https://example.com/l/{i}"))
                .collect();
            sling::create_links_bulk(&client, &api, &more).await?;
        }
        control.settle()?;
        let links_during_list = count_links(&client, &api).await?;
        let (list, control_cpu_list) =
            cpu_share(pid, list_run(&args, &client, &api, links_during_list)).await?;
        log(backend, "list", &list);
        results.push(BackendRuns {
            backend,
            database: control.database(),
            create,
            links_during_list,
            list,
            control_cpu_create,
            control_cpu_list,
        });
    }

    let config = json!({
        "dbs": args.dbs,
        "clients": args.clients,
        "durationSecs": args.duration,
        "warmupSecs": args.warmup,
        "listLinks": args.list_links,
        "perPage": args.per_page,
        "seed": c.seed,
    });
    let json_results = json!({
        "generator": "sling-bench closed loop (reqwest, one task per client, HDR histogram)",
        "backends": results,
    });
    let machine = env::machine();
    run.write_json(&run.envelope(c, config, json_results))?;

    let mut md = report::md_header(
        "api: links API create and list, SQLite vs Postgres",
        &machine,
        c,
        &report::command_line(),
    );
    md.push_str("## Summary\n\n");
    for r in &results {
        md.push_str(&format!(
            "- {}: create **{:.0} req/s** (p50 {} ms, p99 {} ms); list of {} per page with {} links **{:.0} req/s** \
             (p50 {} ms, p99 {} ms); errors {} / {}.\n",
            r.backend.name(),
            r.create.requests_per_sec,
            ms(r.create.latency.p50_us as f64),
            ms(r.create.latency.p99_us as f64),
            args.per_page,
            r.links_during_list,
            r.list.requests_per_sec,
            ms(r.list.latency.p50_us as f64),
            ms(r.list.latency.p99_us as f64),
            r.create.errors,
            r.list.errors,
        ));
    }
    md.push('\n');
    let mut rows = Vec::new();
    for r in &results {
        for (op, s, cpu) in [
            ("create", &r.create, r.control_cpu_create),
            ("list", &r.list, r.control_cpu_list),
        ] {
            rows.push(vec![
                r.backend.name().into(),
                op.into(),
                format!("{:.0}", s.requests_per_sec),
                s.requests.to_string(),
                ms(s.latency.p50_us as f64),
                ms(s.latency.p90_us as f64),
                ms(s.latency.p99_us as f64),
                ms(s.latency.max_us as f64),
                s.errors.to_string(),
                format!("{:.0}%", cpu * 100.0),
            ]);
        }
    }
    md.push_str("## Runs (closed loop)\n\n");
    md.push_str(&md_table(
        &[
            "database",
            "operation",
            "req/s",
            "requests",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors",
            "control CPU",
        ],
        &rows,
    ));
    if let Some(e) = results.iter().find_map(|r| {
        r.create
            .first_error
            .as_ref()
            .or(r.list.first_error.as_ref())
    }) {
        md.push_str(&format!("First error: `{e}`\n\n"));
    }
    md.push_str(&format!(
        "## Method and caveats\n\n\
         - A fresh `sling serve` per database (Postgres: a fresh database, dropped at the end), pinned to CPU {sc}; \
           Postgres itself and the clients (tasks inside the harness) are not pinned.\n\
         - {clients} clients, closed loop (each sends its next request when the last answered), {dur} s after \
           {warm} s of warm-up, admin key as Bearer token; latency is send → complete JSON body.\n\
         - create: `POST /api/v1/links` with a new destination each time (201 expected). list: \
           `GET /api/v1/links?page=P&perPage={pp}` with P uniform over every page of the {ll}+ links \
           (deep pages included). On Postgres the links table is `VACUUM ANALYZE`d after the import and \
           before the list runs, as autovacuum would leave it a minute or two after a real import (without \
           statistics the planner sorted all 100,000 rows on disk for each page).\n\n\
         ![throughput](throughput.svg)\n\n![latency](latency.svg)\n",
        sc = c.server_cpu,
        clients = args.clients,
        dur = args.duration,
        warm = args.warmup,
        pp = args.per_page,
        ll = args.list_links,
    ));
    run.write_md(&md)?;

    let groups: Vec<String> = ["create", "list"].map(String::from).to_vec();
    let rps: Vec<Series> = results
        .iter()
        .map(|r| Series {
            name: r.backend.name().into(),
            values: vec![r.create.requests_per_sec, r.list.requests_per_sec],
        })
        .collect();
    run.write_file(
        "throughput.svg",
        &svg::grouped_bars("Links API throughput", "requests/s", &groups, &rps),
    )?;
    let groups: Vec<String> = ["create p50", "create p99", "list p50", "list p99"]
        .map(String::from)
        .to_vec();
    let lat: Vec<Series> = results
        .iter()
        .map(|r| Series {
            name: r.backend.name().into(),
            values: [
                r.create.latency.p50_us,
                r.create.latency.p99_us,
                r.list.latency.p50_us,
                r.list.latency.p99_us,
            ]
            .map(|us| us as f64 / 1000.0)
            .to_vec(),
        })
        .collect();
    run.write_file(
        "latency.svg",
        &svg::grouped_bars("Links API latency", "milliseconds", &groups, &lat),
    )?;
    Ok(())
}

fn log(backend: Backend, op: &str, s: &ClosedLoopSummary) {
    eprintln!(
        "{} {op}: {:.0} req/s  p50 {} ms  p99 {} ms  errors {}",
        backend.name(),
        s.requests_per_sec,
        ms(s.latency.p50_us as f64),
        ms(s.latency.p99_us as f64),
        s.errors
    );
}

async fn create_run(
    args: &ApiArgs,
    client: &reqwest::Client,
    api: &Api,
) -> anyhow::Result<ClosedLoopSummary> {
    let (client, api) = (client.clone(), Arc::new(api.clone()));
    closedloop::run(
        args.clients,
        secs(args.warmup),
        secs(args.duration),
        move |c, n| {
            let (client, api) = (client.clone(), api.clone());
            async move {
                let dest = format!("https://example.com/a/{c}/{n}");
                sling::create_link(&client, &api, &dest).await.map(drop)
            }
        },
    )
    .await
}

async fn list_run(
    args: &ApiArgs,
    client: &reqwest::Client,
    api: &Api,
    links: u64,
) -> anyhow::Result<ClosedLoopSummary> {
    let pages = links.div_ceil(args.per_page).max(1);
    let (client, api, per_page, seed) = (
        client.clone(),
        Arc::new(api.clone()),
        args.per_page,
        args.common.seed,
    );
    closedloop::run(
        args.clients,
        secs(args.warmup),
        secs(args.duration),
        move |c, n| {
            let (client, api) = (client.clone(), api.clone());
            // A cheap, seeded spread of pages (no shared RNG between tasks).
            let page =
                1 + (seed ^ (u64::from(c) << 32) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15) % pages;
            async move {
                let resp = client
                    .get(format!(
                        "{}/api/v1/links?page={page}&perPage={per_page}",
                        api.url
                    ))
                    .bearer_auth(&api.admin_key)
                    .send()
                    .await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                anyhow::ensure!(status.is_success(), "GET /api/v1/links answered {status}");
                anyhow::ensure!(!body.is_empty(), "GET /api/v1/links: empty body");
                Ok(())
            }
        },
    )
    .await
}

/// The team's link count, from the list endpoint's pagination.
async fn count_links(client: &reqwest::Client, api: &Api) -> anyhow::Result<u64> {
    let resp = client
        .get(format!("{}/api/v1/links?page=1&perPage=1", api.url))
        .bearer_auth(&api.admin_key)
        .send()
        .await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await?;
    anyhow::ensure!(
        status.is_success(),
        "GET /api/v1/links answered {status}: {body}"
    );
    body.pointer("/data/pagination/total")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| anyhow::anyhow!("GET /api/v1/links: no data.pagination.total in {body}"))
}
