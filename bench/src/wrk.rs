//! Closed-loop load with wrk: every connection sends its next request as soon as the previous
//! answer arrives, so the run measures maximum throughput. (Its latencies suffer from coordinated
//! omission; the open-loop runs are the ones to read latency from.)
//!
//! The Lua script pre-formats one request per slug of the sample file and picks one at random for
//! each request; its `done()` hook prints the summary as one JSON line. Errors are wrk's socket
//! errors (connect, read, write, timeout) plus its status errors (responses with status ≥ 400);
//! the harness's preflight check makes sure the sample answers 302 with the right `Location`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

const MARKER: &str = "SLING_BENCH_WRK ";

const SCRIPT: &str = r#"-- Written by sling-bench: random slugs from a file, JSON summary on stdout.
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local requests = {}
function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format(nil, "/" .. line)
    end
  end
  math.randomseed(tonumber(args[2]) + 7919 * (tid or 0))
end

function request()
  return requests[math.random(#requests)]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'SLING_BENCH_WRK {"requests":%d,"durationUs":%d,"bytes":%d,"errorsConnect":%d,' ..
    '"errorsRead":%d,"errorsWrite":%d,"errorsStatus":%d,"errorsTimeout":%d,' ..
    '"latencyMeanUs":%.1f,"latencyMaxUs":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"p999Us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"#;

/// Writes the Lua script into `dir`.
pub fn write_script(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("random-slugs.lua");
    std::fs::write(&path, SCRIPT).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// What `done()` printed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WrkSummary {
    pub requests: u64,
    pub duration_us: u64,
    pub bytes: u64,
    pub errors_connect: u64,
    pub errors_read: u64,
    pub errors_write: u64,
    pub errors_status: u64,
    pub errors_timeout: u64,
    pub latency_mean_us: f64,
    pub latency_max_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

impl WrkSummary {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    pub fn errors(&self) -> u64 {
        self.errors_connect
            + self.errors_read
            + self.errors_write
            + self.errors_status
            + self.errors_timeout
    }

    pub fn bytes_per_response(&self) -> f64 {
        self.bytes as f64 / self.requests.max(1) as f64
    }
}

/// One wrk invocation.
pub struct WrkRun<'a> {
    pub wrk: &'a Path,
    pub pin: &'a [String],
    pub script: &'a Path,
    pub slugs: &'a Path,
    /// `host:port` (plain HTTP) or a URL (`https://host:port`).
    pub target: &'a str,
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
    pub seed: u64,
}

impl WrkRun<'_> {
    /// Runs the warm-up (for `self.duration`; none when it is zero), then sets `measured` as the
    /// duration of the next run. Returns the requests the warm-up served.
    pub async fn warm_up(&mut self, measured: Duration) -> anyhow::Result<u64> {
        let mut served = 0;
        if !self.duration.is_zero() {
            served = self.run().await.context("warm-up")?.requests;
        }
        self.duration = measured;
        Ok(served)
    }

    pub async fn run(&self) -> anyhow::Result<WrkSummary> {
        let mut cmd = match self.pin.split_first() {
            Some((first, rest)) => {
                let mut c = tokio::process::Command::new(first);
                c.args(rest).arg(self.wrk);
                c
            }
            None => tokio::process::Command::new(self.wrk),
        };
        cmd.arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.duration.as_secs().max(1)))
            .args(["--timeout", "5s", "-s"])
            .arg(self.script)
            .arg(if self.target.contains("://") {
                self.target.to_owned()
            } else {
                format!("http://{}", self.target)
            })
            .arg("--")
            .arg(self.slugs)
            .arg(self.seed.to_string())
            .kill_on_drop(true);
        let out = cmd.output().await.context("running wrk")?;
        crate::procs::printed_summary(&out, MARKER, "wrk")
    }
}
