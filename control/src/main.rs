//! `sling`: the control plane's command line. `up` runs the control plane and a proxy in one
//! process (the quick start); `serve` runs the control plane alone; `migrate`, `keys
//! create|list|revoke`, `teams create|list|set-plan` and `plans list` are one-shot
//! administration commands.

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
    /// Manage teams and their plans.
    Teams {
        #[command(subcommand)]
        command: TeamsCommand,
    },
    /// Show the plan catalogue.
    Plans {
        #[command(subcommand)]
        command: PlansCommand,
    },
}

#[derive(clap::Args, Debug)]
struct PlansArgs {
    /// Plans file overriding the built-in plans (as `sling serve --plans-file`).
    #[arg(long, env = "SLING_PLANS_FILE")]
    plans_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum TeamsCommand {
    /// Create a team and print its id.
    Create {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        plans: PlansArgs,
        /// The team's name.
        #[arg(long)]
        name: String,
        /// The team's plan.
        #[arg(long, default_value = sling_control::plans::DEFAULT_PLAN)]
        plan: String,
    },
    /// List teams: id, plan, created, name (tab-separated).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Move a team to another plan (effective on its next request).
    SetPlan {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        plans: PlansArgs,
        /// Team id or name.
        #[arg(long)]
        team: String,
        #[arg(long)]
        plan: String,
    },
}

#[derive(Subcommand, Debug)]
enum PlansCommand {
    /// Print every plan and its limits (JSON).
    List {
        #[command(flatten)]
        plans: PlansArgs,
        /// Accepted for symmetry with the other commands; plans live in configuration.
        #[arg(
            long,
            env = "SLING_DATA_DIR",
            default_value = "./sling-data",
            hide = true
        )]
        data_dir: PathBuf,
        #[arg(long, env = "SLING_DATABASE_URL", hide = true)]
        database_url: Option<String>,
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
    /// The embedded proxy's HTTPS listener and default-domain certificate.
    #[command(flatten)]
    proxy_tls: sling_proxy::config::TlsArgs,
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
        /// Expire the key after this many days (1 to 3650, as the API allows).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// List keys (never secrets): id, prefix, team, scopes, state, name (tab-separated).
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Only this team's keys (id or name).
        #[arg(long)]
        team: Option<String>,
    },
    /// Revoke a key by id or prefix; refused from the next request on.
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        /// Key id (`key_…`) or prefix (`sk_…`, 12 characters).
        #[arg(long)]
        key: String,
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
            sling_control::run(config, listener, sling_proxy::shutdown_signal()).await
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
        Command::Keys {
            command: KeysCommand::List { db, team },
        } => {
            let db = db.connect().await?;
            let team_id = match team {
                Some(t) => Some(team_id(&db, &t).await?),
                None => None,
            };
            let now = db::now_ms();
            for k in db::keys::list_all(&db).await? {
                if team_id.as_ref().is_some_and(|t| *t != k.team_id) {
                    continue;
                }
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{state}\t{}",
                    k.id,
                    k.prefix,
                    k.team_id,
                    k.scopes.join(","),
                    k.name
                );
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Revoke { db, key },
        } => {
            let db = db.connect().await?;
            anyhow::ensure!(
                db::keys::revoke_any(&db, &key).await?,
                "no active key with id or prefix {key:?}"
            );
            println!("revoked {key}");
            Ok(())
        }
        Command::Teams { command } => teams(command).await,
        Command::Plans {
            command: PlansCommand::List { plans, .. },
        } => {
            let plans = sling_control::config::load_plans(plans.plans_file.as_deref())?;
            let all: Vec<_> = plans.iter().collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
            Ok(())
        }
    }
}

/// The id of the team with this id or name.
async fn team_id(db: &Db, name_or_id: &str) -> anyhow::Result<String> {
    Ok(db::teams::find(db, name_or_id)
        .await?
        .with_context(|| format!("no team with id or name {name_or_id:?}"))?
        .id)
}

fn check_plan(plans: &PlansArgs, plan: &str) -> anyhow::Result<()> {
    let catalogue = sling_control::config::load_plans(plans.plans_file.as_deref())?;
    anyhow::ensure!(
        catalogue.get(plan).is_some(),
        "unknown plan {plan:?} (known: {})",
        catalogue
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

async fn teams(command: TeamsCommand) -> anyhow::Result<()> {
    match command {
        TeamsCommand::Create {
            db,
            plans,
            name,
            plan,
        } => {
            check_plan(&plans, &plan)?;
            let db = db.connect().await?;
            let team = db::teams::create_team_with_plan(&db, &name, &plan).await?;
            println!("{}", team.id);
        }
        TeamsCommand::List { db } => {
            let db = db.connect().await?;
            for t in db::teams::list(&db).await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    t.id,
                    t.plan,
                    sling_control::validate::rfc3339(t.created_at),
                    t.name
                );
            }
        }
        TeamsCommand::SetPlan {
            db,
            plans,
            team,
            plan,
        } => {
            check_plan(&plans, &plan)?;
            let db = db.connect().await?;
            let id = team_id(&db, &team).await?;
            db::teams::set_plan(&db, &id, &plan).await?;
            println!("team {id} is on plan {plan}");
        }
    }
    Ok(())
}

/// The quick start: control plane and proxy in one process, sharing one shutdown.
async fn up(args: UpArgs) -> anyhow::Result<()> {
    let config = args.serve.validate()?;
    let api = bind(config.api_listen, "api").await?;
    let control_url = format!("http://{}", api.local_addr()?);
    // The proxy prints its own `listening proxy=…`, `listening admin=…` (and `tls=…`) lines.
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
    proxy_config.tls = args.proxy_tls.into();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn(async move {
        sling_proxy::shutdown_signal().await;
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
