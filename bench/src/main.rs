//! `sling-bench`: the load-testing harness. Each scenario builds the data it needs, starts what it
//! measures (only on 127.0.0.1), drives load, stops everything it started — also on an error or
//! Ctrl-C, through the drop guards in [`procs`] — and writes `report.json`, `report.md` and SVG
//! charts under `bench/results/<scenario>-<timestamp>/`.
//!
//! Load comes from wrk (closed loop, maximum throughput) driven through a Lua script, and from the
//! harness's own open-loop generator ([`openloop`], a fixed request schedule with latency measured
//! from each request's *intended* send time, so a stalled server cannot hide its stall). Whatever
//! generator a comparison uses, it uses it for both sides.
#![forbid(unsafe_code)]

mod cgroup;
mod cli;
mod closedloop;
mod data;
mod db;
mod env;
mod handshake;
mod http1;
mod nginx;
mod openloop;
mod procs;
mod report;
mod scenarios;
mod sling;
mod stats;
mod svg;
mod wrk;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // The load workers are children of the harness, pinned with taskset like wrk; each runs its
    // own single-threaded runtime so it really uses one core.
    let worker = match &cli.command {
        cli::Command::OpenLoopWorker(args) => Some(("open-loop", openloop::worker_main(args))),
        cli::Command::HandshakeWorker(args) => Some(("handshake", handshake::worker_main(args))),
        _ => None,
    };
    if let Some((name, outcome)) = worker {
        return match outcome {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name} worker: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = scenarios::run(cli) => Some(r),
            _ = interrupted() => None,
        }
        // Leaving the select drops the scenario future, and with it every process guard: the
        // servers and load generators it started are stopped before we return.
    });
    let code = match outcome {
        Some(Ok(())) => std::process::ExitCode::SUCCESS,
        Some(Err(e)) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
        None => {
            eprintln!("interrupted: stopped everything the bench started");
            std::process::ExitCode::from(130)
        }
    };
    // Blocking jobs (a snapshot being encoded) cannot be cancelled; do not wait for them.
    runtime.shutdown_background();
    code
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
