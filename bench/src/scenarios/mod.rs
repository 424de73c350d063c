//! One module per scenario, and the checks they share.

mod api;
mod clicks;
mod memory;
mod propagate;
mod redirect;
mod swap;
mod tls;

use std::time::Duration;

use anyhow::bail;

use crate::cli::{Cli, Command};

/// Which server a run measured, in the scenarios that compare sling with nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Side {
    Sling,
    Nginx,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Sling => "sling",
            Side::Nginx => "nginx",
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Redirect(a) => redirect::run(a).await,
        Command::Swap(a) => swap::run(a).await,
        Command::Propagate(a) => propagate::run(a).await,
        Command::Memory(a) => memory::run(a).await,
        Command::Clicks(a) => clicks::run(a).await,
        Command::Api(a) => api::run(a).await,
        Command::Tls(a) => tls::run(a).await,
        Command::OpenLoopWorker(_) => bail!("open-loop-worker is started by the harness itself"),
        Command::HandshakeWorker(_) => bail!("handshake-worker is started by the harness itself"),
    }
}

/// Checks that `GET /{slug}` on `target` answers a redirect to `destination` for every pair, and
/// that an unknown slug answers 404 — before any load, so a run never measures error pages.
pub async fn preflight(
    client: &reqwest::Client,
    who: &str,
    target: &str,
    expected: &[(String, String)],
) -> anyhow::Result<()> {
    for (slug, destination) in expected {
        let resp = client.get(format!("http://{target}/{slug}")).send().await?;
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !resp.status().is_redirection() || location != *destination {
            bail!(
                "preflight: {who} answered {} with Location {location:?} for /{slug}, expected a redirect to {destination}",
                resp.status()
            );
        }
    }
    let resp = client
        .get(format!("http://{target}/zz-not-a-bench-slug"))
        .send()
        .await?;
    if resp.status() != reqwest::StatusCode::NOT_FOUND {
        bail!(
            "preflight: {who} answered {} for an unknown slug, expected 404",
            resp.status()
        );
    }
    Ok(())
}

/// Retries [`preflight`] until the proxy (following a control plane) redirects every pair, for up
/// to `timeout`.
pub async fn await_redirects(
    client: &reqwest::Client,
    proxy: &mut crate::sling::Proxy,
    expected: &[(String, String)],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while let Err(e) = preflight(client, "sling", &proxy.addr, expected).await {
        proxy.proc.ensure_running()?;
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the proxy did not pick up the seeded links: {e:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Share of one core a process tree used while `f` ran (1.0 = one core busy the whole time).
pub async fn cpu_share<T>(
    pid: u32,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, f64)> {
    let before = crate::procs::tree_cpu_seconds(pid);
    let started = std::time::Instant::now();
    let out = f.await?;
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let used = crate::procs::tree_cpu_seconds(pid) - before;
    Ok((out, used / elapsed))
}

/// Seconds as a `Duration`.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
