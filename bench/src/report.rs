//! The report directory of one run: `bench/results/<scenario>-<timestamp>/` with `report.json`,
//! `report.md`, charts, and the logs of every process the run started (`logs/`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

use crate::cli::Common;

pub struct RunDir {
    pub path: PathBuf,
    pub logs: PathBuf,
    pub scenario: &'static str,
    pub started: jiff::Timestamp,
}

impl RunDir {
    pub fn create(common: &Common, scenario: &'static str) -> anyhow::Result<RunDir> {
        let started = jiff::Timestamp::now();
        let stamp = started.strftime("%Y%m%dT%H%M%SZ").to_string();
        let path = common.out_dir.join(format!("{scenario}-{stamp}"));
        let logs = path.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        eprintln!("report directory: {}", path.display());
        Ok(RunDir {
            path,
            logs,
            scenario,
            started,
        })
    }

    /// The common part of every report.json: scenario, times, machine, pinning.
    pub fn envelope(&self, common: &Common, config: Value, results: Value) -> Value {
        json!({
            "scenario": self.scenario,
            "startedAt": self.started.to_string(),
            "finishedAt": jiff::Timestamp::now().to_string(),
            "machine": crate::env::machine(),
            "pinning": if common.no_pin {
                json!(null)
            } else {
                json!({ "serverCpu": common.server_cpu, "clientCpu": common.client_cpu })
            },
            "config": config,
            "results": results,
        })
    }

    pub fn write_json(&self, value: &Value) -> anyhow::Result<()> {
        let path = self.path.join("report.json");
        std::fs::write(&path, serde_json::to_string_pretty(value)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn write_md(&self, text: &str) -> anyhow::Result<()> {
        let path = self.path.join("report.md");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
        Ok(())
    }

    pub fn write_file(&self, name: &str, text: &str) -> anyhow::Result<()> {
        let path = self.path.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// The Markdown heading block every report starts with: what ran, where, on which commit.
pub fn md_header(title: &str, machine: &Value, common: &Common, command: &str) -> String {
    let s = |k: &str| {
        machine
            .get(k)
            .map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Null => "?".into(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "?".into())
    };
    let pinning = if common.no_pin {
        "not pinned (--no-pin)".to_owned()
    } else {
        format!(
            "server on CPU {}, load generator on CPU {} (taskset)",
            common.server_cpu, common.client_cpu
        )
    };
    format!(
        "# {title}\n\n\
         - Command: `{command}`\n\
         - Commit: `{}`{}\n\
         - Machine: {} × {}, {} MiB RAM, Linux {}; load average at the end: {}\n\
         - Tools: {}; {}\n\
         - Pinning: {pinning}\n\n",
        s("commit"),
        if machine.get("dirty") == Some(&Value::Bool(true)) {
            " (with uncommitted changes)"
        } else {
            ""
        },
        s("cpus"),
        s("cpuModel"),
        s("memoryMiB"),
        s("kernel"),
        s("loadAverage"),
        s("wrk"),
        s("nginx"),
    )
}

/// A Markdown table.
pub fn md_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        head.join(" | "),
        " --- |".repeat(head.len())
    );
    for r in rows {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out.push('\n');
    out
}

/// The command line this process was started with, for the report.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run --release -p sling-bench -- {}", args.join(" "))
}

/// A scratch directory that is deleted at the end unless `--keep-work`.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    kept: Option<PathBuf>,
}

impl Scratch {
    pub fn new(common: &Common, scenario: &str) -> anyhow::Result<Scratch> {
        let prefix = format!("sling-bench-{scenario}-");
        let mut b = tempfile::Builder::new();
        b.prefix(&prefix);
        let dir = match &common.work_dir {
            Some(parent) => {
                std::fs::create_dir_all(parent)?;
                b.tempdir_in(parent)
            }
            None => b.tempdir(),
        }
        .context("creating the scratch directory")?;
        if common.keep_work {
            let kept = dir.keep();
            eprintln!("scratch directory (kept): {}", kept.display());
            return Ok(Scratch {
                dir: None,
                kept: Some(kept),
            });
        }
        Ok(Scratch {
            dir: Some(dir),
            kept: None,
        })
    }

    pub fn path(&self) -> &Path {
        match (&self.dir, &self.kept) {
            (Some(d), _) => d.path(),
            (None, Some(k)) => k,
            (None, None) => Path::new("/nonexistent"),
        }
    }
}

/// Formats a number of microseconds as milliseconds with two decimals.
/// A Markdown table cell listing how a run changed the proxy's metrics, one series a line.
/// Histogram buckets are left out (count and sum say enough; the buckets drown the table).
pub fn metrics_delta_cell(delta: &std::collections::BTreeMap<String, f64>) -> String {
    delta
        .iter()
        .filter(|(k, _)| !k.contains("_bucket{"))
        .map(|(k, v)| format!("`{k}` {v:+}"))
        .collect::<Vec<_>>()
        .join("<br>")
}

pub fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

/// Formats a ratio.
pub fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |v| format!("{v:.3}"))
}

/// KiB → MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}
