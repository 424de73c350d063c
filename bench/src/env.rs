//! The machine and the tools: finding wrk, nginx and taskset (with the Debian package to install
//! when one is missing), building and locating the sling binaries, and describing the machine for
//! the report.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cli::{Common, ControlPriority};

/// An external program the bench needs, and where it comes from.
pub struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

pub const WRK: Tool = Tool {
    name: "wrk",
    package: "wrk",
};
pub const NGINX: Tool = Tool {
    name: "nginx",
    package: "nginx",
};
pub const CHRT: Tool = Tool {
    name: "chrt",
    package: "util-linux",
};
pub const TASKSET: Tool = Tool {
    name: "taskset",
    package: "util-linux",
};

/// Finds a tool on `PATH` (and in `/usr/sbin`, where Debian puts nginx), or explains how to get it.
pub fn find_tool(tool: &Tool) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(tool.name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    bail!(
        "`{}` not found: install it with `apt-get install -y {}`",
        tool.name,
        tool.package
    )
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The workspace root (the parent of `bench/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The sling binaries a scenario runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub proxy: PathBuf,
    pub control: PathBuf,
}

/// Builds (unless `--no-build`) and locates `sling-proxy` and `sling`.
pub fn binaries(common: &Common, need_control: bool) -> anyhow::Result<Binaries> {
    let dir = match &common.bin_dir {
        Some(d) => d.clone(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("release"),
    };
    if !common.no_build {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(workspace_root())
            .args(["build", "--release", "--bin", "sling-proxy"]);
        if need_control {
            cmd.args(["--bin", "sling"]);
        }
        eprintln!("building the release binaries (cargo build --release; --no-build skips)…");
        let status = cmd
            .status()
            .context("running cargo (pass --no-build and --bin-dir to use prebuilt binaries)")?;
        if !status.success() {
            bail!("`cargo build --release` of the sling binaries failed ({status})");
        }
    }
    let proxy = dir.join("sling-proxy");
    let control = dir.join("sling");
    for (path, needed) in [(&proxy, true), (&control, need_control)] {
        if needed && !is_executable(path) {
            bail!(
                "{} not found: build it with `cargo build --release --bins` (or point --bin-dir at it)",
                path.display()
            );
        }
    }
    Ok(Binaries { proxy, control })
}

/// The `taskset -c CPU` prefix for a command, or nothing with `--no-pin`.
pub fn pin(common: &Common, cpu: usize) -> anyhow::Result<Vec<String>> {
    if common.no_pin {
        return Ok(Vec::new());
    }
    let taskset = find_tool(&TASKSET)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if common.server_cpu.max(common.client_cpu) >= cpus {
        bail!(
            "this machine has {cpus} CPU(s): --server-cpu {} / --client-cpu {} do not exist (use --no-pin on a single core)",
            common.server_cpu,
            common.client_cpu
        );
    }
    Ok(vec![
        taskset.display().to_string(),
        "-c".into(),
        cpu.to_string(),
    ])
}

/// Pins every thread of the harness itself to `cpu` (`taskset -a -p`), or nothing with
/// `--no-pin`; threads and children it starts later inherit that (children started under
/// [`pin`] get their own CPU). For scenarios where the harness is part of the load: its threads
/// are otherwise free to run on the server core, and a `sched_switch` trace of a swap run showed
/// them taking the proxy's core for up to 6 ms at a time (121 ms over the run).
pub fn pin_self(common: &Common, cpu: usize) -> anyhow::Result<()> {
    let prefix = pin(common, cpu)?;
    let Some(taskset) = prefix.first() else {
        return Ok(());
    };
    let status = Command::new(taskset)
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(
        status.success(),
        "taskset -a -p -c {cpu} on the harness: {status}"
    );
    Ok(())
}

/// The command prefix that runs the control plane on the client core at `priority`: under
/// `chrt --idle 0` (SCHED_IDLE) it only gets the CPU the load generator leaves.
pub fn control_pin(
    priority: ControlPriority,
    client_pin: &[String],
) -> anyhow::Result<Vec<String>> {
    Ok(match priority {
        ControlPriority::Idle => {
            let chrt = find_tool(&CHRT)?.display().to_string();
            [vec![chrt, "--idle".into(), "0".into()], client_pin.to_vec()].concat()
        }
        ControlPriority::Normal => client_pin.to_vec(),
    })
}

/// First line of a command's output (stdout or stderr), for version strings.
fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

/// What ran where: CPU, cores, memory, kernel, tool versions and the commit measured.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok());
    let root = workspace_root();
    let root = root.display().to_string();
    let commit = first_line("git", &["-C", &root, "rev-parse", "HEAD"]);
    let dirty = Command::new("git")
        .args(["-C", &root, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .map(|o| !o.stdout.is_empty());
    json!({
        "cpuModel": model,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "memoryMiB": mem_kib.map(|k| k / 1024),
        "kernel": first_line("uname", &["-r"]),
        "loadAverage": std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
        "commit": commit,
        "dirty": dirty,
        "wrk": first_line("wrk", &["-v"]),
        "nginx": first_line("nginx", &["-v"]).or_else(|| first_line("/usr/sbin/nginx", &["-v"])),
    })
}
