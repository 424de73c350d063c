//! Open-loop load at a fixed rate, without coordinated omission.
//!
//! Debian has wrk but not wrk2, so the harness brings its own generator: `C` HTTP/1.1 keep-alive
//! connections and one pacer. Request `n` is due at `start + n / rate` and goes to connection
//! `n mod C`. A request's latency is measured from its *intended* send time, so when the server
//! stalls, every request that should have been sent during the stall counts the wait — exactly
//! what a closed-loop tool hides. Two more histograms separate the parts: service time (actual
//! send → response) and send lag (intended → actual send: the generator's own wake-up delay plus
//! any queueing behind a slow answer on the same connection). Latencies go into HDR histograms
//! (3 significant digits).
//!
//! The pacer is a thread that sleeps with `nanosleep`, not a task on tokio's timer: tokio's wheel
//! rounds every deadline up to the next millisecond, so at 50,000 req/s it released ~50 requests
//! at once each tick, and that burst (queueing in the generator and at the server) set both
//! sides' p50 (1.7 ms against nginx, 0.3 ms paced finely).
//!
//! The generator runs as a child process of the harness (`open-loop-worker`, hidden) on a
//! single-threaded runtime, pinned with taskset to the load generator's core like wrk.

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::cli::OpenLoopArgs;
use crate::http1;

const MARKER: &str = "SLING_BENCH_OPEN ";

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Percentiles {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Percentiles {
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            p9999_us: h.value_at_quantile(0.9999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// What one open-loop run measured (requests inside the measured window only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenLoopSummary {
    pub target_rate: u64,
    /// Responses in the window divided by its length.
    pub achieved_rate: f64,
    pub requests: u64,
    /// 3xx answers.
    pub redirects: u64,
    /// Any other status.
    pub errors_status: u64,
    /// Connection failures and timeouts.
    pub errors_io: u64,
    pub bytes: u64,
    /// Intended send time → response complete (the number to compare).
    pub latency: Percentiles,
    /// Actual send → response complete.
    pub service: Percentiles,
    /// Intended → actual send.
    pub send_lag: Percentiles,
}

impl OpenLoopSummary {
    pub fn errors(&self) -> u64 {
        self.errors_status + self.errors_io
    }

    /// Report cells, in the order of [`OpenLoopSummary::CELLS`].
    pub fn cells(&self) -> Vec<String> {
        use crate::report::ms;
        vec![
            format!("{:.0}", self.achieved_rate),
            ms(self.latency.p50_us as f64),
            ms(self.latency.p99_us as f64),
            ms(self.latency.p999_us as f64),
            ms(self.latency.max_us as f64),
            ms(self.service.p99_us as f64),
            ms(self.send_lag.p99_us as f64),
            self.errors().to_string(),
        ]
    }

    /// Column headers of [`OpenLoopSummary::cells`].
    pub const CELLS: [&'static str; 8] = [
        "achieved req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "service p99 ms",
        "send lag p99 ms",
        "errors",
    ];
}

/// Runs the worker as a pinned child process and returns its summary.
pub async fn run(pin: &[String], args: &OpenLoopArgs) -> anyhow::Result<OpenLoopSummary> {
    let me = std::env::current_exe().context("locating the bench executable")?;
    let mut cmd = match pin.split_first() {
        Some((first, rest)) => {
            let mut c = tokio::process::Command::new(first);
            c.args(rest).arg(&me);
            c
        }
        None => tokio::process::Command::new(&me),
    };
    cmd.arg("open-loop-worker")
        .args(["--target", &args.target, "--slugs"])
        .arg(&args.slugs)
        .args([
            "--rate",
            &args.rate.to_string(),
            "--connections",
            &args.connections.to_string(),
            "--duration",
            &args.duration.to_string(),
            "--warmup",
            &args.warmup.to_string(),
            "--seed",
            &args.seed.to_string(),
            "--timeout-ms",
            &args.timeout_ms.to_string(),
        ])
        .kill_on_drop(true);
    let out = cmd.output().await.context("running the open-loop worker")?;
    crate::procs::printed_summary(&out, MARKER, "the open-loop worker")
}

/// Entry point of `sling-bench open-loop-worker`.
pub fn worker_main(args: &OpenLoopArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.slugs)
        .with_context(|| format!("reading {}", args.slugs.display()))?;
    // Every request is formatted once, up front: the generator only writes bytes.
    let requests: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| http1::request(&format!("/{l}"), &args.target))
        .collect();
    anyhow::ensure!(
        !requests.is_empty(),
        "{} has no slugs",
        args.slugs.display()
    );
    anyhow::ensure!(
        args.rate > 0 && args.connections > 0,
        "rate and connections must be positive"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = rt.block_on(drive(args, std::sync::Arc::new(requests)))?;
    println!("{MARKER}{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// Per-connection tallies, merged at the end.
struct Tally {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    lag: Histogram<u64>,
    requests: u64,
    redirects: u64,
    errors_status: u64,
    errors_io: u64,
    bytes: u64,
    /// When the last measured request finished.
    last_done: Option<Instant>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        let h = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3);
        Ok(Tally {
            latency: h()?,
            service: h()?,
            lag: h()?,
            requests: 0,
            redirects: 0,
            errors_status: 0,
            errors_io: 0,
            bytes: 0,
            last_done: None,
        })
    }

    fn merge(&mut self, o: &Tally) -> anyhow::Result<()> {
        self.latency.add(&o.latency)?;
        self.service.add(&o.service)?;
        self.lag.add(&o.lag)?;
        self.requests += o.requests;
        self.redirects += o.redirects;
        self.errors_status += o.errors_status;
        self.errors_io += o.errors_io;
        self.bytes += o.bytes;
        self.last_done = self.last_done.max(o.last_done);
        Ok(())
    }
}

async fn drive(
    args: &OpenLoopArgs,
    requests: std::sync::Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<OpenLoopSummary> {
    let conns = u64::from(args.connections);
    let t0 = Instant::now() + Duration::from_millis(200);
    let measure_from = t0 + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut tasks = Vec::new();
    let mut queues = Vec::new();
    for c in 0..conns {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        queues.push(tx);
        let requests = requests.clone();
        let target = args.target.clone();
        let seed = args.seed.wrapping_mul(31).wrapping_add(c);
        let s = Schedule {
            measure_from,
            timeout,
        };
        tasks.push(tokio::spawn(async move {
            connection(&target, &requests, seed, s, rx).await
        }));
    }
    // When the pacer returns, the queues close and each connection ends after its last request.
    let rate = args.rate;
    tokio::task::spawn_blocking(move || pace(t0, rate, end, queues))
        .await
        .context("the open-loop pacer panicked")?;
    let mut total = Tally::new()?;
    for t in tasks {
        total.merge(&t.await.context("open-loop connection task panicked")??)?;
    }
    // A generator (or server) that falls behind finishes the window's requests late: the achieved
    // rate counts the time it really took.
    let window = total
        .last_done
        .map_or(0.0, |t| (t - measure_from).as_secs_f64())
        .max(Duration::from_secs(args.duration).as_secs_f64());
    Ok(OpenLoopSummary {
        target_rate: args.rate,
        achieved_rate: total.requests as f64 / window,
        requests: total.requests,
        redirects: total.redirects,
        errors_status: total.errors_status,
        errors_io: total.errors_io,
        bytes: total.bytes,
        latency: Percentiles::of(&total.latency),
        service: Percentiles::of(&total.service),
        send_lag: Percentiles::of(&total.lag),
    })
}

/// The shortest sleep of the pacer. On loopback every send that finds the server idle pays for
/// waking it (an IPI, a VM exit on a virtual machine), and at 50,000 req/s one wake-up per
/// request cost the generator's core ~20% more than one per 200 µs (~10 requests). 200 µs bounds
/// the send lag batching adds; tokio's millisecond tick added up to 1 ms with ~50 per burst.
const PACE_QUANTUM: Duration = Duration::from_micros(200);

#[derive(Clone, Copy)]
struct Schedule {
    measure_from: Instant,
    timeout: Duration,
}

/// Hands each request's intended send time to its connection when it is due: request `n` at
/// `start + n / rate`, to connection `n mod C`, until `end`. A connection still busy with an
/// earlier answer finds the next ones queued and sends them at once.
///
/// Runs on a thread of its own and sleeps with `nanosleep` (an hrtimer: it wakes within the
/// process's timer slack, 50 µs by default), not on tokio's timer: tokio's wheel rounds every
/// deadline up to the next millisecond tick. It wakes at most once per [`PACE_QUANTUM`].
fn pace(
    start: Instant,
    rate: u64,
    end: Instant,
    queues: Vec<tokio::sync::mpsc::UnboundedSender<Instant>>,
) {
    let due = |n: u64| {
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(rate);
        start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    };
    let mut n: u64 = 0;
    let mut next = start;
    let mut last_wake = start;
    while next < end {
        let wake = next.max(last_wake + PACE_QUANTUM);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
        // Everything due by now goes out in this wake-up.
        last_wake = Instant::now();
        while next <= last_wake && next < end {
            // A connection only ends once its queue closes, so the send cannot fail before then.
            let _ = queues[(n % queues.len() as u64) as usize].send(next);
            n += 1;
            next = due(n);
        }
    }
}

/// One connection: sends each request the pacer hands it. Requests whose intended time falls in
/// the measured window are recorded; a request that is late because the previous one was slow is
/// sent at once, and its latency still counts from its intended time.
async fn connection(
    target: &str,
    requests: &[Vec<u8>],
    seed: u64,
    s: Schedule,
    mut due: tokio::sync::mpsc::UnboundedReceiver<Instant>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conn: Option<http1::Conn> = None;
    while let Some(intended) = due.recv().await {
        let measured = intended >= s.measure_from;
        let request = &requests[rng.random_range(0..requests.len())];
        let sent = Instant::now();
        let outcome = tokio::time::timeout(s.timeout, async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert(http1::Conn::connect(target).await?),
            };
            c.exchange(request).await
        })
        .await;
        let done = Instant::now();
        let outcome = match outcome {
            Ok(Ok(answer)) => {
                if !conn.as_ref().is_some_and(http1::Conn::reusable) {
                    conn = None;
                }
                Some((answer.status, answer.body_len))
            }
            _ => {
                // Timed out or broke: start a fresh connection for the next request.
                conn = None;
                None
            }
        };
        if !measured {
            continue;
        }
        tally.requests += 1;
        tally.last_done = Some(done);
        match outcome {
            Some((status, len)) => {
                if (300..400).contains(&status) {
                    tally.redirects += 1;
                } else {
                    tally.errors_status += 1;
                }
                tally.bytes += len as u64;
                let us = |d: Duration| (d.as_micros() as u64).max(1);
                tally.latency.saturating_record(us(done - intended));
                tally.service.saturating_record(us(done - sent));
                tally.lag.saturating_record(us(sent - intended));
            }
            None => tally.errors_io += 1,
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_deals_every_due_request_round_robin() {
        let start = Instant::now();
        let end = start + Duration::from_millis(50);
        let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..4)
            .map(|_| tokio::sync::mpsc::unbounded_channel::<Instant>())
            .unzip();
        pace(start, 20_000, end, txs);
        // 50 ms at 20,000/s: requests 0..1000, 50 µs apart, request n on connection n mod 4.
        let mut total = 0;
        for (c, rx) in rxs.iter_mut().enumerate() {
            let mut k = 0u64;
            while let Ok(intended) = rx.try_recv() {
                let n = 4 * k + c as u64;
                assert_eq!(
                    intended,
                    start + Duration::from_micros(50 * n),
                    "request {n}"
                );
                k += 1;
                total += 1;
            }
        }
        assert_eq!(total, 1000);
    }

    #[test]
    fn pacer_hands_over_no_request_before_it_is_due() {
        let start = Instant::now();
        let end = start + Duration::from_millis(20);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        // Hand-over times are read on this side as the requests arrive.
        let pacer = std::thread::spawn(move || pace(start, 5_000, end, vec![tx]));
        let mut seen = 0;
        while let Some(intended) = rx.blocking_recv() {
            assert!(Instant::now() >= intended, "handed over before it was due");
            seen += 1;
        }
        pacer.join().unwrap();
        assert_eq!(seen, 100);
    }
}
