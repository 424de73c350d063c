//! An idle CPU cgroup (`cpu.idle = 1`) for the control plane where the harness may make one.
//!
//! On an EEVDF kernel (Linux 6.6 and later) a `SCHED_IDLE` task is a weight-3 task: it preempts
//! nobody, but the scheduler still picks it whenever it is eligible and the task that shares its
//! core is not, so the control plane's snapshot encoding ran ~225 µs at a time while the load
//! generator waited (`bench/BASELINE.md`, session 13). A cgroup marked idle is scheduled the
//! same way one level up, against the group the generator is in. Needs root and a `cpu`
//! controller (cgroup v1 `/sys/fs/cgroup/cpu`, or v2 with `cpu` enabled at the root); without
//! them the run goes on with `SCHED_IDLE` alone and the report says so.

use std::path::{Path, PathBuf};

/// A cgroup this harness created; removed again on drop.
#[derive(Debug)]
pub struct IdleGroup {
    dir: PathBuf,
    /// Where its processes go back to before the directory is removed.
    parent: PathBuf,
}

impl IdleGroup {
    /// Creates `<cpu hierarchy>/<name>` with `cpu.idle = 1`; `Err` says why not.
    pub fn create(name: &str) -> Result<Self, String> {
        let root = hierarchy().ok_or("no cgroup cpu controller found")?;
        let dir = root.join(name);
        if let Err(e) = std::fs::create_dir(&dir)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(format!("creating {}: {e}", dir.display()));
        }
        let group = Self { dir, parent: root };
        std::fs::write(group.dir.join("cpu.idle"), "1")
            .map_err(|e| format!("setting {}/cpu.idle: {e}", group.dir.display()))?;
        Ok(group)
    }

    /// Moves every thread of `pid` into the group.
    pub fn add(&self, pid: u32) -> Result<(), String> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| format!("adding {pid} to {}: {e}", self.dir.display()))
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for IdleGroup {
    fn drop(&mut self) {
        // A process still in it (the control plane stopping) goes back to the parent first:
        // a cgroup with members cannot be removed.
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.split_whitespace() {
                let _ = std::fs::write(self.parent.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The directory of the cgroup hierarchy that has the `cpu` controller.
fn hierarchy() -> Option<PathBuf> {
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    if v1.join("cpu.shares").exists() {
        return Some(v1.to_owned());
    }
    let v2 = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.subtree_control")).ok()?;
    controllers
        .split_whitespace()
        .any(|c| c == "cpu")
        .then(|| v2.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Where the harness may make a group, a process put in it is listed there and sees it in
    /// `/proc/PID/cgroup`; dropping the group moves it out and removes the directory.
    #[test]
    fn a_process_added_is_in_the_group_until_it_is_dropped() {
        let group = match IdleGroup::create(&format!("sling-bench-test-{}", std::process::id())) {
            Ok(g) => g,
            Err(why) => {
                assert!(
                    std::env::var_os("CI").is_none() || hierarchy().is_none(),
                    "a cpu controller exists but no group could be made: {why}"
                );
                eprintln!("skipped: {why}");
                return;
            }
        };
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        group.add(child.id()).unwrap();
        let procs = std::fs::read_to_string(group.path().join("cgroup.procs")).unwrap();
        assert!(
            procs
                .split_whitespace()
                .any(|p| p == child.id().to_string()),
            "{procs}"
        );
        assert_eq!(
            std::fs::read_to_string(group.path().join("cpu.idle"))
                .unwrap()
                .trim(),
            "1"
        );
        let dir = group.path().to_owned();
        drop(group);
        assert!(!dir.exists(), "{} removed", dir.display());
        let _ = child.kill();
        let _ = child.wait();
    }
}
