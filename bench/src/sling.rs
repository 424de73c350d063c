//! Starting the real sling binaries: `sling-proxy` (standalone on a snapshot directory, or
//! following a control plane) and `sling serve`.
//!
//! Both print `listening <what>=http://ADDR` on stdout once bound; the proxy is ready when its
//! admin listener's `/readyz` answers 200.
//!
//! The proxy's tokio runtime sizes itself from the CPUs it may run on, which `taskset` limits to
//! one; `TOKIO_WORKER_THREADS=1` is set as well so the count does not depend on that detail.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::procs::{self, Proc};

pub struct Proxy {
    pub proc: Proc,
    /// `127.0.0.1:PORT` of the redirect listener.
    pub addr: String,
    /// `127.0.0.1:PORT` of /healthz, /readyz, /metrics.
    pub admin: String,
    /// `127.0.0.1:PORT` of the HTTPS listener, when started with `--tls-listen`.
    pub tls: Option<String>,
    /// From spawn to the first `/readyz` 200.
    pub start_to_ready: Duration,
}

/// Where the proxy gets its links from.
pub enum Source<'a> {
    /// The newest snapshot in the directory, never changed.
    Standalone { snapshot_dir: &'a Path },
    /// A control plane's feed and snapshots (downloaded into `snapshot_dir`).
    Follow {
        snapshot_dir: &'a Path,
        control_url: &'a str,
        fleet_token: &'a str,
    },
}

pub async fn start_proxy(
    bin: &Path,
    pin: &[String],
    source: Source<'_>,
    log_dir: &Path,
    ready_timeout: Duration,
) -> anyhow::Result<Proxy> {
    start_proxy_with(bin, pin, source, &[], log_dir, ready_timeout).await
}

/// [`start_proxy`] with more command-line arguments (`--clicks off`, `--spool-dir DIR`, …).
pub async fn start_proxy_with(
    bin: &Path,
    pin: &[String],
    source: Source<'_>,
    extra_args: &[String],
    log_dir: &Path,
    ready_timeout: Duration,
) -> anyhow::Result<Proxy> {
    let mut args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--admin-listen".into(),
        "127.0.0.1:0".into(),
    ];
    let mut envs = vec![
        ("TOKIO_WORKER_THREADS", "1".to_owned()),
        // Plain log files, without colour escapes.
        ("NO_COLOR", "1".to_owned()),
    ];
    match source {
        Source::Standalone { snapshot_dir } => {
            args.extend(["--snapshot-dir".into(), snapshot_dir.display().to_string()]);
        }
        Source::Follow {
            snapshot_dir,
            control_url,
            fleet_token,
        } => {
            args.extend([
                "--snapshot-dir".into(),
                snapshot_dir.display().to_string(),
                "--control-url".into(),
                control_url.to_owned(),
            ]);
            // Through the environment, so the token is not visible in `ps`.
            envs.push(("SLING_FLEET_TOKEN", fleet_token.to_owned()));
        }
    }
    args.extend_from_slice(extra_args);
    let started = Instant::now();
    let mut proc = Proc::spawn("sling-proxy", pin, bin, &args, &envs, log_dir)?;
    let mut addr = None;
    let mut admin = None;
    let want_tls = extra_args.iter().any(|a| a == "--tls-listen");
    let mut tls = None;
    while addr.is_none() || admin.is_none() || (want_tls && tls.is_none()) {
        let line = proc.wait_line("listening ", ready_timeout).await?;
        if let Some(a) = line.strip_prefix("proxy=http://") {
            addr = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("admin=http://") {
            admin = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("tls=https://") {
            tls = Some(a.to_owned());
        }
    }
    let (addr, admin) = (addr.unwrap_or_default(), admin.unwrap_or_default());
    let client = procs::http_client()?;
    let ready = procs::wait_ok(
        &client,
        &format!("http://{admin}/readyz"),
        &mut proc,
        ready_timeout,
    )
    .await
    .context("waiting for the proxy to be ready")?;
    Ok(Proxy {
        proc,
        addr,
        admin,
        tls,
        start_to_ready: ready - started,
    })
}

pub struct Control {
    /// Dropping `Control` stops `sling serve`.
    proc: Proc,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub admin_key: String,
    pub fleet_token: String,
}

/// What an API client needs: cloned into background tasks, so they never own the process.
#[derive(Debug, Clone)]
pub struct Api {
    pub url: String,
    pub admin_key: String,
}

impl Control {
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn api(&self) -> Api {
        Api {
            url: self.url.clone(),
            admin_key: self.admin_key.clone(),
        }
    }
}

/// Runs `sling serve` on SQLite in `data_dir` and waits for `/readyz` and the admin key.
pub async fn start_control(
    bin: &Path,
    pin: &[String],
    data_dir: &Path,
    extra_args: &[String],
    log_dir: &Path,
) -> anyhow::Result<Control> {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--api-listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend_from_slice(extra_args);
    let envs = [("NO_COLOR", "1".to_owned())];
    let mut proc = Proc::spawn("sling-serve", pin, bin, &args, &envs, log_dir)?;
    let timeout = Duration::from_secs(60);
    let url = loop {
        let line = proc.wait_line("listening ", timeout).await?;
        if let Some(a) = line.strip_prefix("api=") {
            break a.to_owned();
        }
    };
    let client = procs::http_client()?;
    procs::wait_ok(&client, &format!("{url}/readyz"), &mut proc, timeout)
        .await
        .context("waiting for the control plane to be ready")?;
    let read = |name: &str| -> anyhow::Result<String> {
        let path = data_dir.join(name);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (does `sling serve` write it on first start?)",
                path.display()
            )
        })?;
        Ok(text.trim().to_owned())
    };
    Ok(Control {
        admin_key: read("admin-key")?,
        fleet_token: read("fleet-token")?,
        proc,
        url,
    })
}

/// `POST /api/v1/links` for `destination`; returns the new slug.
pub async fn create_link(
    client: &reqwest::Client,
    control: &Api,
    destination: &str,
) -> anyhow::Result<String> {
    let resp = client
        .post(format!("{}/api/v1/links", control.url))
        .bearer_auth(&control.admin_key)
        .json(&serde_json::json!({ "destinationUrl": destination }))
        .send()
        .await
        .context("POST /api/v1/links")?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .with_context(|| format!("POST /api/v1/links answered {status} without JSON"))?;
    anyhow::ensure!(
        status.is_success(),
        "POST /api/v1/links answered {status}: {body}"
    );
    body.pointer("/data/slug")
        .and_then(|s| s.as_str())
        .map(str::to_owned)
        .with_context(|| format!("POST /api/v1/links: no data.slug in {body}"))
}

/// Creates one link per destination through `POST /api/v1/links/bulk`, in batches of 500 (one
/// transaction each); returns the slugs in order.
pub async fn create_links_bulk(
    client: &reqwest::Client,
    control: &Api,
    destinations: &[String],
) -> anyhow::Result<Vec<String>> {
    Ok(create_links_bulk_ids(client, control, destinations)
        .await?
        .into_iter()
        .map(|l| l.slug)
        .collect())
}

/// A link the API created.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub slug: String,
}

/// [`create_links_bulk`], returning each link's id as well as its slug.
pub async fn create_links_bulk_ids(
    client: &reqwest::Client,
    control: &Api,
    destinations: &[String],
) -> anyhow::Result<Vec<Created>> {
    let mut slugs = Vec::with_capacity(destinations.len());
    for batch in destinations.chunks(500) {
        let links: Vec<serde_json::Value> = batch
            .iter()
            .map(|d| serde_json::json!({ "destinationUrl": d }))
            .collect();
        let resp = client
            .post(format!("{}/api/v1/links/bulk", control.url))
            .bearer_auth(&control.admin_key)
            .json(&serde_json::json!({ "links": links }))
            .send()
            .await
            .context("POST /api/v1/links/bulk")?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .with_context(|| format!("POST /api/v1/links/bulk answered {status} without JSON"))?;
        anyhow::ensure!(
            status.is_success(),
            "POST /api/v1/links/bulk answered {status}: {body}"
        );
        let results = body
            .pointer("/data/results")
            .and_then(|r| r.as_array())
            .with_context(|| format!("POST /api/v1/links/bulk: no data.results in {body}"))?;
        for r in results {
            let field = |name: &str| {
                r.pointer(&format!("/data/{name}"))
                    .and_then(|s| s.as_str())
                    .map(str::to_owned)
                    .with_context(|| format!("POST /api/v1/links/bulk: an item failed: {r}"))
            };
            slugs.push(Created {
                id: field("id")?,
                slug: field("slug")?,
            });
        }
    }
    anyhow::ensure!(
        slugs.len() == destinations.len(),
        "POST /api/v1/links/bulk created {} of {} links",
        slugs.len(),
        destinations.len()
    );
    Ok(slugs)
}

/// Scrapes Prometheus text from `http://ADDR/metrics` and keeps the samples whose name contains
/// `needle` (for before/after deltas in a report).
pub async fn metrics(
    client: &reqwest::Client,
    base: &str,
    needle: &str,
) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(resp) = client.get(format!("{base}/metrics")).send().await else {
        return out;
    };
    let text = resp.text().await.unwrap_or_default();
    for line in text.lines() {
        if line.starts_with('#') || !line.contains(needle) {
            continue;
        }
        if let Some((name, value)) = line.rsplit_once(' ')
            && let Ok(v) = value.parse::<f64>()
        {
            out.insert(name.to_owned(), v);
        }
    }
    out
}
