//! `memory`: what a big link set costs the proxy.
//!
//! For each size: generate the links, build and write the snapshot (timed: body, encode, write),
//! start a standalone `sling-proxy` on it (spawn → `/readyz` 200), read its resident memory, drive
//! `--load-seconds` of random redirects so the pages a lookup touches are resident, and read it
//! again. Resident memory is split into anonymous (heap: what the proxy allocated) and file-backed
//! (the mapped snapshot, shareable page cache) from `/proc/PID/status`, with `smaps_rollup` in the
//! JSON report.

use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use super::{preflight, secs};
use crate::cli::MemoryArgs;
use crate::data::{LinkSet, SnapshotBuild};
use crate::env;
use crate::procs::{self, Memory};
use crate::report::{self, RunDir, Scratch, md_table, mib};
use crate::sling::{self, Source};
use crate::svg::{self, Series};
use crate::wrk::{self, WrkRun, WrkSummary};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SizeResult {
    links: u64,
    generate_ms: f64,
    snapshot: SnapshotBuild,
    start_to_ready_ms: f64,
    memory_at_ready: Memory,
    memory_after_load: Memory,
    load: WrkSummary,
    /// Peak RSS of the bench itself so far (building the snapshot is the big part).
    harness_peak_rss_kib: u64,
}

pub async fn run(args: MemoryArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let wrk_bin = env::find_tool(&env::WRK)?;
    let server_pin = env::pin(c, c.server_cpu)?;
    let client_pin = env::pin(c, c.client_cpu)?;
    anyhow::ensure!(!args.sizes.is_empty(), "--sizes needs at least one size");
    let bins = env::binaries(c, false)?;
    let run = RunDir::create(c, "memory")?;
    let scratch = Scratch::new(c, "memory")?;
    let work = scratch.path().to_path_buf();
    let script = wrk::write_script(&work)?;
    let client = procs::http_client()?;

    let mut results = Vec::new();
    for &links in &args.sizes {
        eprintln!("{links} links: generating and writing the snapshot…");
        let dir = work.join(format!("snapshots-{links}"));
        let sample_path = work.join(format!("sample-{links}.txt"));
        let (d, sp, seed, k) = (dir.clone(), sample_path.clone(), c.seed, args.sample);
        let (generate_ms, build, expected) =
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let t = Instant::now();
                let set = LinkSet::generate(links, seed)?;
                let generate_ms = t.elapsed().as_secs_f64() * 1e3;
                let build = set.write_snapshot(&d, 1)?;
                let sample = set.write_sample(&sp, k, seed)?;
                let expected: Vec<(String, String)> = sample
                    .iter()
                    .take(10)
                    .map(|&i| (set.slug(i), LinkSet::destination(i)))
                    .collect();
                Ok((generate_ms, build, expected))
            })
            .await
            .context("snapshot builder panicked")??;
        let harness_peak_rss_kib = procs::own_peak_kib();

        eprintln!("{links} links: starting sling-proxy…");
        let mut proxy = sling::start_proxy(
            &bins.proxy,
            &server_pin,
            Source::Standalone { snapshot_dir: &dir },
            &run.logs,
            secs(120 + links / 50_000),
        )
        .await?;
        let memory_at_ready = procs::memory(proxy.proc.pid())?;
        preflight(&client, "sling", &proxy.addr, &expected).await?;
        let load = WrkRun {
            wrk: &wrk_bin,
            pin: &client_pin,
            script: &script,
            slugs: &sample_path,
            target: &proxy.addr,
            threads: 1,
            connections: args.connections,
            duration: secs(args.load_seconds),
            seed: c.seed,
        }
        .run()
        .await?;
        let memory_after_load = procs::memory(proxy.proc.pid())?;
        proxy.proc.stop(secs(15));
        let start_to_ready_ms = proxy.start_to_ready.as_secs_f64() * 1e3;
        eprintln!(
            "{links} links: ready in {start_to_ready_ms:.0} ms, anonymous {} MiB, file-backed {} MiB after load",
            mib(memory_after_load.rss_anon_kib),
            mib(memory_after_load.rss_file_kib)
        );
        let _ = std::fs::remove_dir_all(&dir);
        results.push(SizeResult {
            links,
            generate_ms,
            snapshot: build,
            start_to_ready_ms,
            memory_at_ready,
            memory_after_load,
            load,
            harness_peak_rss_kib,
        });
    }

    let ten_m = results.iter().find(|r| r.links >= 10_000_000);
    let targets = json!({
        "tenMillionAnonUnder64MiB": ten_m.map(|r| r.memory_after_load.rss_anon_kib < 64 * 1024),
        "tenMillionReadyUnder3s": ten_m.map(|r| r.start_to_ready_ms < 3000.0),
    });
    let config = json!({
        "sizes": args.sizes,
        "loadSeconds": args.load_seconds,
        "connections": args.connections,
        "sample": args.sample,
        "seed": c.seed,
    });
    let machine = env::machine();
    run.write_json(&run.envelope(c, config, json!({ "sizes": results, "targets": targets })))?;

    let mut md = report::md_header(
        "memory: snapshot cost and proxy footprint",
        &machine,
        c,
        &report::command_line(),
    );
    md.push_str("## Summary\n\n");
    if let Some(r) = ten_m {
        let anon = r.memory_after_load.rss_anon_kib;
        md.push_str(&format!(
            "- {} links: anonymous memory **{} MiB** after load — target < 64 MiB: {}; spawn → ready **{:.0} ms** — target < 3 s: {}.\n\n",
            r.links,
            mib(anon),
            if anon < 64 * 1024 { "met" } else { "**missed**" },
            r.start_to_ready_ms,
            if r.start_to_ready_ms < 3000.0 { "met" } else { "**missed**" },
        ));
    } else {
        md.push_str("- No size of 10M links or more was measured, so the 10M targets are not evaluated.\n\n");
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.links.to_string(),
                format!("{:.1}", r.snapshot.total_ms / 1000.0),
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    r.snapshot.body_ms / 1000.0,
                    r.snapshot.encode_ms / 1000.0,
                    r.snapshot.write_ms / 1000.0
                ),
                format!("{:.1}", r.snapshot.bytes as f64 / 1048576.0),
                format!("{:.0}", r.start_to_ready_ms),
                mib(r.memory_at_ready.rss_anon_kib),
                mib(r.memory_after_load.rss_anon_kib),
                mib(r.memory_after_load.rss_file_kib),
                mib(r.memory_after_load.hwm_kib),
                format!("{:.0}", r.load.rps()),
                r.load.errors().to_string(),
                mib(r.harness_peak_rss_kib),
            ]
        })
        .collect();
    md.push_str(&md_table(
        &[
            "links",
            "snapshot build s",
            "body / encode / write s",
            "file MiB",
            "spawn → ready ms",
            "anon MiB at ready",
            "anon MiB after load",
            "file-backed MiB after load",
            "peak RSS MiB",
            "load req/s",
            "load errors",
            "bench peak RSS MiB",
        ],
        &rows,
    ));
    md.push_str(&format!(
        "## Method and caveats\n\n\
         - Links are random 7-character slugs (seed {seed}) on the default domain, each a plain 302 to \
           `https://example.com/l/<n>`, built with `SnapshotBody::insert_link` + `snapshot::encode` + \
           `snapshot::write_atomic`, exactly as the control plane writes them.\n\
         - The snapshot file was just written, so it is in the page cache: start-to-ready is a warm start \
           (it includes mapping and fully verifying the file: checksum and rkyv validation).\n\
         - Memory is read from `/proc/PID/status` (RssAnon, RssFile, VmHWM) right after `/readyz` and after \
           {load} s of redirects ({conns} connections) over {sample} random slugs; `smaps_rollup` is in report.json.\n\
         - Anonymous is what the proxy allocated; file-backed is the mapped snapshot (page cache, shared, \
           reclaimable).\n\n\
         ![memory](memory.svg)\n",
        seed = c.seed,
        load = args.load_seconds,
        conns = args.connections,
        sample = args.sample,
    ));
    run.write_md(&md)?;
    let groups: Vec<String> = results
        .iter()
        .map(|r| format!("{} links", r.links))
        .collect();
    run.write_file(
        "memory.svg",
        &svg::grouped_bars(
            "sling-proxy resident memory after load",
            "MiB",
            &groups,
            &[
                Series {
                    name: "anonymous".into(),
                    values: results
                        .iter()
                        .map(|r| r.memory_after_load.rss_anon_kib as f64 / 1024.0)
                        .collect(),
                },
                Series {
                    name: "file-backed".into(),
                    values: results
                        .iter()
                        .map(|r| r.memory_after_load.rss_file_kib as f64 / 1024.0)
                        .collect(),
                },
            ],
        ),
    )?;
    Ok(())
}
