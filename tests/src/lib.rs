//! The end-to-end harness: starts the real `sling` and `sling-proxy` binaries on port 0, each in
//! its own temporary directory (and, for Postgres, its own database), and gives the scenario tests
//! small typed handles to drive them.
//!
//! The binaries are the ones `cargo build --workspace --bins` left next to the test executable
//! (`target/<profile>/sling`, `target/<profile>/sling-proxy`); cargo does not build another
//! package's binaries for an integration test, so the README's test command builds them first.
//!
//! Every child is spawned with `kill_on_drop`, so a failing test never leaves a process behind;
//! while a test is panicking, each child's stderr log is printed to help find out why.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness: failing loudly is the point

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub mod pebble;
pub mod ports;
pub mod webdriver;

pub use ports::free_port;

/// How long a program may take from spawn to printing its `listening …` lines (debug builds
/// run migrations and open databases slowly on a loaded 2-core machine).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a change may take to reach the proxy before a test calls it lost. Generous: the
/// tests assert that changes arrive, the propagation test measures how fast.
pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a program may take to exit after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The fleet token every test control plane and proxy share.
pub const FLEET_TOKEN: &str = "e2e-fleet-token";
/// Environment variable naming the Postgres server the Postgres variants use.
pub const POSTGRES_URL_ENV: &str = "SLING_TEST_POSTGRES_URL";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

// ---------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------

/// Path of a workspace binary built next to the running test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: build the binaries first with `cargo build --workspace --bins` \
         (same profile and CARGO_TARGET_DIR as the tests)",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// Backends and the per-test environment
// ---------------------------------------------------------------------------------------------

/// The database a control plane runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite under the control plane's data dir.
    Sqlite,
    /// A fresh database on the server named by `SLING_TEST_POSTGRES_URL`.
    Postgres,
}

/// Everything one test owns: a temporary root directory and, for Postgres, a database that is
/// dropped with it. Processes started from it write under `root`.
pub struct TestEnv {
    pub backend: Backend,
    /// `postgres://…/sling_e2e_<random>` for [`Backend::Postgres`]; `None` for SQLite.
    pub database_url: Option<String>,
    /// Kept (not deleted) when the test fails, so its logs and snapshots can be examined.
    root: Option<tempfile::TempDir>,
    // Dropped after `root`'s users; drops the database.
    _database: Option<PgDatabase>,
    // Dropped last: stops the private server.
    private_postgres: Option<PrivatePostgres>,
}

impl TestEnv {
    /// A fresh environment, or `None` (after printing why) when the test must be skipped: the
    /// Postgres variant without a reachable server outside CI. In CI (`CI=true`) an unreachable
    /// Postgres fails the test instead.
    pub async fn new(backend: Backend) -> Option<TestEnv> {
        let root = tempfile::Builder::new()
            .prefix("sling-e2e-")
            .tempdir()
            .expect("temp dir");
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => match PgDatabase::create().await {
                Ok(db) => Some(db),
                Err(e) => {
                    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
                    assert!(
                        !in_ci,
                        "Postgres is required in CI (CI=true) but unusable: {e:#}"
                    );
                    eprintln!(
                        "SKIP: Postgres variant skipped, {e:#} \
                         (set {POSTGRES_URL_ENV}, or run `bash .ci/run`)"
                    );
                    return None;
                }
            },
        };
        Some(TestEnv {
            backend,
            database_url: database.as_ref().map(|d| d.url.clone()),
            root: Some(root),
            _database: database,
            private_postgres: None,
        })
    }

    /// A Postgres environment on a [`PrivatePostgres`] server of its own, for scenarios that
    /// stop the database (the shared server is never stopped). `None` (after printing why) when
    /// no server can be started outside CI; in CI (`CI=true`) that fails the test instead.
    pub async fn with_private_postgres() -> Option<TestEnv> {
        let server = match PrivatePostgres::start().await {
            Ok(server) => server,
            Err(e) => {
                let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
                assert!(
                    !in_ci,
                    "a private Postgres server is required in CI (CI=true): {e:#}"
                );
                eprintln!("SKIP: cannot start a private Postgres server, {e:#}");
                return None;
            }
        };
        let root = tempfile::Builder::new()
            .prefix("sling-e2e-")
            .tempdir()
            .expect("temp dir");
        Some(TestEnv {
            backend: Backend::Postgres,
            database_url: Some(server.database_url.clone()),
            root: Some(root),
            _database: None,
            private_postgres: Some(server),
        })
    }

    /// The private server of an environment made by [`TestEnv::with_private_postgres`].
    pub fn private_postgres(&self) -> &PrivatePostgres {
        self.private_postgres
            .as_ref()
            .expect("an environment made by TestEnv::with_private_postgres")
    }

    /// The test's temporary root; every process directory lives under it.
    pub fn root(&self) -> &Path {
        self.root
            .as_ref()
            .expect("root lives as long as the env")
            .path()
    }

    /// A new, empty directory under the root.
    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.root().join(name);
        std::fs::create_dir_all(&dir).expect("create dir");
        dir
    }

    /// Starts `sling serve` with a new data dir.
    pub async fn start_control(&self, opts: ControlOptions) -> ControlPlane {
        ControlPlane::start(self, &self.dir("control"), opts).await
    }

    /// Starts `sling-proxy` with a new snapshot dir, following `control` if given.
    pub async fn start_proxy(&self, control: Option<&ControlPlane>) -> Proxy {
        let name = format!("proxy-{}", rand::random::<u32>());
        Proxy::start(self, &self.dir(&name), control.map(|c| c.url.as_str())).await
    }

    /// Runs `sling keys create` against this environment's database and returns the key.
    pub async fn create_key(&self, data_dir: &Path, team: &str, scopes: &str) -> String {
        let mut args: Vec<String> = vec![
            "keys".into(),
            "create".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        if let Some(url) = &self.database_url {
            args.extend(["--database-url".into(), url.clone()]);
        }
        args.extend([
            "--team".into(),
            team.into(),
            "--scopes".into(),
            scopes.into(),
        ]);
        let out = run_to_completion(&binary("sling"), &args).await;
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with("sk_"))
            .unwrap_or_else(|| panic!("`sling keys create` printed no sk_ line:\n{out}"))
            .to_owned()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(root) = self.root.take()
        {
            eprintln!("test files kept in {}", root.keep().display());
        }
    }
}

/// A database created for one test on the Postgres server, dropped (forcibly) with it.
struct PgDatabase {
    maintenance_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> anyhow::Result<PgDatabase> {
        let server =
            std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
        let maintenance_url = with_database(&server, "postgres")?;
        let name = format!("sling_e2e_{:016x}", rand::random::<u64>());
        psql(&maintenance_url, &format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("cannot create a database on {server}"))?;
        Ok(PgDatabase {
            url: with_database(&server, &name)?,
            maintenance_url,
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop cannot await. FORCE ends connections a killed child left.
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q", "-d", &self.maintenance_url, "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A Postgres server of its own (data dir, port, socket dir, trust auth on 127.0.0.1 only),
/// started with the system's `initdb`/`pg_ctl` as the `postgres` user, for scenarios that stop
/// and restart the database. Stopped (immediately) on drop; its files go with its temp dir.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// `postgres://postgres@127.0.0.1:PORT/sling`, a database created at start.
    pub database_url: String,
}

impl PrivatePostgres {
    /// initdb, start and `CREATE DATABASE sling`; an error when Postgres is not installed or
    /// cannot run (this needs root, for `runuser -u postgres`).
    pub async fn start() -> anyhow::Result<PrivatePostgres> {
        let bin = postgres_bin_dir()?;
        let dir = tempfile::Builder::new().prefix("sling-pg-").tempdir()?;
        let chown = std::process::Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .context("running chown")?;
        anyhow::ensure!(
            chown.success(),
            "chown postgres {} failed",
            dir.path().display()
        );
        // Restarted on the same port, so it must not be one the kernel may hand out meanwhile.
        let port = free_port();
        let server = PrivatePostgres {
            database_url: format!("postgres://postgres@127.0.0.1:{port}/sling"),
            bin,
            dir,
            port,
        };
        let data = server.data_dir();
        server
            .run_as_postgres(
                "initdb",
                &[
                    "-D",
                    &data,
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
            )
            .await?;
        server.resume().await?;
        psql(
            &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            "CREATE DATABASE sling",
        )
        .await?;
        Ok(server)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `pg_ctl stop -m fast`: open connections are cut, the server is gone until [`resume`].
    ///
    /// [`resume`]: PrivatePostgres::resume
    pub async fn stop(&self) -> anyhow::Result<()> {
        self.run_as_postgres(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"],
        )
        .await
    }

    /// `pg_ctl start` on the same port, waiting until it accepts connections.
    pub async fn resume(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run_as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        )
        .await
    }

    async fn run_as_postgres(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(program);
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&program)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {} as postgres", program.display()))?;
        if !out.status.success() {
            bail!(
                "{} {args:?} failed: {}{}",
                program.display(),
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `/usr/lib/postgresql/<newest version>/bin`, when it holds `initdb`.
fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .with_context(|| format!("{} (is the PostgreSQL server installed?)", root.display()))?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .with_context(|| format!("no {}/<version>/bin/initdb", root.display()))
}

async fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .await
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !out.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `url` with its database (path) replaced by `db`, query string kept.
pub fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base
        .find("://")
        .map(|i| i + 3)
        .context("database URL without scheme")?;
    let host_part = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    let mut out = format!("{host_part}/{db}");
    if let Some(q) = query {
        write!(out, "?{q}").unwrap();
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// A running child whose stdout has announced its listeners.
pub struct Process {
    name: String,
    child: Child,
    /// Every stdout line so far (the reader task keeps draining the pipe).
    stdout: Arc<Mutex<Vec<String>>>,
    stderr_path: PathBuf,
}

impl Process {
    /// Spawns `program args` with stderr appended to `<log_dir>/<name>.stderr.log` and waits
    /// until stdout has printed `listening <key>=<url>` for every key in `listeners`.
    pub async fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log_dir: &Path,
        listeners: &[&str],
    ) -> (Process, HashMap<String, String>) {
        let stderr_path = log_dir.join(format!("{name}.stderr.log"));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .expect("open stderr log");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        // The child sees only the configuration the test passes: no stray SLING_* from the
        // developer's shell.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SLING_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
        let stdout_pipe = child.stdout.take().expect("piped stdout");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        {
            let stdout = stdout.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout_pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    stdout.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut process = Process {
            name: name.to_owned(),
            child,
            stdout,
            stderr_path,
        };
        let mut found = HashMap::new();
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        while listeners.iter().any(|l| !found.contains_key(*l)) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => {
                    if let Some((key, url)) = line
                        .trim()
                        .strip_prefix("listening ")
                        .and_then(|rest| rest.split_once('='))
                    {
                        found.insert(key.to_owned(), url.trim().to_owned());
                    }
                }
                Ok(None) => {
                    let status = process.child.wait().await;
                    panic!(
                        "{name} exited before listening ({status:?}); args {args:?}\n{}",
                        process.report()
                    );
                }
                Err(_) => panic!(
                    "{name} did not print `listening {listeners:?}` within {STARTUP_TIMEOUT:?}; \
                     args {args:?}\n{}",
                    process.report()
                ),
            }
        }
        (process, found)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }

    /// Every line the child printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The child's stderr (its logs) so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit; panics if it takes longer than [`SHUTDOWN_TIMEOUT`].
    /// Returns the exit status and how long the exit took.
    pub async fn sigterm(&mut self) -> (ExitStatus, Duration) {
        let pid = self.pid();
        let started = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, self.child.wait()).await {
            Ok(status) => (status.expect("wait"), started.elapsed()),
            Err(_) => panic!(
                "{} did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM\n{}",
                self.name,
                self.report()
            ),
        }
    }

    /// SIGKILL: the process dies without any chance to clean up.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// The last lines of stderr and all of stdout, for failure messages.
    pub fn report(&self) -> String {
        let stderr = self.stderr();
        // Backtrace frames would crowd out the messages that explain them.
        let tail: Vec<&str> = stderr
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                !(t.starts_with("at ")
                    || t.split_once(": ")
                        .is_some_and(|(n, _)| n.parse::<u32>().is_ok()))
            })
            .rev()
            .take(60)
            .collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr (last {} lines, {}) ---\n{}\n",
            self.name,
            self.stdout_lines().join("\n"),
            self.name,
            tail.len(),
            self.stderr_path.display(),
            tail.join("\n")
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.report());
        }
    }
}

/// Runs a one-shot command (`sling keys create`, `sling migrate`) and returns its stdout;
/// panics with its stderr when it fails.
pub async fn run_to_completion(program: &Path, args: &[String]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SLING_") {
            cmd.env_remove(key);
        }
    }
    let out = tokio::time::timeout(STARTUP_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} hung", program.display()))
        .expect("spawn");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed with {}\nstdout:\n{stdout}\nstderr:\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

// ---------------------------------------------------------------------------------------------
// The control plane
// ---------------------------------------------------------------------------------------------

/// Knobs of `sling serve` the scenarios turn.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    pub snapshot_interval_ms: u64,
    pub snapshot_after_changes: u64,
    /// More flags, appended as given (e.g. `--acme-directory …`).
    pub extra_args: Vec<String>,
}

impl Default for ControlOptions {
    /// Snapshots rarely: scenarios that need one ask for it, the rest run on the feed alone.
    fn default() -> Self {
        ControlOptions {
            snapshot_interval_ms: 60_000,
            snapshot_after_changes: 100_000,
            extra_args: Vec::new(),
        }
    }
}

/// A running `sling serve`.
pub struct ControlPlane {
    /// `http://127.0.0.1:PORT`, the API listener (REST API, fleet endpoints, health).
    pub url: String,
    /// The admin key the first start wrote to `<data_dir>/admin-key` (scope `*`).
    pub admin_key: String,
    pub data_dir: PathBuf,
    pub process: Process,
    args: Vec<String>,
}

impl ControlPlane {
    pub async fn start(env: &TestEnv, data_dir: &Path, opts: ControlOptions) -> ControlPlane {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--api-listen".into(),
            "127.0.0.1:0".into(),
            "--fleet-token".into(),
            FLEET_TOKEN.into(),
            "--default-domain".into(),
            "localhost".into(),
            // The proxy's port is not known yet, and the proxy ignores ports when matching hosts.
            "--short-url-base".into(),
            "http://localhost".into(),
            "--snapshot-interval-ms".into(),
            opts.snapshot_interval_ms.to_string(),
            "--snapshot-after-changes".into(),
            opts.snapshot_after_changes.to_string(),
        ];
        if let Some(url) = &env.database_url {
            args.extend(["--database-url".into(), url.clone()]);
        }
        args.extend(opts.extra_args);
        let (process, urls) =
            Process::spawn("sling-serve", &binary("sling"), &args, env.root(), &["api"]).await;
        let admin_key = wait_for_admin_key(data_dir).await;
        // A restart listens where this start did, so a proxy's `--control-url` stays valid.
        let bound = urls["api"]
            .strip_prefix("http://")
            .expect("api listener is http://")
            .to_owned();
        for arg in &mut args {
            if arg == "127.0.0.1:0" {
                arg.clone_from(&bound);
            }
        }
        ControlPlane {
            url: urls["api"].clone(),
            admin_key,
            data_dir: data_dir.to_owned(),
            process,
            args,
        }
    }

    /// Starts the control plane again with the same arguments, on the same port (the previous
    /// process must be gone: killed or stopped).
    pub async fn restart(&mut self, env: &TestEnv) {
        let (process, urls) = Process::spawn(
            "sling-serve",
            &binary("sling"),
            &self.args,
            env.root(),
            &["api"],
        )
        .await;
        self.process = process;
        self.url = urls["api"].clone();
    }

    /// An API client authenticated with the admin key.
    pub fn api(&self) -> Api {
        Api::new(&self.url, &self.admin_key)
    }

    /// The snapshots this control plane has published.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }
}

/// Waits (up to [`STARTUP_TIMEOUT`]) for `<data_dir>/admin-key` to hold a key: the first start
/// creates it just after binding its listeners.
pub async fn wait_for_admin_key(data_dir: &Path) -> String {
    let path = data_dir.join("admin-key");
    let written = wait_until(STARTUP_TIMEOUT, || async {
        std::fs::read_to_string(&path).is_ok_and(|k| !k.trim().is_empty())
    })
    .await;
    assert!(written, "{} was never written", path.display());
    read_admin_key(data_dir)
}

/// Reads `<data_dir>/admin-key`, the key the first start created.
pub fn read_admin_key(data_dir: &Path) -> String {
    let path = data_dir.join("admin-key");
    let key = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let key = key.trim().to_owned();
    assert!(!key.is_empty(), "{} is empty", path.display());
    key
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

/// A running `sling-proxy`.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`, where redirects are served.
    pub url: String,
    /// `http://127.0.0.1:PORT`, /healthz, /readyz, /metrics.
    pub admin_url: String,
    /// `https://127.0.0.1:PORT` when started with `--tls-listen`.
    pub tls_url: Option<String>,
    pub snapshot_dir: PathBuf,
    pub process: Process,
    log_dir: PathBuf,
    client: reqwest::Client,
    /// Flags beyond the standard ones, given again on a restart.
    extra_args: Vec<String>,
}

impl Proxy {
    /// Starts a proxy on `snapshot_dir`, following `control_url` if given (else serving only
    /// the local snapshot).
    pub async fn start(env: &TestEnv, snapshot_dir: &Path, control_url: Option<&str>) -> Proxy {
        Self::spawn(env.root(), snapshot_dir, control_url, &[]).await
    }

    /// [`Proxy::start`] with more flags (e.g. `--tls-listen 127.0.0.1:0 --tls-cert …`); with
    /// `--tls-listen` it also waits for the `listening tls=…` line.
    pub async fn start_with_args(
        env: &TestEnv,
        snapshot_dir: &Path,
        control_url: Option<&str>,
        extra_args: &[String],
    ) -> Proxy {
        Self::spawn(env.root(), snapshot_dir, control_url, extra_args).await
    }

    async fn spawn(
        log_dir: &Path,
        snapshot_dir: &Path,
        control_url: Option<&str>,
        extra_args: &[String],
    ) -> Proxy {
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--admin-listen".into(),
            "127.0.0.1:0".into(),
            "--snapshot-dir".into(),
            snapshot_dir.display().to_string(),
            "--fleet-token".into(),
            FLEET_TOKEN.into(),
            "--default-domain".into(),
            "localhost".into(),
        ];
        if let Some(url) = control_url {
            args.extend(["--control-url".into(), url.to_owned()]);
        }
        args.extend(extra_args.iter().cloned());
        let tls = extra_args.iter().any(|a| a == "--tls-listen");
        let listeners: &[&str] = if tls {
            &["proxy", "admin", "tls"]
        } else {
            &["proxy", "admin"]
        };
        let (process, urls) = Process::spawn(
            "sling-proxy",
            &binary("sling-proxy"),
            &args,
            log_dir,
            listeners,
        )
        .await;
        Proxy {
            url: urls["proxy"].clone(),
            admin_url: urls["admin"].clone(),
            tls_url: urls.get("tls").cloned(),
            snapshot_dir: snapshot_dir.to_owned(),
            process,
            log_dir: log_dir.to_owned(),
            client: http_client(),
            extra_args: extra_args.to_vec(),
        }
    }

    /// SIGTERM (asserting a clean exit), then a new proxy on the same snapshot dir.
    pub async fn restart(mut self, control_url: Option<&str>) -> Proxy {
        self.stop().await;
        self.start_again(control_url).await
    }

    /// SIGTERM, asserting a clean exit.
    pub async fn stop(&mut self) {
        let (status, _) = self.process.sigterm().await;
        assert!(status.success(), "proxy exited with {status} on SIGTERM");
    }

    /// A new proxy on this (stopped) proxy's snapshot dir.
    pub async fn start_again(self, control_url: Option<&str>) -> Proxy {
        Self::spawn(
            &self.log_dir,
            &self.snapshot_dir,
            control_url,
            &self.extra_args,
        )
        .await
    }

    /// `GET /{slug}` with `Host: localhost`.
    pub async fn get(&self, slug: &str) -> Answer {
        get_short(&self.client, &self.url, slug).await
    }

    /// Polls `GET /{slug}` until `pred` holds; panics with the last answer after
    /// [`PROPAGATION_TIMEOUT`].
    pub async fn wait_for(&self, slug: &str, what: &str, pred: impl Fn(&Answer) -> bool) -> Answer {
        let deadline = Instant::now() + PROPAGATION_TIMEOUT;
        let (ok, last) = loop {
            let answer = self.get(slug).await;
            if pred(&answer) {
                break (true, answer);
            }
            if Instant::now() >= deadline {
                break (false, answer);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert!(
            ok,
            "/{slug} never became {what} within {PROPAGATION_TIMEOUT:?}; last answer {last:?}"
        );
        last
    }

    /// Waits until `/{slug}` redirects to `destination`.
    pub async fn wait_for_redirect(&self, slug: &str, destination: &str) {
        self.wait_for(slug, &format!("a redirect to {destination}"), |a| {
            a.is_redirect_to(destination)
        })
        .await;
    }

    /// Waits until `/{slug}` answers `status`.
    pub async fn wait_for_status(&self, slug: &str, status: u16) {
        self.wait_for(slug, &format!("{status}"), |a| a.status == status)
            .await;
    }

    /// The admin listener's `path` (e.g. `/metrics`): status and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        get_text(&self.client, &format!("{}{path}", self.admin_url)).await
    }
}

/// `GET {proxy_url}/{slug}` with `Host: localhost` (the default domain), not following redirects.
pub async fn get_short(client: &reqwest::Client, proxy_url: &str, slug: &str) -> Answer {
    let resp = client
        .get(format!("{proxy_url}/{slug}"))
        .header(reqwest::header::HOST, "localhost")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /{slug} on the proxy: {e}"));
    Answer {
        status: resp.status().as_u16(),
        location: resp
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| v.to_str().expect("ascii Location").to_owned()),
    }
}

/// What the proxy answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
}

impl Answer {
    pub fn is_redirect_to(&self, destination: &str) -> bool {
        (300..400).contains(&self.status) && self.location.as_deref() == Some(destination)
    }
}

/// The snapshot files in `dir` that verify, newest first, decoded.
pub fn verified_snapshots(
    dir: &Path,
) -> Vec<(
    PathBuf,
    sling_shared::snapshot::Header,
    sling_shared::snapshot::SnapshotBody,
)> {
    let Ok(files) = sling_shared::snapshot::list_files(dir) else {
        return Vec::new();
    };
    files
        .into_iter()
        .filter_map(|(_, path)| {
            let bytes = std::fs::read(&path).ok()?;
            let (header, body) = sling_shared::snapshot::decode(&bytes).ok()?;
            Some((path, header, body))
        })
        .collect()
}

/// Whether a snapshot body holds every slug in `slugs` (on any domain).
pub fn snapshot_contains(body: &sling_shared::snapshot::SnapshotBody, slugs: &[String]) -> bool {
    slugs
        .iter()
        .all(|s| body.domains.values().any(|d| d.links.contains_key(s)))
}

/// Waits until the control plane has published a snapshot that satisfies `pred`, makes one more
/// change so that the proxy hears of it on the feed at once, and waits until the proxy has
/// stored it. (Without a change, the proxy may only learn of it at the end of its long poll;
/// the e2e test `an_idle_proxy_fetches_each_new_snapshot` covers that case.)
pub async fn snapshot_reaches_proxy(
    control: &ControlPlane,
    proxy: &Proxy,
    what: &str,
    pred: impl Fn(&sling_shared::snapshot::SnapshotBody) -> bool,
) {
    let newest_matches = |dir: &Path| {
        verified_snapshots(dir)
            .first()
            .is_some_and(|(_, _, body)| pred(body))
    };
    assert!(
        wait_until(Duration::from_secs(20), || async {
            newest_matches(&control.snapshot_dir())
        })
        .await,
        "the control plane never published a snapshot {what}"
    );
    control
        .api()
        .create_link(&unique_destination("nudge"), None)
        .await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            newest_matches(&proxy.snapshot_dir)
        })
        .await,
        "the proxy never stored a snapshot {what} in {}",
        proxy.snapshot_dir.display()
    );
}

// ---------------------------------------------------------------------------------------------
// `sling up`
// ---------------------------------------------------------------------------------------------

/// A running `sling up`: control plane and proxy in one process.
pub struct AllInOne {
    pub api_url: String,
    pub proxy_url: String,
    pub proxy_admin_url: String,
    pub data_dir: PathBuf,
    pub process: Process,
}

impl AllInOne {
    pub async fn start(env: &TestEnv) -> AllInOne {
        let data_dir = env.dir("up");
        let mut args: Vec<String> = vec![
            "up".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--api-listen".into(),
            "127.0.0.1:0".into(),
            "--proxy-listen".into(),
            "127.0.0.1:0".into(),
            "--proxy-admin-listen".into(),
            "127.0.0.1:0".into(),
        ];
        if let Some(url) = &env.database_url {
            args.extend(["--database-url".into(), url.clone()]);
        }
        let (process, urls) = Process::spawn(
            "sling-up",
            &binary("sling"),
            &args,
            env.root(),
            &["api", "proxy", "admin"],
        )
        .await;
        AllInOne {
            api_url: urls["api"].clone(),
            proxy_url: urls["proxy"].clone(),
            proxy_admin_url: urls["admin"].clone(),
            data_dir,
            process,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The REST API
// ---------------------------------------------------------------------------------------------

/// The fields of a link object the scenarios look at.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub id: String,
    pub slug: String,
    pub short_url: String,
    pub destination_url: String,
    #[serde(default)]
    pub active: Option<bool>,
}

/// A response from the REST API: status and parsed JSON body (`Null` for an empty body).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

impl ApiResponse {
    /// `data` of a success envelope, asserting the status is 2xx and `success` is true.
    pub fn data(&self) -> &Value {
        assert!(
            (200..300).contains(&self.status) && self.body["success"] == json!(true),
            "expected a success envelope, got {} {}",
            self.status,
            self.body
        );
        &self.body["data"]
    }

    /// `error.code` of an error envelope.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// A REST API client holding one key.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub key: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, key: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            client: http_client(),
        }
    }

    /// Sends `method /api/v1{path}` with the key as a Bearer token and an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> ApiResponse {
        let mut req = self
            .client
            .request(method.clone(), format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        ApiResponse { status, body }
    }

    /// `POST /links`, asserting 201/200.
    pub async fn create_link(&self, destination: &str, slug: Option<&str>) -> Link {
        let mut body = json!({ "destinationUrl": destination });
        if let Some(slug) = slug {
            body["slug"] = json!(slug);
        }
        let resp = self.call(reqwest::Method::POST, "/links", Some(body)).await;
        assert!(
            resp.status == 201 || resp.status == 200,
            "create {destination}: {} {}",
            resp.status,
            resp.body
        );
        serde_json::from_value(resp.data().clone()).expect("link object")
    }

    /// `PATCH /links/{id}` with `fields`, returning the updated link.
    pub async fn update_link(&self, id: &str, fields: Value) -> Link {
        let resp = self
            .call(
                reqwest::Method::PATCH,
                &format!("/links/{id}"),
                Some(fields),
            )
            .await;
        serde_json::from_value(resp.data().clone()).expect("link object")
    }

    /// `POST /links/{id}/{action}` (enable, disable, archive, unarchive), asserting success.
    pub async fn link_action(&self, id: &str, action: &str) -> Link {
        let resp = self
            .call(
                reqwest::Method::POST,
                &format!("/links/{id}/{action}"),
                None,
            )
            .await;
        serde_json::from_value(resp.data().clone()).expect("link object")
    }

    /// `DELETE /links/{id}`, asserting 204.
    pub async fn delete_link(&self, id: &str) {
        let resp = self
            .call(reqwest::Method::DELETE, &format!("/links/{id}"), None)
            .await;
        assert_eq!(resp.status, 204, "delete {id}: {}", resp.body);
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// An HTTP client that never follows redirects (the tests look at the 3xx itself) and ignores
/// any proxy settings in the environment.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// `GET url` → (status, body text).
pub async fn get_text(client: &reqwest::Client, url: &str) -> (u16, String) {
    let resp = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Polls `cond` every 5 ms until it returns true (→ `true`) or `timeout` passes (→ `false`).
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A destination URL unique to this call, so one test's links never satisfy another's checks.
pub fn unique_destination(label: &str) -> String {
    format!("https://example.com/{label}/{:016x}", rand::random::<u64>())
}

/// A slug unique to this call (valid: letters, digits, `-`).
pub fn unique_slug(label: &str) -> String {
    format!("{label}-{:08x}", rand::random::<u32>())
}

/// Median, p99 and max of a set of durations (sorted in place).
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    assert!(!samples.is_empty());
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), samples[samples.len() - 1])
}

/// Defines, for each `async fn scenario(backend: Backend)` named, a module with two tests,
/// `scenario::sqlite` and `scenario::postgres`, so every story runs on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::Backend::Postgres).await
            }
        }
    )*};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_swapped_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
    }

    /// The Postgres variant's database exists while the environment lives and is gone after.
    #[tokio::test]
    async fn postgres_databases_live_as_long_as_their_test() {
        let Some(env) = TestEnv::new(Backend::Postgres).await else {
            return;
        };
        let url = env.database_url.clone().unwrap();
        assert!(url.contains("/sling_e2e_"), "{url}");
        psql(&url, "SELECT 1").await.unwrap();
        drop(env);
        assert!(psql(&url, "SELECT 1").await.is_err(), "{url} still exists");
    }

    #[test]
    fn percentiles_pick_ranks() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let (p50, p99, max) = percentiles(&mut v);
        assert_eq!(
            (p50, p99, max),
            (
                Duration::from_millis(51),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
    }
}
