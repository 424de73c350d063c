//! Configuration: the raw command line ([`Args`], every flag also a `SLING_*` environment variable)
//! is checked once and turned into a validated [`Config`], which is all the rest of the proxy sees.
//! Code that embeds the proxy (the control plane's `sling up`, tests) builds a [`Config`] directly
//! with [`Config::new`] and never touches the process environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use http::HeaderName;
use ipnet::IpNet;

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

    /// Key for password-access cookies. Every proxy of a fleet must share it (or the fleet token,
    /// which is used when this is unset) for a cookie set by one proxy to be accepted by another;
    /// without either, each process draws a random key (cookies die with the process).
    #[arg(long, env = "SLING_COOKIE_SECRET", hide_env_values = true)]
    pub cookie_secret: Option<String>,

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

    /// Click tracking: `on` records every followed link; `off` records nothing (for comparisons).
    #[arg(long, env = "SLING_CLICKS", value_enum, default_value_t = Switch::On)]
    pub clicks: Switch,

    /// Directory of click batches not yet delivered to the control plane (one fsync'd JSON file
    /// per batch, replayed on start). Default: `click-spool` beside --snapshot-dir.
    #[arg(long, env = "SLING_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Comma-separated CIDRs (or addresses) of reverse proxies / load balancers whose
    /// X-Forwarded-For, Forwarded and --country-header are believed. Empty: only the socket
    /// address counts.
    #[arg(long, env = "SLING_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,

    /// MaxMind-format (GeoIP2/GeoLite2/DB-IP .mmdb) country database; overrides the tor files.
    #[arg(long, env = "SLING_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,

    /// Directory with tor's `geoip` and `geoip6` range files (Debian package tor-geoipdb), the
    /// free default country source. Missing files mean no country.
    #[arg(long, env = "SLING_TOR_GEOIP_DIR", default_value = "/usr/share/tor")]
    pub tor_geoip_dir: PathBuf,

    /// Request header carrying the visitor's country from a trusted CDN (e.g. CF-IPCountry);
    /// believed only when the socket peer is in --trusted-proxies.
    #[arg(long, env = "SLING_COUNTRY_HEADER")]
    pub country_header: Option<String>,

    /// Most click events in one batch sent to the control plane.
    #[arg(long, env = "SLING_CLICK_BATCH_SIZE", default_value_t = 5000)]
    pub click_batch_size: usize,

    /// Longest a click waits before its (partial) batch is sent, in milliseconds.
    #[arg(long, env = "SLING_CLICK_BATCH_MS", default_value_t = 250)]
    pub click_batch_ms: u64,

    /// Clicks buffered between request handlers and the shipper thread; beyond it clicks are
    /// written to the spool instead (never dropped, never waited for).
    #[arg(long, env = "SLING_CLICK_CHANNEL_CAPACITY", default_value_t = 65_536)]
    pub click_channel_capacity: usize,

    /// This proxy's name in click batch ids and control-plane logs. Default: the host name.
    #[arg(long, env = "SLING_PROXY_ID")]
    pub proxy_id: Option<String>,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The HTTPS listener's flags; `sling up` takes the same ones for the proxy it embeds.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Address the HTTPS listener binds (HTTP/2 and HTTP/1.1 by ALPN). Off when absent.
    /// Certificates come from the control plane (custom domains) and --tls-cert/--tls-key.
    #[arg(long, env = "SLING_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,

    /// PEM certificate chain (leaf first) for the default domain, also served to clients that
    /// send no server name. Needs --tls-key.
    #[arg(long, env = "SLING_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "SLING_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Port put in HTTP → HTTPS redirects when the public HTTPS port is not 443.
    #[arg(long, env = "SLING_HTTPS_PUBLIC_PORT")]
    pub https_public_port: Option<u16>,
}

/// `on` / `off`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Switch {
    #[default]
    On,
    Off,
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
    /// Click tracking (see [`crate::clicks`]).
    pub clicks: ClicksConfig,
    /// `--cookie-secret`; see [`crate::password`] for the key actually used.
    pub cookie_secret: Option<String>,
    /// The HTTPS listener and certificates (see [`crate::tls`]).
    pub tls: TlsConfig,
}

/// TLS settings; the default has no HTTPS listener and no certificate files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// HTTPS listener address (used by [`crate::run_with_listeners`] unless a listener is passed
    /// to [`crate::run_with_tls_listener`]).
    pub listen: Option<SocketAddr>,
    /// The default domain's certificate chain and key, PEM files.
    pub cert_files: Option<(PathBuf, PathBuf)>,
    /// Port in HTTP → HTTPS redirect locations; `None` for 443.
    pub https_public_port: Option<u16>,
}

impl From<TlsArgs> for TlsConfig {
    fn from(args: TlsArgs) -> Self {
        Self {
            listen: args.tls_listen,
            // clap makes the two flags require each other.
            cert_files: args.tls_cert.zip(args.tls_key),
            https_public_port: args.https_public_port.filter(|&p| p != 443),
        }
    }
}

/// Click tracking settings. [`Config::new`] fills in the CLI defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClicksConfig {
    /// `false`: redirects record nothing and no shipper runs.
    pub enabled: bool,
    /// Undelivered batches; created if missing.
    pub spool_dir: PathBuf,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// A MaxMind-format database; wins over the tor files.
    pub geoip_db: Option<PathBuf>,
    /// Where tor's `geoip` / `geoip6` live; `None` disables them.
    pub tor_geoip_dir: Option<PathBuf>,
    /// Trusted CDN country header.
    pub country_header: Option<HeaderName>,
    pub batch_size: usize,
    pub batch_interval: Duration,
    pub channel_capacity: usize,
    /// File-name-safe proxy name used in batch ids.
    pub proxy_id: String,
}

impl ClicksConfig {
    /// The CLI defaults, with the spool beside `snapshot_dir`.
    pub fn defaults_for(snapshot_dir: &Path) -> Self {
        Self {
            enabled: true,
            spool_dir: default_spool_dir(snapshot_dir),
            trusted_proxies: Vec::new(),
            geoip_db: None,
            tor_geoip_dir: Some(PathBuf::from("/usr/share/tor")),
            country_header: None,
            batch_size: 5000,
            batch_interval: Duration::from_millis(250),
            channel_capacity: 65_536,
            proxy_id: default_proxy_id(),
        }
    }
}

/// `click-spool` next to the snapshot directory (`./sling-data/proxy-snapshots` →
/// `./sling-data/click-spool`).
pub fn default_spool_dir(snapshot_dir: &Path) -> PathBuf {
    match snapshot_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join("click-spool"),
        _ => PathBuf::from("click-spool"),
    }
}

/// The host name, reduced to `[A-Za-z0-9._-]`; `proxy` when it cannot be read.
fn default_proxy_id() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let id = sanitize_proxy_id(raw.trim());
    if id.is_empty() {
        "proxy".to_owned()
    } else {
        id
    }
}

fn sanitize_proxy_id(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect()
}

/// Parses `--trusted-proxies`: comma-separated CIDRs or bare addresses.
pub fn parse_trusted_proxies(raw: &str) -> Result<Vec<IpNet>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::TrustedProxy(s.to_owned()))
        })
        .collect()
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
    #[error("--trusted-proxies: {0:?} is neither a CIDR nor an IP address")]
    TrustedProxy(String),
    #[error("--country-header {0:?} is not a valid header name")]
    CountryHeader(String),
    #[error(
        "--click-batch-size must be between 1 and {}",
        sling_shared::clicks::MAX_BATCH_EVENTS
    )]
    BatchSize,
    #[error("--click-batch-ms and --click-channel-capacity must be at least 1")]
    ClickTuning,
    #[error("--proxy-id must contain at least one of A-Z a-z 0-9 . _ -")]
    ProxyId,
}

impl Config {
    /// Defaults matching the CLI's, serving `snapshot_dir` with no control plane. Change fields
    /// (or use [`Config::with_control`]) before handing it to [`crate::run`].
    pub fn new(snapshot_dir: impl Into<PathBuf>) -> Self {
        let snapshot_dir = snapshot_dir.into();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9080)),
            control: None,
            clicks: ClicksConfig::defaults_for(&snapshot_dir),
            snapshot_dir,
            default_domain: "localhost".to_owned(),
            feed_wait: Duration::from_millis(25_000),
            drain_timeout: Duration::from_secs(10),
            cookie_secret: None,
            tls: TlsConfig::default(),
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
        let clicks = clicks_config(&args)?;
        let mut config = Config {
            listen: args.listen,
            admin_listen: args.admin_listen,
            control: None,
            snapshot_dir: args.snapshot_dir,
            default_domain,
            feed_wait,
            drain_timeout: Duration::from_millis(args.drain_timeout_ms),
            clicks,
            cookie_secret: args.cookie_secret.filter(|s| !s.is_empty()),
            tls: args.tls.clone().into(),
        };
        if let Some(url) = args.control_url {
            config = config.with_control(&url, args.fleet_token.unwrap_or_default())?;
        }
        Ok(config)
    }
}

fn clicks_config(args: &Args) -> Result<ClicksConfig, ConfigError> {
    if args.click_batch_size == 0 || args.click_batch_size > sling_shared::clicks::MAX_BATCH_EVENTS
    {
        return Err(ConfigError::BatchSize);
    }
    if args.click_batch_ms == 0 || args.click_channel_capacity == 0 {
        return Err(ConfigError::ClickTuning);
    }
    let country_header = match args.country_header.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(
            HeaderName::try_from(name).map_err(|_| ConfigError::CountryHeader(name.to_owned()))?,
        ),
    };
    let mut clicks = ClicksConfig::defaults_for(&args.snapshot_dir);
    if let Some(id) = &args.proxy_id {
        clicks.proxy_id = sanitize_proxy_id(id);
        if clicks.proxy_id.is_empty() {
            return Err(ConfigError::ProxyId);
        }
    }
    Ok(ClicksConfig {
        enabled: args.clicks == Switch::On,
        spool_dir: args.spool_dir.clone().unwrap_or(clicks.spool_dir),
        trusted_proxies: parse_trusted_proxies(&args.trusted_proxies)?,
        geoip_db: args.geoip_db.clone(),
        tor_geoip_dir: Some(args.tor_geoip_dir.clone()).filter(|d| !d.as_os_str().is_empty()),
        country_header,
        batch_size: args.click_batch_size,
        batch_interval: Duration::from_millis(args.click_batch_ms),
        channel_capacity: args.click_channel_capacity,
        proxy_id: clicks.proxy_id,
    })
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
        assert!(c.clicks.enabled);
        assert_eq!(
            c.clicks.spool_dir,
            PathBuf::from("./sling-data/click-spool")
        );
        assert_eq!(c.clicks.batch_size, 5000);
        assert_eq!(c.clicks.batch_interval, Duration::from_millis(250));
        assert!(c.clicks.trusted_proxies.is_empty());
        assert_eq!(
            c.clicks.tor_geoip_dir,
            Some(PathBuf::from("/usr/share/tor"))
        );
        assert_eq!(Config::new("./sling-data/proxy-snapshots").clicks, c.clicks);
    }

    #[test]
    fn click_flags() {
        let c = parse(&[
            "--clicks",
            "off",
            "--spool-dir",
            "/var/spool/sling",
            "--trusted-proxies",
            "10.0.0.0/8, 192.0.2.7 ,2001:db8::/32",
            "--country-header",
            "CF-IPCountry",
            "--click-batch-size",
            "50",
            "--click-batch-ms",
            "20",
            "--proxy-id",
            "edge 1/eu",
        ])
        .unwrap();
        assert!(!c.clicks.enabled);
        assert_eq!(c.clicks.spool_dir, PathBuf::from("/var/spool/sling"));
        let nets: Vec<String> = c
            .clicks
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        assert_eq!(c.clicks.country_header.unwrap().as_str(), "cf-ipcountry");
        assert_eq!(c.clicks.batch_size, 50);
        assert_eq!(c.clicks.proxy_id, "edge1eu");
        assert_eq!(
            parse(&["--trusted-proxies", "10.0.0.0/33"]),
            Err(ConfigError::TrustedProxy("10.0.0.0/33".into()))
        );
        assert_eq!(
            parse(&["--click-batch-size", "0"]),
            Err(ConfigError::BatchSize)
        );
        assert_eq!(
            default_spool_dir(Path::new("snaps")),
            PathBuf::from("click-spool")
        );
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

    #[test]
    fn tls_flags() {
        assert_eq!(parse(&[]).unwrap().tls, TlsConfig::default());
        let c = parse(&[
            "--tls-listen",
            "0.0.0.0:8443",
            "--tls-cert",
            "/etc/sling/cert.pem",
            "--tls-key",
            "/etc/sling/key.pem",
            "--https-public-port",
            "8443",
        ])
        .unwrap();
        assert_eq!(c.tls.listen.unwrap().to_string(), "0.0.0.0:8443");
        assert_eq!(
            c.tls.cert_files,
            Some((
                PathBuf::from("/etc/sling/cert.pem"),
                PathBuf::from("/etc/sling/key.pem")
            ))
        );
        assert_eq!(c.tls.https_public_port, Some(8443));
        let c = parse(&["--https-public-port", "443"]).unwrap();
        assert_eq!(c.tls.https_public_port, None);
        // A certificate without its key (or the reverse) is refused by the parser.
        assert!(Args::try_parse_from(["sling-proxy", "--tls-cert", "c.pem"]).is_err());
        assert!(Args::try_parse_from(["sling-proxy", "--tls-key", "k.pem"]).is_err());
    }
}
