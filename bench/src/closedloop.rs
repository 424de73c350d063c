//! A closed-loop driver for request types wrk cannot make (authenticated JSON POSTs with a body
//! built per request): `clients` tasks in the harness, each sending its next request as soon as
//! the previous one answered, for a warm-up and then a measured window. Latency goes into one
//! HDR histogram per task (merged at the end); only requests *started* inside the measured window
//! count. Like any closed loop, its latencies understate stalls (coordinated omission); it
//! measures throughput and the latency of a saturated server.

use std::future::Future;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use crate::openloop::Percentiles;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClosedLoopSummary {
    pub clients: u32,
    /// Successful requests started in the measured window.
    pub requests: u64,
    pub errors: u64,
    /// The first error's message, to tell what went wrong.
    pub first_error: Option<String>,
    pub duration_secs: f64,
    pub requests_per_sec: f64,
    /// Of successful requests, send → answer.
    pub latency: Percentiles,
}

/// Runs `request(client, n)` from `clients` tasks for `warmup` and then `duration`.
pub async fn run<F, Fut>(
    clients: u32,
    warmup: Duration,
    duration: Duration,
    request: F,
) -> anyhow::Result<ClosedLoopSummary>
where
    F: Fn(u32, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
            let (mut errors, mut first_error) = (0u64, None);
            let mut n = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let result = request(client, n).await;
                n += 1;
                if sent < start {
                    continue;
                }
                match result {
                    Ok(()) => hist.saturating_record(sent.elapsed().as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            anyhow::Ok((hist, errors, first_error))
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let (mut errors, mut first_error) = (0u64, None);
    for t in tasks {
        let (hist, e, first) = t.await??;
        all.add(&hist)?;
        errors += e;
        first_error = first_error.or(first);
    }
    // The window lasts until the last request started in it has answered.
    let secs = (Instant::now().max(end) - start).as_secs_f64().max(1e-9);
    Ok(ClosedLoopSummary {
        clients,
        requests: all.len(),
        errors,
        first_error,
        duration_secs: secs,
        requests_per_sec: all.len() as f64 / secs,
        latency: Percentiles::of(&all),
    })
}
