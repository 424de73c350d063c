//! Configuration: the raw command line ([`Args`], every flag also a `SLING_*` environment variable)
//! is checked once and turned into a validated [`Config`], which is all the rest of the proxy sees.
//! Code that embeds the proxy (the control plane's `sling up`, tests) builds a [`Config`] directly
//! with [`Config::new`] and never touches the process environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Longest long-poll wait the proxy asks for; the control plane may cap it lower.
pub const MAX_FEED_WAIT: Duration = Duration::from_secs(120);

/// `sling-proxy` command line. Every flag can also be set through the environment variable named
/// beside it; a flag wins over the variable.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "sling-proxy",
    version,
    about = "The sling redirect proxy: answers short links from a memory-mapped snapshot plus a live overlay"
)]
pub struct Args {
    /// Address the redirect listener binds (HTTP/1.1 and cleartext HTTP/2).
    #[arg(long, env = "SLING_PROXY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address the admin listener binds: /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "SLING_PROXY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9080"
    )]
    pub admin_listen: SocketAddr,

    /// Base URL of the control plane (http://host:port). Without it the proxy serves the newest
    /// snapshot in --snapshot-dir and never changes it.
    #[arg(long, env = "SLING_CONTROL_URL")]
    pub control_url: Option<String>,

    /// Directory holding downloaded snapshot files; the newest good one is served at start.
    #[arg(
        long,
        env = "SLING_SNAPSHOT_DIR",
        default_value = "./sling-data/proxy-snapshots"
    )]
    pub snapshot_dir: PathBuf,

    /// Shared secret for the control plane's internal endpoints (required with --control-url).
    #[arg(long, env = "SLING_FLEET_TOKEN", hide_env_values = true)]
    pub fleet_token: Option<String>,

    /// Host that unknown hosts fall back to until the first snapshot says otherwise.
    #[arg(long, env = "SLING_DEFAULT_DOMAIN", default_value = "localhost")]
    pub default_domain: String,

    /// Log output format (logs go to stderr).
    #[arg(long, env = "SLING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long one change-feed long poll may wait for news, in milliseconds.
    #[arg(long, env = "SLING_FEED_WAIT_MS", default_value_t = 25_000)]
    pub feed_wait_ms: u64,

    /// How long a graceful shutdown waits for in-flight connections, in milliseconds.
    #[arg(long, env = "SLING_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where the change feed and snapshots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8081`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub fleet_token: String,
}

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Redirect listener address (used by [`crate::run`]; ignored when listeners are passed in).
    pub listen: SocketAddr,
    /// Admin listener address (same caveat).
    pub admin_listen: SocketAddr,
    /// `None`: serve the local snapshot only.
    pub control: Option<ControlPlane>,
    pub snapshot_dir: PathBuf,
    /// Normalised host used as the default domain while no snapshot is loaded.
    pub default_domain: String,
    /// Long-poll wait asked of the control plane.
    pub feed_wait: Duration,
    /// Graceful-shutdown budget for draining connections.
    pub drain_timeout: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--control-url {0:?} is not a valid URL: {1}")]
    ControlUrl(String, String),
    #[error(
        "--control-url must be an http:// URL (this build's client has no TLS; put the control plane on a private network or a local TLS terminator)"
    )]
    ControlScheme,
    #[error("--fleet-token (SLING_FLEET_TOKEN) is required with --control-url")]
    MissingFleetToken,
    #[error("--default-domain {0:?}: {1}")]
    DefaultDomain(String, sling_shared::host::HostError),
    #[error("--feed-wait-ms must be at most {} ms", MAX_FEED_WAIT.as_millis())]
    FeedWait,
}

impl Config {
    /// Defaults matching the CLI's, serving `snapshot_dir` with no control plane. Change fields
    /// (or use [`Config::with_control`]) before handing it to [`crate::run`].
    pub fn new(snapshot_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9080)),
            control: None,
            snapshot_dir: snapshot_dir.into(),
            default_domain: "localhost".to_owned(),
            feed_wait: Duration::from_millis(25_000),
            drain_timeout: Duration::from_secs(10),
        }
    }

    /// Follows the control plane at `url` (validated like `--control-url`).
    pub fn with_control(
        mut self,
        url: &str,
        fleet_token: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let fleet_token = fleet_token.into();
        if fleet_token.is_empty() {
            return Err(ConfigError::MissingFleetToken);
        }
        self.control = Some(ControlPlane {
            url: control_url(url)?,
            fleet_token,
        });
        Ok(self)
    }
}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(args: Args) -> Result<Self, ConfigError> {
        let default_domain = sling_shared::host::normalize_host(&args.default_domain)
            .map_err(|e| ConfigError::DefaultDomain(args.default_domain.clone(), e))?;
        let feed_wait = Duration::from_millis(args.feed_wait_ms);
        if feed_wait > MAX_FEED_WAIT {
            return Err(ConfigError::FeedWait);
        }
        let mut config = Config {
            listen: args.listen,
            admin_listen: args.admin_listen,
            control: None,
            snapshot_dir: args.snapshot_dir,
            default_domain,
            feed_wait,
            drain_timeout: Duration::from_millis(args.drain_timeout_ms),
        };
        if let Some(url) = args.control_url {
            config = config.with_control(&url, args.fleet_token.unwrap_or_default())?;
        }
        Ok(config)
    }
}

/// Checks a control-plane base URL and strips trailing slashes so paths can be appended.
fn control_url(raw: &str) -> Result<String, ConfigError> {
    let parsed =
        url::Url::parse(raw).map_err(|e| ConfigError::ControlUrl(raw.to_owned(), e.to_string()))?;
    if parsed.scheme() != "http" {
        return Err(ConfigError::ControlScheme);
    }
    if parsed.host_str().is_none() {
        return Err(ConfigError::ControlUrl(raw.to_owned(), "no host".into()));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// Installs the global `tracing` subscriber writing to stderr (stdout carries only the
/// `listening …` lines). `RUST_LOG` filters; the default is `info`. Calling it twice is harmless:
/// the second call leaves the first subscriber in place.
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["sling-proxy"];
        argv.extend_from_slice(args);
        Config::try_from(Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9080");
        assert_eq!(c.default_domain, "localhost");
        assert_eq!(c.control, None);
        assert_eq!(c.feed_wait, Duration::from_secs(25));
    }

    #[test]
    fn control_plane_needs_token_and_http() {
        assert_eq!(
            parse(&["--control-url", "http://127.0.0.1:8081"]),
            Err(ConfigError::MissingFleetToken)
        );
        assert_eq!(
            parse(&["--control-url", "https://c.example", "--fleet-token", "t"]),
            Err(ConfigError::ControlScheme)
        );
        let c = parse(&[
            "--control-url",
            "http://127.0.0.1:8081/",
            "--fleet-token",
            "t",
        ])
        .unwrap();
        assert_eq!(c.control.unwrap().url, "http://127.0.0.1:8081");
    }

    #[test]
    fn default_domain_is_normalised() {
        assert_eq!(
            parse(&["--default-domain", "Go.Example.COM"])
                .unwrap()
                .default_domain,
            "go.example.com"
        );
        assert!(parse(&["--default-domain", "bad host"]).is_err());
    }
}
