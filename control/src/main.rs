//! `sling`: the control plane's command line. `up` runs the control plane and a proxy in one
//! process (the quick start); `serve` runs the control plane alone; `migrate` and `keys create`
//! are one-shot administration commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sling_control::config::ServeArgs;
use sling_control::db::{self, Db};
use sling_proxy::config::{LogFormat, init_tracing};

#[derive(Parser, Debug)]
#[command(
    name = "sling",
    version,
    about = "sling: a self-hosted URL shortener for redirect fleets"
)]
struct Cli {
    /// Log output format (logs go to stderr; stdout carries `listening …` lines and keys).
    #[arg(long, global = true, env = "SLING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything in one process: the control plane and a proxy that follows it.
    Up(UpArgs),
    /// Run the control plane alone (API, database, snapshot publishing, change feed).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(clap::Args, Debug)]
struct UpArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Address of the redirect proxy.
    #[arg(long, env = "SLING_PROXY_LISTEN", default_value = "127.0.0.1:8080")]
    proxy_listen: SocketAddr,
    /// Address of the proxy's /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "SLING_PROXY_ADMIN_LISTEN",
        default_value = "127.0.0.1:9080"
    )]
    proxy_admin_listen: SocketAddr,
}

#[derive(clap::Args, Debug)]
struct DbArgs {
    #[arg(long, env = "SLING_DATA_DIR", default_value = "./sling-data")]
    data_dir: PathBuf,
    #[arg(long, env = "SLING_DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create an API key and print it (it is shown only once).
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// Team id or name; a team with that name is created if none exists.
        #[arg(long)]
        team: String,
        /// Comma-separated scopes, e.g. `links:read,links:write` (`*` for everything).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// A label for the key.
        #[arg(long, default_value = "")]
        name: String,
        /// Expire the key after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

impl DbArgs {
    async fn connect(self) -> anyhow::Result<Db> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        let url = self
            .database_url
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| db::sqlite_url(&self.data_dir));
        let db = Db::connect(&url).await?;
        db.migrate().await?;
        Ok(db)
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {what} on {addr}"))?;
    println!("listening {what}=http://{}", l.local_addr()?);
    Ok(l)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            let config = args.validate()?;
            let listener = bind(config.api_listen, "api").await?;
            sling_control::run(config, listener, sling_control::shutdown_signal()).await
        }
        Command::Up(args) => up(args).await,
        Command::Migrate(args) => {
            args.connect().await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys {
            command:
                KeysCommand::Create {
                    db,
                    team,
                    scopes,
                    name,
                    expires_in_days,
                },
        } => {
            let db = db.connect().await?;
            let team_id = db::teams::find_or_create_team(&db, &team).await?;
            let expires = expires_in_days.map(|d| db::now_ms() + i64::from(d) * 86_400_000);
            let (_id, secret) =
                db::keys::create_key(&db, &team_id, &name, &scopes, expires).await?;
            println!("{secret}");
            Ok(())
        }
    }
}

/// The quick start: control plane and proxy in one process, sharing one shutdown.
async fn up(args: UpArgs) -> anyhow::Result<()> {
    let config = args.serve.validate()?;
    let api = bind(config.api_listen, "api").await?;
    let control_url = format!("http://{}", api.local_addr()?);
    // The proxy prints its own `listening proxy=…` and `listening admin=…` lines.
    let proxy_listener = tokio::net::TcpListener::bind(args.proxy_listen)
        .await
        .with_context(|| format!("binding proxy on {}", args.proxy_listen))?;
    let admin_listener = tokio::net::TcpListener::bind(args.proxy_admin_listen)
        .await
        .with_context(|| format!("binding proxy admin on {}", args.proxy_admin_listen))?;

    let mut proxy_config =
        sling_proxy::config::Config::new(config.data_dir.join("proxy-snapshots"))
            .with_control(&control_url, config.fleet_token.clone())?;
    proxy_config.default_domain = config.default_domain.clone();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn(async move {
        sling_control::shutdown_signal().await;
        stop_tx.send_replace(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let control = sling_control::run(config, api, wait(stop_rx.clone()));
    let listeners = sling_proxy::Listeners {
        proxy: proxy_listener,
        admin: admin_listener,
    };
    let proxy = sling_proxy::run_with_listeners(proxy_config, listeners, wait(stop_rx));
    let result = tokio::try_join!(control, proxy).map(|_| ());
    signal.abort();
    result
}
