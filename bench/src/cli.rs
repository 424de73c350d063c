//! The command line: one subcommand per scenario, options shared by all of them in [`Common`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sling-bench",
    version,
    about = "Load-testing harness: sling against nginx on this machine",
    long_about = "Load-testing harness: sling against nginx on this machine.\n\n\
        Each scenario builds its data, starts what it measures on 127.0.0.1, drives load, stops \
        everything it started and writes report.json, report.md and SVG charts under \
        bench/results/<scenario>-<timestamp>/.\n\n\
        Needs: wrk and nginx (Debian packages `wrk`, `nginx`), taskset (`util-linux`), and the \
        release binaries (built first with `cargo build --release --bin sling-proxy --bin sling` \
        unless --no-build)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// sling against nginx: the same N links, closed-loop (wrk) and open-loop (fixed rate) runs,
    /// alternating A B A B.
    Redirect(RedirectArgs),
    /// Redirect load against sling while the control plane publishes a new snapshot every 100 ms,
    /// against the same load without swaps.
    Swap(SwapArgs),
    /// Create → first redirect latency through the API and the change feed.
    Propagate(PropagateArgs),
    /// Snapshot build time, file size, proxy start-to-ready time and resident memory for 1M and
    /// 10M links.
    Memory(MemoryArgs),
    /// Proxy throughput with click tracking on and off (clicks really shipped to `sling serve`),
    /// and the control plane's click-ingest rate on SQLite and Postgres.
    Clicks(ClicksArgs),
    /// API create and list latency and throughput on SQLite and Postgres.
    Api(ApiArgs),
    /// sling against nginx over HTTPS with the same certificate: full TLS handshakes per second
    /// (a new connection per request, no session reuse) and redirects on keep-alive connections.
    Tls(TlsArgs),
    /// Internal: the open-loop load generator, run by the harness under taskset.
    #[command(hide = true)]
    OpenLoopWorker(OpenLoopArgs),
    /// Internal: the full-handshake load generator, run by the harness under taskset.
    #[command(hide = true)]
    HandshakeWorker(HandshakeArgs),
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Where reports go (a `<scenario>-<timestamp>/` directory is created inside).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub out_dir: PathBuf,
    /// Directory holding `sling-proxy` and `sling`. Default: `$CARGO_TARGET_DIR/release` (or the
    /// workspace's `target/release`).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Do not run `cargo build --release` for the binaries first.
    #[arg(long)]
    pub no_build: bool,
    /// Parent of the scratch directory (snapshots, nginx config and map, logs).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the scratch directory instead of deleting it at the end.
    #[arg(long)]
    pub keep_work: bool,
    /// Seed for slugs and for the load generator's choice of slugs.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// CPU the server under test is pinned to (`taskset`).
    #[arg(long, default_value_t = 1)]
    pub server_cpu: usize,
    /// CPU the load generator (and the control plane, where one runs) is pinned to.
    #[arg(long, default_value_t = 0)]
    pub client_cpu: usize,
    /// Do not pin anything (for machines with one core; the report says so).
    #[arg(long)]
    pub no_pin: bool,
}

/// Load shape shared by the scenarios that drive redirect load.
#[derive(Args, Debug, Clone)]
pub struct Load {
    /// Open connections (wrk -c and the open-loop generator).
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// Seconds each measured run lasts.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of load before each measured run, not recorded.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// How many distinct slugs the load picks from at random.
    #[arg(long, default_value_t = 100_000)]
    pub sample: usize,
}

impl Load {
    /// Open-loop arguments for this load against `target` at `rate`.
    pub fn open_loop(&self, target: String, slugs: PathBuf, rate: u64, seed: u64) -> OpenLoopArgs {
        OpenLoopArgs {
            target,
            slugs,
            rate,
            connections: self.connections,
            duration: self.duration,
            warmup: self.warmup,
            seed,
            timeout_ms: 5_000,
        }
    }
}

#[derive(Args, Debug)]
pub struct RedirectArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: Load,
    /// Links in the snapshot and in the nginx map.
    #[arg(long, default_value_t = 1_000_000)]
    pub links: u64,
    /// sling/nginx pairs of closed-loop runs (and again of open-loop runs).
    #[arg(long, default_value_t = 5)]
    pub pairs: usize,
    /// Open-loop request rate (requests/s). Default: half of nginx's median closed-loop rate.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Skip the open-loop runs.
    #[arg(long)]
    pub no_open_loop: bool,
}

#[derive(Args, Debug)]
pub struct SwapArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: Load,
    /// Links created through the API before the load starts (the set the load picks from).
    #[arg(long, default_value_t = 10_000)]
    pub links: u64,
    /// Pairs of runs: one without swaps, one with.
    #[arg(long, default_value_t = 5)]
    pub pairs: usize,
    /// The control plane's snapshot interval, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub swap_interval_ms: u64,
    /// During swap runs, a writer creates one link through the API this often (milliseconds),
    /// so that every interval has a change to publish.
    #[arg(long, default_value_t = 20)]
    pub write_interval_ms: u64,
    /// The proxy's click tracking. Off by default: with it on, the control plane (SQLite, on the
    /// core it shares with wrk) also ingests every redirect as a click, which the `clicks`
    /// scenario measures on its own; here it only slows the writes that cause the swaps.
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub clicks: Switch,
    /// Open-loop request rate (requests/s). Default: a quarter of the quiet runs' median
    /// closed-loop rate (the open-loop worker shares its core with the control plane).
    #[arg(long)]
    pub rate: Option<u64>,
    /// CPU priority of the control plane, which shares the client core with the load generator.
    /// `idle` (SCHED_IDLE): publishing uses only what the load generator leaves, so it cannot
    /// delay the generator's own sends. `normal`: it competes with them.
    #[arg(long, value_enum, default_value_t = ControlPriority::Idle)]
    pub control_priority: ControlPriority,
    /// With `--control-priority idle`, do not also put the control plane in a cgroup with
    /// `cpu.idle = 1` (made where the harness can: root and a cgroup `cpu` controller). On EEVDF
    /// kernels `SCHED_IDLE` alone still lets it run while the load generator waits.
    #[arg(long)]
    pub no_idle_cgroup: bool,
}

#[derive(Args, Debug)]
pub struct PropagateArgs {
    #[command(flatten)]
    pub common: Common,
    /// Links created, one after another.
    #[arg(long, default_value_t = 1_000)]
    pub links: u64,
    /// Give up on one link after this many milliseconds without a redirect.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

#[derive(Args, Debug)]
pub struct MemoryArgs {
    #[command(flatten)]
    pub common: Common,
    /// Link counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    pub sizes: Vec<u64>,
    /// Seconds of redirect load before reading memory (so mapped pages are touched).
    #[arg(long, default_value_t = 5)]
    pub load_seconds: u64,
    /// Connections of that load.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Distinct slugs that load picks from.
    #[arg(long, default_value_t = 100_000)]
    pub sample: usize,
}

/// A feature turned on or off (spelled as the proxy's own flags spell it).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    pub fn name(self) -> &'static str {
        match self {
            Switch::On => "on",
            Switch::Off => "off",
        }
    }
}

/// How the control plane is scheduled beside the load generator.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlPriority {
    Idle,
    Normal,
}

/// A control plane's database.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where a Postgres-backed control plane keeps its data.
#[derive(Args, Debug, Clone)]
pub struct Postgres {
    /// Postgres database for the runs on Postgres, used as is (not created, not dropped).
    /// Default: a fresh database created with `psql` on postgres://postgres@127.0.0.1:5432 and
    /// dropped at the end.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The server the fresh database is created on (when no --database-url).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres_server: String,
}

#[derive(Args, Debug)]
pub struct ClicksArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: Load,
    #[command(flatten)]
    pub postgres: Postgres,
    /// Links created through the API for the throughput runs (the set the load picks from).
    #[arg(long, default_value_t = 10_000)]
    pub links: u64,
    /// Pairs of throughput runs: clicks on, clicks off.
    #[arg(long, default_value_t = 5)]
    pub pairs: usize,
    /// The control plane's database during the throughput runs.
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    pub throughput_db: Backend,
    /// CPU priority of the control plane during the throughput runs. `idle` (SCHED_IDLE): it gets
    /// only what the load generator leaves of their shared core, as if it ran on its own host
    /// (the proxy spools what it cannot deliver, and delivers it after the run). `normal`: it
    /// competes with the load generator, so the on/off ratio also charges the proxy for ingest.
    #[arg(long, value_enum, default_value_t = ControlPriority::Idle)]
    pub control_priority: ControlPriority,
    /// The proxy's --click-batch-size (default: the proxy's own).
    #[arg(long)]
    pub click_batch_size: Option<usize>,
    /// Databases the ingest runs measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "postgres,sqlite"
    )]
    pub ingest_dbs: Vec<Backend>,
    /// Concurrent senders POSTing click batches in an ingest case that names no number.
    #[arg(long, default_value_t = 4)]
    pub senders: u32,
    /// Ingest runs per database, comma-separated `TIMES:EVENTS[:SENDERS]`: EVENTS per batch, event
    /// times `recent` (the last two seconds, as a proxy stamps them) or `hour` (random over the
    /// last hour: little for rollups to aggregate), SENDERS concurrent closed-loop senders (a
    /// fleet's proxies; default `--senders`). The target is judged on the first Postgres case:
    /// 16 senders keep the single writer's groups full, 4 cannot (each waits for its answer).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "recent:5000:16,recent:5000,recent:1000,hour:1000"
    )]
    pub ingest_cases: Vec<String>,
    /// Links the ingest events refer to (created through the API first).
    #[arg(long, default_value_t = 1_000)]
    pub ingest_links: u64,
    /// Skip the proxy throughput runs (on/off).
    #[arg(long)]
    pub no_throughput: bool,
    /// Skip the ingest runs.
    #[arg(long)]
    pub no_ingest: bool,
}

#[derive(Args, Debug)]
pub struct ApiArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub postgres: Postgres,
    /// Databases to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sqlite,postgres"
    )]
    pub dbs: Vec<Backend>,
    /// Concurrent API clients (closed loop: each sends its next request when the last answered).
    #[arg(long, default_value_t = 16)]
    pub clients: u32,
    /// Seconds each measured run (create, list) lasts.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of load before each measured run, not recorded.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Links present during the list runs (topped up with `POST /api/v1/links/bulk` after the
    /// create runs).
    #[arg(long, default_value_t = 100_000)]
    pub list_links: u64,
    /// `perPage` of the list requests.
    #[arg(long, default_value_t = 100)]
    pub per_page: u64,
}

#[derive(Args, Debug)]
pub struct TlsArgs {
    #[command(flatten)]
    pub common: Common,
    /// The keep-alive runs (wrk over HTTPS): connections, threads, duration, warm-up, sample.
    /// Duration and warm-up apply to the handshake runs too.
    #[command(flatten)]
    pub load: Load,
    /// Links in the snapshot and in the nginx map.
    #[arg(long, default_value_t = 1_000)]
    pub links: u64,
    /// sling/nginx pairs of handshake runs (and again of keep-alive runs).
    #[arg(long, default_value_t = 3)]
    pub pairs: usize,
    /// Concurrent connections of the full-handshake client.
    #[arg(long, default_value_t = 32)]
    pub handshake_concurrency: u32,
    /// Also measure full handshakes with TLS 1.2 (the client offers only 1.2).
    #[arg(long)]
    pub tls12: bool,
    /// Keep sling's click tracking on (spooled to disk: no control plane runs). Off by default:
    /// this scenario measures TLS termination; `redirect` and `clicks` measure the click path.
    #[arg(long)]
    pub clicks_on: bool,
}

#[derive(Args, Debug, Clone)]
pub struct HandshakeArgs {
    /// Target `host:port`.
    #[arg(long)]
    pub target: String,
    /// Server name sent in the ClientHello and the Host header.
    #[arg(long)]
    pub sni: String,
    /// File with one slug per line.
    #[arg(long)]
    pub slugs: PathBuf,
    /// Connections in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u32,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Per-connection timeout in milliseconds (a timed-out connection is an error).
    #[arg(long, default_value_t = 5_000)]
    pub timeout_ms: u64,
    /// Offer only TLS 1.2.
    #[arg(long)]
    pub tls12: bool,
}

#[derive(Args, Debug, Clone)]
pub struct OpenLoopArgs {
    /// Target `host:port`.
    #[arg(long)]
    pub target: String,
    /// File with one slug per line.
    #[arg(long)]
    pub slugs: PathBuf,
    /// Requests per second, spread evenly over the connections.
    #[arg(long)]
    pub rate: u64,
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Per-request timeout in milliseconds (a timed-out request is an error).
    #[arg(long, default_value_t = 5_000)]
    pub timeout_ms: u64,
}
