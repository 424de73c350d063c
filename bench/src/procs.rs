//! Processes the bench starts, and what it reads about them from `/proc`.
//!
//! Every server is held by a [`Proc`] guard. Dropping the guard — at the end of a scenario, on an
//! error, or when Ctrl-C drops the whole scenario future — sends SIGTERM, waits a little, then
//! SIGKILL: nothing the bench started outlives it (nginx's master takes its worker down with it
//! on SIGTERM, which is why we never SIGKILL first).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;

/// A running child process, stopped when dropped.
pub struct Proc {
    name: String,
    child: Option<Child>,
    /// Lines the child printed on stdout (also copied to `<name>.stdout.log`).
    lines: mpsc::UnboundedReceiver<String>,
    stderr_log: PathBuf,
}

impl Proc {
    /// Starts `program args…`, prefixed by `pin` (`taskset -c N`, which execs the program, so the
    /// pid is the program's). Stderr goes to `<log_dir>/<name>.stderr.log`.
    pub fn spawn(
        name: &str,
        pin: &[String],
        program: &Path,
        args: &[String],
        envs: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Proc> {
        let stderr_log = log_dir.join(format!("{name}.stderr.log"));
        let stdout_log = log_dir.join(format!("{name}.stdout.log"));
        let stderr = File::create(&stderr_log)
            .with_context(|| format!("creating {}", stderr_log.display()))?;
        let mut cmd = match pin.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(out) = child.stdout.take() {
            let mut copy = File::create(&stdout_log).ok();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if let Some(f) = copy.as_mut() {
                        let _ = writeln!(f, "{line}");
                    }
                    let _ = tx.send(line);
                }
            });
        }
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
            lines: rx,
            stderr_log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it. Fails if the
    /// process exits first or nothing comes within `timeout`.
    pub async fn wait_line(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_owned());
                    }
                }
                Ok(None) => {
                    // Stdout closed: the process is gone (or closed stdout, which ours do not).
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.ensure_running()?;
                    bail!("{} closed stdout before printing {prefix:?}", self.name);
                }
                Err(_) => bail!(
                    "{} did not print {prefix:?} within {timeout:?}{}",
                    self.name,
                    self.stderr_tail()
                ),
            }
        }
    }

    /// Errors (with the end of its stderr) if the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was already stopped", self.name);
        };
        if let Some(status) = child.try_wait()? {
            bail!("{} exited ({status}){}", self.name, self.stderr_tail());
        }
        Ok(())
    }

    /// The last lines of the stderr log, formatted for an error message.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n  ");
        if tail.is_empty() {
            String::new()
        } else {
            format!("; stderr ({}):\n  {tail}", self.stderr_log.display())
        }
    }

    /// SIGTERM, up to `grace` for a clean exit, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The JSON summary a load tool printed after `marker` on a line of its output (wrk's Lua
/// script, the open-loop and handshake workers), or an error quoting what it printed instead.
pub fn printed_summary<T: serde::de::DeserializeOwned>(
    out: &std::process::Output,
    marker: &str,
    tool: &str,
) -> anyhow::Result<T> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix(marker)) else {
        bail!(
            "{tool} printed no summary ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    serde_json::from_str(line).with_context(|| format!("parsing {tool}'s summary {line:?}"))
}

/// A port that was free a moment ago on 127.0.0.1 (for nginx, which cannot report the port it
/// bound; the caller checks that its server really got it).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// An HTTP client that does not follow redirects.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")
}

/// Polls `url` until it answers 200, checking that `proc` is still alive. Returns when it did.
pub async fn wait_ok(
    client: &reqwest::Client,
    url: &str,
    proc: &mut Proc,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(resp) = client.get(url).send().await
            && resp.status() == reqwest::StatusCode::OK
        {
            return Ok(Instant::now());
        }
        proc.ensure_running()?;
        if Instant::now() > deadline {
            bail!("{url} did not answer 200 within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// CPU seconds (user + system) used so far by `pid` and its children that are still running
/// (nginx's worker), from `/proc/PID/stat`.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let ticks = clock_ticks();
    let mut pids = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if stat_fields(p).and_then(|f| f.get(1).and_then(|s| s.parse::<u32>().ok()))
                == Some(pid)
            {
                pids.push(p);
            }
        }
    }
    pids.iter()
        .filter_map(|p| stat_fields(*p))
        .map(|f| {
            // After the command name: state(0) ppid(1) … utime(11) stime(12).
            let get = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
            (get(11) + get(12)) / ticks
        })
        .sum()
}

/// Bytes `pid` has had sent to storage so far: `write_bytes` less `cancelled_write_bytes` (dirty
/// pages of files deleted or truncated before writeback), from `/proc/PID/io`. Threads that
/// already exited are included. `None` where the kernel does not keep I/O accounting.
pub fn storage_write_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(field("write_bytes")?.saturating_sub(field("cancelled_write_bytes")?))
}

/// Device interrupts `cpu` has handled so far: the sum of its column over the numbered lines of
/// `/proc/interrupts` (disks, network cards), leaving out the per-CPU kinds (timer, IPIs). Where
/// a VM routes a device's interrupts to the server core, work that looks idle-priority elsewhere
/// (another process's fsync) still interrupts the server. `None` when the file cannot be read.
pub fn device_interrupts(cpu: usize) -> Option<u64> {
    device_interrupts_in(&std::fs::read_to_string("/proc/interrupts").ok()?, cpu)
}

fn device_interrupts_in(text: &str, cpu: usize) -> Option<u64> {
    let mut lines = text.lines();
    let column = lines
        .next()?
        .split_whitespace()
        .position(|c| c == format!("CPU{cpu}"))?;
    Some(
        lines
            .filter_map(|l| {
                let (label, rest) = l.split_once(':')?;
                label.trim().parse::<u64>().ok()?;
                rest.split_whitespace().nth(column)?.parse::<u64>().ok()
            })
            .sum(),
    )
}

/// Fields of `/proc/PID/stat` after the parenthesised command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Resident memory of a process, in KiB: `/proc/PID/status` (RssAnon, RssFile, RssShmem, VmRSS,
/// VmHWM) and every field of `/proc/PID/smaps_rollup`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    pub rss_kib: u64,
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub rss_shmem_kib: u64,
    pub hwm_kib: u64,
    pub smaps_rollup_kib: std::collections::BTreeMap<String, u64>,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut smaps = std::collections::BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
        for line in text.lines().skip(1) {
            let mut parts = line.split_whitespace();
            if let (Some(k), Some(v)) = (parts.next(), parts.next())
                && let Ok(v) = v.parse::<u64>()
            {
                smaps.insert(k.trim_end_matches(':').to_owned(), v);
            }
        }
    }
    Ok(Memory {
        rss_kib: field("VmRSS:"),
        rss_anon_kib: field("RssAnon:"),
        rss_file_kib: field("RssFile:"),
        rss_shmem_kib: field("RssShmem:"),
        hwm_kib: field("VmHWM:"),
        smaps_rollup_kib: smaps,
    })
}

/// Peak resident memory of the bench itself (KiB), for the cost of building data.
pub fn own_peak_kib() -> u64 {
    memory(std::process::id()).map_or(0, |m| m.hwm_kib)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Only numbered (device) lines count, in the asked CPU's column.
    #[test]
    fn device_interrupts_sum_one_column_of_the_numbered_lines() {
        let text = "           CPU0       CPU1       \n \
             28:          0          0 PCI-MSIX-0000:00:01.0   0-edge      virtio0-config\n \
             36:          5     221797 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n \
             40:          7          3 PCI-MSIX-0000:00:04.0   1-edge      virtio3-input\n\
            LOC:     606216     397607   Local timer interrupts\n\
            ERR:          0\n";
        assert_eq!(device_interrupts_in(text, 1), Some(221_800));
        assert_eq!(device_interrupts_in(text, 0), Some(12));
        assert_eq!(device_interrupts_in(text, 2), None);
        assert!(
            device_interrupts(0).is_some(),
            "this machine has /proc/interrupts"
        );
    }
}
