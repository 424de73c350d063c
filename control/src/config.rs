//! Control-plane configuration: raw flags (clap, each with its `SLING_*` environment variable) →
//! a validated [`Config`]. Tests build a `Config` directly and never touch the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// Flags shared by `sling serve` and `sling up`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Directory for the SQLite database, snapshots, the admin key and the fleet token.
    #[arg(long, env = "SLING_DATA_DIR", default_value = "./sling-data")]
    pub data_dir: PathBuf,
    /// `postgres://…` to use Postgres; default is SQLite under the data dir.
    #[arg(long, env = "SLING_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Address of the REST API (and the internal fleet endpoints).
    #[arg(long, env = "SLING_API_LISTEN", default_value = "127.0.0.1:8081")]
    pub api_listen: SocketAddr,
    /// The default short-link domain; unknown hosts fall back to it.
    #[arg(long, env = "SLING_DEFAULT_DOMAIN", default_value = "localhost")]
    pub default_domain: String,
    /// Base of short URLs on the default domain, e.g. `https://sho.rt`. Default:
    /// `http://<default-domain>:8080` (the proxy of `sling up`).
    #[arg(long, env = "SLING_SHORT_URL_BASE")]
    pub short_url_base: Option<String>,
    /// Token proxies present on the internal endpoints. Default: generated once and kept in
    /// `<data-dir>/fleet-token`.
    #[arg(long, env = "SLING_FLEET_TOKEN", hide_env_values = true)]
    pub fleet_token: Option<String>,
    /// Publish a new snapshot at least this often when anything changed (milliseconds).
    #[arg(long, env = "SLING_SNAPSHOT_INTERVAL_MS", default_value_t = 10_000)]
    pub snapshot_interval_ms: u64,
    /// Publish a new snapshot as soon as this many changes accumulate.
    #[arg(long, env = "SLING_SNAPSHOT_AFTER_CHANGES", default_value_t = 10_000)]
    pub snapshot_after_changes: u64,
    /// Keep feed changes this long (seconds) before pruning; slower proxies reload a snapshot.
    #[arg(long, env = "SLING_FEED_RETENTION_SECS", default_value_t = 86_400)]
    pub feed_retention_secs: u64,
    /// Largest request body accepted by the API, in bytes.
    #[arg(long, env = "SLING_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Keep raw click events (what unique-visitor counts are computed from) this many days;
    /// the 15-minute click rollups are kept forever.
    #[arg(long, env = "SLING_CLICK_RETENTION_DAYS", default_value_t = 90)]
    pub click_retention_days: u64,
    /// Plans file (TOML, or JSON when named `*.json`) overriding and extending the built-in
    /// plans free, pro, business, lifetime and unlimited. See `sling plans list`.
    #[arg(long, env = "SLING_PLANS_FILE")]
    pub plans_file: Option<PathBuf>,
    /// `redis://…`: share rate limits across control-plane replicas through Redis. Without it
    /// each replica limits on its own (in memory).
    #[arg(long, env = "SLING_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key sling writes.
    #[arg(long, env = "SLING_REDIS_KEY_PREFIX", default_value = "sling:rl:")]
    pub redis_key_prefix: String,
    /// Requests per minute per client IP for calls without a valid API key.
    #[arg(long, env = "SLING_ANONYMOUS_PER_MINUTE", default_value_t = 120)]
    pub anonymous_per_minute: u32,
    /// How long a verified API key is trusted without asking the database again (ms; 0 = off).
    /// A revocation on another replica or from the CLI takes effect within this time.
    #[arg(long, env = "SLING_KEY_CACHE_MS", default_value_t = 1000)]
    pub key_cache_ms: u64,
    #[command(flatten)]
    pub domains: DomainArgs,
    /// Key that seals secrets at rest (certificate keys, the ACME account): 32 bytes, base64 or
    /// hex. Default: generated once and kept in `<data-dir>/secret-key`. Every replica needs
    /// the same key.
    #[arg(long, env = "SLING_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    #[command(flatten)]
    pub acme: AcmeArgs,
}

/// Certificates for custom domains over ACME (off without `--acme-directory`).
#[derive(clap::Args, Debug, Clone)]
pub struct AcmeArgs {
    /// ACME directory URL (e.g. Let's Encrypt's); turns on certificate issuance and renewal.
    #[arg(long = "acme-directory", env = "SLING_ACME_DIRECTORY")]
    pub directory: Option<String>,
    /// Contact for the ACME account (`mailto:…`); repeat or separate with commas.
    #[arg(
        long = "acme-contact",
        env = "SLING_ACME_CONTACT",
        value_delimiter = ','
    )]
    pub contact: Vec<String>,
    /// Trust only this CA certificate (PEM) for the CA's HTTPS endpoint (a test CA).
    #[arg(long = "acme-ca-cert", env = "SLING_ACME_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// How often the worker looks for due orders (milliseconds).
    #[arg(
        long = "acme-poll-ms",
        env = "SLING_ACME_POLL_MS",
        default_value_t = 5000
    )]
    pub poll_ms: u64,
    /// Renew after this fraction of a certificate's lifetime (`0.66` or `2/3`).
    #[arg(
        long = "acme-renew-fraction",
        env = "SLING_ACME_RENEW_FRACTION",
        default_value = "2/3"
    )]
    pub renew_fraction: String,
    /// Give an order up after this many failed validations (outages never count).
    #[arg(
        long = "acme-max-attempts",
        env = "SLING_ACME_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub max_attempts: u32,
    /// First retry delay of a failed order (milliseconds), doubled per attempt.
    #[arg(
        long = "acme-retry-ms",
        env = "SLING_ACME_RETRY_MS",
        default_value_t = 60_000
    )]
    pub retry_ms: u64,
    /// Longest retry delay (milliseconds).
    #[arg(
        long = "acme-retry-max-ms",
        env = "SLING_ACME_RETRY_MAX_MS",
        default_value_t = 21_600_000
    )]
    pub retry_max_ms: u64,
}

impl AcmeArgs {
    pub fn validate(self) -> anyhow::Result<Option<crate::acme::AcmeConfig>> {
        let Some(directory) = self.directory.filter(|d| !d.trim().is_empty()) else {
            return Ok(None);
        };
        let u = url::Url::parse(&directory)
            .with_context(|| format!("--acme-directory {directory:?}"))?;
        anyhow::ensure!(
            u.scheme() == "https",
            "--acme-directory must be an https:// URL"
        );
        for c in &self.contact {
            anyhow::ensure!(
                c.starts_with("mailto:"),
                "--acme-contact {c:?} must be a mailto: URL"
            );
        }
        if let Some(p) = &self.ca_cert {
            anyhow::ensure!(p.is_file(), "--acme-ca-cert {} is not a file", p.display());
        }
        let fraction = parse_fraction(&self.renew_fraction)
            .with_context(|| format!("--acme-renew-fraction {:?}", self.renew_fraction))?;
        let mut cfg = crate::acme::AcmeConfig::new(directory);
        cfg.contact = self.contact;
        cfg.ca_cert = self.ca_cert;
        cfg.poll = Duration::from_millis(self.poll_ms.max(10));
        cfg.renew_fraction = fraction;
        cfg.max_failures = self.max_attempts.max(1);
        cfg.retry_base = Duration::from_millis(self.retry_ms.max(10));
        cfg.retry_max = Duration::from_millis(self.retry_max_ms.max(self.retry_ms));
        Ok(Some(cfg))
    }
}

/// `0.66`, `66%` or `2/3` → a fraction strictly between 0 and 1.
fn parse_fraction(text: &str) -> anyhow::Result<f64> {
    let text = text.trim();
    let value = if let Some((a, b)) = text.split_once('/') {
        let (a, b): (f64, f64) = (a.trim().parse()?, b.trim().parse()?);
        a / b
    } else if let Some(p) = text.strip_suffix('%') {
        p.trim().parse::<f64>()? / 100.0
    } else {
        text.parse()?
    };
    anyhow::ensure!(value > 0.0 && value < 1.0, "must be between 0 and 1");
    Ok(value)
}

/// Validated configuration of the control plane.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub api_listen: SocketAddr,
    /// Normalised host of the default domain.
    pub default_domain: String,
    /// Base of short URLs on the default domain, without a trailing slash.
    pub short_url_base: String,
    pub fleet_token: String,
    /// Where published snapshots are written.
    pub snapshot_dir: PathBuf,
    pub snapshot_interval: Duration,
    pub snapshot_after_changes: u64,
    pub feed_retention: Duration,
    pub max_body_bytes: usize,
    /// How long raw click events are kept (`--click-retention-days`).
    pub click_retention: Duration,
    /// The plan catalogue (built-ins plus `--plans-file`).
    pub plans: std::sync::Arc<crate::plans::Plans>,
    /// Redis for shared rate limits; `None` keeps them in memory.
    pub redis_url: Option<String>,
    pub redis_key_prefix: String,
    /// Budget of unauthenticated callers, per client IP and minute.
    pub anonymous_per_minute: u32,
    /// Lifetime of cached verified API keys; zero disables the cache.
    pub key_cache_ttl: Duration,
    /// Ownership checks of custom domains (`verify.rs`).
    pub verify: crate::verify::VerifyConfig,
    /// What teams may add as custom domains, and the records they are told to publish.
    pub domains: DomainPolicy,
    /// Seals secrets at rest (`--secret-key` or `<data-dir>/secret-key`).
    pub sealer: crate::seal::Sealer,
    /// The ACME worker's configuration; `None` without `--acme-directory`.
    pub acme: Option<crate::acme::AcmeConfig>,
    /// How webhook deliveries are sent (`webhooks.rs`).
    pub webhooks: crate::webhooks::WebhookConfig,
}

impl ServeArgs {
    pub fn validate(self) -> anyhow::Result<Config> {
        let default_domain = sling_shared::host::normalize_host(&self.default_domain)
            .with_context(|| format!("--default-domain {:?}", self.default_domain))?;
        let short_url_base = match self.short_url_base {
            Some(b) => {
                let u = url::Url::parse(&b).with_context(|| format!("--short-url-base {b:?}"))?;
                anyhow::ensure!(
                    matches!(u.scheme(), "http" | "https"),
                    "--short-url-base must be http or https"
                );
                b.trim_end_matches('/').to_owned()
            }
            None => format!("http://{default_domain}:8080"),
        };
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating data dir {}", self.data_dir.display()))?;
        let fleet_token = match self.fleet_token {
            Some(t) if !t.trim().is_empty() => t,
            _ => crate::secrets::load_or_create(&self.data_dir.join("fleet-token"))?,
        };
        let database_url = self
            .database_url
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| crate::db::sqlite_url(&self.data_dir));
        let plans = load_plans(self.plans_file.as_deref())?;
        anyhow::ensure!(
            self.anonymous_per_minute > 0,
            "--anonymous-per-minute must be at least 1"
        );
        let sealer = match self.secret_key.as_deref().filter(|k| !k.trim().is_empty()) {
            Some(k) => crate::seal::Sealer::from_config(k).context("--secret-key")?,
            None => crate::seal::Sealer::load_or_create(&self.data_dir.join("secret-key"))?,
        };
        let acme = self.acme.validate()?;
        let webhooks = crate::webhooks::WebhookConfig {
            allow_private: self.domains.allow_private_webhooks,
            timeout: Duration::from_millis(self.domains.webhook_timeout_ms.max(100)),
            ..Default::default()
        };
        let (verify, domains) = self.domains.validate()?;
        Ok(Config {
            webhooks,
            verify,
            domains,
            sealer,
            acme,
            plans: std::sync::Arc::new(plans),
            redis_url: self.redis_url.filter(|u| !u.trim().is_empty()),
            redis_key_prefix: self.redis_key_prefix,
            anonymous_per_minute: self.anonymous_per_minute,
            key_cache_ttl: Duration::from_millis(self.key_cache_ms),
            snapshot_dir: self.data_dir.join("snapshots"),
            data_dir: self.data_dir,
            database_url,
            api_listen: self.api_listen,
            default_domain,
            short_url_base,
            fleet_token,
            snapshot_interval: Duration::from_millis(self.snapshot_interval_ms.max(100)),
            snapshot_after_changes: self.snapshot_after_changes.max(1),
            feed_retention: Duration::from_secs(self.feed_retention_secs),
            max_body_bytes: self.max_body_bytes,
            click_retention: Duration::from_secs(
                self.click_retention_days.max(1).saturating_mul(86_400),
            ),
        })
    }
}

impl Config {
    /// A configuration for tests and embedding: everything under `data_dir`, port 0, fixed token.
    pub fn for_tests(data_dir: PathBuf, database_url: Option<String>) -> Self {
        Config {
            snapshot_dir: data_dir.join("snapshots"),
            database_url: database_url.unwrap_or_else(|| crate::db::sqlite_url(&data_dir)),
            data_dir,
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            default_domain: "localhost".into(),
            short_url_base: "http://localhost:8080".into(),
            fleet_token: "test-fleet-token".into(),
            snapshot_interval: Duration::from_secs(10),
            snapshot_after_changes: 10_000,
            feed_retention: Duration::from_secs(86_400),
            max_body_bytes: 2 * 1024 * 1024,
            click_retention: Duration::from_secs(90 * 86_400),
            plans: Default::default(),
            redis_url: None,
            redis_key_prefix: "sling:rl:".into(),
            anonymous_per_minute: 120,
            // Off, so tests that change keys or plans straight in the database see it at once;
            // tests/auth_cache.rs turns it on.
            key_cache_ttl: Duration::ZERO,
            verify: crate::verify::VerifyConfig {
                // Tests run everything on loopback.
                allow_private: true,
                ..Default::default()
            },
            domains: DomainPolicy::default(),
            sealer: crate::seal::Sealer::new([0x5a; 32]),
            acme: None,
            webhooks: crate::webhooks::WebhookConfig {
                // Receivers in tests listen on loopback; retries come quickly.
                allow_private: true,
                timeout: Duration::from_secs(2),
                retry_delays: vec![Duration::from_millis(100), Duration::from_millis(200)],
                poll: Duration::from_millis(50),
                ..Default::default()
            },
        }
    }
}

/// The built-in plans, overridden by `path` when given.
pub fn load_plans(path: Option<&std::path::Path>) -> anyhow::Result<crate::plans::Plans> {
    match path {
        Some(p) => crate::plans::Plans::load(p),
        None => Ok(crate::plans::Plans::builtin()),
    }
}

/// Custom domains: ownership checks and what teams may add.
#[derive(clap::Args, Debug, Clone)]
pub struct DomainArgs {
    /// DNS server (`ip:port`) for ownership checks (TXT records, the host of an HTTP token).
    /// Default: the system's resolv.conf.
    #[arg(long = "dns-resolver", env = "SLING_DNS_RESOLVER")]
    pub dns_resolver: Option<SocketAddr>,
    /// Port HTTP tokens (and ACME self-checks) are fetched from: where the fleet listens.
    #[arg(
        long = "verify-http-port",
        env = "SLING_VERIFY_HTTP_PORT",
        default_value_t = 80
    )]
    pub verify_http_port: u16,
    /// Let ownership checks fetch from private, loopback and link-local addresses (a fleet on a
    /// private network; tests). Off, such addresses are refused (SSRF guard).
    #[arg(long = "allow-private-verify", env = "SLING_ALLOW_PRIVATE_VERIFY")]
    pub allow_private_verify: bool,
    /// Let webhooks be sent to private, loopback and link-local addresses (receivers on a
    /// private network; tests). Off, such targets are refused (SSRF guard).
    #[arg(long = "allow-private-webhooks", env = "SLING_ALLOW_PRIVATE_WEBHOOKS")]
    pub allow_private_webhooks: bool,
    /// Budget of one webhook delivery attempt (milliseconds).
    #[arg(
        long = "webhook-timeout-ms",
        env = "SLING_WEBHOOK_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub webhook_timeout_ms: u64,
    /// Budget of one DNS query or HTTP fetch of an ownership check (milliseconds).
    #[arg(
        long = "verify-timeout-ms",
        env = "SLING_VERIFY_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub verify_timeout_ms: u64,
    /// How often pending domains are re-checked in the background (milliseconds).
    #[arg(
        long = "verify-interval-ms",
        env = "SLING_VERIFY_INTERVAL_MS",
        default_value_t = 60_000
    )]
    pub verify_interval_ms: u64,
    /// A domain still unproven this many hours after it was added is marked failed.
    #[arg(
        long = "verify-window-hours",
        env = "SLING_VERIFY_WINDOW_HOURS",
        default_value_t = 72
    )]
    pub verify_window_hours: u64,
    /// Shared domains sling operates that only plans with `premium` may use (comma-separated).
    #[arg(
        long = "premium-domains",
        env = "SLING_PREMIUM_DOMAINS",
        value_delimiter = ','
    )]
    pub premium_domains: Vec<String>,
    /// The name customers point a CNAME at (shown in a new domain's records).
    #[arg(long = "fleet-cname", env = "SLING_FLEET_CNAME")]
    pub fleet_cname: Option<String>,
    /// The fleet's public addresses, for A/AAAA records (comma-separated).
    #[arg(long = "fleet-ips", env = "SLING_FLEET_IPS", value_delimiter = ',')]
    pub fleet_ips: Vec<std::net::IpAddr>,
    /// Let teams add subdomains of the default domain as custom domains.
    #[arg(
        long = "allow-default-subdomains",
        env = "SLING_ALLOW_DEFAULT_SUBDOMAINS"
    )]
    pub allow_default_subdomains: bool,
}

/// What teams may add as custom domains, and what they are told to publish.
#[derive(Debug, Clone, Default)]
pub struct DomainPolicy {
    /// Normalised premium hosts (`--premium-domains`).
    pub premium: Vec<String>,
    /// Normalised `--fleet-cname`.
    pub fleet_cname: Option<String>,
    pub fleet_ips: Vec<std::net::IpAddr>,
    pub allow_default_subdomains: bool,
}

impl DomainArgs {
    pub fn validate(self) -> anyhow::Result<(crate::verify::VerifyConfig, DomainPolicy)> {
        let verify = crate::verify::VerifyConfig {
            dns: match self.dns_resolver {
                Some(addr) => crate::verify::DnsUpstream::Server(addr),
                None => crate::verify::DnsUpstream::System,
            },
            http_port: self.verify_http_port,
            allow_private: self.allow_private_verify,
            timeout: Duration::from_millis(self.verify_timeout_ms.max(10)),
            interval: Duration::from_millis(self.verify_interval_ms.max(10)),
            window: Duration::from_secs(self.verify_window_hours.saturating_mul(3600)),
        };
        let premium = self
            .premium_domains
            .iter()
            .filter(|h| !h.trim().is_empty())
            .map(|h| {
                sling_shared::host::normalize_host(h)
                    .with_context(|| format!("--premium-domains {h:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let fleet_cname = match self.fleet_cname.filter(|c| !c.trim().is_empty()) {
            Some(c) => Some(
                sling_shared::host::normalize_host(&c)
                    .with_context(|| format!("--fleet-cname {c:?}"))?,
            ),
            None => None,
        };
        let policy = DomainPolicy {
            premium,
            fleet_cname,
            fleet_ips: self.fleet_ips,
            allow_default_subdomains: self.allow_default_subdomains,
        };
        Ok((verify, policy))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renew_fractions_parse_as_decimals_ratios_or_percentages() {
        assert!((parse_fraction("2/3").unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert!((parse_fraction("0.5").unwrap() - 0.5).abs() < 1e-9);
        assert!((parse_fraction(" 75% ").unwrap() - 0.75).abs() < 1e-9);
        for bad in ["0", "1", "3/2", "-0.1", "half", "1/0"] {
            assert!(parse_fraction(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn acme_is_off_without_a_directory_and_checked_with_one() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            acme: AcmeArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("sling").chain(args.iter().copied()))
                .unwrap()
                .acme
                .validate()
        };
        assert!(parse(&[]).unwrap().is_none());
        let cfg = parse(&[
            "--acme-directory",
            "https://ca.example/dir",
            "--acme-contact",
            "mailto:a@example.com,mailto:b@example.com",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(cfg.contact.len(), 2);
        assert!((cfg.renew_fraction - 2.0 / 3.0).abs() < 1e-9);
        assert!(parse(&["--acme-directory", "http://ca.example/dir"]).is_err());
        assert!(
            parse(&[
                "--acme-directory",
                "https://ca.example/dir",
                "--acme-contact",
                "ops@example.com"
            ])
            .is_err()
        );
    }
}
